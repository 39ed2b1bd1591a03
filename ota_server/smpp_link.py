"""The OTA server's SMPP 3.4 ESME transport: one transceiver bind over smpplib's public API.

Clauses: SMPP 3.4 §2.2 (the ESME connects and binds), §4.1.5 (bind_transceiver), §4.2
(unbind), §4.3 (generic_nack), §4.4 (submit_sm), §4.6 (deliver_sm), §4.11 (enquire_link),
§5.1.3 (command_status), §7.1.1 (relative time); smpp-and-peers.md §2 (smpplib).

A thin, dumb link. It decides nothing about campaigns: no pacing, no window, no throttling
back-off, no retry. The caller hands it ``submit_sm`` (:meth:`EsmeLink.submit_many`), and
it writes them in order as soon as it is bound, and reports what came back (events below).
Every other policy belongs to the campaign engine.

Theory of operation. smpplib is blocking and not thread-safe (smpp-and-peers.md §2.3), so
one thread, ``ota-smpp-link``, owns the ``Client``: it connects, binds, writes and reads;
nothing else touches it. smpplib builds, parses and numbers every PDU and keeps the bind
state (``make_pdu``, ``send_pdu``, ``read_pdu``, in :mod:`ota_server.smpp_connection`;
fields mapped by :mod:`ota_server.smpp_fields`); the socket under it is an
:class:`~ota_server.smpp_stream.SmppStream` (that module says why). Settings, requests and
events are in :mod:`ota_server.smpp_link_events` (pure), re-exported here. The loop side
only appends to two lists under a lock and wakes the thread. One turn of the thread:

1. take what the loop handed over (submits, acknowledgements) under one lock;
2. write the deliver_sm_resp acknowledged (even when closing), then the submits in order;
3. hand the events of the turn to the loop in one ``call_soon_threadsafe`` batch;
4. wait until the socket is readable, the loop wakes the thread, or the next deadline
   (oldest unanswered submit_sm, enquire_link); dispatch the PDUs read.

Connecting: an attempt is TCP connect (``connect_timeout_s``), then bind_transceiver with
``bind_timeout_s`` for its answer; failures are retried with doubling back-off until a bind
succeeds or ``reconnect_window_s`` has passed (from :meth:`EsmeLink.start`, or from the loss
of the link), which ends the link with :class:`LinkFailed`. The reason of every failure is
one line naming the SMSC, e.g. ``SMSC 127.0.0.1:2775: connection refused``.

Outcomes: every token handed to :meth:`EsmeLink.submit_many` is answered exactly once, by
:class:`SubmitAccepted`, :class:`SubmitRejected`, :class:`SubmitUnknown` (written, no
answer) or as one of :attr:`LinkDown.unsent` (never written). A deliver_sm is answered
ESME_ROK only when the caller acknowledges its handle, after its durable commit (§4.6.2);
an unacknowledged one is delivered again by the SMSC on a later bind.

Glossary: ESME external short message entity (us); SMSC short message service centre; PDU
protocol data unit; seq sequence_number; TLV optional parameter; UDH user data header.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from ota_protocols.errors import PeerTimeout, TransportError
from ota_server.smpp_connection import Connection, open_connection
from ota_server.smpp_fields import submit_sm_fields
from ota_server.smpp_link_events import (
    DeliverHandle,
    DeliverReceived,
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
)
from ota_server.smpp_stream import Waker

__all__ = [
    "THREAD_NAME",
    "DeliverHandle",
    "DeliverReceived",
    "EsmeLink",
    "LinkDown",
    "LinkEvent",
    "LinkFailed",
    "LinkSettings",
    "LinkUp",
    "RoundTrips",
    "SubmitAccepted",
    "SubmitRejected",
    "SubmitRequest",
    "SubmitUnknown",
    "relative_validity",
    "status_text",
    "submit_sm_fields",
]

log = logging.getLogger(__name__)

THREAD_NAME = "ota-smpp-link"

_Queued = tuple[object, dict[str, object]]  # (token, smpplib submit_sm keywords)


class EsmeLink:
    """An SMPP transceiver bind run by its own thread; see the module docstring."""

    def __init__(
        self,
        settings: LinkSettings,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[list[LinkEvent]], None],
    ) -> None:
        self.settings = settings
        self._where = f"SMSC {settings.host}:{settings.port}"
        self._loop = loop
        self._on_events = on_events
        self._lock = threading.Lock()
        self._incoming: list[_Queued] = []  # under _lock
        self._acks: list[object] = []  # under _lock
        self._ended: str | None = None  # under _lock: the link has stopped, and why
        self._stopping = threading.Event()
        self._close_budget_s = 5.0
        self._waker = Waker()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._done: asyncio.Future[None] | None = None
        # Owned by the thread.
        self._queue: collections.deque[_Queued] = collections.deque()
        self._events: list[LinkEvent] = []
        self._connections = 0
        self._logged: set[str] = set()
        self.round_trips = RoundTrips()  # submit_sm -> submit_sm_resp, written by the thread
        # deliver_sm read -> its deliver_sm_resp written (how long each holds the SMSC's MO window)
        self.ack_times = RoundTrips()

    # ------------------------------------------------------------------ the loop's side

    def start(self) -> None:
        """Connect and bind in the background; reconnect after a loss (see the module docstring)."""
        if self._done is not None:
            raise RuntimeError("EsmeLink.start() called twice")
        self._done = self._loop.create_future()
        self._thread.start()

    def submit_many(self, requests: Sequence[SubmitRequest]) -> None:
        """Queue submit_sm, written in order once bound: no pacing, no window (the caller's).

        Raises ``ValueError`` (nothing queued) when a request does not fit a submit_sm. Once
        the link has stopped, the tokens come straight back in a :class:`LinkDown`.
        """
        prepared: list[_Queued] = []
        for i, request in enumerate(requests):
            try:
                prepared.append((request.token, submit_sm_fields(request.pdu)))
            except ValueError as exc:
                raise ValueError(f"submit_many: request {i} (token {request.token!r}): {exc}") from None
        if not prepared:
            return
        with self._lock:
            ended = self._ended
            if ended is None:
                self._incoming.extend(prepared)
        if ended is None:
            self._waker.wake()
        else:
            self._hand_over([LinkDown(ended, tuple(token for token, _ in prepared))])

    def acknowledge(self, handles: Sequence[object]) -> None:
        """Answer these deliver_sm with deliver_sm_resp ESME_ROK (SMPP 3.4 §4.6.2).

        A handle from an earlier connection is dropped: the SMSC delivers that one again.
        """
        if not handles:
            return
        with self._lock:
            if self._ended is not None:
                return
            self._acks.extend(handles)
        self._waker.wake()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Unbind (bounded wait for unbind_resp), disconnect, join the thread; idempotent.

        The last events (SubmitUnknown for unanswered submits, LinkDown with the unsent
        tokens) reach ``on_events`` before this returns.
        """
        done = self._done
        if done is None:
            with self._lock:
                self._ended = self._ended or "link closed before it started"
            self._waker.close()
            return
        if not done.done():
            self._close_budget_s = timeout_s
            self._stopping.set()
            self._waker.wake()
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(done)
            except TimeoutError:
                log.warning("%s: link thread still busy after %g s; left behind", self._where, timeout_s)
                return
        self._thread.join(timeout_s)  # it has handed over its last events: a matter of microseconds
        if not self._thread.is_alive():
            self._waker.close()

    def _hand_over(self, batch: list[LinkEvent]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(self._on_events, batch)

    # ------------------------------------------------------------------ the thread

    def _emit(self, event: LinkEvent) -> None:
        self._events.append(event)

    def _flush_events(self) -> None:
        if self._events:
            batch, self._events = self._events, []
            self._hand_over(batch)

    def _take_incoming(self) -> list[object]:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            acks, self._acks = self._acks, []
        self._queue.extend(incoming)
        return acks

    def _run(self) -> None:
        try:
            self._connect_and_serve()
        except Exception as exc:  # a bug: end the link with one line rather than a silent dead thread
            log.debug("%s: internal error", self._where, exc_info=True)
            self._end(LinkFailed(f"{self._where}: internal error in the SMPP link: {exc!r}"))
        finally:
            self._end(None)

    def _connect_and_serve(self) -> None:
        s = self.settings
        window_start = time.monotonic()
        backoff = s.reconnect_backoff_s
        last_failure: str | None = None
        while not self._stopping.is_set():
            deadline = window_start + s.reconnect_window_s
            if time.monotonic() >= deadline:
                reason = last_failure or f"{self._where}: not bound"
                self._end(LinkFailed(f"{reason}; no bind for {s.reconnect_window_s:g} s, giving up"))
                return
            try:
                connection, their = open_connection(
                    s,
                    self._connections + 1,
                    deadline,
                    waker=self._waker,
                    stopping=self._stopping,
                    emit=self._emit,
                    logged=self._logged,
                    round_trips=self.round_trips,
                    ack_times=self.ack_times,
                )
            except TransportError as exc:
                if self._stopping.is_set():
                    return
                cut_short = isinstance(exc, PeerTimeout) and time.monotonic() >= deadline
                if not (cut_short and last_failure):  # a wait cut by the window says less than the last
                    failure = f"{self._where}: {exc}"
                    if failure != last_failure:
                        log.warning("%s; retrying for up to %.1f s", failure, deadline - time.monotonic())
                    last_failure = failure
                self._stopping.wait(max(0.0, min(backoff, deadline - time.monotonic())))
                backoff = min(backoff * 2, s.max_reconnect_backoff_s)
                continue
            self._connections += 1
            backoff, last_failure = s.reconnect_backoff_s, None
            log.info("%s: bound as transceiver %r to %r", self._where, s.system_id, their)
            self._emit(LinkUp(their))
            self._serve(connection)
            window_start = time.monotonic()
            self._stopping.wait(s.reconnect_backoff_s)  # a peer that binds and drops is not hammered

    def _serve(self, connection: Connection) -> None:
        """Run one bound connection until it is lost, the SMSC unbinds, or close()."""
        reason = f"{self._where}: internal error in the SMPP link"  # unless we learn better
        try:
            while True:
                acks = self._take_incoming()
                if acks:  # durable on the caller's side: answered even when closing
                    connection.write_acks(acks)
                if self._stopping.is_set():
                    reason = "link closed"
                    connection.unbind(self._close_budget_s / 2)
                    break
                connection.write_submits(self._queue, time.monotonic())
                self._flush_events()
                # More queued than one turn writes: read what is there and come straight back.
                connection.exchange(time.monotonic() if self._queue else connection.next_deadline())
        except TransportError as exc:
            reason = f"{self._where}: {exc}"
            log.warning("%s", reason)
        finally:
            # Every token gets its answer, whatever ended the connection.
            connection.disconnect()
            connection.abandon(reason)
            self._take_incoming()
            unsent = tuple(token for token, _ in self._queue)
            self._queue.clear()
            self._emit(LinkDown(reason, unsent))
            self._flush_events()

    def _end(self, final: LinkFailed | None) -> None:
        """Once: hand back every token still queued, emit ``final``, let close() return."""
        with self._lock:
            if self._ended is not None:
                return
            reason = final.reason if final is not None else "link closed"
            self._ended = reason
            leftovers, self._incoming, self._acks = self._incoming, [], []
        self._queue.extend(leftovers)
        if self._queue:
            self._emit(LinkDown(reason, tuple(token for token, _ in self._queue)))
            self._queue.clear()
        if final is not None:
            log.error("%s", final.reason)
            self._emit(final)
        self._flush_events()
        done = self._done
        if done is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
