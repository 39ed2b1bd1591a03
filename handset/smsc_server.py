"""The SMSC emulator's SMPP 3.4 server: a thin asyncio shell around ``SmppSession(Role.SMSC)``.

Concept: ESMEs connect over TCP and bind (SMPP 3.4 §4.1); each connection gets
one sans-I/O session and one timer handle.  The session answers what it can
alone (enquire_link, unbind, generic_nack for malformed or unknown PDUs,
wrong-state requests, §3.3) and runs the §7.2 timers; this shell decides who
may connect, binds, submit_sm and the MO traffic:

* connections (house-style §2.3; the decisions are :mod:`handset.smsc_limits`'):
  at most ``max_connections`` in all and ``max_connections_per_peer`` per remote
  address; when full, the oldest connection that has not bound is closed to make
  room, so idle pre-bind connections cannot lock a real ESME out.
  ``max_connections`` is lowered, with one warning, to what the process's
  open-file limit allows.  The server runs its own accept loop (asyncio's
  schedules a retry and logs a traceback per failed accept): a connection is
  admitted or refused right after ``accept()``, before any transport exists, and
  an accept that fails anyway (file descriptors exhausted) is counted, logged at
  most a few times per ``warning_interval_s`` and retried once a second.
* before a bind: PDUs longer than ``max_pdu_octets_before_bind`` are refused on
  their command_length (generic_nack ESME_RINVCMDLEN, connection closed), so no
  body is buffered; a peer that does not read our answers (the transport's write
  buffer above its high-water mark) is closed, and so is one not bound within
  ``session_init_timeout_s`` (§7.2 session_init_timer).  Once bound: enquire_link after
  ``enquire_link_interval_s`` of quiet, unbind after ``inactivity_timeout_s``
  without a PDU from the ESME (§7.2 enquire_link_timer, inactivity_timer).
* bind: system_id and password from ``[[smsc.esmes]]``; unknown system_id ->
  ESME_RINVSYSID, wrong password -> ESME_RINVPASWD (§4.1.2, §5.1.3).  After
  ``bind_failures_allowed`` failures from one address its binds are refused with
  ESME_RBINDFAIL, passwords unchecked, for a delay that doubles per further
  failure (``bind_throttle_min_s`` .. ``bind_throttle_max_s``).  A refused
  connection stays open and unbound (the ESME may bind again, or unbind/close)
  until its session_init_timer ends it.
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

Each connection is an :class:`asyncio.Protocol` rather than a stream reader and
a task: the callbacks are the read loop, and an idle connection costs a
transport and a session (about 2.5 KB; a task and its streams more than
double it, benchmarks/smsc_limits.py).  Writes are batched per connection:
everything a read chunk produces is written with one ``write``; while the
transport's buffer is above its high-water mark reading is paused (the peer
must read our answers before we read more).  MO sent from callbacks is pumped
and written once per loop iteration.  Each connection has one timer, at the
session's next deadline or earlier: it is re-armed only when the deadline
moves earlier (a timer that fires early finds nothing due and is set again).
Per-PDU debug lines are formatted only when DEBUG is on.

Logging: binds, unbinds and disconnections of bound ESMEs at INFO, and every
``traffic_log_interval_s`` one INFO traffic line; connections that never bind
only at DEBUG.  Bookkeeping per bind (:attr:`SmscServer.submit_arrivals`) keeps
the newest ``submit_times_per_bind`` arrival times of the newest
``submit_times_binds`` binds.

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
import resource
import socket
import struct
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from handset import smsc_limits, smsc_router
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
    SessionTimerExpired,
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
_BOUND = (SessionState.BOUND_RX, SessionState.BOUND_TX, SessionState.BOUND_TRX)
# Descriptors the process keeps for itself (listener, event loop, logs, card files, pcap, the
# phones' SIM ports): max_connections is lowered to leave at least this many free.
_FD_RESERVE = 64
_LISTEN_BACKLOG = 1024
_ACCEPTS_PER_WAKEUP = 128
_ACCEPT_RETRY_S = 1.0  # after a failed accept (EMFILE, ...), as asyncio's own ACCEPT_RETRY_DELAY


def _who(conn: _Connection) -> str:
    """How a log line names the peer: the ESME once bound, else its address alone."""
    if conn.config is not None:
        return f"ESME {conn.config.system_id} ({conn.peer})"
    return f"{conn.peer} (not bound)"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): a refused peer leaves nothing behind, not even TIME_WAIT."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


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


class _Connection(asyncio.Protocol):
    """One TCP connection: asyncio's callbacks, handed to the server."""

    __slots__ = (
        "arrivals",
        "bucket",
        "closed",
        "config",
        "host",
        "inflight",
        "peer",
        "server",
        "session",
        "stream",
        "timer",
        "transport",
    )

    def __init__(self, server: SmscServer, session: SmppSession) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session = session
        self.peer = "?"
        self.host = "?"
        self.timer: asyncio.TimerHandle | None = None
        self.bucket: _TokenBucket | None = None
        self.config: EsmeConfig | None = None
        self.inflight: dict[int, _MoItem] = {}
        self.closed = False
        self.stream: TcpStream | None = None  # capture only
        self.arrivals: deque[float] | None = None  # this bind's newest submit_sm arrival times

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._on_connection_made(self)

    def data_received(self, data: bytes) -> None:
        self.server._on_data(self, data)

    def eof_received(self) -> bool:
        return False  # the peer closed its side: close ours too

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._on_connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.server._on_write_backlog(self)

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def system_id(self) -> str | None:
        return self.config.system_id if self.config is not None else None

    @property
    def receives(self) -> bool:
        session = self.session
        return (
            not self.closed
            and session.bound_kind in _RECEIVER_KINDS
            and session.state in (SessionState.BOUND_RX, SessionState.BOUND_TRX)
        )


def _fd_capacity(wanted: int) -> int:
    """``wanted`` connections, or fewer when the open-file limit cannot hold them."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - every POSIX system answers
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - max(_FD_RESERVE, soft // 10)))


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
        self._listener: socket.socket | None = None
        self._accept_retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()
        self._unbound: dict[_Connection, None] = {}  # not bound yet, oldest first
        self._per_host: dict[str, int] = {}
        self._all_closed: asyncio.Event | None = None
        self._backlog: deque[_MoItem] = deque()
        self._dirty: set[_Connection] = set()
        self._flush_scheduled = False
        self._pump_scheduled = False
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: str | None = None
        self._traffic_timer: asyncio.TimerHandle | None = None
        self._traffic_mark: tuple[float, dict[str, int]] | None = None
        self.port: int | None = None
        self.capture: PcapWriter | None = None  # handset serve --pcap
        self.limits = smsc_limits.ConnectionLimits(
            max_connections=_fd_capacity(config.max_connections),
            max_connections_per_peer=config.max_connections_per_peer,
        )
        self._throttle = smsc_limits.BindThrottle(
            free_failures=config.bind_failures_allowed,
            delay_min_s=config.bind_throttle_min_s,
            delay_max_s=config.bind_throttle_max_s,
            forget_after_s=config.bind_failure_memory_s,
        )
        self._warnings = smsc_limits.WarningGate(config.warning_interval_s)
        self.submit_status: Counter[int] = Counter()  # submit_sm_resp command_status -> count (metrics)
        self.counters = {
            "connections": 0,
            "connections_refused": 0,
            "connections_evicted": 0,
            "connections_not_reading": 0,
            "accept_errors": 0,
            "session_init_timeouts": 0,
            "inactivity_unbinds": 0,
            "binds": 0,
            "bind_failures": 0,
            "binds_throttled": 0,
            "unbinds": 0,
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
        # Per ESME bind ("system_id#n", n counting that ESME's binds from 1): the loop-clock times of
        # its newest submit_sm arrivals, throttled or not, for a test to measure an ESME's pacing.
        # Bounded (house-style §2.3): config.submit_times_per_bind times for each of the newest
        # config.submit_times_binds binds.
        self.submit_arrivals: dict[str, deque[float]] = {}
        self._binds_of: dict[str, int] = {}  # system_id -> binds so far (one entry per [[smsc.esmes]])
        if self.limits.max_connections < config.max_connections:
            log.warning(
                "[smsc] max_connections %d is more than the open-file limit allows: using %d "
                "(raise it with ulimit -n)",
                config.max_connections,
                self.limits.max_connections,
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        self._loop = asyncio.get_running_loop()
        self._host = host or self.config.host
        self._listener = await self._listen(self.config.port if port is None else port)
        self.port = self._listener.getsockname()[1]
        log.info("SMSC listening on %s:%d", self._host, self.port)
        interval = self.config.traffic_log_interval_s
        if interval > 0:
            self._traffic_mark = (self._loop.time(), self._traffic_snapshot())
            self._traffic_timer = self._loop.call_later(interval, self._traffic_tick)
        return self.port

    async def _listen(self, port: int) -> socket.socket:
        """A listening socket on the first address ``host`` resolves to, read by :meth:`_accept`."""
        loop = self._loop
        assert loop is not None
        infos = await loop.getaddrinfo(
            self._host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _type, proto, _name, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(_LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from None
        loop.add_reader(sock.fileno(), self._accept)
        return sock

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if self._accept_retry is not None:
            self._accept_retry.cancel()
            self._accept_retry = None
        if listener is not None and self._loop is not None:
            self._loop.remove_reader(listener.fileno())
            listener.close()

    def _new_session(self) -> SmppSession:
        """The session of a connection just accepted; its session_init_timer starts now."""
        assert self._loop is not None
        config = self.config
        return SmppSession(
            Role.SMSC,
            response_timeout_s=config.response_timeout_s,
            enquire_link_interval_s=config.enquire_link_interval_s or None,
            session_init_timeout_s=config.session_init_timeout_s or None,
            inactivity_timeout_s=config.inactivity_timeout_s or None,
            max_pdu_length=config.max_pdu_octets,
            max_unbound_pdu_length=config.max_pdu_octets_before_bind,
            now=self._loop.time(),
        )

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def _wait_all_closed(self, timeout: float) -> None:
        if self._connections:
            self._all_closed = event = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def suspend(self, *, grace_s: float = 2.0) -> None:
        """The first half of a restart: close the listening socket and every SMPP connection at
        once (no unbind, as a crashing SMSC). Unanswered deliver_sm go back to the MO store; the
        MO store and the network's MT queues are kept (a real SMSC's persistent store)."""
        self._unlisten()
        self.counters["restarts"] += 1
        log.warning("SMSC going down: closing %d connection(s)", len(self._connections))
        for conn in list(self._connections):
            self._close(conn)
        await self._wait_all_closed(grace_s)

    async def resume(self) -> int:
        """The second half of a restart: listen again on the SAME host and port."""
        if self._listener is not None:
            return self.port or 0
        assert self.port is not None, "resume() before start()"
        self._listener = await self._listen(self.port)
        log.warning("SMSC listening again on %s:%d", self._host, self.port)
        return self.port

    async def restart(self, outage_s: float) -> None:
        """:meth:`suspend`, stay down ``outage_s`` seconds, :meth:`resume`."""
        await self.suspend()
        await asyncio.sleep(outage_s)
        await self.resume()

    async def stop(self, *, grace_s: float = 2.0) -> None:
        """Stop accepting, unbind every bound ESME, wait up to ``grace_s`` for them, close."""
        self._unlisten()
        if self._traffic_timer is not None:
            self._traffic_timer.cancel()
            self._traffic_timer = None
        loop = asyncio.get_running_loop()
        for conn in list(self._connections):
            session = conn.session
            if session.state in _BOUND:
                session.send(Unbind(), loop.time())
                self._flush(conn)
                self._rearm(conn)
            else:
                self._close(conn)
        await self._wait_all_closed(grace_s)
        for conn in list(self._connections):
            self._close(conn, abort=True)

    @property
    def bound_esmes(self) -> list[tuple[str, str]]:
        """(system_id, bind kind) of every bound connection."""
        return [
            (c.system_id or "", c.session.bound_kind.name if c.session.bound_kind else "")
            for c in self._connections
            if c.config is not None and not c.closed
        ]

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def unbound_connections(self) -> int:
        return len(self._unbound)

    # ------------------------------------------------------------------ accepting

    def _accept(self) -> None:
        """The listener is readable: accept a bounded number of connections, each admitted or
        refused before a transport exists (a refused one costs a descriptor for microseconds).

        asyncio's own accept loop is not used: on EMFILE it logs a traceback and schedules a
        retry for every one of up to ``backlog`` attempts per wake-up, which is the flood of
        tracebacks issue #11 saw.  Here a failed accept is counted, logged at most a few times
        per ``warning_interval_s``, and accepting pauses once for ``_ACCEPT_RETRY_S``."""
        listener = self._listener
        if listener is None:
            return
        for _ in range(_ACCEPTS_PER_WAKEUP):  # the rest on the next loop iteration: no starving
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self.counters["accept_errors"] += 1
                self._warn("accept", "SMSC accept failed: %s (open-file limit reached?)", exc)
                self._pause_accepting()
                return
            self._admit(sock, address)

    def _pause_accepting(self) -> None:
        loop = self._loop
        listener = self._listener
        if loop is None or listener is None or self._accept_retry is not None:
            return
        loop.remove_reader(listener.fileno())
        self._accept_retry = loop.call_later(_ACCEPT_RETRY_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_retry = None
        if self._loop is not None and self._listener is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        loop = self._loop
        assert loop is not None
        host = str(address[0]) if address else "?"
        peer = f"{address[0]}:{address[1]}" if address else "?"
        verdict = smsc_limits.admit(
            self.limits,
            total=len(self._connections),
            from_peer=self._per_host.get(host, 0),
            unbound=len(self._unbound),
        )
        if verdict in (smsc_limits.Admission.REFUSE_PEER_FULL, smsc_limits.Admission.REFUSE_FULL):
            self.counters["connections_refused"] += 1
            _reset(sock)
            self._warn("refused", "connection from %s closed: %s", peer, verdict.value)
            return
        if verdict is smsc_limits.Admission.EVICT_OLDEST_UNBOUND:
            victim = next(iter(self._unbound))
            self.counters["connections_evicted"] += 1
            if log.isEnabledFor(_DEBUG):
                log.debug("max_connections: closing unbound %s for %s", victim.peer, peer)
            self._close(victim, abort=True)
        conn = _Connection(self, self._new_session())
        conn.host, conn.peer = host, peer
        # In the books from the accept on, so that the next accept already counts it.
        self._connections.add(conn)
        self._unbound[conn] = None
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self.counters["connections"] += 1
        task = loop.create_task(self._attach(conn, sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, conn: _Connection, sock: socket.socket) -> None:
        """The transport for an admitted socket (asyncio's public ``connect_accepted_socket``)."""
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, RuntimeError) as exc:
            if log.isEnabledFor(_DEBUG):
                log.debug("connection from %s lost before it started: %s", conn.peer, exc)
            self._close(conn)
            sock.close()

    def _warn(self, key: str, message: str, *args: object) -> None:
        """A WARNING at most a few times per ``warning_interval_s`` for each kind (``key``)."""
        if self._loop is None:
            return
        held = self._warnings.allow(key, self._loop.time())
        if held is None:
            return
        if held:
            log.warning(message + " (%d similar line(s) held back)", *args, held)
        else:
            log.warning(message, *args)

    # ------------------------------------------------------------------ connection

    def _on_connection_made(self, conn: _Connection) -> None:
        transport = conn.transport
        loop = self._loop
        assert transport is not None and loop is not None
        if conn.closed:
            # Pushed out (max_connections) or the SMSC went down between accept and transport.
            transport.abort()
            return
        capture = self.capture
        if capture is not None:
            peer = transport.get_extra_info("peername")
            local = transport.get_extra_info("sockname") or (self._host or "127.0.0.1", self.port or 0)
            if peer:
                conn.stream = capture.tcp_open(peer, local, loop.time())
        if log.isEnabledFor(_DEBUG):
            log.debug("connection from %s", conn.peer)
        self._rearm(conn)

    def _on_data(self, conn: _Connection, data: bytes) -> None:
        if conn.closed or self._loop is None:
            return
        session = conn.session
        now = self._loop.time()
        if conn.stream is not None and self.capture is not None:
            self.capture.tcp_data(conn.stream, True, data, now)
        session.receive_data(data, now)
        self._process(conn)
        self._flush(conn)
        self._rearm(conn)

    def _on_write_backlog(self, conn: _Connection) -> None:
        """Our answers pile up above the transport's high-water mark: the peer does not read them.
        A bound ESME is waited for (reading its requests pauses until it reads); a peer that has not
        bound is closed, so that answers to a flood of pre-bind PDUs cannot pile up in memory."""
        transport = conn.transport
        if transport is None or transport.is_closing():
            return
        if conn.session.state in _BOUND:
            transport.pause_reading()
            return
        self.counters["connections_not_reading"] += 1
        self._warn("not_reading", "%s: does not read our answers before binding: closed", _who(conn))
        self._close(conn, abort=True)

    def _on_connection_lost(self, conn: _Connection, exc: Exception | None) -> None:
        was_open = not conn.closed
        bound = conn.config is not None and conn.session.state in _BOUND
        self._close(conn)
        if bound and was_open:
            why = f": {exc}" if exc is not None else ""
            log.info("ESME %s (%s) disconnected without unbind%s", conn.system_id, conn.peer, why)
        elif log.isEnabledFor(_DEBUG):
            log.debug("connection from %s closed", conn.peer)

    def _close(self, conn: _Connection, *, abort: bool = False) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            count = self._per_host.get(conn.host, 0) - 1
            if count > 0:
                self._per_host[conn.host] = count
            else:
                self._per_host.pop(conn.host, None)
            if not self._connections and self._all_closed is not None:
                self._all_closed.set()
        self._unbound.pop(conn, None)
        self._dirty.discard(conn)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if not conn.closed:
            conn.closed = True
            transport = conn.transport
            if transport is not None:
                if abort:
                    transport.abort()
                else:
                    with contextlib.suppress(Exception):
                        data = conn.session.data_to_send()
                        if data:
                            self._record_sent(conn, data)
                            transport.write(data)
                    transport.close()
        conn.arrivals = None
        if conn.inflight:
            # Unanswered MO goes back to the front of the queue for another receiver.
            self._backlog.extendleft(reversed(list(conn.inflight.values())))
            conn.inflight.clear()
            self._schedule_pump()

    def _flush(self, conn: _Connection) -> None:
        data = conn.session.data_to_send()
        if data and not conn.closed and conn.transport is not None:
            if conn.stream is not None:
                self._record_sent(conn, data)
            try:
                conn.transport.write(data)
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
        session = conn.session
        # Answering an event can raise another (accept_bind -> BindCompleted): drain until quiet.
        for _ in range(8):
            events = session.events()
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
                self._unbound.pop(conn, None)
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
                self._warn("protocol", "%s: %s (status %#x)", _who(conn), event.detail, event.status)
            elif isinstance(event, SessionTimerExpired):
                self._on_timer(conn, event)
            elif isinstance(event, Unbound):
                self.counters["unbinds"] += 1
                who = "by the ESME" if event.by_peer else "answered"
                log.info("ESME %s (%s) unbound (%s)", conn.system_id, conn.peer, who)
                self._flush(conn)
                self._close(conn)
                return
            elif isinstance(event, ConnectionShouldClose):
                if conn.config is not None:
                    log.info("ESME %s (%s): closing: %s", conn.system_id, conn.peer, event.reason)
                self._flush(conn)
                self._close(conn)
                return

    def _on_timer(self, conn: _Connection, event: SessionTimerExpired) -> None:
        if event.timer == "session_init":
            # SMPP 3.4 §7.2: not bound within session_init_timeout_s; the session closes.
            self.counters["session_init_timeouts"] += 1
            if log.isEnabledFor(_DEBUG):
                log.debug("%s: not bound after %.1f s (session_init_timer)", conn.peer, event.elapsed_s)
        else:
            # SMPP 3.4 §7.2: inactivity_timer; the session has sent unbind.
            self.counters["inactivity_unbinds"] += 1
            log.info(
                "ESME %s (%s): nothing received for %.0f s: unbinding (inactivity_timer, SMPP 3.4 §7.2)",
                conn.system_id,
                conn.peer,
                event.elapsed_s,
            )

    def _on_bind(self, conn: _Connection, event: BindRequested) -> None:
        bind = event.pdu
        session = conn.session
        loop = self._loop
        assert loop is not None
        now = loop.time()
        host = conn.host
        locked = self._throttle.locked_until(host, now)
        if locked is not None:
            # Throttled after repeated failures: refused without looking at the password, so a
            # peer cannot try passwords faster than one per delay (house-style §2.3).
            self.counters["binds_throttled"] += 1
            self._warn(
                "bind_throttled",
                "bind %r from %s refused with ESME_RBINDFAIL: %d failed binds from %s, throttled %.1f s more",
                bind.system_id,
                conn.peer,
                self._throttle.failures(host, now),
                host,
                locked - now,
            )
            session.reject_bind(CommandStatus.ESME_RBINDFAIL)
            return
        esme = self._esmes.get(bind.system_id)
        if esme is None:
            status = CommandStatus.ESME_RINVSYSID
        elif bind.password != esme.password:
            status = CommandStatus.ESME_RINVPASWD
        else:
            self._throttle.succeeded(host)
            conn.config = esme
            conn.arrivals = self._arrivals_for(esme.system_id)
            rate = self.config.throttle_per_s
            burst = self.config.throttle_burst or max(1.0, rate)
            conn.bucket = _TokenBucket(rate, burst, now)
            session.accept_bind(self.config.system_id, now=now)
            return
        self.counters["bind_failures"] += 1
        until = self._throttle.failed(host, now)
        then = f"; binds from {host} throttled for {until - now:.1f} s" if until is not None else ""
        self._warn(
            "bind_failed",
            "ESME %r from %s: bind refused with %s%s",
            bind.system_id,
            conn.peer,
            CommandStatus(status).name,
            then,
        )
        session.reject_bind(status)

    def _arrivals_for(self, system_id: str) -> deque[float]:
        """A fresh bounded record of this bind's submit_sm arrival times (see ``submit_arrivals``)."""
        number = self._binds_of.get(system_id, 0) + 1
        self._binds_of[system_id] = number
        arrivals: deque[float] = deque(maxlen=self.config.submit_times_per_bind)
        self.submit_arrivals[f"{system_id}#{number}"] = arrivals
        while len(self.submit_arrivals) > self.config.submit_times_binds:
            del self.submit_arrivals[next(iter(self.submit_arrivals))]  # the oldest bind's
        return arrivals

    # ------------------------------------------------------------------ traffic line

    def _traffic_snapshot(self) -> dict[str, int]:
        snapshot = dict(self.counters)
        network = getattr(self.network, "counters", None)
        if isinstance(network, dict):
            snapshot.update(network)
        return snapshot

    def _traffic_tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        interval = self.config.traffic_log_interval_s
        now = loop.time()
        snapshot = self._traffic_snapshot()
        if self._traffic_mark is not None:
            since, before = self._traffic_mark
            line = smsc_limits.traffic_line(
                before,
                snapshot,
                now - since,
                queued=self.network.queued,
                bound=len(self._connections) - len(self._unbound),
                connections=len(self._connections),
            )
            if line is not None:
                log.info("%s", line)
        self._traffic_mark = (now, snapshot)
        self._traffic_timer = loop.call_later(interval, self._traffic_tick)

    # ------------------------------------------------------------------ MT

    def _new_message_id(self) -> str:
        self._next_id += 1
        return f"{self._next_id:010X}"

    def _refuse_submit(self, conn: _Connection, pdu: SubmitSm, status: int, why: str) -> None:
        self.counters["submits_rejected"] += 1
        self.submit_status[status] += 1
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
        arrivals = conn.arrivals
        if arrivals is not None:
            arrivals.append(now)
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
        self.submit_status[CommandStatus.ESME_ROK] += 1
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
