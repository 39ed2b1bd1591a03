"""Hostile peers against the SMSC emulator on loopback (house-style §2.3; docs/handset.md "Limits on peers").

Each test starts an SMSC with small limits (a few connections, timers of a fraction of a second) so the
suite stays bounded: a handful of connections per test, every wait inside ``asyncio.timeout``, no sleeps.
Connections come from 127.0.0.1 only, so per-address limits are exercised from that one address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handset.config import EsmeConfig, HandsetConfig, SmscConfig
from handset.service import HandsetService
from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.smpp.command_status import CommandId, CommandStatus
from ota_protocols.smpp.framing import PduFramer
from ota_protocols.smpp.pdu_codec import (
    Bind,
    BindKind,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
)

from .async_esme import AsyncEsme
from .fake_cards import FakeOtaCard

ROOT = Path(__file__).resolve().parents[2]
SPEC = FleetSpec(seed="hostile", count=2, msisdn_prefix="4917", msisdn_digits=12)
WAIT_S = 5.0  # every wait is bounded by this; the limits under test are all far below it
SMALL = SmscConfig(
    port=0,
    esmes=(EsmeConfig(system_id="ota", password="secret", addresses=("12345",)),),
    max_connections=4,
    max_connections_per_peer=4,
    session_init_timeout_s=0.3,
    enquire_link_interval_s=0.0,
    inactivity_timeout_s=0.0,
    max_pdu_octets_before_bind=128,
    bind_failures_allowed=2,
    bind_throttle_min_s=30.0,  # longer than any test: a locked-out address stays locked out
    bind_throttle_max_s=60.0,
    warning_interval_s=60.0,
    traffic_log_interval_s=0.0,
)


@contextlib.asynccontextmanager
async def smsc(**overrides: object) -> AsyncIterator[HandsetService]:
    config = HandsetConfig(smsc=dataclasses.replace(SMALL, **overrides))  # type: ignore[arg-type]
    service = HandsetService(config, cards=[FakeOtaCard(SPEC, i) for i in SPEC.indices])
    await service.start(host="127.0.0.1", port=0)
    try:
        yield service
    finally:
        async with asyncio.timeout(WAIT_S):
            await service.stop()


def port_of(service: HandsetService) -> int:
    assert service.server is not None and service.server.port is not None
    return service.server.port


def counters(service: HandsetService) -> dict[str, int]:
    assert service.server is not None
    return service.server.counters


class Raw:
    """A bare TCP peer that writes what it likes and reads PDUs (or the end of the stream)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = PduFramer()
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> Raw:
        async with asyncio.timeout(WAIT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, *pdus: Pdu | bytes) -> None:
        self.writer.write(b"".join(p if isinstance(p, bytes) else encode_pdu(p) for p in pdus))

    async def pdu(self) -> Pdu:
        async with asyncio.timeout(WAIT_S):
            while not self.pending:
                data = await self.reader.read(4096)
                assert data, "connection closed while a PDU was expected"
                self.pending += self.framer.feed(data)
        return decode_pdu(self.pending.pop(0))

    @classmethod
    async def refused(cls, port: int) -> bool:
        """True when the server closes a new connection at once (it may reset before the connect
        call even returns)."""
        try:
            peer = await cls.connect(port)
        except ConnectionError:
            return True
        try:
            return await peer.closed_by_server()
        finally:
            await peer.close()

    async def closed_by_server(self) -> bool:
        """True once the server has closed (or reset) the connection; PDUs before that are skipped."""
        async with asyncio.timeout(WAIT_S):
            try:
                while await self.reader.read(4096):
                    pass
            except ConnectionError:
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def bind(password: str = "secret", seq: int = 1, system_id: str = "ota") -> Bind:
    return Bind(kind=BindKind.TRANSCEIVER, sequence_number=seq, system_id=system_id, password=password)


async def bound_raw(port: int) -> Raw:
    peer = await Raw.connect(port)
    peer.send(bind())
    resp = await peer.pdu()
    assert resp.command_status == CommandStatus.ESME_ROK  # type: ignore[union-attr]
    return peer


# ------------------------------------------------------------------ connections


@pytest.mark.asyncio
async def test_a_peer_address_beyond_its_cap_is_closed_at_once() -> None:
    async with smsc(max_connections=10, max_connections_per_peer=3) as service:
        port = port_of(service)
        held = [await Raw.connect(port) for _ in range(3)]
        try:
            assert await Raw.refused(port)
            assert counters(service)["connections_refused"] == 1
            # The server closes one of them (an impossible command_length): room for one more. It
            # updates its books before it closes, so once the EOF is read the room is there.
            held[0].send(struct.pack(">IIII", 8, CommandId.ENQUIRE_LINK, 0, 1))
            assert await held[0].closed_by_server()
            late = await bound_raw(port)
            await late.close()
        finally:
            for peer in held:
                await peer.close()


@pytest.mark.asyncio
async def test_when_full_the_oldest_unbound_connection_makes_room_for_a_real_esme() -> None:
    async with smsc(max_connections=3, max_connections_per_peer=10, session_init_timeout_s=30.0) as service:
        port = port_of(service)
        idle = [await Raw.connect(port) for _ in range(3)]
        try:
            esme = await bound_raw(port)  # a fourth connection: the oldest idle one goes
            assert await idle[0].closed_by_server()
            assert counters(service)["connections_evicted"] == 1
            assert service.server.open_connections == 3  # type: ignore[union-attr]
            await esme.close()
        finally:
            for peer in idle:
                await peer.close()


@pytest.mark.asyncio
async def test_when_every_connection_is_bound_a_newcomer_is_refused() -> None:
    async with smsc(max_connections=2, max_connections_per_peer=10) as service:
        port = port_of(service)
        first, second = await bound_raw(port), await bound_raw(port)
        try:
            assert await Raw.refused(port)
            assert counters(service)["connections_refused"] == 1
            first.send(Unbind(sequence_number=9))  # the bound ones still work
            assert await first.pdu() == UnbindResp(sequence_number=9)
        finally:
            for peer in (first, second):
                await peer.close()


# ------------------------------------------------------------------ SMPP 3.4 §7.2 timers


@pytest.mark.asyncio
async def test_session_init_timer_closes_a_silent_connection_and_spares_bound_ones() -> None:
    async with smsc() as service:
        port = port_of(service)
        esme = await bound_raw(port)
        silent = await Raw.connect(port)
        try:
            assert await silent.closed_by_server()
            assert counters(service)["session_init_timeouts"] == 1
            esme.send(Unbind(sequence_number=2))  # bound before the timer: untouched
            assert await esme.pdu() == UnbindResp(sequence_number=2)
        finally:
            await esme.close()
            await silent.close()


@pytest.mark.asyncio
async def test_refused_binds_do_not_restart_the_session_init_timer() -> None:
    async with smsc(bind_failures_allowed=100) as service:
        peer = await Raw.connect(port_of(service))
        try:
            peer.send(bind("wrong", seq=1))
            assert (await peer.pdu()).command_status == CommandStatus.ESME_RINVPASWD  # type: ignore[union-attr]
            peer.send(bind("wrong", seq=2))
            assert (await peer.pdu()).command_status == CommandStatus.ESME_RINVPASWD  # type: ignore[union-attr]
            assert await peer.closed_by_server()
            assert counters(service)["session_init_timeouts"] == 1
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_a_partial_pdu_before_bind_is_dropped_with_its_connection() -> None:
    async with smsc() as service:
        peer = await Raw.connect(port_of(service))
        try:
            peer.send(struct.pack(">IIII", 100, CommandId.BIND_TRANSCEIVER, 0, 1) + b"ota\x00")  # 80 missing
            assert await peer.closed_by_server()
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_inactivity_timer_unbinds_a_bound_esme_that_says_nothing() -> None:
    async with smsc(inactivity_timeout_s=0.3) as service:
        esme = await AsyncEsme.connect(port_of(service))
        try:
            assert await esme.bind("ota", "secret") == CommandStatus.ESME_ROK
            async with asyncio.timeout(WAIT_S):
                await esme.closed.wait()  # the server's unbind was answered, then the link closed
            assert counters(service)["inactivity_unbinds"] == 1
        finally:
            await esme.close()


@pytest.mark.asyncio
async def test_enquire_link_unanswered_closes_the_link() -> None:
    async with smsc(enquire_link_interval_s=0.1, response_timeout_s=0.2) as service:
        peer = await bound_raw(port_of(service))
        try:
            probe = await peer.pdu()
            assert probe.command_id == CommandId.ENQUIRE_LINK
            assert await peer.closed_by_server()  # never answered
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_enquire_link_answered_keeps_the_link() -> None:
    async with smsc(
        enquire_link_interval_s=0.05, response_timeout_s=0.5, inactivity_timeout_s=5.0
    ) as service:
        peer = await bound_raw(port_of(service))
        try:
            for _ in range(3):  # three rounds, each longer than the interval: still bound
                probe = await peer.pdu()
                assert probe.command_id == CommandId.ENQUIRE_LINK
                peer.send(EnquireLinkResp(sequence_number=probe.sequence_number))
            assert service.server.bound_esmes == [("ota", "TRANSCEIVER")]  # type: ignore[union-attr]
        finally:
            await peer.close()


# ------------------------------------------------------------------ buffering before bind


@pytest.mark.asyncio
async def test_a_long_command_length_before_bind_is_refused_from_its_header() -> None:
    async with smsc() as service:
        peer = await Raw.connect(port_of(service))
        try:
            # The 16-octet header of a 65 KB submit_sm, and no body: refused before any body arrives.
            peer.send(struct.pack(">IIII", 65_000, CommandId.SUBMIT_SM, 0, 7))
            nack = await peer.pdu()
            assert isinstance(nack, GenericNack) and nack.sequence_number == 7
            assert nack.command_status == CommandStatus.ESME_RINVCMDLEN
            assert await peer.closed_by_server()
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_once_bound_the_same_length_is_accepted() -> None:
    async with smsc() as service:
        peer = await bound_raw(port_of(service))
        try:
            big = SubmitSm(sequence_number=3, destination_addr="4900", short_message=bytes(200))
            peer.send(big)  # 200 octets of short_message > max_pdu_octets_before_bind
            resp = await peer.pdu()
            assert isinstance(resp, SubmitSmResp) and resp.command_status == CommandStatus.ESME_RINVDSTADR
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_a_peer_that_does_not_read_our_answers_before_binding_is_closed() -> None:
    async with smsc() as service:
        server = service.server
        assert server is not None
        peer = await Raw.connect(port_of(service))
        esme = await bound_raw(port_of(service))
        try:
            peer.send(EnquireLink(sequence_number=1))  # answered before a bind (§4.11)
            assert (await peer.pdu()).command_id == CommandId.ENQUIRE_LINK_RESP
            (unbound,) = list(server._unbound)
            bound = next(c for c in server._connections if c.config is not None)
            # What asyncio calls when our unread answers pass the transport's high-water mark:
            unbound.pause_writing()
            assert await peer.closed_by_server()
            assert server.counters["connections_not_reading"] == 1
            bound.pause_writing()  # a bound ESME is waited for: reading pauses, the link stays
            bound.resume_writing()
            esme.send(Unbind(sequence_number=7))
            assert await esme.pdu() == UnbindResp(sequence_number=7)
        finally:
            await peer.close()
            await esme.close()


# ------------------------------------------------------------------ bind throttling


@pytest.mark.asyncio
async def test_repeated_wrong_passwords_lock_the_address_out_and_the_log_stays_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with smsc(session_init_timeout_s=30.0) as service:
        peer = await Raw.connect(port_of(service))
        try:
            with caplog.at_level(logging.WARNING, logger="handset.smsc_server"):
                statuses = []
                for seq in range(1, 41):
                    peer.send(bind("wrong", seq=seq))
                    statuses.append((await peer.pdu()).command_status)  # type: ignore[union-attr]
                # Two free failures, the third checked and locking, then unchecked refusals.
                assert statuses[:3] == [CommandStatus.ESME_RINVPASWD] * 3
                assert set(statuses[3:]) == {CommandStatus.ESME_RBINDFAIL}
                peer.send(bind("secret", seq=99))  # right password, but the address is locked out
                assert (await peer.pdu()).command_status == CommandStatus.ESME_RBINDFAIL  # type: ignore[union-attr]
            c = counters(service)
            assert c["bind_failures"] == 3 and c["binds_throttled"] == 38
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) <= 10  # five per kind per interval (failed, throttled), not 41
            assert "secret" not in caplog.text and "wrong" not in caplog.text  # passwords never logged
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_parallel_connections_share_the_lock_out_of_their_address() -> None:
    async with smsc(session_init_timeout_s=30.0, bind_failures_allowed=1) as service:
        port = port_of(service)
        peers = [await Raw.connect(port) for _ in range(3)]
        try:
            statuses = []
            for i, peer in enumerate(peers):
                peer.send(bind("wrong", seq=i + 1))
                statuses.append((await peer.pdu()).command_status)  # type: ignore[union-attr]
            assert statuses == [
                CommandStatus.ESME_RINVPASWD,
                CommandStatus.ESME_RINVPASWD,
                CommandStatus.ESME_RBINDFAIL,
            ]
        finally:
            for peer in peers:
                await peer.close()


# ------------------------------------------------------------------ statuses


@pytest.mark.asyncio
async def test_unbind_before_bind_is_rinvbndsts_and_a_bind_may_follow() -> None:
    async with smsc() as service:
        peer = await Raw.connect(port_of(service))
        try:
            peer.send(Unbind(sequence_number=5))
            assert await peer.pdu() == UnbindResp(
                sequence_number=5, command_status=CommandStatus.ESME_RINVBNDSTS
            )
            peer.send(bind(seq=6))
            assert (await peer.pdu()).command_status == CommandStatus.ESME_ROK  # type: ignore[union-attr]
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_overlong_service_type_is_rinvsertyp() -> None:
    async with smsc() as service:
        peer = await bound_raw(port_of(service))
        try:
            body = bytearray(encode_pdu(SubmitSm(sequence_number=4, destination_addr="4900"))[16:])
            body[0:1] = b"OVERLONG\x00"  # service_type: at most 5 characters and the NUL (§5.2.11)
            peer.send(struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM, 0, 4) + bytes(body))
            resp = await peer.pdu()
            assert isinstance(resp, SubmitSmResp) and resp.sequence_number == 4
            assert resp.command_status == CommandStatus.ESME_RINVSERTYP
        finally:
            await peer.close()


@pytest.mark.asyncio
async def test_validity_period_already_past_is_rinvexpiry() -> None:
    async with smsc() as service:
        peer = await bound_raw(port_of(service))
        try:
            msisdn = derive_card(SPEC, 0).msisdn
            # 1 January 2001, 00:00 UTC: long gone.
            peer.send(
                SubmitSm(sequence_number=8, destination_addr=msisdn, validity_period="010101000000000+")
            )
            resp = await peer.pdu()
            assert isinstance(resp, SubmitSmResp) and resp.command_status == CommandStatus.ESME_RINVEXPIRY
        finally:
            await peer.close()


# ------------------------------------------------------------------ bookkeeping and logs


@pytest.mark.asyncio
async def test_per_bind_bookkeeping_is_bounded() -> None:
    async with smsc(submit_times_per_bind=5, submit_times_binds=2) as service:
        port = port_of(service)
        for _ in range(3):
            peer = await bound_raw(port)
            for seq in range(2, 10):  # unknown destination: answered at once, arrival still recorded
                peer.send(SubmitSm(sequence_number=seq, destination_addr="4900"))
                await peer.pdu()
            peer.send(Unbind(sequence_number=20))
            await peer.pdu()
            await peer.close()
        arrivals = service.server.submit_arrivals  # type: ignore[union-attr]
        assert list(arrivals) == ["ota#2", "ota#3"]
        assert all(len(times) == 5 for times in arrivals.values())


def _refused_in(lines: list[str]) -> int:
    """submit_sm refused, summed over the traffic lines (each counts its own interval)."""
    return sum(
        int(line.split(" submit_sm accepted, ")[1].split()[0]) for line in lines if "traffic: " in line
    )


class _Waiter(logging.Handler):
    """Keeps the messages; sets ``seen`` once the traffic lines count ``refused`` refusals."""

    def __init__(self, refused: int) -> None:
        super().__init__(logging.INFO)
        self.refused = refused
        self.seen = asyncio.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if _refused_in(self.lines) >= self.refused:
            self.seen.set()


@pytest.mark.asyncio
async def test_binds_unbinds_and_a_traffic_line_are_logged_at_info() -> None:
    logger = logging.getLogger("handset.smsc_server")
    waiter = _Waiter(refused=2)
    logger.addHandler(waiter)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with smsc(traffic_log_interval_s=0.05) as service:
            peer = await bound_raw(port_of(service))
            for seq in (2, 3):  # unknown destination: refused ESME_RINVDSTADR
                peer.send(SubmitSm(sequence_number=seq, destination_addr="4900"))
                await peer.pdu()
            async with asyncio.timeout(WAIT_S):
                await waiter.seen.wait()
            peer.send(Unbind(sequence_number=4))
            await peer.pdu()
            await peer.closed_by_server()
            await peer.close()
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(level)
    text = "\n".join(waiter.lines)
    assert "ESME ota bound as TRANSCEIVER from 127.0.0.1:" in text
    assert "ESME ota (127.0.0.1:" in text and "unbound (by the ESME)" in text
    traffic = [line for line in waiter.lines if line.startswith("traffic: ")]
    assert _refused_in(traffic) == 2 and all("1 bound, 1 connection(s)" in line for line in traffic)


class _ExhaustedListener:
    """A listening socket whose accept() fails as it does when the process is out of descriptors."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.calls = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        raise OSError(24, "Too many open files")


@pytest.mark.asyncio
async def test_accept_errors_are_counted_logged_a_few_times_and_retried_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with smsc() as service:
        server = service.server
        assert server is not None and server._listener is not None
        real = server._listener
        fake = _ExhaustedListener(real)
        server._listener = fake  # type: ignore[assignment]
        try:
            with caplog.at_level(logging.WARNING):
                for _ in range(200):  # 200 wake-ups of a listener that cannot accept
                    server._accept()
            retry = server._accept_retry
            assert retry is not None  # accepting paused, one retry armed (not one per failure)
            assert server.counters["accept_errors"] == 200 and fake.calls == 200
            lines = [r for r in caplog.records if "accept failed" in r.getMessage()]
            assert 1 <= len(lines) <= 5 and all(r.exc_info is None for r in lines)
        finally:
            server._listener = real
        server._resume_accepting()  # what the retry timer does: the real listener serves again
        retry.cancel()
        esme = await bound_raw(port_of(service))
        await esme.close()


# ------------------------------------------------------------------ the command line, few descriptors


def _low_fd_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))


def test_handset_serve_under_a_low_open_file_limit_stays_quiet_and_serves(tmp_path: Path) -> None:
    """200 idle connections against a process allowed 150 descriptors: it lowers max_connections
    (one warning), closes the excess, logs a few lines without a traceback, and a real ESME binds."""
    template = (ROOT / "configs" / "cards" / "fleet-template.toml").as_posix()
    config = tmp_path / "handset.toml"
    config.write_text(
        "[smsc]\nport = 0\ntraffic_log_interval_s = 0.0\nmax_connections_per_peer = 1000\n"
        "[[smsc.esmes]]\nsystem_id = 'ota'\npassword = 'secret'\n"
        f"[fleet]\nseed = 'fd'\ncount = 1\ncard_template = '{template}'\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "handset.cli", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=_low_fd_limit,
    )
    idle: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split(":")[2].split()[0])
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S))
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as esme:
            esme.sendall(encode_pdu(bind()))
            data = b""
            while len(data) < 16 or len(data) < int.from_bytes(data[:4], "big"):
                chunk = esme.recv(4096)
                assert chunk, "the SMSC closed the real ESME's connection"
                data += chunk
            assert decode_pdu(data).command_status == CommandStatus.ESME_ROK  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        for sock in idle:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "max_connections 1000 is more than the open-file limit allows: using 86" in err
    assert "ESME ota bound as TRANSCEIVER" in err  # INFO by default
    assert len(err.splitlines()) <= 20, err
