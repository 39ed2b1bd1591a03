"""The SMPP link (ota_server.smpp_link) over loopback.

Against the project's own SMSC (``handset.smsc_server.SmscServer`` on 127.0.0.1 port 0, with a
recording network), and against scripted peers that refuse binds, never answer, speak HTTP,
close mid-session, unbind, or send what smpplib cannot parse. Every wait is an awaited
condition inside ``asyncio.timeout``; every test ends with the link closed and its thread gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeAlias

import pytest

from handset.config import EsmeConfig, SmscConfig
from handset.smsc_router import expiry_seconds
from handset.smsc_server import MtMessage, SmscServer
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import (
    Bind,
    BindKind,
    BindResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    UnknownPdu,
    decode_pdu,
    encode_pdu,
)
from ota_server.smpp_link import (
    THREAD_NAME,
    DeliverReceived,
    EsmeLink,
    LinkDown,
    LinkEvent,
    LinkFailed,
    LinkSettings,
    LinkUp,
    RoundTrips,
    SubmitAccepted,
    SubmitRejected,
    SubmitRequest,
    SubmitUnknown,
    relative_validity,
    status_text,
    submit_sm_fields,
)
from ota_server.smpp_stream import Waker

pytestmark = pytest.mark.integration

MSISDN = "491700000001"
COMMAND_UD = bytes.fromhex("027000") + bytes(range(40))  # UDH (IEI 0x70) + a command packet's bytes
POR_UD = bytes.fromhex("027100000e0ab0001000000000010000")
TIMEOUT_S = 5.0


def ota_submit(**fields: object) -> SubmitSm:
    base: dict[str, object] = dict(
        source_addr_ton=1, source_addr_npi=1, source_addr="12345",
        dest_addr_ton=1, dest_addr_npi=1, destination_addr=MSISDN,
        esm_class=0x40, protocol_id=0x7F, data_coding=0xF6, short_message=COMMAND_UD,
    )  # fmt: skip
    base.update(fields)
    return SubmitSm(**base)  # type: ignore[arg-type]


def link_settings(port: int, **overrides: object) -> LinkSettings:
    base: dict[str, object] = dict(
        host="127.0.0.1", port=port, system_id="ota", password="secret",
        connect_timeout_s=2.0, bind_timeout_s=2.0, response_timeout_s=2.0, enquire_link_s=30.0,
        reconnect_backoff_s=0.02, max_reconnect_backoff_s=0.1, reconnect_window_s=5.0,
    )  # fmt: skip
    base.update(overrides)
    return LinkSettings(**base)  # type: ignore[arg-type]


class Events:
    """What the link handed to its callback, in order; awaitable conditions on it."""

    def __init__(self) -> None:
        self.items: list[LinkEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, batch: list[LinkEvent]) -> None:
        assert batch, "the link handed over an empty batch"
        self.items.extend(batch)
        self._changed.set()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.items if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, kind: type, count: int = 1) -> list:  # type: ignore[type-arg]
        await self.until(lambda: len(self.of(kind)) >= count)
        return self.of(kind)


def link_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@contextlib.asynccontextmanager
async def running(settings: LinkSettings) -> AsyncIterator[tuple[EsmeLink, Events]]:
    events = Events()
    link = EsmeLink(settings, asyncio.get_running_loop(), events)
    link.start()
    try:
        yield link, events
    finally:
        await link.close()
        assert not link_threads(), "the link's thread outlived close()"


# --------------------------------------------------------------------------- the handset's SMSC


class RecordingNetwork:
    """The SMSC's radio side: one subscriber; every accepted MT is kept for inspection."""

    def __init__(self) -> None:
        self.messages: list[MtMessage] = []

    def has_subscriber(self, msisdn: str) -> bool:
        return msisdn == MSISDN

    @property
    def queued(self) -> int:
        return 0

    def submit(self, message: MtMessage) -> None:
        self.messages.append(message)


@contextlib.asynccontextmanager
async def handset_smsc(
    password: str = "secret", **config: object
) -> AsyncIterator[tuple[SmscServer, RecordingNetwork]]:
    network = RecordingNetwork()
    esmes = (EsmeConfig(system_id="ota", password=password, addresses=("12345",)),)
    smsc = SmscServer(SmscConfig(port=0, esmes=esmes, **config), network)  # type: ignore[arg-type]
    await smsc.start("127.0.0.1", 0)
    try:
        yield smsc, network
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await smsc.stop(grace_s=1.0)


def port_of(smsc: SmscServer) -> int:
    assert smsc.port is not None
    return smsc.port


@pytest.mark.asyncio
async def test_binds_and_submits_every_field_of_the_submit_sm() -> None:
    pdu = ota_submit(
        service_type="OTA",
        source_addr_ton=2,
        priority_flag=1,
        validity_period=relative_validity(2 * 3600 + 5),
        registered_delivery=1,
        tlvs=((0x0204, b"\x00\x07"),),  # user_message_reference (SMPP 3.4 §5.3.2.17)
    )
    async with handset_smsc() as (smsc, network), running(link_settings(port_of(smsc))) as (link, events):
        assert (await events.wait_for(LinkUp)) == [LinkUp("HANDSET")]
        link.submit_many([SubmitRequest("a", pdu), SubmitRequest("b", pdu)])
        accepted = await events.wait_for(SubmitAccepted, 2)
        assert [e.token for e in accepted] == ["a", "b"]  # in order
        assert [e.message_id for e in accepted] == [m.message_id for m in network.messages]
        received = network.messages[0].submit
        assert dataclasses.replace(received, sequence_number=0) == pdu  # every field, UDH included
        assert link.round_trips.count == 2  # each answer timed once
        rtt = link.round_trips.percentile(1.0)
        assert rtt is not None and 0 < rtt < 10.0


def test_round_trips_percentiles_are_within_one_bucket() -> None:
    times = RoundTrips()
    assert times.percentile(0.5) is None
    for ms in range(1, 101):  # 1 .. 100 ms
        times.add(ms / 1000)
    times.add(0.0)  # below the first bucket: counted, not lost
    other = RoundTrips()
    other.add(5.0)
    times.merge(other)
    assert times.count == 102
    for fraction, expected in ((0.5, 0.050), (0.9, 0.091), (0.99, 0.100), (1.0, 5.0)):
        got = times.percentile(fraction)
        assert got is not None and expected <= got <= expected * 1.05 + 1e-9, (fraction, got)


@pytest.mark.asyncio
async def test_a_refused_submit_reports_its_status_throttling_included() -> None:
    async with (
        handset_smsc(throttle_per_s=0.001, throttle_burst=1) as (smsc, _),
        running(link_settings(port_of(smsc))) as (link, events),
    ):
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest(1, ota_submit()), SubmitRequest(2, ota_submit())])
        link.submit_many([SubmitRequest(3, ota_submit(destination_addr="499999"))])
        await events.until(lambda: len(events.of(SubmitAccepted)) + len(events.of(SubmitRejected)) == 3)
        assert events.of(SubmitAccepted)[0].token == 1
        # The caller decides what a throttle means; the link reports it like any other status.
        assert events.of(SubmitRejected) == [
            SubmitRejected(2, CommandStatus.ESME_RTHROTTLED),
            SubmitRejected(3, CommandStatus.ESME_RTHROTTLED),
        ]


@pytest.mark.asyncio
async def test_unknown_subscriber_is_rejected_with_esme_rinvdstadr() -> None:
    async with handset_smsc() as (smsc, _), running(link_settings(port_of(smsc))) as (link, events):
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest("x", ota_submit(destination_addr="499999"))])
        assert await events.wait_for(SubmitRejected) == [SubmitRejected("x", CommandStatus.ESME_RINVDSTADR)]


@pytest.mark.asyncio
async def test_deliver_sm_is_answered_only_after_acknowledge() -> None:
    async with handset_smsc() as (smsc, _), running(link_settings(port_of(smsc))) as (link, events):
        await events.wait_for(LinkUp)
        por = DeliverSm(
            source_addr_ton=1, source_addr_npi=1, source_addr=MSISDN, destination_addr="12345",
            esm_class=0x40, protocol_id=0x7F, data_coding=0xF6, short_message=POR_UD,
        )  # fmt: skip
        smsc.deliver_mo(por)
        [deliver] = await events.wait_for(DeliverReceived)
        assert (deliver.source_addr, deliver.destination_addr, deliver.user_data) == (MSISDN, "12345", POR_UD)
        assert (deliver.esm_class, deliver.protocol_id, deliver.data_coding) == (0x40, 0x7F, 0xF6)
        assert (deliver.receipted_message_id, deliver.message_state) == (None, None)
        # A submit answered after the deliver_sm arrived: a deliver_sm_resp written before it would
        # have been read by the SMSC first (one TCP stream, read in order).
        link.submit_many([SubmitRequest("barrier", ota_submit())])
        await events.wait_for(SubmitAccepted)
        assert smsc.counters["deliver_sm_ok"] == 0
        link.acknowledge([deliver.handle])
        link.submit_many([SubmitRequest("barrier 2", ota_submit())])
        await events.wait_for(SubmitAccepted, 2)
        assert smsc.counters["deliver_sm_ok"] == 1
        link.acknowledge([deliver.handle])  # twice: answered once
        link.submit_many([SubmitRequest("barrier 3", ota_submit())])
        await events.wait_for(SubmitAccepted, 3)
        assert (smsc.counters["deliver_sm_ok"], smsc.counters["protocol_errors"]) == (1, 0)
        assert link.ack_times.count == 1  # the hold of the one deliver_sm answered, timed once
        held = link.ack_times.percentile(1.0)
        assert held is not None and 0 < held < 10.0


@pytest.mark.asyncio
async def test_message_payload_and_receipt_fields_reach_the_caller() -> None:
    async with handset_smsc() as (smsc, _), running(link_settings(port_of(smsc))) as (link, events):
        await events.wait_for(LinkUp)
        smsc.deliver_mo(
            DeliverSm(source_addr=MSISDN, destination_addr="12345", esm_class=0x40, protocol_id=0x7F,
                      data_coding=0xF6, tlvs=((Tag.MESSAGE_PAYLOAD, POR_UD),))
        )  # fmt: skip
        smsc.deliver_mo(
            DeliverSm(source_addr=MSISDN, destination_addr="12345", esm_class=0x04,
                      tlvs=((Tag.RECEIPTED_MESSAGE_ID, b"000000002A\x00"), (Tag.MESSAGE_STATE, b"\x02")))
        )  # fmt: skip
        payload, receipt = await events.wait_for(DeliverReceived, 2)
        assert payload.user_data == POR_UD
        assert (receipt.esm_class, receipt.receipted_message_id, receipt.message_state) == (
            4,
            "000000002A",
            2,
        )
        link.acknowledge([payload.handle, receipt.handle])
        link.submit_many([SubmitRequest("barrier", ota_submit())])
        await events.wait_for(SubmitAccepted)
        assert smsc.counters["deliver_sm_ok"] == 2


@pytest.mark.asyncio
async def test_reconnects_after_an_smsc_restart_on_the_same_port() -> None:
    async with handset_smsc() as (smsc, _), running(link_settings(port_of(smsc))) as (link, events):
        await events.wait_for(LinkUp)
        await smsc.suspend()
        [down] = await events.wait_for(LinkDown)
        assert down == LinkDown(f"SMSC 127.0.0.1:{smsc.port}: the SMSC closed the connection", ())
        link.submit_many([SubmitRequest("queued while down", ota_submit())])
        await smsc.resume()
        await events.wait_for(LinkUp, 2)
        assert [e.token for e in await events.wait_for(SubmitAccepted)] == ["queued while down"]
        assert smsc.counters["binds"] == 2


@pytest.mark.asyncio
async def test_a_handle_from_an_earlier_connection_is_not_acknowledged_the_smsc_delivers_again() -> None:
    async with handset_smsc() as (smsc, _), running(link_settings(port_of(smsc))) as (link, events):
        await events.wait_for(LinkUp)
        smsc.deliver_mo(DeliverSm(source_addr=MSISDN, destination_addr="12345", short_message=POR_UD))
        [first] = await events.wait_for(DeliverReceived)
        await smsc.suspend()  # unanswered deliver_sm go back to the SMSC's store
        await events.wait_for(LinkDown)
        await smsc.resume()
        [_, again] = await events.wait_for(DeliverReceived, 2)
        assert again.user_data == first.user_data and again.handle != first.handle
        link.acknowledge([first.handle])  # void: its connection is gone
        link.submit_many([SubmitRequest("barrier", ota_submit())])
        await events.wait_for(SubmitAccepted)
        assert smsc.counters["deliver_sm_ok"] == 0
        link.acknowledge([again.handle])
        link.submit_many([SubmitRequest("barrier 2", ota_submit())])
        await events.wait_for(SubmitAccepted, 2)
        assert smsc.counters["deliver_sm_ok"] == 1


@pytest.mark.asyncio
async def test_link_failed_counts_the_window_from_the_loss_of_the_link() -> None:
    async with handset_smsc() as (smsc, _):
        async with running(link_settings(port_of(smsc), reconnect_window_s=0.3)) as (_, events):
            await events.wait_for(LinkUp)
            await smsc.suspend()  # and it never comes back
            await events.wait_for(LinkFailed)
        up, down, failed = events.items
        where = f"SMSC 127.0.0.1:{smsc.port}"
        assert up == LinkUp("HANDSET")
        assert down == LinkDown(f"{where}: the SMSC closed the connection", ())
        assert failed == LinkFailed(f"{where}: connection refused; no bind for 0.3 s, giving up")


@pytest.mark.asyncio
async def test_wrong_password_names_the_status_and_fails_after_the_window() -> None:
    async with handset_smsc() as (smsc, _):
        settings = link_settings(port_of(smsc), password="wrong", reconnect_window_s=0.3)
        async with running(settings) as (_, events):
            [failed] = await events.wait_for(LinkFailed)
        assert failed.reason == (
            f"SMSC 127.0.0.1:{smsc.port}: bind_transceiver refused: ESME_RINVPASWD (0x0000000e); "
            "no bind for 0.3 s, giving up"
        )
        assert not events.of(LinkUp)
        assert smsc.counters["bind_failures"] >= 2  # retried within the window


@pytest.mark.asyncio
async def test_close_is_idempotent_bounded_and_leaves_no_thread() -> None:
    async with handset_smsc() as (smsc, _):
        events = Events()
        link = EsmeLink(link_settings(port_of(smsc)), asyncio.get_running_loop(), events)
        link.start()
        await events.wait_for(LinkUp)
        async with asyncio.timeout(1.0):
            await link.close()
            await link.close()
        assert not link_threads()
        assert events.of(LinkDown) == [LinkDown("link closed", ())]
        link.submit_many([SubmitRequest("late", ota_submit())])  # after close: handed straight back
        await events.until(lambda: len(events.of(LinkDown)) == 2)
        assert events.of(LinkDown)[1] == LinkDown("link closed", ("late",))


@pytest.mark.asyncio
async def test_close_before_start_and_twice_is_harmless() -> None:
    events = Events()
    link = EsmeLink(link_settings(1), asyncio.get_running_loop(), events)
    await link.close()
    await link.close()
    link.submit_many([SubmitRequest(7, ota_submit())])
    await events.wait_for(LinkDown)
    assert events.items == [LinkDown("link closed before it started", (7,))]
    assert not link_threads()


@pytest.mark.asyncio
async def test_the_password_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pw8chars"
    async with (
        handset_smsc(password=password) as (smsc, _),
        running(link_settings(port_of(smsc), password=password)) as (link, events),
    ):
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest(1, ota_submit())])
        await events.wait_for(SubmitAccepted)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ota_server"))
    assert "-> bind_transceiver" in ours and "-> submit_sm" in ours  # DEBUG was on
    assert password not in ours and password.encode().hex() not in ours
    assert "pw8chars" not in repr(link_settings(1, password=password))


# --------------------------------------------------------------------------- scripted peers


Reader: TypeAlias = asyncio.StreamReader
Writer: TypeAlias = asyncio.StreamWriter
Script: TypeAlias = Callable[["Peer", Reader, Writer], Awaitable[None]]


async def read_pdu(reader: Reader) -> Pdu:
    head = await reader.readexactly(4)
    return decode_pdu(head + await reader.readexactly(int.from_bytes(head, "big") - 4))


class Peer:
    """A scripted SMSC on 127.0.0.1 port 0: each connection runs ``script(peer, reader, writer)``.

    Every PDU a script reads with :meth:`read` is recorded in ``received``.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.received: list[Pdu] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._changed.set()
        try:
            await self.script(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read(self, reader: Reader) -> Pdu:
        pdu = await read_pdu(reader)
        self.received.append(pdu)
        self._changed.set()
        return pdu

    async def accept_bind(self, reader: Reader, writer: Writer) -> None:
        bind = await self.read(reader)
        assert isinstance(bind, Bind) and bind.kind == BindKind.TRANSCEIVER
        assert (bind.system_id, bind.password) == ("ota", "secret")
        writer.write(
            encode_pdu(BindResp(kind=bind.kind, sequence_number=bind.sequence_number, system_id="PEER"))
        )

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [p for p in self.received if isinstance(p, kind)]


async def answer_everything(peer: Peer, reader: Reader, writer: Writer) -> None:
    """A well-behaved SMSC: bind, then answer submit_sm, enquire_link and unbind."""
    await peer.accept_bind(reader, writer)
    await answer_everything_bound(peer, reader, writer)


async def answer_everything_bound(peer: Peer, reader: Reader, writer: Writer) -> None:
    """Once bound: answer submit_sm, enquire_link and unbind."""
    while True:
        pdu = await peer.read(reader)
        if isinstance(pdu, SubmitSm):
            writer.write(encode_pdu(SubmitSmResp(sequence_number=pdu.sequence_number, message_id="M")))
        elif isinstance(pdu, EnquireLink):
            writer.write(encode_pdu(EnquireLinkResp(sequence_number=pdu.sequence_number)))
        elif isinstance(pdu, Unbind):
            writer.write(encode_pdu(UnbindResp(sequence_number=pdu.sequence_number)))
            return


async def read_until_closed(peer: Peer, reader: Reader, writer: Writer) -> None:
    while True:
        await peer.read(reader)


async def failure_of(settings: LinkSettings) -> str:
    async with running(settings) as (_, events):
        [failed] = await events.wait_for(LinkFailed)
    assert not events.of(LinkUp)
    assert isinstance(failed, LinkFailed)
    return failed.reason


async def silent_after_connect(peer: Peer, reader: Reader, writer: Writer) -> None:
    await reader.read()  # takes the bind, never answers


async def http_server(peer: Peer, reader: Reader, writer: Writer) -> None:
    await peer.read(reader)  # all of it: closing with unread bytes would send RST, not our answer
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await reader.read()


async def garbage_server(peer: Peer, reader: Reader, writer: Writer) -> None:
    await peer.read(reader)
    writer.write(bytes.fromhex("00000010 deadbeef 00000000 00000001"))  # a length that fits, no command
    await reader.read()


async def close_before_bind_resp(peer: Peer, reader: Reader, writer: Writer) -> None:
    await peer.read(reader)


async def generic_nack_to_bind(peer: Peer, reader: Reader, writer: Writer) -> None:
    bind = await peer.read(reader)
    writer.write(encode_pdu(GenericNack(sequence_number=bind.sequence_number, command_status=0x03)))
    await reader.read()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (silent_after_connect, "no bind_transceiver_resp within 0.3 s: is it an SMPP SMSC?"),
        (
            http_server,
            "not SMPP: command_length 1213486160 outside 16..66560 (SMPP 3.4 §3.2) in b'HTTP/1.1 400",
        ),
        (
            garbage_server,
            "not SMPP: answered bind_transceiver with b'\\x00\\x00\\x00\\x10\\xde\\xad\\xbe\\xef",
        ),
        (close_before_bind_resp, "closed the connection before answering bind_transceiver; no bind for"),
        (generic_nack_to_bind, "bind_transceiver refused with generic_nack: ESME_RINVCMDID (0x00000003)"),
    ],
    ids=["never-answers", "http", "garbage", "closes", "generic-nack"],
)
async def test_a_peer_that_is_not_a_working_smsc_fails_with_one_clear_line(
    script: Script, expected: str
) -> None:
    async with Peer(script) as peer:
        settings = link_settings(peer.port, bind_timeout_s=0.3, reconnect_window_s=0.5)
        reason = await failure_of(settings)
    assert reason.startswith(f"SMSC 127.0.0.1:{peer.port}: ")
    assert expected in reason
    assert reason.endswith("; no bind for 0.5 s, giving up") and "\n" not in reason


@pytest.mark.asyncio
async def test_connection_refused_is_named() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        reason = await failure_of(link_settings(port, reconnect_window_s=0.2))
    assert reason == f"SMSC 127.0.0.1:{port}: connection refused; no bind for 0.2 s, giving up"


@pytest.mark.asyncio
async def test_connect_timeout_is_named() -> None:
    # A listener whose accept queue is full drops further SYNs: the connect neither succeeds nor fails.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):
            port = listener.getsockname()[1]
            reason = await failure_of(link_settings(port, connect_timeout_s=0.2, reconnect_window_s=0.5))
    assert reason == f"SMSC 127.0.0.1:{port}: TCP connect timed out after 0.2 s; no bind for 0.5 s, giving up"


@pytest.mark.asyncio
async def test_an_unresolvable_host_is_named_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def offline_resolver(host: str, *args: object, **kwargs: object) -> object:
        # The answer a resolver gives for the reserved .invalid TLD (RFC 6761 §6.4), without asking one.
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", offline_resolver)
    reason = await failure_of(link_settings(2775, host="nosuchhost.invalid", reconnect_window_s=0.2))
    assert reason == (
        "SMSC nosuchhost.invalid:2775: cannot resolve host nosuchhost.invalid (Name or service not known); "
        "no bind for 0.2 s, giving up"
    )


@pytest.mark.asyncio
async def test_tokens_queued_while_never_bound_come_back_before_link_failed() -> None:
    async with Peer(silent_after_connect) as peer:
        settings = link_settings(peer.port, bind_timeout_s=0.2, reconnect_window_s=0.4)
        async with running(settings) as (link, events):
            link.submit_many([SubmitRequest(i, ota_submit()) for i in range(3)])
            await events.wait_for(LinkFailed)
            link.submit_many([SubmitRequest(3, ota_submit())])
            await events.wait_for(LinkDown, 2)
    down, failed, after = events.items
    assert isinstance(failed, LinkFailed) and "is it an SMPP SMSC?" in failed.reason
    assert down == LinkDown(failed.reason, (0, 1, 2))
    assert after == LinkDown(failed.reason, (3,))


@pytest.mark.asyncio
async def test_link_lost_mid_session_reports_unknown_outcomes_then_reconnects() -> None:
    async def drop_after_first_submit(peer: Peer, reader: Reader, writer: Writer) -> None:
        if peer.connections == 1:
            await peer.accept_bind(reader, writer)
            await peer.read(reader)  # a submit_sm, never answered: then the connection drops
            return
        await answer_everything(peer, reader, writer)

    async with Peer(drop_after_first_submit) as peer, running(link_settings(peer.port)) as (link, events):
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest("written", ota_submit())])
        await events.wait_for(LinkUp, 2)
        link.submit_many([SubmitRequest("after", ota_submit())])
        await events.wait_for(SubmitAccepted)
    unknown, down = events.items[1:3]
    where = f"SMSC 127.0.0.1:{peer.port}"
    assert unknown == SubmitUnknown(
        "written", f"link lost after submit_sm seq=3: {where}: the SMSC closed the connection"
    )
    assert down == LinkDown(f"{where}: the SMSC closed the connection", ())
    assert events.items[3:] == [LinkUp("PEER"), SubmitAccepted("after", "M"), LinkDown("link closed", ())]


@pytest.mark.asyncio
async def test_an_unbind_from_the_smsc_is_answered_then_the_link_reconnects() -> None:
    async def unbind_first(peer: Peer, reader: Reader, writer: Writer) -> None:
        if peer.connections == 1:
            await peer.accept_bind(reader, writer)
            writer.write(encode_pdu(Unbind(sequence_number=77)))
            await peer.read(reader)  # the unbind_resp
            return
        await answer_everything(peer, reader, writer)

    async with Peer(unbind_first) as peer, running(link_settings(peer.port)) as (_, events):
        await events.wait_for(LinkUp, 2)
    assert UnbindResp(sequence_number=77) in peer.received
    assert events.items[:3] == [
        LinkUp("PEER"),
        LinkDown(f"SMSC 127.0.0.1:{peer.port}: the SMSC unbound (SMPP 3.4 §4.2)", ()),
        LinkUp("PEER"),
    ]
    assert peer.of(Unbind), "close() unbinds the second connection"


@pytest.mark.asyncio
async def test_an_unanswered_submit_is_unknown_after_response_timeout_and_a_late_answer_is_ignored() -> None:
    release = asyncio.Event()

    async def answer_late(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        first = await peer.read(reader)
        await release.wait()
        writer.write(encode_pdu(SubmitSmResp(sequence_number=first.sequence_number, message_id="LATE")))
        await answer_everything_bound(peer, reader, writer)

    async with (
        Peer(answer_late) as peer,
        running(link_settings(peer.port, response_timeout_s=0.3)) as (link, events),
    ):
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest("slow", ota_submit())])
        [unknown] = await events.wait_for(SubmitUnknown)
        assert unknown == SubmitUnknown("slow", "no submit_sm_resp within 0.3 s (seq=3)")
        release.set()
        link.submit_many([SubmitRequest("next", ota_submit())])
        await events.wait_for(SubmitAccepted)
    assert [type(e).__name__ for e in events.items] == [
        "LinkUp",
        "SubmitUnknown",
        "SubmitAccepted",
        "LinkDown",
    ]
    assert events.of(SubmitAccepted) == [SubmitAccepted("next", "M")]


@pytest.mark.asyncio
async def test_an_idle_link_sends_enquire_link_and_stays_up_while_answered() -> None:
    async with (
        Peer(answer_everything) as peer,
        running(link_settings(peer.port, enquire_link_s=0.05, response_timeout_s=1.0)) as (_, events),
    ):
        await events.wait_for(LinkUp)
        await peer.until(lambda: len(peer.of(EnquireLink)) >= 3)
        assert not events.of(LinkDown)


@pytest.mark.asyncio
async def test_an_unanswered_enquire_link_takes_the_link_down() -> None:
    async def bind_then_deaf(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        await read_until_closed(peer, reader, writer)

    async with Peer(bind_then_deaf) as peer:
        settings = link_settings(peer.port, enquire_link_s=0.05, response_timeout_s=0.2)
        async with running(settings) as (_, events):
            [down] = await events.wait_for(LinkDown)
    assert down.reason == f"SMSC 127.0.0.1:{peer.port}: no enquire_link_resp within 0.2 s: link dead"
    assert peer.of(EnquireLink)


@pytest.mark.asyncio
async def test_the_smscs_enquire_link_is_answered() -> None:
    async def ask(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        writer.write(encode_pdu(EnquireLink(sequence_number=42)))
        await answer_everything_bound(peer, reader, writer)

    async with Peer(ask) as peer, running(link_settings(peer.port)) as (_, events):
        await events.wait_for(LinkUp)
        await peer.until(lambda: EnquireLinkResp(sequence_number=42) in peer.received)
        assert not events.of(LinkDown)


ESME_RSYSERR, ESME_RINVCMDLEN = CommandStatus.ESME_RSYSERR, CommandStatus.ESME_RINVCMDLEN


@pytest.mark.asyncio
async def test_generic_nack_and_unknown_pdus_are_logged_once_and_never_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def odd(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        for seq in (900, 901):  # generic_nack naming nothing of ours, twice
            writer.write(
                encode_pdu(GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RSYSERR))
            )
        for seq in (77, 78):  # a request no SMPP 3.4 peer sends, twice
            writer.write(encode_pdu(UnknownPdu(command_id=0x00000099, command_status=0, sequence_number=seq)))
        writer.write(encode_pdu(UnknownPdu(command_id=0x80000099, command_status=0, sequence_number=5)))
        while True:
            pdu = await peer.read(reader)
            if isinstance(pdu, SubmitSm):  # refused at the header level: generic_nack with its seq
                nack = GenericNack(
                    sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RINVCMDLEN
                )
                writer.write(encode_pdu(nack))
            elif isinstance(pdu, Unbind):
                writer.write(encode_pdu(UnbindResp(sequence_number=pdu.sequence_number)))
                return

    caplog.set_level(logging.WARNING, logger="ota_server")
    async with Peer(odd) as peer, running(link_settings(peer.port)) as (link, events):
        await events.wait_for(LinkUp)
        await peer.until(lambda: len(peer.of(GenericNack)) == 2)
        assert [(p.sequence_number, p.command_status) for p in peer.of(GenericNack)] == [(77, 3), (78, 3)]
        link.submit_many([SubmitRequest("nacked", ota_submit())])
        assert await events.wait_for(SubmitRejected) == [
            SubmitRejected("nacked", CommandStatus.ESME_RINVCMDLEN)
        ]
    assert events.items[-1] == LinkDown("link closed", ())
    lines = [r.getMessage() for r in caplog.records]
    assert sum("generic_nack seq=" in line for line in lines) == 1
    assert sum("command_id_0x00000099 not supported" in line for line in lines) == 1
    assert sum("unexpected command_id_0x80000099" in line for line in lines) == 1


@pytest.mark.asyncio
async def test_pdus_smpplib_cannot_parse_are_read_by_the_shared_codec() -> None:
    async def with_tlvs(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        # dest_addr_subunit (0x0005) is an SMPP TLV smpplib does not place in deliver_sm.
        deliver = DeliverSm(
            sequence_number=9, source_addr=MSISDN, destination_addr="12345", esm_class=0x40,
            protocol_id=0x7F, data_coding=0xF6, short_message=POR_UD, tlvs=((0x0005, b"\x01"),),
        )  # fmt: skip
        writer.write(encode_pdu(deliver))
        submit = await peer.read(reader)
        # additional_status_info_text (0x001D) in a submit_sm_resp: smpplib raises KeyError (#104).
        resp = SubmitSmResp(
            sequence_number=submit.sequence_number, message_id="M7", tlvs=((0x001D, b"ok\x00"),)
        )
        writer.write(encode_pdu(resp))
        await answer_everything_bound(peer, reader, writer)

    async with Peer(with_tlvs) as peer, running(link_settings(peer.port)) as (link, events):
        [deliver] = await events.wait_for(DeliverReceived)
        assert (deliver.source_addr, deliver.user_data) == (MSISDN, POR_UD)
        link.submit_many([SubmitRequest("t", ota_submit())])
        assert await events.wait_for(SubmitAccepted) == [SubmitAccepted("t", "M7")]
        link.acknowledge([deliver.handle])
        await peer.until(lambda: bool(peer.of(DeliverSmResp)))
    assert peer.of(DeliverSmResp) == [DeliverSmResp(sequence_number=9)]


@pytest.mark.asyncio
async def test_a_bind_answer_smpplib_cannot_parse_still_binds() -> None:
    async def bind_resp_with_tlv(peer: Peer, reader: Reader, writer: Writer) -> None:
        bind = await peer.read(reader)
        status_info = ((0x001D, b"welcome\x00"),)  # not in smpplib's bind_transceiver_resp table
        resp = BindResp(kind=BindKind.TRANSCEIVER, sequence_number=bind.sequence_number, system_id="TLV",
                        tlvs=status_info)  # fmt: skip
        writer.write(encode_pdu(resp))
        await answer_everything_bound(peer, reader, writer)

    async with Peer(bind_resp_with_tlv) as peer, running(link_settings(peer.port)) as (link, events):
        assert await events.wait_for(LinkUp) == [LinkUp("TLV")]
        link.submit_many([SubmitRequest("after", ota_submit())])
        assert await events.wait_for(SubmitAccepted) == [SubmitAccepted("after", "M")]


@pytest.mark.asyncio
async def test_close_with_a_deaf_peer_is_bounded_and_reports_what_was_in_flight() -> None:
    async def deaf_after_bind(peer: Peer, reader: Reader, writer: Writer) -> None:
        await peer.accept_bind(reader, writer)
        await read_until_closed(peer, reader, writer)

    async with Peer(deaf_after_bind) as peer:
        events = Events()
        link = EsmeLink(link_settings(peer.port), asyncio.get_running_loop(), events)
        link.start()
        await events.wait_for(LinkUp)
        link.submit_many([SubmitRequest("in flight", ota_submit())])
        await peer.until(lambda: bool(peer.of(SubmitSm)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await link.close(timeout_s=1.0)  # half of it for the unbind_resp that never comes
        assert loop.time() - started < 1.0
        assert peer.of(Unbind), "close() unbinds first"
    assert not link_threads()
    assert events.items[1:] == [
        SubmitUnknown("in flight", "link lost after submit_sm seq=3: link closed"),
        LinkDown("link closed", ()),
    ]


# --------------------------------------------------------------------------- pure helpers


def test_relative_validity_is_what_the_smsc_reads_back() -> None:
    submitted = datetime(2026, 1, 1, tzinfo=UTC)
    for seconds in (0, 59, 3600, 86400 + 1, 40 * 86400 + 7, 400 * 86400):
        text = relative_validity(seconds)
        assert len(text) == 16 and text.endswith("000R")
        assert expiry_seconds(text, submitted=submitted, default_s=0) == seconds
    assert relative_validity(2 * 3600 + 5) == "000000020005000R"
    with pytest.raises(ValueError, match=r"SMPP 3\.4 §7\.1\.1"):
        relative_validity(-1)


def test_status_text_names_the_status_and_its_hex() -> None:
    assert status_text(0x0E) == "ESME_RINVPASWD (0x0000000e)"
    assert status_text(0x58) == "ESME_RTHROTTLED (0x00000058)"
    assert status_text(0x400) == "unknown status (0x00000400)"


def test_a_submit_that_smpplib_would_cut_is_refused_naming_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"destination_addr '4{21}': at most 20 characters \(SMPP 3.4 §4.4.1\)"
    ):
        submit_sm_fields(ota_submit(destination_addr="4" * 21))
    with pytest.raises(ValueError, match="short_message: 255 octets, at most 254"):
        submit_sm_fields(ota_submit(short_message=bytes(255)))
    with pytest.raises(ValueError, match="validity_period '1h': neither empty nor"):
        submit_sm_fields(ota_submit(validity_period="1h"))
    with pytest.raises(ValueError, match="TLV 0x1234: not one smpplib can send"):
        submit_sm_fields(ota_submit(tlvs=((0x1234, b"x"),)))
    assert submit_sm_fields(ota_submit())["short_message"] == COMMAND_UD


@pytest.mark.asyncio
async def test_submit_many_refuses_a_bad_request_whole_and_names_it() -> None:
    events = Events()
    link = EsmeLink(link_settings(1), asyncio.get_running_loop(), events)
    with pytest.raises(ValueError, match=r"submit_many: request 1 \(token 'bad'\): esm_class 256"):
        link.submit_many(
            [SubmitRequest("good", ota_submit()), SubmitRequest("bad", ota_submit(esm_class=256))]
        )
    await link.close()
    assert events.items == []


def test_link_settings_refuse_what_smpplib_would_cut_without_showing_the_password() -> None:
    with pytest.raises(ValueError, match=r"LinkSettings.password: at most 8 latin-1 characters") as caught:
        link_settings(1, password="123456789")
    assert "123456789" not in str(caught.value)
    with pytest.raises(ValueError, match=r"LinkSettings\.system_id 'a-very-long-system-id'"):
        link_settings(1, system_id="a-very-long-system-id")
    with pytest.raises(ValueError, match=r"LinkSettings\.port 0 outside"):
        link_settings(0)


class _WakeDuringRecv:
    """The waker's read end, with another thread's ``wake`` landing inside ``recv`` (the race)."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.sock = waker._r
        self.raced = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        if not self.raced:
            self.raced = True
            self.waker.wake()  # the loop thread queues work and wakes, mid-drain
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


def _readable(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def test_a_wake_during_drain_is_never_lost() -> None:
    waker = Waker()
    raw = waker._r
    try:
        waker.wake()
        waker._r = _WakeDuringRecv(waker)  # type: ignore[assignment]
        waker.drain()
        waker._r = raw
        # Whatever happened during the drain, the next wake must make the waker readable again
        # (a wake lost here left the link thread asleep until a timer: 30 s stalls).
        waker.wake()
        assert _readable(raw)
        waker.drain()
        assert not _readable(raw)
        waker.wake()
        assert _readable(raw)
    finally:
        waker._r = raw
        waker.close()


def test_a_refilled_submit_sm_is_byte_for_byte_a_new_one() -> None:
    import smpplib.client
    import smpplib.smpp

    from ota_server.smpp_connection import SubmitPdus
    from ota_server.smpp_fields import submit_sm_fields

    def client() -> smpplib.client.Client:
        return smpplib.client.Client("127.0.0.1", 1, allow_unknown_opt_params=True)

    pdus = [
        ota_submit(),
        ota_submit(destination_addr="4917000000099", short_message=b"\x02\x70\x00" + bytes(range(100))),
        ota_submit(registered_delivery=1, validity_period=relative_validity(3600)),
        ota_submit(tlvs=((0x0204, b"\x00\x07"),)),  # another set of fields: a new PDU
        ota_submit(tlvs=((0x0204, b"\x01\x02"),), destination_addr="4917"),
        ota_submit(short_message=b"\x02\x70\x00"),
        ota_submit(),
    ]
    reused, fresh = client(), client()
    builder = SubmitPdus()
    for pdu in pdus:
        fields = submit_sm_fields(pdu)
        mine = builder.build(reused, fields)
        theirs = smpplib.smpp.make_pdu("submit_sm", client=fresh, **fields)
        assert mine.sequence == theirs.sequence
        assert mine.generate() == theirs.generate(), pdu


def test_a_refilled_parsed_pdu_is_what_read_pdu_gives() -> None:
    import smpplib.client
    import smpplib.smpp

    from ota_server.smpp_connection import ParsedPdus

    def client() -> smpplib.client.Client:
        return smpplib.client.Client(
            "127.0.0.1", 1, allow_unknown_opt_params=True,
            sequence_generator=smpplib.client.SimpleSequenceGenerator(),
        )  # fmt: skip

    def deliver(seq: int, **fields: object) -> bytes:
        base: dict[str, object] = dict(
            sequence_number=seq, source_addr=MSISDN, destination_addr="12345",
            esm_class=0x40, protocol_id=0x7F, data_coding=0xF6, short_message=POR_UD,
        )  # fmt: skip
        base.update(fields)
        return encode_pdu(DeliverSm(**base))  # type: ignore[arg-type]

    raws = [
        deliver(7),
        deliver(8, esm_class=0x04, short_message=b"id:0000000001 stat:DELIVRD",
                tlvs=((Tag.RECEIPTED_MESSAGE_ID, b"0000000001\x00"), (Tag.MESSAGE_STATE, b"\x02"))),
        deliver(9),  # the receipt's TLVs must not linger
        deliver(10, short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, POR_UD),)),
        encode_pdu(SubmitSmResp(sequence_number=11, message_id="000000000A")),
        encode_pdu(SubmitSmResp(sequence_number=12, command_status=0x58)),  # no body: no message_id
        encode_pdu(SubmitSmResp(sequence_number=13, message_id="000000000B")),
        deliver(14)[:-len(POR_UD)],  # a body cut short: the last fields stay unset
        deliver(15),
    ]  # fmt: skip
    pooled, fresh = client(), client()
    reads = ParsedPdus(pooled)
    for raw in raws:
        mine = reads.parse(raw)
        theirs = smpplib.smpp.parse_pdu(raw, client=fresh, allow_unknown_opt_params=True)  # as read_pdu
        assert mine is not None and mine.command == theirs.command
        names = ("length", "status", "sequence", *theirs.params)
        assert {n: getattr(mine, n) for n in names} == {n: getattr(theirs, n) for n in names}, raw.hex()
        assert pooled.next_sequence() == fresh.next_sequence()  # the same numbers left for submit_sm
    assert reads.parse(encode_pdu(EnquireLink(sequence_number=3))) is None  # not pooled: read_pdu's
