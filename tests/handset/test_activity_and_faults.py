"""Subscriber activity (purse payments), the terminal store, card tearing and SMSC restart.

Patent WO 00/07153 claims 7-9 (docs/action-counter.md "Deferred reports"): a card reports its
action counter later, in a transaction request or an information message; the terminal keeps
transactions while out of coverage. Loopback TCP only, seeded RNGs, waits under asyncio.timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from handset import activity
from handset.activity import ActivityConfig, next_transaction_at, transaction_times
from handset.config import HandsetConfig, SmscConfig, load_config
from handset.mobile_equipment import MobileEquipment, MoSubmit, RpAck, RpError
from handset.radio_link import RadioConfig, RadioLink
from handset.service import HandsetService
from ota_protocols.action_counter import CardMessage, CardMessageKind
from ota_protocols.apdu import card_commands as cc
from ota_protocols.errors import ConfigError
from ota_protocols.fleet import derive_card
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    command_user_data,
    decode_command_packet,
    encode_command_packet,
)
from ota_protocols.secured_packet.response_packet import ResponseStatus, decode_response_packet
from ota_protocols.secured_packet.security_parameters import Spi
from ota_protocols.smpp.pdu_codec import DeliverSm
from ota_protocols.sms.tpdu import SmsDeliver, SmsSubmit
from sim_emulator.api import card_from_fleet, load_card_template

from .async_esme import AsyncEsme
from .fake_cards import RecordingCard
from .test_smsc_server import ESMES, SPEC, bound, keys_for

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_card_template(ROOT / "configs" / "cards" / "fleet-template.toml")
INFO_TEMPLATE = dataclasses.replace(
    TEMPLATE, options=dataclasses.replace(TEMPLATE.options, info_message_on_power_up=True)
)
TAR_PURSE = bytes.fromhex("bfff01")
TIMEOUT = 5.0


def config(*, radio: RadioConfig | None = None, **smsc: object) -> HandsetConfig:
    base = SmscConfig(port=0, esmes=ESMES, rp_timeout_s=5.0, deliver_sm_retry_s=0.05)
    return HandsetConfig(smsc=dataclasses.replace(base, **smsc), radio=radio or RadioConfig())  # type: ignore[arg-type]


def real_cards(template: object = TEMPLATE, count: int = 4) -> list[RecordingCard]:
    return [RecordingCard(card_from_fleet(SPEC, i, template)) for i in range(count)]  # type: ignore[arg-type]


def card_message(pdu: DeliverSm, index: int) -> tuple[int, CardMessage]:
    """(MO CNTR, message) of a card-originated deliver_sm, opened with the shared decoder."""
    assert pdu.esm_class == 0x40 and pdu.protocol_id == 0x7F and pdu.data_coding == 0xF6
    assert pdu.destination_addr == "12345" and pdu.source_addr == derive_card(SPEC, index).msisdn
    ud = pdu.short_message
    assert ud[:3] == bytes.fromhex("027000")
    opened = decode_command_packet(ud[3:], keys_for(index))
    assert opened.checksum_valid is True and opened.header.tar == TAR_PURSE
    return opened.cntr, CardMessage.decode(opened.data)


@pytest_asyncio.fixture
async def started() -> AsyncIterator[Callable[..., object]]:
    services: list[HandsetService] = []

    async def start(cfg: HandsetConfig, cards: list[object]) -> tuple[HandsetService, int]:
        service = HandsetService(cfg, cards=cards)
        services.append(service)
        port = await service.start(host="127.0.0.1", port=0)
        return service, port

    yield start
    for service in services:
        async with asyncio.timeout(10):
            await service.stop()


# --------------------------------------------------------------------------- activity (pure)


def test_activity_schedule_is_deterministic_per_seed_and_phone() -> None:
    def times(seed: int, msisdn: str) -> list[float]:
        return transaction_times(random.Random(activity.phone_seed(seed, msisdn)), 100.0, 100.0 + 36_000, 6.0)

    assert times(7, "491700000001") == times(7, "491700000001")
    assert times(7, "491700000001") != times(8, "491700000001")
    assert times(7, "491700000001") != times(7, "491700000002")
    assert all(100.0 <= t < 36_100.0 for t in times(7, "491700000001"))
    assert next_transaction_at(random.Random(1), 5.0, 0.0) is None


def test_activity_rate_within_tolerance() -> None:
    rng = random.Random("rate")
    hours = 2000
    got = transaction_times(rng, 0.0, hours * 3600.0, 5.0)
    expected = 5.0 * hours  # Poisson: sd = sqrt(10000) = 100
    assert abs(len(got) - expected) < 0.04 * expected
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert abs(sum(gaps) / len(gaps) - 720.0) < 0.04 * 720.0


def test_activity_and_tear_config(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text("[activity]\ntransactions_per_hour = 12.5\nseed = 3\n[radio]\ntear_probability = 0.25\n")
    loaded = load_config(path)
    assert loaded.activity == ActivityConfig(transactions_per_hour=12.5, seed=3)
    assert loaded.radio.tear_probability == 0.25
    for text, key in (
        ("[activity]\ntransactions_per_hour = -1\n", "activity.transactions_per_hour"),
        ("[activity]\nrate = 1\n", "activity.rate"),
        ("[radio]\ntear_probability = 2.0\n", "radio.tear_probability"),
        ("[smsc]\nrestart_outage_s = -1\n", "smsc.restart_outage_s"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.key_path == key


# --------------------------------------------------------------------------- ME (pure, real card)


def test_me_menu_selection_yields_the_transaction_request_then_terminal_response() -> None:
    card = RecordingCard(card_from_fleet(SPEC, 0, TEMPLATE))
    me = MobileEquipment(card, phone_id="p0")
    assert me.power_on() == []
    (outcome,) = me.menu_selection(1)
    assert isinstance(outcome, MoSubmit) and me.awaiting_terminal_response
    submit = SmsSubmit.decode(outcome.tpdu)
    assert submit.tp_da.digits == "12345" and submit.tp_ud[:3] == bytes.fromhex("027000")
    message = CardMessage.decode(decode_command_packet(submit.tp_ud[3:], keys_for(0)).data)
    assert message.kind is CardMessageKind.TRANSACTION_REQUEST and message.sequence == 1
    assert card.apdus[-2][:6] == bytes.fromhex("80c2000009d3")  # ENVELOPE (MENU SELECTION)
    assert me.mo_sent() == []
    assert card.apdus[-1][:2] == b"\x80\x14"


def _purse_packet(index: int, cntr: int, actions: int = 4) -> bytes:
    script = b"".join(cc.purse_reload(1).encode_t0() for _ in range(actions))
    packet = CommandPacket(Spi.from_bytes(b"\x16\x19"), 0x12, 0x12, TAR_PURSE, cntr, script)
    return command_user_data(encode_command_packet(packet, keys_for(index)))


def _deliver(ud: bytes) -> bytes:
    from ota_protocols.sms.address import Address, Npi, Ton

    return SmsDeliver(
        tp_oa=Address("12345", Ton.INTERNATIONAL, Npi.ISDN), tp_pid=0x7F, tp_dcs=0xF6, tp_ud=ud, tp_udhi=True
    ).encode()


@pytest.mark.parametrize("k", [0, 2])
def test_me_tearing_gives_no_rp_answer_resets_and_sends_the_information_message(k: int) -> None:
    card = RecordingCard(card_from_fleet(SPEC, 1, INFO_TEMPLATE))
    me = MobileEquipment(card, phone_id="p1")
    (boot,) = me.power_on()  # information message at power-up, counter 0
    assert isinstance(boot, MoSubmit) and me.mo_sent() == []
    resets = card.resets
    outcomes = me.receive_sms(_deliver(_purse_packet(1, 1)), 0.0, tear=lambda: k)
    assert not any(isinstance(o, RpAck | RpError) for o in outcomes)
    assert card.resets == resets + 1 and card.apdus[-1][:2] == b"\x80\x12"  # TP resent, 91 XX fetched
    assert any(a[:2] == b"\x80\x10" for a in card.apdus[-3:])
    (info,) = outcomes
    assert isinstance(info, MoSubmit)
    submit = SmsSubmit.decode(info.tpdu)
    opened = decode_command_packet(submit.tp_ud[3:], keys_for(1))
    assert opened.cntr == 2 and CardMessage.decode(opened.data) == CardMessage(
        CardMessageKind.INFORMATION, 0, k
    )
    assert me.mo_sent() == [] and me.stats["card_torn"] == 1
    # The replay (the SMSC's retry) is refused: CNTR low, nothing runs twice.
    (ack,) = me.receive_sms(_deliver(_purse_packet(1, 1)), 1.0, tear=lambda: None)
    assert isinstance(ack, RpAck)
    assert card.report()["applications"][2]["action_counter"] == k


# --------------------------------------------------------------------------- service over loopback


@pytest.mark.asyncio
async def test_activity_sends_transaction_requests_to_the_owner_of_tp_da(started) -> None:  # type: ignore[no-untyped-def]
    cfg = dataclasses.replace(config(), activity=ActivityConfig(transactions_per_hour=36_000.0, seed=11))
    cards = real_cards()
    service, port = await started(cfg, cards)
    esme = await bound(port)
    other = await bound(port, "other", "pw")
    try:
        seen: dict[str, list[int]] = {}
        for _ in range(6):
            pdu = await esme.next_deliver()
            index = next(i for i in range(4) if derive_card(SPEC, i).msisdn == pdu.source_addr)
            cntr, message = card_message(pdu, index)
            assert message.kind is CardMessageKind.TRANSACTION_REQUEST and message.sequence == cntr
            assert message.payload == (100).to_bytes(4, "big")
            seen.setdefault(pdu.source_addr, []).append(cntr)
        for cntrs in seen.values():
            assert cntrs == list(range(1, len(cntrs) + 1))  # per card, in order, no gaps
        assert other.delivers.empty()
        assert service.report()["smsc"]["transactions"] >= 6
    finally:
        await esme.close()
        await other.close()


class _ControlledRadio(RadioLink):
    """The real fault model with offline periods set by the test (no clock, no RNG)."""

    def __init__(self) -> None:
        super().__init__(RadioConfig())
        self.offline_until: dict[str, float] = {}

    def is_offline(self, phone_id: str, now: float, rng: random.Random) -> bool:
        return now < self.offline_until.get(phone_id, 0.0)

    def online_again_at(self, phone_id: str) -> float | None:
        return self.offline_until.get(phone_id)


@pytest.mark.asyncio
async def test_offline_phone_stores_mo_and_uploads_in_order(started) -> None:  # type: ignore[no-untyped-def]
    cards = real_cards()
    service, port = await started(config(), cards)
    network = service.network
    radio = _ControlledRadio()
    network.radio = radio
    msisdn = cards[2].msisdn
    esme = await bound(port)
    try:
        loop = asyncio.get_running_loop()
        radio.offline_until[msisdn] = loop.time() + 0.3
        for _ in range(3):
            network.start_transaction(msisdn)
        assert network.phones[msisdn].mo_store and len(network.phones[msisdn].mo_store) == 3
        assert network.counters["mo_stored_in_terminal"] == 3 and esme.delivers.empty()
        # The card's session completed: each request got its TERMINAL RESPONSE from the terminal.
        assert cards[2].apdus[-1][:2] == b"\x80\x14"
        got = [card_message(await esme.next_deliver(), 2) for _ in range(3)]
        assert loop.time() >= radio.offline_until[msisdn]
        assert [cntr for cntr, _ in got] == [1, 2, 3] and [m.sequence for _, m in got] == [1, 2, 3]
        assert network.counters["mo_uploaded"] == 3 and not network.phones[msisdn].mo_store
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_tearing_in_the_network_with_a_seeded_rng(started) -> None:  # type: ignore[no-untyped-def]
    seed = 4242
    cfg = config(radio=RadioConfig(seed=seed, tear_probability=1.0), rp_timeout_s=0.3, retry_min_s=0.05)
    cards = real_cards(INFO_TEMPLATE, count=1)
    service, port = await started(cfg, cards)
    rng = random.Random(seed)  # the same decisions the network makes: one draw, then k
    assert rng.random() < 1.0
    k = rng.randint(0, 3)
    esme = await bound(port)
    try:
        cntr, boot = card_message(await esme.next_deliver(), 0)  # information message at boot
        assert (cntr, boot.kind, boot.counter) == (1, CardMessageKind.INFORMATION, 0)
        resp = await esme.submit(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="12345",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=cards[0].msisdn,
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=_purse_packet(0, 1),
        )
        assert resp.command_status == 0  # type: ignore[union-attr]
        # Torn: no PoR, but the card was reset, got TERMINAL PROFILE, and reported its counter.
        cntr, info = card_message(await esme.next_deliver(), 0)
        assert (cntr, info.kind, info.counter) == (2, CardMessageKind.INFORMATION, k)
        # The SMSC's RP timer retries; the card refuses the replay with CNTR low.
        por = await esme.next_deliver()
        assert por.short_message[:3] == bytes.fromhex("027100")
        decoded = decode_response_packet(
            por.short_message, Spi.from_bytes(b"\x16\x19"), 0x12, 0x12, keys_for(0)
        )
        assert decoded.status == ResponseStatus.CNTR_LOW
        report = service.report()
        assert report["cards"][0]["applications"][2]["action_counter"] == k
        assert report["smsc"]["me"]["card_torn"] == 1 and report["smsc"]["mt_rp_timeouts"] >= 1
        assert report["smsc"]["radio_tears_armed"] >= 1
        assert cards[0].resets == 2  # boot, then the tear
    finally:
        await esme.close()


@pytest.mark.asyncio
async def test_smsc_restart_disconnects_rebinds_same_port_and_delivers_what_was_queued(started) -> None:  # type: ignore[no-untyped-def]
    cards = real_cards()
    service, port = await started(config(), cards)
    esme = await bound(port)
    restart = asyncio.create_task(service.restart_smsc(outage_s=0.3))
    try:
        async with asyncio.timeout(TIMEOUT):
            await esme.closed.wait()
        assert not service.server.listening
        with pytest.raises(OSError):
            await AsyncEsme.connect(port)
        service.network.start_transaction(cards[1].msisdn)  # MO made during the outage: kept
        async with asyncio.timeout(TIMEOUT):
            await restart
        assert service.server.listening and service.server.port == port
        again = await bound(port)
        try:
            cntr, message = card_message(await again.next_deliver(), 1)
            assert cntr == 1 and message.kind is CardMessageKind.TRANSACTION_REQUEST
            assert service.report()["smsc"]["restarts"] == 1
        finally:
            await again.close()
    finally:
        restart.cancel()
        await esme.close()


@pytest.mark.asyncio
async def test_a_second_restart_request_during_the_outage_is_ignored(started) -> None:  # type: ignore[no-untyped-def]
    service, port = await started(config(), real_cards(count=1))
    first = service.request_restart(0.2)
    assert first is not None and service.request_restart(0.2) is None
    async with asyncio.timeout(TIMEOUT):
        await first
    esme = await bound(port)
    await esme.close()
    assert service.report()["smsc"]["restarts"] == 1


def test_cli_sigusr1_restarts_the_smsc_on_the_same_port(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    from .test_config_and_cli import _run_cli, _write_config

    path = _write_config(tmp_path, count=1)
    path.write_text(path.read_text().replace("port = 0\n", "port = 0\nrestart_outage_s = 0.3\n", 1))
    proc = _run_cli("serve", "--config", str(path), "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.split(":")[2].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
            proc.send_signal(signal.SIGUSR1)
            assert first.recv(16) == b""  # the SMSC closed the connection
        deadline = time.monotonic() + 10
        while True:  # refused during the outage, then accepted on the same port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=10).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the SMSC did not listen again"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
