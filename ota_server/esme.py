"""The platform's SMPP 3.4 ESME: smpplib in one thread, bridged to the asyncio loop.

Clauses: SMPP 3.4 §4.1.5 (bind_transceiver), §4.4 (submit_sm), §4.6 (deliver_sm),
§4.11 (enquire_link), §5.1.3 (command_status: ESME_RTHROTTLED 0x58, ESME_RMSGQFUL
0x14); smpp-and-peers.md §1.2 (submit_sm fields of an OTA SMS: esm_class 0x40, PID
7F, DCS F6), §2 (smpplib facts and gotchas), §4 (window, throttling, order).

Glossary: ESME external short message entity (us), SMSC the message centre, seq
sequence_number, window the submit_sm sent and not yet answered, PDU protocol
data unit, TLV optional parameter.

Theory of operation. smpplib is blocking and not thread-safe (§2.3), so one thread
owns the client: it connects, binds, reads and writes; nobody else touches the
socket. The loop hands it :class:`SubmitRequest`\\ s through :meth:`EsmeLink.submit`
(a deque plus a wake-up socket); the thread hands events back in batches with
``loop.call_soon_threadsafe``, at most one call per wake-up. The thread's loop:

1. send what the window (outstanding submit_sm, matched by seq), the pace (a token
   bucket of messages per second: segments count, jasmin #925) and any throttle
   pause allow, oldest first;
2. ``select`` on the socket and the wake-up socket until the next deadline;
3. read what the socket holds in one ``recv`` and dispatch its PDUs in order
   (smpplib parses each): submit_sm_resp -> accepted / rejected / throttled,
   deliver_sm -> answered ESME_ROK, then handed to the loop (PoR or receipt: the
   caller decides), enquire_link -> answered, generic_nack -> the request it names;
4. expire requests unanswered after ``response_timeout_s`` (outcome unknown), send
   enquire_link after ``enquire_link_s`` of silence, and treat an unanswered one as
   a dead link.

I/O is batched, the GIL being the cost: every socket call releases it, and getting
it back behind the busy event loop thread can take a whole switch interval (5 ms).
So smpplib builds and parses the PDUs (``make_pdu``/``generate``, ``parse_pdu``,
its sequence numbers and bind state), but the thread moves the bytes itself: one
``recv`` of up to :data:`RECV_BYTES` per wake-up, cut into PDUs by their
command_length, and everything generated in a turn (submit_sm, deliver_sm_resp,
enquire_link_resp) written with one ``sendall``. The bytes on the wire are those
``Client.send_pdu`` would write, in the same order; only the segmentation differs
(TCP_NODELAY is set, as asyncio does on the SMSC side, so a lone response is not
held back by Nagle's algorithm).

Throttling (§4): ESME_RTHROTTLED and ESME_RMSGQFUL pause the whole bind; the
rejected message goes back in front of everything not yet sent (by submission
order, so 1 2 3 4 5 stays 1 2 3 4 5), the rate is halved and recovers by 10 % per
clean second. A lost connection is re-established with back-off; messages in
flight then have an unknown outcome (reported, never resent here: a resend is the
reconciliation's decision), messages not yet sent wait for the new bind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import smpplib.client
import smpplib.command
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

log = logging.getLogger(__name__)

# One recv per wake-up takes up to this much (some 2,000 deliver_sm); the socket buffers are
# sized to match so a burst of submit_sm or deliver_sm never waits on a full buffer.
RECV_BYTES = 1 << 18
SOCKET_BUFFER_BYTES = 1 << 20
_HEADER_LENGTH = 16  # SMPP 3.4 §3.2
_MAX_PDU_LENGTH = 0x10000 + 0x400  # as ota_protocols.smpp.framing: 64 KiB message_payload and all

ESME_ROK = 0x00
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
THROTTLE_STATUSES = frozenset({ESME_RMSGQFUL, ESME_RTHROTTLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class EsmeSettings:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    source_addr: str = "12345"
    source_addr_ton: int = 1
    source_addr_npi: int = 1
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    registered_delivery: bool = False
    window: int = 64
    max_messages_per_second: float = 0.0  # 0: unlimited
    response_timeout_s: float = 10.0
    enquire_link_s: float = 30.0
    reconnect_attempts: int = 5
    reconnect_backoff_s: float = 0.5
    max_reconnect_backoff_s: float = 10.0
    throttle_pause_s: float = 0.05
    max_throttle_pause_s: float = 2.0
    validity_period_s: float | None = None  # submit_sm validity_period, relative (SMPP 3.4 §7.1.1)


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 §7.1.1 relative time ``YYMMDDhhmmsstnnR`` (years and months left 0)."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    token: object  # the caller's handle, given back in every event about this message
    destination_addr: str
    short_message: bytes


# Events (thread -> loop) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkUp:
    their_system_id: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str


@dataclass(frozen=True, slots=True)
class LinkFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class SubmitAccepted:
    token: object
    message_id: str


@dataclass(frozen=True, slots=True)
class SubmitRejected:
    token: object
    command_status: int


@dataclass(frozen=True, slots=True)
class SubmitUnknown:
    """No submit_sm_resp (timeout or lost link): the SMSC may or may not have taken it."""

    token: object
    reason: str


@dataclass(frozen=True, slots=True)
class Throttled:
    command_status: int
    rate: float


@dataclass(frozen=True, slots=True)
class DeliverReceived:
    source_addr: str
    destination_addr: str
    esm_class: int
    protocol_id: int
    data_coding: int
    user_data: bytes
    receipted_message_id: str | None = None
    message_state: int | None = None


EsmeEvent = (
    LinkUp
    | LinkDown
    | LinkFailed
    | SubmitAccepted
    | SubmitRejected
    | SubmitUnknown
    | Throttled
    | DeliverReceived
)


@dataclass(slots=True)
class _Outgoing:
    ordinal: int  # submission order: what "order-preserving" preserves
    request: SubmitRequest

    def __lt__(self, other: _Outgoing) -> bool:
        return self.ordinal < other.ordinal


@dataclass(slots=True)
class _InFlight:
    outgoing: _Outgoing
    deadline: float


class _BindRejected(Exception):
    pass


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


class _Pace:
    """Token bucket: ``rate`` messages per second (None: unlimited), a tenth of a second of burst."""

    __slots__ = ("last", "rate", "tokens")

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = 1.0
        self.last = time.monotonic()

    def _refill(self, now: float) -> None:
        if self.rate is None:
            return
        burst = max(1.0, self.rate / 10)
        self.tokens = min(burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, now: float) -> bool:
        if self.rate is None:
            return True
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def next_token(self, now: float) -> float:
        if self.rate is None or self.tokens >= 1.0:
            return now
        return now + (1.0 - self.tokens) / self.rate


class EsmeLink:
    """An SMPP transceiver bind run by a dedicated thread; see the module docstring."""

    def __init__(
        self,
        settings: EsmeSettings,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[list[EsmeEvent]], None],
    ) -> None:
        self.settings = settings
        self._loop = loop
        self._on_events = on_events
        self._incoming: collections.deque[SubmitRequest] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_flag = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ota-esme", daemon=True)
        # Thread-owned state below.
        self._client: smpplib.client.Client | None = None
        self._rx = bytearray()  # bytes read and not yet a whole PDU
        self._tx: list[bytes] = []  # PDUs generated this turn, written with one sendall
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._retry: list[_Outgoing] = []  # heap by ordinal: throttled messages go first
        self._inflight: dict[int, _InFlight] = {}
        self._ordinal = 0
        self._events: list[EsmeEvent] = []
        ceiling = settings.max_messages_per_second or None
        self._ceiling = ceiling
        self._pace = _Pace(ceiling)
        self._pause_until = 0.0
        self._pause_s = settings.throttle_pause_s
        self._last_throttle = 0.0
        self._last_recover = 0.0
        self._accepted_times: collections.deque[float] = collections.deque(maxlen=100_000)
        self._last_rx = 0.0
        self._enquire_seq: int | None = None
        self._enquire_deadline = 0.0
        self.sent_count = 0
        self.throttle_count = 0

    # ------------------------------------------------------------------ loop side

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: SubmitRequest) -> None:
        """Thread-safe; messages go out in the order submitted (throttling keeps it)."""
        self._incoming.append(request)
        self._wake()

    def submit_many(self, requests: list[SubmitRequest]) -> None:
        self._incoming.extend(requests)
        self._wake()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Unbind and stop the thread (bounded)."""
        self._stopping.set()
        self._wake()
        await asyncio.to_thread(self._thread.join, timeout_s)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        if not self._wake_flag.is_set():
            self._wake_flag.set()
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\x00")

    # ------------------------------------------------------------------ thread side

    def _emit(self, event: EsmeEvent) -> None:
        self._events.append(event)

    def _flush_events(self) -> None:
        if self._events:
            batch, self._events = self._events, []
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
                self._loop.call_soon_threadsafe(self._on_events, batch)

    def _run(self) -> None:
        s = self.settings
        failures = 0
        delay = s.reconnect_backoff_s
        while not self._stopping.is_set():
            try:
                self._connect()
            except _BindRejected as exc:
                self._emit(LinkFailed(str(exc)))
                self._flush_events()
                return
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
                self._disconnect()
                failures += 1
                if failures > s.reconnect_attempts:
                    self._emit(
                        LinkFailed(
                            f"SMSC {s.host}:{s.port} unreachable after {failures} attempts: "
                            f"{exc or type(exc).__name__}"
                        )
                    )
                    self._flush_events()
                    return
                log.info("SMSC %s:%d: connect failed (%s); retry in %.1f s", s.host, s.port, exc, delay)
                self._flush_events()
                self._stopping.wait(delay)
                delay = min(delay * 2, s.max_reconnect_backoff_s)
                continue
            failures = 0
            delay = s.reconnect_backoff_s
            try:
                self._serve()
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
                reason = f"link to SMSC lost: {exc or type(exc).__name__}"
                log.warning("%s", reason)
                self._abandon_inflight(reason)
                self._emit(LinkDown(reason))
            finally:
                self._disconnect()
                self._flush_events()

    def _connect(self) -> None:
        s = self.settings
        client = smpplib.client.Client(
            s.host, s.port, timeout=s.response_timeout_s, allow_unknown_opt_params=True
        )
        self._client = client
        self._rx = bytearray()
        self._tx = []
        client.connect()
        sock = client._socket
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        try:
            resp = client.bind_transceiver(
                system_id=s.system_id, password=s.password, system_type=s.system_type
            )
        except smpplib.exceptions.PDUError as exc:
            raise _BindRejected(f"SMSC {s.host}:{s.port} refused the bind of {s.system_id!r}: {exc}") from exc
        their = _text(getattr(resp, "system_id", ""))
        log.info("bound as transceiver to %s:%d (%s)", s.host, s.port, their)
        now = time.monotonic()
        self._last_rx = now
        self._enquire_seq = None
        self._emit(LinkUp(their))

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.disconnect()
        # smpplib's __del__ warns about a socket still open; it is closed now.
        client._socket = None

    def _abandon_inflight(self, reason: str) -> None:
        for entry in self._inflight.values():
            self._emit(SubmitUnknown(entry.outgoing.request.token, reason))
        self._inflight.clear()

    def _serve(self) -> None:
        client = self._client
        assert client is not None
        sock = client._socket
        s = self.settings
        while True:
            now = time.monotonic()
            if self._stopping.is_set():
                self._unbind(client)
                return
            self._take_incoming()
            self._send_ready(client, now)
            self._write(sock)
            self._flush_events()
            timeout = self._next_wake(now) - now
            readable, _, _ = select.select([sock, self._wake_r], [], [], max(0.0, min(timeout, 1.0)))
            if self._wake_r in readable:
                self._wake_flag.clear()
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            if sock in readable:
                # One recv: whatever is there, bounded, so sending is not starved.
                for pdu in self._receive(client, sock):
                    self._dispatch(client, pdu)
            now = time.monotonic()
            self._expire(now)
            if self._enquire_seq is not None and now >= self._enquire_deadline:
                raise smpplib.exceptions.ConnectionError("enquire_link unanswered: link dead")
            if self._enquire_seq is None and now - self._last_rx >= s.enquire_link_s:
                pdu = smpplib.smpp.make_pdu("enquire_link", client=client)
                self._queue_pdu(client, pdu)
                self._write(sock)
                self._enquire_seq = pdu.sequence
                self._enquire_deadline = now + s.response_timeout_s
                log.debug("-> enquire_link seq=%d", pdu.sequence)

    def _take_incoming(self) -> None:
        while self._incoming:
            request = self._incoming.popleft()
            self._ordinal += 1
            self._queue.append(_Outgoing(self._ordinal, request))

    def _next_wake(self, now: float) -> float:
        wake = now + 1.0
        if self._inflight:
            wake = min(wake, next(iter(self._inflight.values())).deadline)
        if self._enquire_seq is not None:
            wake = min(wake, self._enquire_deadline)
        else:
            wake = min(wake, self._last_rx + self.settings.enquire_link_s)
        if (self._queue or self._retry) and len(self._inflight) < self.settings.window:
            wake = min(wake, max(self._pause_until, self._pace.next_token(now)))
        return wake

    def _send_ready(self, client: smpplib.client.Client, now: float) -> None:
        s = self.settings
        self._recover_rate(now)
        if now < self._pause_until:
            return
        debug = log.isEnabledFor(logging.DEBUG)
        validity = {"validity_period": relative_validity(s.validity_period_s)} if s.validity_period_s else {}
        while (self._retry or self._queue) and len(self._inflight) < s.window:
            if not self._pace.take(now):
                return
            outgoing = heapq.heappop(self._retry) if self._retry else self._queue.popleft()
            request = outgoing.request
            pdu = smpplib.smpp.make_pdu(
                "submit_sm",
                client=client,
                source_addr_ton=s.source_addr_ton,
                source_addr_npi=s.source_addr_npi,
                source_addr=s.source_addr,
                dest_addr_ton=s.dest_addr_ton,
                dest_addr_npi=s.dest_addr_npi,
                destination_addr=request.destination_addr,
                esm_class=0x40,  # UDHI (smpp-and-peers.md §1.2)
                protocol_id=0x7F,  # (U)SIM data download
                data_coding=0xF6,  # 8-bit, class 2
                registered_delivery=1 if s.registered_delivery else 0,
                short_message=request.short_message,
                **validity,
            )
            self._inflight[pdu.sequence] = _InFlight(outgoing, now + s.response_timeout_s)
            self._queue_pdu(client, pdu)
            self.sent_count += 1
            if debug:
                log.debug(
                    "-> submit_sm seq=%d dst=%s esm_class=0x40 pid=0x7f dcs=0xf6 ud=%s",
                    pdu.sequence,
                    request.destination_addr,
                    request.short_message.hex(),
                )

    # -------------------------------------------------------------- bytes (see the module docstring)

    def _queue_pdu(self, client: smpplib.client.Client, pdu: smpplib.command.Command) -> None:
        """``Client.send_pdu`` without the write: checked against the bind state, generated, queued."""
        if client.state not in smpplib.consts.COMMAND_STATES[pdu.command]:
            raise smpplib.exceptions.PDUError(
                f"Command {pdu.command} failed: "
                f"{smpplib.consts.DESCRIPTIONS[smpplib.consts.SMPP_ESME_RINVBNDSTS]}"
            )
        self._tx.append(pdu.generate())

    def _write(self, sock: socket.socket) -> None:
        """Everything queued this turn, in one ``sendall``."""
        tx = self._tx
        if not tx:
            return
        data = tx[0] if len(tx) == 1 else b"".join(tx)
        tx.clear()
        try:
            sock.sendall(data)
        except OSError as exc:
            raise smpplib.exceptions.ConnectionError(f"send failed: {exc}") from exc

    def _receive(self, client: smpplib.client.Client, sock: socket.socket) -> list[smpplib.command.Command]:
        """One ``recv`` (the socket is readable), then every whole PDU buffered, parsed by smpplib.

        As ``Client.read_pdu``: a closed socket is ``ConnectionError``, an impossible
        command_length ``PDUError``, and bind_*_resp / unbind_resp move the client's state.
        """
        try:
            data = sock.recv(RECV_BYTES)
        except (TimeoutError, BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            raise smpplib.exceptions.ConnectionError(f"recv failed: {exc}") from exc
        if not data:
            raise smpplib.exceptions.ConnectionError("the SMSC closed the connection")
        self._last_rx = time.monotonic()
        rx = self._rx
        if rx:
            rx += data
            buf: bytes | bytearray = rx
        else:
            buf = data
        n = len(buf)
        pos = 0
        pdus: list[smpplib.command.Command] = []
        allow = client.allow_unknown_opt_params
        setters = smpplib.consts.STATE_SETTERS
        while n - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < _HEADER_LENGTH or length > _MAX_PDU_LENGTH:
                raise smpplib.exceptions.PDUError(f"Broken PDU: command_length {length}")
            if n - pos < length:
                break
            raw = bytes(buf[pos : pos + length])
            pos += length
            try:
                pdu = smpplib.smpp.parse_pdu(raw, client=client, allow_unknown_opt_params=allow)
            except smpplib.exceptions.UnknownCommandError:
                log.debug("<- command_id %#x ignored", int.from_bytes(raw[4:8], "big"))
                continue
            if pdu is None:
                continue
            if not pdu.is_error() and pdu.command in setters:
                client.state = setters[pdu.command]
            pdus.append(pdu)
        if rx:
            del rx[:pos]
        elif pos < n:
            self._rx = bytearray(buf[pos:])
        return pdus

    # -------------------------------------------------------------- PDUs

    def _dispatch(self, client: smpplib.client.Client, pdu: smpplib.command.Command) -> None:
        now = self._last_rx
        command = pdu.command
        if command == "submit_sm_resp":
            self._on_submit_resp(pdu.sequence, int(pdu.status), _text(getattr(pdu, "message_id", "")), now)
        elif command == "deliver_sm":
            self._on_deliver(client, pdu)
        elif command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            self._queue_pdu(client, resp)
        elif command == "enquire_link_resp":
            if pdu.sequence == self._enquire_seq:
                self._enquire_seq = None
        elif command == "generic_nack":
            log.warning("<- generic_nack seq=%d status=%#x", pdu.sequence, int(pdu.status))
            if pdu.sequence in self._inflight:
                self._on_submit_resp(pdu.sequence, int(pdu.status) or 0x08, "", now)
        elif command == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=client)
            resp.sequence = pdu.sequence
            self._queue_pdu(client, resp)
            with contextlib.suppress(smpplib.exceptions.ConnectionError):
                self._write(client._socket)
            raise smpplib.exceptions.ConnectionError("the SMSC unbound")
        else:
            log.debug("<- %s seq=%d ignored", command, pdu.sequence)

    def _on_submit_resp(self, seq: int, status: int, message_id: str, now: float) -> None:
        entry = self._inflight.pop(seq, None)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<- submit_sm_resp seq=%d status=%#x message_id=%s", seq, status, message_id)
        if entry is None:
            return  # answered after we gave up on it: already reported as unknown
        token = entry.outgoing.request.token
        if status == ESME_ROK:
            self._accepted_times.append(now)
            self._emit(SubmitAccepted(token, message_id))
        elif status in THROTTLE_STATUSES:
            self._throttled(entry.outgoing, status, now)
        else:
            self._emit(SubmitRejected(token, status))

    def _throttled(self, outgoing: _Outgoing, status: int, now: float) -> None:
        # smpp-and-peers.md §4: pause the whole bind; the rejected message goes out first again.
        heapq.heappush(self._retry, outgoing)
        self.throttle_count += 1
        if now - self._last_throttle < self._pause_s * 2:
            self._pause_s = min(self._pause_s * 2, self.settings.max_throttle_pause_s)
        else:
            self._pause_s = self.settings.throttle_pause_s
        self._pause_until = max(self._pause_until, now + self._pause_s)
        if now - self._last_throttle > self._pause_s:  # halve once per throttle episode
            current = self._pace.rate
            if current is None:
                recent = sum(1 for t in self._accepted_times if t > now - 1.0)
                current = max(float(recent), 2.0)
            self._pace.rate = max(current / 2, 1.0)
            self._pace.tokens = 0.0
            self._pace.last = now
            self._emit(Throttled(status, self._pace.rate))
            log.info(
                "SMSC throttled (status %#x): pausing %.2f s, rate %.0f/s",
                status,
                self._pause_s,
                self._pace.rate,
            )
        self._last_throttle = now
        self._last_recover = now

    def _recover_rate(self, now: float) -> None:
        pace = self._pace
        if pace.rate is None or now - self._last_recover < 1.0 or now - self._last_throttle < 1.0:
            return
        self._last_recover = now
        pace.rate *= 1.1
        if self._ceiling is not None and pace.rate >= self._ceiling:
            pace.rate = self._ceiling
        elif self._ceiling is None and pace.rate > 1_000_000:
            pace.rate = None

    def _on_deliver(self, client: smpplib.client.Client, pdu: object) -> None:
        # Answer first (ESME_ROK): the deliver_sm is ours now, whatever it carries.
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client, status=ESME_ROK)
        resp.sequence = pdu.sequence  # type: ignore[attr-defined]
        self._queue_pdu(client, resp)
        short = getattr(pdu, "short_message", None) or b""
        payload = getattr(pdu, "message_payload", None)
        data = bytes(short) if short else (bytes(payload) if payload else b"")
        receipted = getattr(pdu, "receipted_message_id", None)
        state = getattr(pdu, "message_state", None)
        event = DeliverReceived(
            source_addr=_text(getattr(pdu, "source_addr", "")),
            destination_addr=_text(getattr(pdu, "destination_addr", "")),
            esm_class=int(getattr(pdu, "esm_class", 0) or 0),
            protocol_id=int(getattr(pdu, "protocol_id", 0) or 0),
            data_coding=int(getattr(pdu, "data_coding", 0) or 0),
            user_data=data,
            receipted_message_id=_text(receipted).rstrip("\x00") if receipted else None,
            message_state=int(state) if isinstance(state, int) else None,
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "<- deliver_sm seq=%d src=%s esm_class=%#04x pid=%#04x dcs=%#04x ud=%s",
                pdu.sequence,  # type: ignore[attr-defined]
                event.source_addr,
                event.esm_class,
                event.protocol_id,
                event.data_coding,
                data.hex(),
            )
        self._emit(event)

    def _expire(self, now: float) -> None:
        expired = [seq for seq, entry in self._inflight.items() if entry.deadline <= now]
        for seq in expired:
            entry = self._inflight.pop(seq)
            log.warning("submit_sm seq=%d unanswered after %.1f s", seq, self.settings.response_timeout_s)
            self._emit(SubmitUnknown(entry.outgoing.request.token, f"no submit_sm_resp for seq={seq}"))

    def _unbind(self, client: smpplib.client.Client) -> None:
        try:
            sock = client._socket
            pdu = smpplib.smpp.make_pdu("unbind", client=client)
            self._queue_pdu(client, pdu)
            self._write(sock)
            deadline = time.monotonic() + min(self.settings.response_timeout_s, 2.0)
            done = False
            while not done and time.monotonic() < deadline:
                ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                for resp in self._receive(client, sock):
                    if resp.command == "unbind_resp":
                        done = True
                        break
                    if resp.command == "deliver_sm":
                        self._on_deliver(client, resp)
                self._write(sock)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            pass
        self._abandon_inflight("link closed before submit_sm_resp")


__all__ = [
    "DeliverReceived",
    "EsmeEvent",
    "EsmeLink",
    "EsmeSettings",
    "LinkDown",
    "LinkFailed",
    "LinkUp",
    "SubmitAccepted",
    "SubmitRejected",
    "SubmitRequest",
    "SubmitUnknown",
    "Throttled",
]
