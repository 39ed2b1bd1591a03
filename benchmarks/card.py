"""Card-side benchmark: µs per complete OTA transaction on an emulated SIM, and per codec call.

    python -m benchmarks.card [--seconds 1.0] [--profile]

One card transaction, as the handset drives it: SMS-DELIVER TPDU decoded (the ME's
check) -> ENVELOPE (SMS-PP DOWNLOAD) built -> ``SimCard.exchange`` -> GET RESPONSE
(``61 XX``) -> PoR in an SMS-DELIVER-REPORT. The script is the e2e benchmark's one
RFM action (SELECT 3F00 / 7F20 / 6F46, UPDATE BINARY of 17 octets), SPI 16 19, AES
key set 1 (KIc = KID = 12), TAR b00010, on fleet cards of
configs/cards/fleet-template.toml built by ``sim_emulator.api.card_from_fleet``.

* "first contact": a fresh card per transaction (its key schedules built in the call;
  the card's construction itself is not timed);
* "warm card": the same card again and again, CNTR + 1 each time.

Then the shared codecs of the same path: SMPP submit_sm / deliver_sm, the TPDUs and
the ENVELOPE. ``--profile`` prints the warm transaction's hottest functions (cProfile).
The command packets are built beforehand with ``ota_protocols`` only.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.card_commands import select_fid, update_binary
from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.apdu.remote_commands import encode_compact_commands
from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.secured_packet.command_packet import CommandPacket, encode_command_packet
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm, Spi
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm, decode_pdu, encode_pdu
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsDeliver, SmsDeliverReport
from sim_emulator.api import SimCard, card_from_fleet, load_card_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = load_card_template(ROOT / "configs" / "cards" / "fleet-template.toml")
SPEC = FleetSpec(seed="bench", count=100_000)
SPI = Spi(0x16, 0x19)  # cipher + CC + counter higher; PoR always, CC, ciphered
KIC = KID = 0x12  # key set 1: AES-CBC / AES-CMAC
TAR = bytes.fromhex("b00010")
ORIGINATOR = Address("12345", Ton.UNKNOWN, Npi.ISDN)
SMSC = bytes.fromhex("91947106004034")
SCRIPT = encode_compact_commands(
    [
        select_fid(b"\x3f\x00"),
        select_fid(b"\x7f\x20"),
        select_fid(b"\x6f\x46"),
        update_binary(0, bytes.fromhex("014f54412042656e63686d61726b202020")),
    ]
)


def fleet_keys(index: int) -> PacketKeys:
    keyset = next(k for k in derive_card(SPEC, index).keysets if k.kvn == 1)
    return PacketKeys(
        kic_key=keyset.kic,
        kid_key=keyset.kid,
        kic_implicit=CipherAlgorithm(keyset.kic_algorithm),
        kid_implicit=IntegrityAlgorithm(keyset.kid_algorithm),
    )


def sms_deliver(index: int, cntr: int, keys: PacketKeys | None = None) -> bytes:
    packet = encode_command_packet(CommandPacket(SPI, KIC, KID, TAR, cntr, SCRIPT), keys or fleet_keys(index))
    ud = b"\x02\x70\x00" + packet
    return SmsDeliver(tp_oa=ORIGINATOR, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=ud, tp_udhi=True).encode()


def transaction(card: SimCard, tpdu: bytes) -> bytes:
    """The handset's part of one MT OTA SMS, minus routing: returns the DELIVER-REPORT TPDU."""
    SmsDeliver.decode(tpdu)
    envelope = SmsPpDownload(tpdu, SMSC).to_apdu().encode_t0()
    r = card.exchange(envelope)
    sw = (r[-2] << 8) | r[-1]
    data = r[:-2]
    while sw >> 8 == 0x61:
        r = card.exchange(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        data += r[:-2]
        sw = (r[-2] << 8) | r[-1]
    if sw != 0x9000 or data[:3] != b"\x02\x71\x00" or len(data) < 16:
        raise AssertionError(f"unexpected card answer {data.hex()} {sw:04x}")
    return SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=data).encode()


def per_call_us(fn: Callable[[], object], seconds: float, batch: int = 200) -> float:
    """Best of five runs of ``seconds / 5`` each, in µs per call."""
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(batch):
                fn()
            n += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / n * 1e6)
    return best


def warm_case(calls: int, cards: int = 500) -> Callable[[], object]:
    """Round robin over ``cards`` cards that each ran one transaction already (key schedules
    built, journal short, as in the e2e campaign); call ``i`` goes to card ``i % cards``."""
    fleet = []
    for index in range(cards):
        card = card_from_fleet(SPEC, index, TEMPLATE)
        card.reset()
        transaction(card, sms_deliver(index, 1))
        fleet.append((card, fleet_keys(index)))
    # A distinct CNTR for every call (the card refuses a replay with CNTR low), built beforehand.
    work = [
        (card, sms_deliver(i % cards, 2 + i // cards, keys))
        for i, (card, keys) in ((i, fleet[i % cards]) for i in range(calls))
    ]
    jobs = iter(work)

    def call() -> object:
        card, tpdu = next(jobs)
        return transaction(card, tpdu)

    return call


def first_contact_us(seconds: float) -> float:
    """Fresh cards; only the transaction is timed (card construction and packets are not)."""
    best = float("inf")
    index = 1000
    for _ in range(5):
        cards: list[tuple[SimCard, bytes]] = []
        for _ in range(max(200, int(seconds * 400))):
            card = card_from_fleet(SPEC, index, TEMPLATE)
            card.reset()
            cards.append((card, sms_deliver(index, 1)))
            index += 1
        start = time.perf_counter()
        for card, tpdu in cards:
            transaction(card, tpdu)
        best = min(best, (time.perf_counter() - start) / len(cards) * 1e6)
    return best


def codec_rows() -> dict[str, Callable[[], object]]:
    tpdu = sms_deliver(3, 1)
    ud = SmsDeliver.decode(tpdu).tp_ud
    submit = SubmitSm(
        sequence_number=7,
        source_addr_ton=0,
        source_addr_npi=1,
        source_addr="12345",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="491700000003",
        esm_class=0x40,
        protocol_id=0x7F,
        registered_delivery=1,
        data_coding=0xF6,
        short_message=ud,
    )
    submit_raw = encode_pdu(submit)
    por = bytes.fromhex("027100") + bytes(29)
    deliver = DeliverSm(
        sequence_number=9,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="491700000003",
        destination_addr="12345",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=por,
    )
    deliver_raw = encode_pdu(deliver)
    report = SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por)
    report_raw = report.encode()
    download = SmsPpDownload(tpdu, SMSC)
    envelope_data = download.encode()
    get_response = bytes((0x00, 0xC0, 0x00, 0x00, 0x20))
    return {
        "submit_sm encode": lambda: encode_pdu(submit),
        "submit_sm decode": lambda: decode_pdu(submit_raw),
        "deliver_sm encode": lambda: encode_pdu(deliver),
        "deliver_sm decode": lambda: decode_pdu(deliver_raw),
        "SMS-DELIVER encode": SmsDeliver.decode(tpdu).encode,
        "SMS-DELIVER decode": lambda: SmsDeliver.decode(tpdu),
        "DELIVER-REPORT encode": report.encode,
        "DELIVER-REPORT decode": lambda: SmsDeliverReport.decode(report_raw),
        "ENVELOPE encode (to T=0)": lambda: SmsPpDownload(tpdu, SMSC).to_apdu().encode_t0(),
        "ENVELOPE decode": lambda: SmsPpDownload.decode(envelope_data, base_offset=5),
        "C-APDU decode (GET RESPONSE)": lambda: CommandApdu.decode(get_response),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    parser.add_argument("--profile", action="store_true", help="profile the warm transaction (cProfile)")
    parser.add_argument(
        "--sort", default="tottime", help="cProfile sort key with --profile (default tottime)"
    )
    args = parser.parse_args()
    if args.profile:
        fn = warm_case(20_000)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20_000):
            fn()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)
        return
    print(f"{'operation':<40} {'µs/op':>8}")
    print(f"{'card transaction, first contact':<40} {first_contact_us(args.seconds):8.2f}")
    warm = per_call_us(warm_case(int(args.seconds * 60_000) + 1000), args.seconds, 50)
    print(f"{'card transaction, warm card':<40} {warm:8.2f}")
    for name, fn in codec_rows().items():
        print(f"{name:<40} {per_call_us(fn, args.seconds):8.2f}")


if __name__ == "__main__":
    main()
