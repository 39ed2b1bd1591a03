"""The SMSC emulator's SMPP 3.4 server: a thin asyncio shell around ``SmppSession(Role.SMSC)``.

Concept: ESMEs connect over TCP and bind (SMPP 3.4 §4.1); each connection gets
one sans-I/O session, one read loop and one timer handle.  The session answers
what it can alone (enquire_link, unbind, generic_nack for malformed or unknown
PDUs, wrong-state requests, §3.3); this shell decides binds, submit_sm and the
MO traffic:

* bind: system_id and password from ``[[smsc.esmes]]``; unknown system_id ->
  ESME_RINVSYSID, wrong password -> ESME_RINVPASWD (§4.1.2, §5.1.3).  A refused
  connection stays open and unbound (the ESME may bind again, or unbind/close).
* submit_sm (§4.4): per-bind token bucket -> ESME_RTHROTTLED (0x58); MT store
  full -> ESME_RMSGQFUL (0x14); unknown subscriber -> ESME_RINVDSTADR; router
  checks (DCS, PID, lengths, validity); then submit_sm_resp with a fresh
  message_id goes out *before* the network tries delivery.
* deliver_sm (§4.6, MO: PoRs, phone SMS, receipts): to a bound RX/TRX of the
  ESME owning the destination address, else of the ESME that submitted the MT
  it answers, else any bound RX/TRX; at most ``mo_window`` unanswered per bind.
  With no receiver bound they wait in a bounded store-and-forward queue (oldest
  dropped when full, dropped after ``mo_validity_s``).  A non-OK
  deliver_sm_resp or no answer -> retried after ``deliver_sm_retry_s``, at most
  ``deliver_sm_max_tries`` times.

Writes are batched per connection: everything a read chunk produces is written
with one ``write``, and ``drain`` is awaited only when the transport's buffer is
above its high-water mark.  MO sent from callbacks is pumped and written once per
loop iteration.
Each connection has one timer, at the session's next deadline or earlier: it is
re-armed only when the deadline moves earlier (a timer that fires early finds
nothing due and is set again), so a steady flow of responses costs no timer
churn.  Per-PDU debug lines are formatted only when DEBUG is on.

Capture (``handset serve --pcap``): with :attr:`SmscServer.capture` set (a
:class:`handset.capture_writer.PcapWriter`), each connection gets a TCP stream in
the capture and every chunk read or written is recorded with its loop time; left
``None`` (the default) nothing is recorded and nothing is allocated.

Glossary: ESME external short message entity; SMSC short message service
centre; MT/MO mobile terminated/originated; RX/TX/TRX receiver/transmitter/
transceiver bind; PoR proof of receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from handset import smsc_router
from ota_protocols.errors import SmppViolation
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.events import (
    BindCompleted,
    BindRequested,
    ConnectionShouldClose,
    PduReceived,
    ProtocolError,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)
from ota_protocols.smpp.pdu_codec import BindKind, DeliverSm, SubmitSm, SubmitSmResp, Unbind
from ota_protocols.smpp.session import Role, SessionState, SmppSession

if TYPE_CHECKING:
    from handset.capture_writer import PcapWriter
    from handset.config import EsmeConfig, SmscConfig
    from ota_protocols.capture import TcpStream

__all__ = ["MtMessage", "MtNetwork", "SmscServer"]

log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG

_RECEIVER_KINDS = (BindKind.RECEIVER, BindKind.TRANSCEIVER)
_SENDS_SM = (SessionState.BOUND_TX, SessionState.BOUND_TRX)


@dataclass(slots=True)
class MtMessage:
    """An accepted submit_sm on its way to a phone."""

    message_id: str
    submit: SubmitSm
    msisdn: str
    tpdu: bytes
    origin_system_id: str
    submitted_at: datetime
    expires_at: float  # loop time
    attempts: int = 0


class MtNetwork(Protocol):
    """What the server needs of the radio network (``service.Network``)."""

    def has_subscriber(self, msisdn: str) -> bool: ...

    @property
    def queued(self) -> int: ...

    def submit(self, message: MtMessage) -> None: ...


class _TokenBucket:
    """SMPP throttling per bind (smpp-and-peers.md §4): ``rate`` tokens/s, ``burst`` at most."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _MoItem:
    pdu: DeliverSm
    prefer_system_id: str | None
    expires_at: float
    tries: int = 0


class _Connection:
    __slots__ = (
        "arrivals",
        "bucket",
        "closed",
        "config",
        "inflight",
        "peer",
        "session",
        "stream",
        "timer",
        "writer",
    )

    def __init__(self, session: SmppSession, writer: asyncio.StreamWriter, peer: str) -> None:
        self.session = session
        self.writer = writer
        self.peer = peer
        self.timer: asyncio.TimerHandle | None = None
        self.bucket: _TokenBucket | None = None
        self.config: EsmeConfig | None = None
        self.inflight: dict[int, _MoItem] = {}
        self.closed = False
        self.stream: TcpStream | None = None  # capture only
        self.arrivals: list[float] | None = None  # this bind's submit_sm arrival times (loop clock)

    @property
    def system_id(self) -> str | None:
        return self.config.system_id if self.config is not None else None

    @property
    def receives(self) -> bool:
        return (
            not self.closed
            and self.session.bound_kind in _RECEIVER_KINDS
            and self.session.state in (SessionState.BOUND_RX, SessionState.BOUND_TRX)
        )


class SmscServer:
    """See the module docstring.  ``start()`` returns the bound port."""

    def __init__(
        self,
        config: SmscConfig,
        network: MtNetwork,
        *,
        router_options: smsc_router.RouterOptions | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.router_options = router_options or smsc_router.RouterOptions(
            force_dcs=config.force_dcs,
            require_pid_7f=config.require_pid_7f,
            require_8bit_dcs=config.require_8bit_dcs,
        )
        self._esmes = {e.system_id: e for e in config.esmes}
        self._owners = {a: e.system_id for e in config.esmes for a in e.addresses}
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._accepting = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: deque[_MoItem] = deque()
        self._dirty: set[_Connection] = set()
        self._flush_scheduled = False
        self._pump_scheduled = False
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: str | None = None
        self.port: int | None = None
        self.capture: PcapWriter | None = None  # handset serve --pcap
        self.counters = {
            "connections": 0,
            "binds": 0,
            "bind_failures": 0,
            "submits": 0,
            "submits_rejected": 0,
            "throttled": 0,
            "queue_full": 0,
            "protocol_errors": 0,
            "deliver_sm_sent": 0,
            "deliver_sm_ok": 0,
            "deliver_sm_failed": 0,
            "deliver_sm_retries": 0,
            "mo_stored": 0,
            "mo_dropped": 0,
            "mo_expired": 0,
            "restarts": 0,
        }
        # Per ESME bind ("system_id#n", n counting that ESME's binds from 1): the loop-clock time of
        # every submit_sm that arrived, throttled or not. Lets a test measure an ESME's pacing.
        self.submit_arrivals: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        self._loop = asyncio.get_running_loop()
        self._host = host or self.config.host
        self._accepting = True
        self._server = await asyncio.start_server(
            self._serve, self._host, self.config.port if port is None else port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SMSC listening on %s:%d", self._host, self.port)
        return self.port

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def suspend(self, *, grace_s: float = 2.0) -> None:
        """The first half of a restart: close the listening socket and every SMPP connection at
        once (no unbind, as a crashing SMSC). Unanswered deliver_sm go back to the MO store; the
        MO store and the network's MT queues are kept (a real SMSC's persistent store)."""
        server, self._server = self._server, None
        self._accepting = False
        if server is not None:
            server.close()
        self.counters["restarts"] += 1
        log.warning("SMSC going down: closing %d connection(s)", len(self._connections))
        for conn in list(self._connections):
            self._close(conn)
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def resume(self) -> int:
        """The second half of a restart: listen again on the SAME host and port."""
        if self._server is not None:
            return self.port or 0
        assert self.port is not None, "resume() before start()"
        self._accepting = True
        self._server = await asyncio.start_server(self._serve, self._host, self.port)
        log.warning("SMSC listening again on %s:%d", self._host, self.port)
        return self.port

    async def restart(self, outage_s: float) -> None:
        """:meth:`suspend`, stay down ``outage_s`` seconds, :meth:`resume`."""
        await self.suspend()
        await asyncio.sleep(outage_s)
        await self.resume()

    async def stop(self, *, grace_s: float = 2.0) -> None:
        """Stop accepting, unbind every bound ESME, wait up to ``grace_s`` for them, close."""
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        for conn in list(self._connections):
            session = conn.session
            if session.state in (SessionState.BOUND_RX, SessionState.BOUND_TX, SessionState.BOUND_TRX):
                session.send(Unbind(), loop.time())
                self._flush(conn)
                self._rearm(conn)
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for conn in list(self._connections):
                self._close(conn)
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def bound_esmes(self) -> list[tuple[str, str]]:
        """(system_id, bind kind) of every bound connection."""
        return [
            (c.system_id or "", c.session.bound_kind.name if c.session.bound_kind else "")
            for c in self._connections
            if c.config is not None and not c.closed
        ]

    # ------------------------------------------------------------------ connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._accepting:
            # Accepted by the kernel just before a restart closed the listener, but served only
            # after the sweep of open connections: a down SMSC serves nobody.
            writer.close()
            return
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        session = SmppSession(
            Role.SMSC,
            response_timeout_s=self.config.response_timeout_s,
            enquire_link_interval_s=self.config.enquire_link_interval_s or None,
        )
        conn = _Connection(session, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        capture = self.capture
        if capture is not None and peer:
            local = writer.get_extra_info("sockname") or (self._host or "127.0.0.1", self.port or 0)
            conn.stream = capture.tcp_open(peer, local, loop.time())
        self._connections.add(conn)
        self.counters["connections"] += 1
        log.info("ESME connected from %s", conn.peer)
        transport = writer.transport
        try:
            while not conn.closed:
                data = await reader.read(262144)
                if not data:
                    break
                now = loop.time()
                if conn.stream is not None and capture is not None:
                    capture.tcp_data(conn.stream, True, data, now)
                session.receive_data(data, now)
                self._process(conn)
                self._flush(conn)
                self._rearm(conn)
                if conn.closed:
                    break
                high = transport.get_write_buffer_limits()[1]
                if transport.get_write_buffer_size() > high or transport.is_closing():
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("ESME %s (%s): connection lost: %s", conn.system_id, conn.peer, exc)
        finally:
            self._close(conn)
            log.info("ESME %s (%s) disconnected", conn.system_id, conn.peer)

    def _close(self, conn: _Connection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
        self._dirty.discard(conn)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if not conn.closed:
            conn.closed = True
            with contextlib.suppress(Exception):
                data = conn.session.data_to_send()
                if data:
                    self._record_sent(conn, data)
                    conn.writer.write(data)
            with contextlib.suppress(Exception):
                conn.writer.close()
        if conn.inflight:
            # Unanswered MO goes back to the front of the queue for another receiver.
            self._backlog.extendleft(reversed(list(conn.inflight.values())))
            conn.inflight.clear()
            self._schedule_pump()

    def _flush(self, conn: _Connection) -> None:
        data = conn.session.data_to_send()
        if data and not conn.closed:
            if conn.stream is not None:
                self._record_sent(conn, data)
            try:
                conn.writer.write(data)
            except (ConnectionError, OSError, RuntimeError):
                self._close(conn)

    def _record_sent(self, conn: _Connection, data: bytes) -> None:
        if conn.stream is not None and self.capture is not None and self._loop is not None:
            self.capture.tcp_data(conn.stream, False, data, self._loop.time())

    def _mark_dirty(self, conn: _Connection) -> None:
        self._dirty.add(conn)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            self._flush(conn)
            self._rearm(conn)

    def _rearm(self, conn: _Connection) -> None:
        """One timer handle per connection, at or before the session's next deadline.

        A timer already set at or before the deadline is kept: when it fires early,
        ``handle_deadline`` finds nothing due and :meth:`_on_deadline` sets it again.
        """
        if conn.closed:
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
            return
        deadline = conn.session.next_deadline()
        if deadline is None:
            return  # an early timer, if any, fires and finds nothing: cheaper than cancelling
        timer = conn.timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        if self._loop is not None:
            conn.timer = self._loop.call_at(deadline, self._on_deadline, conn)

    def _on_deadline(self, conn: _Connection) -> None:
        conn.timer = None
        if conn.closed or self._loop is None:
            return
        conn.session.handle_deadline(self._loop.time())
        self._process(conn)
        self._flush(conn)
        self._rearm(conn)

    # ------------------------------------------------------------------ events

    def _process(self, conn: _Connection) -> None:
        # Answering an event can raise another (accept_bind -> BindCompleted): drain until quiet.
        for _ in range(8):
            events = conn.session.events()
            if not events or conn.closed:
                return
            self._dispatch(conn, events)

    def _dispatch(self, conn: _Connection, events: list[object]) -> None:
        for event in events:
            if isinstance(event, PduReceived):
                pdu = event.pdu
                if isinstance(pdu, SubmitSm):
                    self._on_submit(conn, pdu)
            elif isinstance(event, ResponseReceived):
                self._on_response(conn, event)
            elif isinstance(event, BindRequested):
                self._on_bind(conn, event)
            elif isinstance(event, BindCompleted):
                self.counters["binds"] += 1
                log.info("ESME %s bound as %s from %s", event.their_system_id, event.kind.name, conn.peer)
                if conn.receives:
                    self._schedule_pump()
            elif isinstance(event, ResponseTimedOut):
                item = conn.inflight.pop(event.sequence_number, None)
                if item is not None:
                    log.warning(
                        "ESME %s: deliver_sm seq=%d unanswered", conn.system_id, event.sequence_number
                    )
                    self._retry_mo(item)
            elif isinstance(event, ProtocolError):
                self.counters["protocol_errors"] += 1
                log.warning(
                    "ESME %s (%s): %s (status %#x)", conn.system_id, conn.peer, event.detail, event.status
                )
            elif isinstance(event, Unbound | ConnectionShouldClose):
                self._flush(conn)
                self._close(conn)
                return

    def _on_bind(self, conn: _Connection, event: BindRequested) -> None:
        bind = event.pdu
        esme = self._esmes.get(bind.system_id)
        if esme is None:
            status = CommandStatus.ESME_RINVSYSID
        elif bind.password != esme.password:
            status = CommandStatus.ESME_RINVPASWD
        else:
            conn.config = esme
            prefix = f"{esme.system_id}#"
            number = 1 + sum(1 for key in self.submit_arrivals if key.startswith(prefix))
            conn.arrivals = self.submit_arrivals.setdefault(f"{prefix}{number}", [])
            rate = self.config.throttle_per_s
            burst = self.config.throttle_burst or max(1.0, rate)
            assert self._loop is not None
            conn.bucket = _TokenBucket(rate, burst, self._loop.time())
            conn.session.accept_bind(self.config.system_id, now=self._loop.time())
            return
        self.counters["bind_failures"] += 1
        log.warning(
            "ESME %r from %s: bind refused with %s", bind.system_id, conn.peer, CommandStatus(status).name
        )
        conn.session.reject_bind(status)

    # ------------------------------------------------------------------ MT

    def _new_message_id(self) -> str:
        self._next_id += 1
        return f"{self._next_id:010X}"

    def _refuse_submit(self, conn: _Connection, pdu: SubmitSm, status: int, why: str) -> None:
        self.counters["submits_rejected"] += 1
        if log.isEnabledFor(_DEBUG):
            log.debug("<- submit_sm_resp seq=%d status=%#x (%s)", pdu.sequence_number, status, why)
        assert self._loop is not None
        conn.session.send(
            SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status), self._loop.time()
        )

    def _on_submit(self, conn: _Connection, pdu: SubmitSm) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self.counters["submits"] += 1
        if conn.arrivals is not None:
            conn.arrivals.append(now)
        if log.isEnabledFor(_DEBUG):
            log.debug(
                "-> submit_sm seq=%d src=%s dst=%s esm_class=%#04x pid=%#04x dcs=%#04x rd=%d ud=%s",
                pdu.sequence_number,
                pdu.source_addr,
                pdu.destination_addr,
                pdu.esm_class,
                pdu.protocol_id,
                pdu.data_coding,
                pdu.registered_delivery,
                pdu.payload.hex(),
            )
        bucket = conn.bucket
        if bucket is not None and not bucket.take(now):
            self.counters["throttled"] += 1
            self._refuse_submit(conn, pdu, CommandStatus.ESME_RTHROTTLED, "throttled")
            return
        if self.network.queued >= self.config.max_queued_mt:
            self.counters["queue_full"] += 1
            self._refuse_submit(conn, pdu, CommandStatus.ESME_RMSGQFUL, "MT store full")
            return
        msisdn = pdu.destination_addr.lstrip("+")
        if not self.network.has_subscriber(msisdn):
            self._refuse_submit(conn, pdu, CommandStatus.ESME_RINVDSTADR, f"no subscriber {msisdn}")
            return
        wall = datetime.now(UTC)
        try:
            tpdu = smsc_router.build_sms_deliver(pdu, scts=wall, options=self.router_options)
            validity = smsc_router.expiry_seconds(
                pdu.validity_period, submitted=wall, default_s=self.config.default_validity_s
            )
        except SmppViolation as exc:
            self._refuse_submit(conn, pdu, exc.command_status, str(exc))
            return
        message_id = self._new_message_id()
        conn.session.send(SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id), now)
        if log.isEnabledFor(_DEBUG):
            log.debug("<- submit_sm_resp seq=%d message_id=%s", pdu.sequence_number, message_id)
        self.network.submit(
            MtMessage(
                message_id=message_id,
                submit=pdu,
                msisdn=msisdn,
                tpdu=tpdu,
                origin_system_id=conn.system_id or "",
                submitted_at=wall,
                expires_at=now + validity,
            )
        )

    # ------------------------------------------------------------------ MO

    def deliver_mo(self, pdu: DeliverSm, *, prefer_system_id: str | None = None) -> None:
        """Queue a deliver_sm (PoR, phone SMS or receipt) for the right ESME."""
        assert self._loop is not None
        item = _MoItem(pdu, prefer_system_id, self._loop.time() + self.config.mo_validity_s)
        if len(self._backlog) >= self.config.max_stored_mo:
            self._backlog.popleft()
            self.counters["mo_dropped"] += 1
            log.warning("MO store full (%d): oldest message dropped", self.config.max_stored_mo)
        self._backlog.append(item)
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        if self._loop is not None and not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _choose(self, item: _MoItem, receivers: list[_Connection]) -> _Connection | None:
        """Owner of the destination address, else the MT's submitter, else any receiver with room."""
        window = self.config.mo_window
        for system_id in (self._owners.get(item.pdu.destination_addr), item.prefer_system_id):
            if system_id is None:
                continue
            candidates = [c for c in receivers if c.system_id == system_id]
            if candidates:
                best = min(candidates, key=lambda c: len(c.inflight))
                return best if len(best.inflight) < window else None
        best = min(receivers, key=lambda c: len(c.inflight))
        return best if len(best.inflight) < window else None

    def _pump(self) -> None:
        self._pump_scheduled = False
        loop = self._loop
        if loop is None or not self._backlog:
            return
        receivers = [c for c in self._connections if c.receives]
        if not receivers:
            self.counters["mo_stored"] = len(self._backlog)
            return
        now = loop.time()
        window = self.config.mo_window
        kept: deque[_MoItem] = deque()
        backlog = self._backlog
        debug = log.isEnabledFor(_DEBUG)
        while backlog:
            if all(len(c.inflight) >= window for c in receivers):
                break
            item = backlog.popleft()
            if item.expires_at <= now:
                self.counters["mo_expired"] += 1
                continue
            conn = self._choose(item, receivers)
            if conn is None:
                kept.append(item)
                continue
            pdu = item.pdu
            if pdu.sequence_number != 0:
                pdu = replace(pdu, sequence_number=0)  # the session numbers it afresh
            sent = conn.session.send(pdu, now)
            if sent is None:
                kept.append(item)
                continue
            conn.inflight[sent.sequence_number] = item
            self.counters["deliver_sm_sent"] += 1
            if debug:
                p = item.pdu
                log.debug(
                    "<- deliver_sm seq=%d to=%s src=%s dst=%s esm_class=%#04x pid=%#04x dcs=%#04x ud=%s",
                    sent.sequence_number,
                    conn.system_id,
                    p.source_addr,
                    p.destination_addr,
                    p.esm_class,
                    p.protocol_id,
                    p.data_coding,
                    (p.short_message or p.payload).hex(),
                )
            self._mark_dirty(conn)
        kept.extend(backlog)
        self._backlog = kept
        self.counters["mo_stored"] = len(kept)

    def _on_response(self, conn: _Connection, event: ResponseReceived) -> None:
        item = conn.inflight.pop(event.request.sequence_number, None)
        if item is None:
            return
        status = getattr(event.response, "command_status", 0)
        if log.isEnabledFor(_DEBUG):
            log.debug("-> deliver_sm_resp seq=%d status=%#x", event.request.sequence_number, status)
        if status == CommandStatus.ESME_ROK:
            self.counters["deliver_sm_ok"] += 1
        else:
            log.warning("ESME %s answered deliver_sm with status %#x", conn.system_id, status)
            self._retry_mo(item)
        if self._backlog:
            self._schedule_pump()

    def _retry_mo(self, item: _MoItem) -> None:
        item.tries += 1
        if item.tries >= self.config.deliver_sm_max_tries or self._loop is None:
            self.counters["deliver_sm_failed"] += 1
            log.warning("deliver_sm to %s dropped after %d tries", item.pdu.destination_addr, item.tries)
            return
        self.counters["deliver_sm_retries"] += 1
        self._loop.call_at(self._loop.time() + self.config.deliver_sm_retry_s, self._requeue, item)

    def _requeue(self, item: _MoItem) -> None:
        self._backlog.append(item)
        self._schedule_pump()
