"""Test helpers: build what the OTA server and the handset would send to a card, with the
shared codecs only (never with sim_emulator's own code), and read what comes back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.apdu.proactive import CommandDetails, SendShortMessage, TerminalResponse
from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    encode_command_packet,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import DecodedResponse, decode_response_packet
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm, Spi
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.concatenation import split_user_data
from ota_protocols.sms.tpdu import SmsDeliver, SmsSubmit
from ota_protocols.sms.user_data_header import CPI
from sim_emulator.api import SimCard, card_from_fleet, load_card_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "configs" / "cards" / "fleet-template.toml"
EXAMPLE_CARD = ROOT / "configs" / "cards" / "example-card.toml"
SPEC = FleetSpec(seed="sim-emulator-tests", count=100)
TEMPLATE = load_card_template(TEMPLATE_PATH)
ORIGINATOR = Address("12345678", Ton.INTERNATIONAL, Npi.ISDN)

TAR_RFM = bytes.fromhex("b00010")
TAR_RAM = bytes.fromhex("000000")
TAR_PURSE = bytes.fromhex("bfff01")
SPI_DEFAULT = Spi(0x16, 0x39 & ~0x20)  # cipher + CC + counter higher; PoR always, CC, ciphered
AES_KIC = AES_KID = 0x12  # key set 1: AES-CBC / AES-CMAC
TDES_KIC = TDES_KID = 0x25  # key set 2: 3DES two-key


def new_card(index: int = 0) -> SimCard:
    card = card_from_fleet(SPEC, index, TEMPLATE)
    card.reset()
    return card


def fleet_keys(index: int, kvn: int = 1) -> PacketKeys:
    keyset = next(k for k in derive_card(SPEC, index).keysets if k.kvn == kvn)
    return PacketKeys(
        kic_key=keyset.kic,
        kid_key=keyset.kid,
        kic_implicit=CipherAlgorithm(keyset.kic_algorithm),
        kid_implicit=IntegrityAlgorithm(keyset.kid_algorithm),
    )


def sms_deliver(ud: bytes, *, udhi: bool = True) -> bytes:
    return SmsDeliver(tp_oa=ORIGINATOR, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=ud, tp_udhi=udhi).encode()


def envelope(ud: bytes) -> bytes:
    return SmsPpDownload(sms_deliver(ud), smsc_address=bytes.fromhex("91947106004034")).to_apdu().encode_t0()


@dataclass
class Answer:
    data: bytes
    sw: int


def transmit(card: SimCard, c_apdu: bytes) -> Answer:
    """As a T=0 handset does: follow 61 XX with GET RESPONSE."""
    r = card.exchange(c_apdu)
    data, sw = r[:-2], int.from_bytes(r[-2:], "big")
    while sw >> 8 == 0x61:
        r = card.exchange(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        data, sw = data + r[:-2], int.from_bytes(r[-2:], "big")
    return Answer(data, sw)


def command_packet(
    script: bytes,
    cntr: int,
    *,
    tar: bytes = TAR_RFM,
    spi: Spi = SPI_DEFAULT,
    kic: int = AES_KIC,
    kid: int = AES_KID,
    keys: PacketKeys | None = None,
    index: int = 0,
) -> bytes:
    keys = keys or fleet_keys(index, kic >> 4 or 1)
    return encode_command_packet(CommandPacket(spi, kic, kid, tar, cntr, script), keys)


def send_script(card: SimCard, script: bytes, cntr: int, **kwargs: object) -> Answer:
    """One SMS, or concatenated SMSs when the packet does not fit (TS 31.115 §4.2)."""
    packet = command_packet(script, cntr, **kwargs)  # type: ignore[arg-type]
    envelopes = concatenated_envelopes(packet, reference=cntr & 0xFF)
    for e in envelopes[:-1]:
        assert card.exchange(e) == b"\x90\x00"
    return transmit(card, envelopes[-1])


def decode_por(
    data: bytes, *, spi: Spi = SPI_DEFAULT, kic: int = AES_KIC, kid: int = AES_KID, index: int = 0
) -> DecodedResponse:
    return decode_response_packet(data, spi, kic, kid, fleet_keys(index, kic >> 4 or 1))


def concatenated_envelopes(packet: bytes, reference: int = 7) -> list[bytes]:
    return [envelope(ud) for ud in split_user_data(packet, first_ies=(CPI,), reference=reference)]


def fetch_sms_submits(card: SimCard, sw: int) -> list[SmsSubmit]:
    """FETCH every pending SEND SHORT MESSAGE, answering each with TERMINAL RESPONSE 00."""
    submits = []
    while sw >> 8 == 0x91:
        r = card.exchange(bytes((0x80, 0x12, 0x00, 0x00, sw & 0xFF)))
        assert r[-2:] == b"\x90\x00"
        command = SendShortMessage.decode(r[:-2])
        submits.append(SmsSubmit.decode(command.tpdu))
        tr = TerminalResponse(CommandDetails(command.command_number, 0x13, command.qualifier), 0x00)
        r = card.exchange(tr.to_apdu().encode_t0())
        sw = int.from_bytes(r[-2:], "big")
    assert sw == 0x9000
    return submits


def apdu(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))
