"""Loopback TCP: ESMEs against the SMSC emulator with phones holding fake OTA cards."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from handset.config import EsmeConfig, HandsetConfig, SmscConfig
from handset.radio_link import DirectionFaults, RadioConfig
from handset.service import YOUNG_GC_THRESHOLD, HandsetService
from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    command_user_data,
    encode_command_packet,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import decode_response_packet
from ota_protocols.secured_packet.security_parameters import Spi
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import BindKind, DeliveryReceipt, SubmitSmResp, decode_pdu, encode_pdu
from sim_emulator.api import card_from_fleet, load_card_template

from .async_esme import AsyncEsme
from .fake_cards import FakeOtaCard, RecordingCard

ROOT = Path(__file__).resolve().parents[2]

Net = tuple[HandsetService, int, list]  # service, port, cards
SPEC = FleetSpec(seed="handset-tests", count=4, msisdn_prefix="4917", msisdn_digits=12)
TAR_RFM = bytes.fromhex("b00010")
ESMES = (
    EsmeConfig(system_id="ota", password="secret", addresses=("12345",)),
    EsmeConfig(system_id="other", password="pw", addresses=("999",)),
)


def make_config(**smsc: object) -> HandsetConfig:
    radio = smsc.pop("radio", RadioConfig())
    base = SmscConfig(port=0, esmes=ESMES, rp_timeout_s=5.0, deliver_sm_retry_s=0.05)
    return HandsetConfig(smsc=dataclasses.replace(base, **smsc), radio=radio)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def network(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HandsetService, int, list]]:
    marker = request.node.get_closest_marker("smsc")
    config = make_config(**(marker.kwargs if marker else {}))
    kind = request.node.get_closest_marker("fake_cards")
    if kind is not None:
        cards: list = [FakeOtaCard(SPEC, i) for i in SPEC.indices]
    else:
        template = load_card_template(ROOT / "configs" / "cards" / "fleet-template.toml")
        cards = [RecordingCard(card_from_fleet(SPEC, i, template)) for i in SPEC.indices]
    service = HandsetService(config, cards=cards)
    port = await service.start(host="127.0.0.1", port=0)
    try:
        yield service, port, cards
    finally:
        async with asyncio.timeout(10):
            await service.stop()


def keys_for(index: int, kvn: int = 1) -> PacketKeys:
    ks = next(k for k in derive_card(SPEC, index).keysets if k.kvn == kvn)
    return PacketKeys(kic_key=ks.kic, kid_key=ks.kid)


def command_ud(index: int, spi: bytes, cntr: int = 1) -> bytes:
    command = CommandPacket(
        spi=Spi.from_bytes(spi),
        kic=0x12,
        kid=0x12,
        tar=TAR_RFM,
        cntr=cntr,
        data=bytes.fromhex("00a40004023f00"),
    )
    return command_user_data(encode_command_packet(command, keys_for(index)))


def ota_submit(index: int, spi: bytes = b"\x16\x19", cntr: int = 1, **fields: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="12345",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=derive_card(SPEC, index).msisdn,
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=command_ud(index, spi, cntr),
    )
    base.update(fields)
    return base


async def bound(
    port: int, system_id: str = "ota", password: str = "secret", kind: BindKind = BindKind.TRANSCEIVER
) -> AsyncEsme:
    esme = await AsyncEsme.connect(port)
    assert await esme.bind(system_id, password, kind) == CommandStatus.ESME_ROK
    return esme


def check_por(pdu: object, index: int, spi: bytes, *, status: int = 0) -> bytes:
    assert pdu.esm_class == 0x40 and pdu.protocol_id == 0x7F and pdu.data_coding == 0xF6  # type: ignore[attr-defined]
    assert pdu.source_addr == derive_card(SPEC, index).msisdn and pdu.source_addr_ton == 1  # type: ignore[attr-defined]
    ud = pdu.short_message  # type: ignore[attr-defined]
    assert ud[:3] == bytes.fromhex("027100")
    decoded = decode_response_packet(ud, Spi.from_bytes(spi), 0x12, 0x12, keys_for(index))
    assert decoded.checksum_valid is True and decoded.tar == TAR_RFM and decoded.status == status
    return decoded.data


@pytest.mark.asyncio
async def test_bind_and_enquire_link(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        resp = await esme.enquire_link()
        assert resp.command_status == 0  # type: ignore[union-attr]
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_wrong_password_and_unknown_system_id_are_refused(network: Net) -> None:
    _, port, _ = network
    esme = await AsyncEsme.connect(port)
    try:
        assert await esme.bind("ota", "wrong") == CommandStatus.ESME_RINVPASWD
        assert await esme.bind("nobody", "x") == CommandStatus.ESME_RINVSYSID
        # Documented choice: the connection stays open and unbound; a correct bind then succeeds.
        assert await esme.bind("ota", "secret") == CommandStatus.ESME_ROK
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_por_via_deliver_report_reaches_the_esme(network: Net) -> None:
    service, port, cards = network
    esme = await bound(port)
    try:
        resp = await esme.submit(**ota_submit(1, b"\x16\x19"))
        assert isinstance(resp, SubmitSmResp) and resp.command_status == 0 and resp.message_id
        por = await esme.next_deliver()
        assert check_por(por, 1, b"\x16\x19")[0] == 1  # TS 102 226 §5.1: one command executed
        assert por.destination_addr == "12345"
        assert cards[1].apdus[-2][:2] == b"\x80\xc2"  # ENVELOPE, then GET RESPONSE
        report = service.report()
        assert report["smsc"]["pors"] == 1 and report["smsc"]["submits"] == 1
    finally:
        await esme.close()


class _RecordingLoop:
    """The network's loop, recording the timer handles it arms (call_at)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timers: list[tuple[object, asyncio.TimerHandle]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._loop, name)

    def call_at(self, when: float, callback: object, later: object) -> asyncio.TimerHandle:
        handle = self._loop.call_at(when, callback, later)  # type: ignore[arg-type]
        self.timers.append((later, handle))
        return handle


@pytest.mark.asyncio
async def test_an_answered_mts_rp_timer_is_cancelled_not_left_to_fire(network: Net) -> None:
    from handset import network_core

    service, port, _ = network
    assert service.network is not None
    recording = _RecordingLoop(service.network.loop)
    service.network.loop = recording  # type: ignore[assignment]
    esme = await bound(port)
    try:
        await esme.submit(**ota_submit(1, b"\x16\x19"))
        check_por(await esme.next_deliver(), 1, b"\x16\x19")
        rp_timers = [h for later, h in recording.timers if later.kind == network_core.TIMER]  # type: ignore[attr-defined]
        # Armed when the MT went out; cancelled once the RP-ACK came, so that it lets the MT go.
        assert len(rp_timers) == 1 and rp_timers[0].cancelled()
        phone = service.network.phones[derive_card(SPEC, 1).msisdn]
        assert phone.timer == 0 and phone.sf_timer is None
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_por_via_sms_submit_reaches_the_esme(network: Net) -> None:
    _, port, cards = network
    esme = await bound(port)
    try:
        resp = await esme.submit(**ota_submit(2, b"\x16\x39", esm_class=0x43))
        assert resp.command_status == 0  # type: ignore[union-attr]
        first, second = await esme.next_deliver(), await esme.next_deliver()
        by_status = {}
        for pdu in (first, second):
            decoded = decode_response_packet(
                pdu.short_message, Spi.from_bytes(b"\x16\x39"), 0x12, 0x12, keys_for(2)
            )
            by_status[decoded.status] = pdu
        assert set(by_status) == {0x00, 0x0B}  # short PoR in the DELIVER-REPORT, full one by SMS-SUBMIT
        assert check_por(by_status[0], 2, b"\x16\x39")[0] == 1
        assert by_status[0].destination_addr == "12345"
        assert cards[2].apdus[-1][:2] == b"\x80\x14"  # TERMINAL RESPONSE after the hand-over
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_delivery_receipt_when_registered_delivery(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        resp = await esme.submit(**ota_submit(0, registered_delivery=1))
        got = [await esme.next_deliver(), await esme.next_deliver()]
        receipts = [p for p in got if p.esm_class & 0x3C == 0x04]
        pors = [p for p in got if p.esm_class & 0x3C == 0]
        assert len(receipts) == 1 and len(pors) == 1
        receipt = DeliveryReceipt.parse(receipts[0].short_message)
        assert receipt.message_id == resp.message_id and receipt.stat == "DELIVRD"  # type: ignore[union-attr]
        assert receipts[0].receipted_message_id == resp.message_id  # type: ignore[union-attr]
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_unknown_destination_is_rinvdstadr(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        resp = await esme.submit(**ota_submit(0, destination_addr="4900000"))
        assert resp.command_status == CommandStatus.ESME_RINVDSTADR  # type: ignore[union-attr]
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_malformed_pdu_gets_generic_nack_and_other_esme_is_served(network: Net) -> None:
    _, port, _ = network
    good = await bound(port, "other", "pw")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # Unknown command_id 0x00000777 -> generic_nack ESME_RINVCMDID with the same sequence.
        writer.write(struct.pack(">IIII", 16, 0x777, 0, 42))
        async with asyncio.timeout(5):
            raw = await reader.readexactly(16)
        nack = decode_pdu(raw)
        assert nack.command_id == 0x80000000 and nack.sequence_number == 42
        assert nack.command_status == CommandStatus.ESME_RINVCMDID  # type: ignore[union-attr]
        # Impossible command_length -> generic_nack and the connection closes.
        writer.write(struct.pack(">IIII", 8, 4, 0, 43))
        async with asyncio.timeout(5):
            raw = await reader.readexactly(16)
            assert decode_pdu(raw).command_status == CommandStatus.ESME_RINVCMDLEN  # type: ignore[union-attr]
            assert await reader.read() == b""
        resp = await good.submit(**ota_submit(3, source_addr="999"))
        assert resp.command_status == 0  # type: ignore[union-attr]
        por = await good.next_deliver()
        assert por.destination_addr == "999"
    finally:
        writer.close()
        await good.close()


@pytest.mark.asyncio
@pytest.mark.smsc(throttle_per_s=1.0, throttle_burst=2)
async def test_throttling(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        statuses = [(await esme.submit(**ota_submit(0, cntr=i + 1))).command_status for i in range(4)]  # type: ignore[union-attr]
        assert statuses[:2] == [0, 0]
        assert CommandStatus.ESME_RTHROTTLED in statuses[2:]
        assert network[0].report()["smsc"]["throttled"] >= 1
    finally:
        await esme.close()


@pytest.mark.asyncio
@pytest.mark.smsc(max_queued_mt=2, radio=RadioConfig(mt=DirectionFaults(loss_probability=1.0)))
async def test_queue_full(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        statuses = [(await esme.submit(**ota_submit(i))).command_status for i in range(3)]  # type: ignore[union-attr]
        assert statuses == [0, 0, CommandStatus.ESME_RMSGQFUL]
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_several_esmes_bound_and_mo_routed_by_owner(network: Net) -> None:
    service, port, _ = network
    ota = await bound(port)
    other = await bound(port, "other", "pw", BindKind.RECEIVER)
    sender = await bound(port, "other", "pw", BindKind.TRANSMITTER)
    try:
        assert len(service.server.bound_esmes) == 3  # type: ignore[union-attr]
        # Submitted by "other" but addressed to "12345", which "ota" owns.
        assert (await sender.submit(**ota_submit(1))).command_status == 0  # type: ignore[union-attr]
        por = await ota.next_deliver()
        assert por.destination_addr == "12345"
        assert other.delivers.empty()
    finally:
        for esme in (ota, other, sender):
            await esme.close()


@pytest.mark.asyncio
async def test_mo_is_stored_until_a_receiver_binds(network: Net) -> None:
    service, port, _cards = network
    sender = await bound(port, "ota", "secret", BindKind.TRANSMITTER)
    try:
        server = service.server
        assert server is not None
        stored = asyncio.Event()
        original = server.deliver_mo

        def spy(pdu: object, **kw: object) -> None:
            original(pdu, **kw)  # type: ignore[arg-type]
            stored.set()

        server.deliver_mo = spy  # type: ignore[method-assign]
        assert (await sender.submit(**ota_submit(0))).command_status == 0  # type: ignore[union-attr]
        async with asyncio.timeout(5):
            await stored.wait()
        receiver = await bound(port, "ota", "secret", BindKind.RECEIVER)
        try:
            por = await receiver.next_deliver()
            check_por(por, 0, b"\x16\x19")
        finally:
            await receiver.close()
    finally:
        await sender.close()


@pytest.mark.asyncio
async def test_rejected_deliver_sm_is_retried(network: Net) -> None:
    service, port, _ = network
    esme = await bound(port)
    answers = iter([0x64, 0])  # ESME_RX_T_APPN first, then OK
    esme.deliver_status = lambda pdu: next(answers, 0)
    try:
        assert (await esme.submit(**ota_submit(0))).command_status == 0  # type: ignore[union-attr]
        check_por(await esme.next_deliver(), 0, b"\x16\x19")
        assert service.report()["smsc"]["deliver_sm_retries"] == 1
    finally:
        await esme.close()


@pytest.mark.asyncio
@pytest.mark.smsc(
    rp_timeout_s=0.05,
    retry_min_s=0.05,
    retry_max_s=0.1,
    radio=RadioConfig(mt=DirectionFaults(loss_probability=1.0)),
)
async def test_undeliverable_mt_expires_with_a_receipt(network: Net) -> None:
    service, port, _ = network
    esme = await bound(port)
    try:
        resp = await esme.submit(**ota_submit(0, registered_delivery=1, validity_period="000000000001000R"))
        receipt = await esme.next_deliver(timeout=5)
        parsed = DeliveryReceipt.parse(receipt.short_message)
        assert parsed.stat == "EXPIRED" and parsed.message_id == resp.message_id  # type: ignore[union-attr]
        smsc = service.report()["smsc"]
        assert smsc["mt_expired"] == 1 and smsc["mt_rp_timeouts"] >= 2
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_stop_unbinds_the_esmes(network: Net) -> None:
    service, port, _ = network
    esme = await bound(port)
    async with asyncio.timeout(5):
        await service.stop()
        await esme.closed.wait()
    await esme.close()


def test_pdus_used_here_round_trip() -> None:
    pdu = SubmitSmResp(sequence_number=3, message_id="01")
    assert decode_pdu(encode_pdu(pdu)) == pdu


@pytest.mark.asyncio
@pytest.mark.fake_cards
async def test_both_por_paths_with_the_tests_own_fake_card(network: Net) -> None:
    _, port, cards = network
    esme = await bound(port)
    try:
        assert (await esme.submit(**ota_submit(1, b"\x16\x19"))).command_status == 0  # type: ignore[union-attr]
        assert check_por(await esme.next_deliver(), 1, b"\x16\x19") == b"\x01\x90\x00"
        assert (await esme.submit(**ota_submit(2, b"\x16\x39"))).command_status == 0  # type: ignore[union-attr]
        got = [await esme.next_deliver(), await esme.next_deliver()]
        statuses = sorted(
            decode_response_packet(
                p.short_message, Spi.from_bytes(b"\x16\x39"), 0x12, 0x12, keys_for(2)
            ).status
            for p in got
        )
        assert statuses == [0x00, 0x0B] and cards[2].actions == 1
    finally:
        await esme.close()


@pytest.mark.asyncio
@pytest.mark.smsc(radio=RadioConfig(seed=5, mt=DirectionFaults(corrupt_probability=1.0)))
async def test_corrupted_mt_gives_an_integrity_failure_por(network: Net) -> None:
    _, port, _ = network
    esme = await bound(port)
    try:
        assert (await esme.submit(**ota_submit(0))).command_status == 0  # type: ignore[union-attr]
        por = await esme.next_deliver()
        # TS 102 225 §5.2: RC/CC/DS failed (01); the card's error-PoR style decides the securing.
        assert por.short_message[:3] == bytes.fromhex("027100")
        assert por.short_message[3 + 2 + 1 + 3 + 5 + 1] == 0x01
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_the_network_tunes_the_collector_until_stop() -> None:
    import gc

    template = load_card_template(ROOT / "configs" / "cards" / "fleet-template.toml")
    cards = [card_from_fleet(SPEC, i, template) for i in SPEC.indices]
    service = HandsetService(make_config(), cards=cards)
    before = gc.get_threshold()
    await service.start(host="127.0.0.1", port=0)
    try:
        assert gc.get_freeze_count() > 0  # the cards, phones and MEs: out of the full collections
        assert gc.get_threshold()[0] == max(before[0], YOUNG_GC_THRESHOLD)
    finally:
        async with asyncio.timeout(10):
            await service.stop()
    assert gc.get_freeze_count() == 0  # given back: a process that runs many networks keeps none
    assert gc.get_threshold() == before
