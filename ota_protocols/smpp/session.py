"""One SMPP 3.4 connection as a sans-I/O state machine, SMSC or ESME side (§2.2-§2.4, §3).

Theory of operation.  States (§2.2): OPEN (connected, not bound), BOUND_TX,
BOUND_RX, BOUND_TRX, UNBINDING (we sent unbind) and CLOSED.  Bytes in
(``receive_data``) are framed (§3.2), decoded and checked against two tables:
which requests each role accepts from its peer in which states (§2.3, Table
2-1), and which it may send.  What the session can answer alone it answers:
enquire_link in any state (§4.11), unbind (§4.2, then CLOSED), a request in
the wrong state (ESME_RINVBNDSTS, unbind before any bind included), a second
bind (ESME_RALYBND), an unknown or role-foreign command_id (generic_nack
ESME_RINVCMDID, §3.3), a malformed PDU (generic_nack for a bad header, else
the request's *_resp carrying the decoder's status).  Everything else becomes
an event for the shell: a bind to accept or reject (SMSC), a submit_sm or
deliver_sm to act on, a response matched to its request by sequence_number
(§3.2), a response timeout.  Requests we send get fresh sequence numbers
1..0x7FFFFFFF (wrapping, §3.2) and a deadline.

The §7.2 timers are optional: enquire_link after a quiet interval
(enquire_link_timer), close when not bound in time after the connection opened
(session_init_timer), unbind after nothing was received for too long
(inactivity_timer).  Until bound, PDUs are limited to ``max_unbound_pdu_length``
octets, checked on the command_length, so an unauthenticated peer cannot make
the framer hold a large body.  Time only enters as ``now``; the shell pulls
``next_deadline()`` and calls ``handle_deadline(now)`` when it passes.  Once
CLOSED the session ignores input and calls that would send, so shell races are
harmless; the shell flushes ``data_to_send()`` and closes the socket.

Glossary: ESME external short message entity (OTA platform); SMSC short
message service centre; TX/RX/TRX transmitter/receiver/transceiver bind;
PDU protocol data unit; seq sequence_number.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import NamedTuple

from ota_protocols.errors import LocalProtocolViolation
from ota_protocols.smpp.command_status import RESPONSE_BIT, CommandId, CommandStatus, command_name
from ota_protocols.smpp.events import (
    BindCompleted,
    BindRejected,
    BindRequested,
    ConnectionShouldClose,
    Event,
    PduReceived,
    ProtocolError,
    ResponseReceived,
    ResponseTimedOut,
    SessionTimerExpired,
    Unbound,
)
from ota_protocols.smpp.framing import DEFAULT_MAX_PDU_LENGTH, FramingBroken, PduFramer
from ota_protocols.smpp.pdu_codec import (
    SMPP_VERSION_34,
    Bind,
    BindKind,
    BindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MalformedPdu,
    Pdu,
    Tag,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
    error_response,
)

__all__ = ["MAX_SEQUENCE_NUMBER", "Role", "SessionState", "SmppSession"]

# SMPP 3.4 §3.2: sequence_number runs 0x00000001..0x7FFFFFFF.
MAX_SEQUENCE_NUMBER = 0x7FFFFFFF


class Role(Enum):
    SMSC = "smsc"
    ESME = "esme"


class SessionState(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


_S = SessionState
_BOUND = frozenset({_S.BOUND_TX, _S.BOUND_RX, _S.BOUND_TRX})
_SENDS_SM = frozenset({_S.BOUND_TX, _S.BOUND_TRX})  # §2.3: submit_sm needs a TX or TRX bind
_TAKES_SM = frozenset({_S.BOUND_RX, _S.BOUND_TRX})  # §2.3: deliver_sm needs an RX or TRX bind
_OPEN = frozenset({_S.OPEN})
_BOUND_STATE = {
    BindKind.TRANSMITTER: _S.BOUND_TX,
    BindKind.RECEIVER: _S.BOUND_RX,
    BindKind.TRANSCEIVER: _S.BOUND_TRX,
}
_BINDS = (CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER)

# SMPP 3.4 §2.3 (Table 2-1): requests a role takes from its peer, and the states in
# which they are served.  enquire_link and unbind are handled before this table.
_ACCEPTS: dict[Role, dict[int, frozenset[SessionState]]] = {
    Role.SMSC: {CommandId.SUBMIT_SM: _SENDS_SM, **{b: _OPEN for b in _BINDS}},
    Role.ESME: {CommandId.DELIVER_SM: _TAKES_SM},
}
# ... and requests a role may originate, with the states allowing them.
_MAY_SEND: dict[Role, dict[int, frozenset[SessionState]]] = {
    Role.SMSC: {
        CommandId.DELIVER_SM: _TAKES_SM,
        CommandId.ENQUIRE_LINK: _BOUND,
        CommandId.UNBIND: _BOUND,
    },
    Role.ESME: {
        CommandId.SUBMIT_SM: _SENDS_SM,
        CommandId.ENQUIRE_LINK: _BOUND,
        CommandId.UNBIND: _BOUND,
        **{b: _OPEN for b in _BINDS},
    },
}
# §3.3: generic_nack answers a PDU whose header is unusable.
_HEADER_STATUSES = frozenset({CommandStatus.ESME_RINVCMDLEN, CommandStatus.ESME_RINVCMDID})


class _Outstanding(NamedTuple):
    request: Pdu
    deadline: float
    internal: bool  # a keepalive the session sent itself


class SmppSession:
    """Bytes and ``now`` in; events, bytes and one deadline out.  See the module docstring."""

    # A server holds one per connection, hostile ones included: no per-instance dict.
    __slots__ = (
        "_bind_in_flight",
        "_events",
        "_framer",
        "_keepalive_seq",
        "_last_activity",
        "_next_seq",
        "_opened_at",
        "_out",
        "_outstanding",
        "_pending_bind",
        "_state",
        "bound_kind",
        "enquire_link_interval_s",
        "inactivity_timeout_s",
        "max_pdu_length",
        "response_timeout_s",
        "role",
        "session_init_timeout_s",
        "their_system_id",
    )

    def __init__(
        self,
        role: Role,
        *,
        response_timeout_s: float = 30.0,
        enquire_link_interval_s: float | None = None,
        max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
        first_sequence_number: int = 1,
        session_init_timeout_s: float | None = None,
        inactivity_timeout_s: float | None = None,
        max_unbound_pdu_length: int | None = None,
        now: float = 0.0,
    ) -> None:
        if not 1 <= first_sequence_number <= MAX_SEQUENCE_NUMBER:
            raise ValueError(f"first_sequence_number {first_sequence_number} outside 1..0x7FFFFFFF")
        self.role = role
        self.response_timeout_s = response_timeout_s
        self.enquire_link_interval_s = enquire_link_interval_s
        self.session_init_timeout_s = session_init_timeout_s
        self.inactivity_timeout_s = inactivity_timeout_s
        self.max_pdu_length = max_pdu_length
        # Before a bind only bind_*, enquire_link, unbind and generic_nack make sense, all short: a
        # peer that has not authenticated cannot make us buffer a 64 KiB body (house-style §2.3).
        unbound_max = max_pdu_length if max_unbound_pdu_length is None else max_unbound_pdu_length
        self._framer = PduFramer(max_pdu_length=min(max_pdu_length, unbound_max))
        self._opened_at = now
        self._state = SessionState.OPEN
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._outstanding: dict[int, _Outstanding] = {}
        self._next_seq = first_sequence_number
        self._pending_bind: Bind | None = None  # SMSC: bind awaiting the shell's answer
        self._bind_in_flight: Bind | None = None  # ESME: our bind awaiting bind_resp
        self._keepalive_seq: int | None = None
        self._last_activity = now
        self.bound_kind: BindKind | None = None
        self.their_system_id: str | None = None

    # ------------------------------------------------------------------ inspection

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def is_closed(self) -> bool:
        return self._state is SessionState.CLOSED

    @property
    def outstanding_requests(self) -> tuple[Pdu, ...]:
        """Requests sent and not yet answered, oldest first."""
        return tuple(o.request for o in self._outstanding.values())

    def may_send(self, command_id: int) -> bool:
        """Whether a request with ``command_id`` may go out now (responses always may, until CLOSED)."""
        if self._state is SessionState.CLOSED:
            return False
        if command_id & RESPONSE_BIT:
            return True
        allowed = _MAY_SEND[self.role].get(command_id)
        if allowed is None or self._state not in allowed:
            return False
        return not (command_id in _BINDS and self._bind_in_flight is not None)

    # ------------------------------------------------------------------ shell -> session

    def events(self) -> list[Event]:
        """Events since the last call, in order."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket, since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket."""
        if self._state is SessionState.CLOSED or not data:
            return
        self._last_activity = now
        try:
            frames = self._framer.feed(data)
        except FramingBroken as exc:
            for raw in exc.complete:
                self._on_frame(raw, now)
            if self._state is SessionState.CLOSED:
                return
            # §3.3: generic_nack for an invalid command_length; no later boundary can be trusted.
            self._queue(
                GenericNack(sequence_number=exc.sequence_number or 0, command_status=exc.command_status)
            )
            detail = str(exc)
            if self._state is SessionState.OPEN and self._framer.max_pdu_length < self.max_pdu_length:
                detail += " before bind"
            self._events.append(ProtocolError(exc.command_status, detail))
            self._close(f"framing broken: {detail}")
            return
        for raw in frames:
            if self._state is SessionState.CLOSED:
                return
            self._on_frame(raw, now)

    def send(self, pdu: Pdu, now: float) -> Pdu | None:
        """Send ``pdu``; returns it as sent (a request with sequence_number 0 gets a fresh one).

        Raises ``LocalProtocolViolation`` when the role or state forbids the
        request.  Ignored (returns ``None``) once CLOSED.
        """
        if self._state is SessionState.CLOSED:
            return None
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            if isinstance(pdu, BindResp):
                self._answer_bind(pdu, now)
            else:
                self._queue(pdu)
            return pdu
        if not self.may_send(cid):
            raise LocalProtocolViolation(
                f"{self.role.name} may not send {command_name(cid)} "
                f"in state {self._state.name} (SMPP 3.4 §2.3)"
            )
        return self._send_request(pdu, now, internal=False)

    def bind(
        self,
        kind: BindKind,
        system_id: str,
        password: str,
        *,
        now: float,
        system_type: str = "",
        addr_ton: int = 0,
        addr_npi: int = 0,
        address_range: str = "",
    ) -> Bind | None:
        """ESME role: send bind_* (§4.1); ``BindCompleted`` or ``BindRejected`` follows."""
        if self.role is not Role.ESME:
            raise LocalProtocolViolation("only an ESME binds (SMPP 3.4 §2.2)")
        pdu = Bind(
            kind=kind,
            system_id=system_id,
            password=password,
            system_type=system_type,
            addr_ton=addr_ton,
            addr_npi=addr_npi,
            address_range=address_range,
        )
        sent = self.send(pdu, now)
        return sent if isinstance(sent, Bind) else None

    def accept_bind(self, system_id: str, *, now: float | None = None) -> None:
        """SMSC role: answer the pending bind with ESME_ROK and our ``system_id`` (§4.1.2)."""
        # §5.3.2.25: tell the ESME which version we speak.
        tlvs = ((Tag.SC_INTERFACE_VERSION, bytes((SMPP_VERSION_34,))),)
        self._answer_pending_bind(CommandStatus.ESME_ROK, system_id, tlvs, now)

    def reject_bind(self, command_status: int, *, system_id: str = "") -> None:
        """SMSC role: refuse the pending bind (ESME_RBINDFAIL, ESME_RINVPASWD, ...)."""
        if command_status == CommandStatus.ESME_ROK:
            raise LocalProtocolViolation("reject_bind needs an error status")
        self._answer_pending_bind(command_status, system_id, (), None)

    def _answer_pending_bind(
        self, command_status: int, system_id: str, tlvs: tuple[tuple[int, bytes], ...], now: float | None
    ) -> None:
        pending = self._require_pending_bind()
        if pending is None:
            return
        resp = BindResp(
            kind=pending.kind,
            sequence_number=pending.sequence_number,
            command_status=command_status,
            system_id=system_id,
            tlvs=tlvs,
        )
        self._answer_bind(resp, now)

    def next_deadline(self) -> float | None:
        """When ``handle_deadline`` must next be called, or ``None``."""
        if self._state is SessionState.CLOSED:
            return None
        deadline = None
        if self._outstanding:
            # Same timeout for every request and a monotonic ``now``: the oldest expires first.
            deadline = next(iter(self._outstanding.values())).deadline
        for timer in (self._keepalive_due(), self._session_init_due(), self._inactivity_due()):
            if timer is not None and (deadline is None or timer < deadline):
                deadline = timer
        return deadline

    def handle_deadline(self, now: float) -> None:
        """Expire unanswered requests and send a keepalive when due."""
        if self._state is SessionState.CLOSED:
            return
        expired = []
        for seq, entry in self._outstanding.items():
            if entry.deadline > now:
                break
            expired.append(seq)
        for seq in expired:
            entry = self._outstanding.pop(seq)
            self._events.append(ResponseTimedOut(seq, entry.request))
            request = entry.request
            if entry.internal:
                self._keepalive_seq = None
                self._close(f"enquire_link seq={seq} unanswered: link dead")
                return
            if isinstance(request, Bind):
                self._bind_in_flight = None
            elif isinstance(request, Unbind):
                self._close(f"unbind seq={seq} unanswered")
                return
        init = self._session_init_due()
        if init is not None and init <= now:
            # SMPP 3.4 §7.2 session_init_timer: no bind within the time allowed after the
            # connection opened -> the network connection is terminated (no PDU is sent).
            self._events.append(SessionTimerExpired("session_init", now - self._opened_at))
            self._close(
                f"session_init_timer: not bound within {self.session_init_timeout_s:g} s (SMPP 3.4 §7.2)"
            )
            return
        inactive = self._inactivity_due()
        if inactive is not None and inactive <= now:
            # SMPP 3.4 §7.2 inactivity_timer: nothing received for that long; the entity "may
            # assume that the session is no longer active" and either closes it or unbinds: we
            # unbind, and the response timer closes a peer that does not answer.
            self._events.append(SessionTimerExpired("inactivity", now - self._last_activity))
            self._send_request(Unbind(), now, internal=False)
            return
        keepalive = self._keepalive_due()
        if keepalive is not None and keepalive <= now:
            # SMPP 3.4 §7.2 enquire_link_timer: interrogate a quiet peer.
            sent = self._send_request(EnquireLink(), now, internal=True)
            self._keepalive_seq = sent.sequence_number

    # ------------------------------------------------------------------ internals

    def _queue(self, pdu: Pdu) -> None:
        self._out.append(encode_pdu(pdu))

    def _close(self, reason: str | None) -> None:
        self._state = SessionState.CLOSED
        self._pending_bind = None
        self._bind_in_flight = None
        if reason is not None:
            self._events.append(ConnectionShouldClose(reason))

    def _allocate_sequence(self) -> int:
        while True:
            seq = self._next_seq
            # §3.2: wrap from 0x7FFFFFFF back to 1; skip numbers still awaiting a response.
            self._next_seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
            if seq not in self._outstanding:
                return seq

    def _send_request(self, pdu: Pdu, now: float, *, internal: bool) -> Pdu:
        seq = pdu.sequence_number
        if seq == 0:
            pdu = dataclasses.replace(pdu, sequence_number=self._allocate_sequence())  # type: ignore[type-var]
        elif seq in self._outstanding:
            raise LocalProtocolViolation(f"sequence_number {seq} is still awaiting its response")
        self._queue(pdu)
        self._outstanding[pdu.sequence_number] = _Outstanding(pdu, now + self.response_timeout_s, internal)
        if isinstance(pdu, Bind):
            self._bind_in_flight = pdu
        elif isinstance(pdu, Unbind):
            self._state = SessionState.UNBINDING
        return pdu

    def _require_pending_bind(self) -> Bind | None:
        if self._state is SessionState.CLOSED:
            return None
        if self.role is not Role.SMSC or self._pending_bind is None:
            raise LocalProtocolViolation("no bind is waiting for an answer")
        return self._pending_bind

    def _answer_bind(self, resp: BindResp, now: float | None) -> None:
        pending = self._pending_bind
        if pending is None or resp.sequence_number != pending.sequence_number:
            # A bind_resp the state machine did not ask for (e.g. crafted by a test): send as is.
            self._queue(resp)
            return
        self._pending_bind = None
        self._queue(resp)
        if resp.command_status == CommandStatus.ESME_ROK:
            self._bound(pending.kind)
            self.their_system_id = pending.system_id
            if now is not None:
                self._last_activity = now
            self._events.append(BindCompleted(pending.kind, pending.system_id))

    def _session_init_due(self) -> float | None:
        timeout = self.session_init_timeout_s
        if timeout is None or self._state is not SessionState.OPEN:
            return None
        return self._opened_at + timeout

    def _inactivity_due(self) -> float | None:
        timeout = self.inactivity_timeout_s
        if timeout is None or self._state not in _BOUND:
            return None
        return self._last_activity + timeout

    def _bound(self, kind: BindKind) -> None:
        self._state = _BOUND_STATE[kind]
        self.bound_kind = kind
        self._framer.max_pdu_length = self.max_pdu_length  # authenticated: the full PDU size

    def _keepalive_due(self) -> float | None:
        interval = self.enquire_link_interval_s
        if interval is None or self._keepalive_seq is not None or self._state not in _BOUND:
            return None
        return self._last_activity + interval

    def _on_frame(self, raw: bytes, now: float) -> None:
        try:
            pdu = decode_pdu(raw)
        except MalformedPdu as exc:
            self._on_malformed(exc)
            return
        if pdu.command_id & RESPONSE_BIT:
            self._on_response(pdu)
        else:
            self._on_request(pdu)

    def _on_malformed(self, exc: MalformedPdu) -> None:
        self._events.append(ProtocolError(exc.command_status, str(exc)))
        cid = exc.command_id
        if cid is not None and cid & RESPONSE_BIT:
            return  # §3.3: responses are never answered; the request will time out.
        seq = exc.sequence_number or 0
        status = exc.command_status
        if cid is None or status in _HEADER_STATUSES:
            self._queue(GenericNack(sequence_number=seq, command_status=status))
        elif cid not in _ACCEPTS[self.role] and cid not in (CommandId.ENQUIRE_LINK, CommandId.UNBIND):
            self._queue(GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDID))
        else:
            self._queue(error_response(cid, seq, status))

    def _refuse(self, pdu: Pdu, answer: Pdu, why: str) -> None:
        status = getattr(answer, "command_status", CommandStatus.ESME_RSYSERR)
        self._queue(answer)
        self._events.append(
            ProtocolError(
                status,
                f"{command_name(pdu.command_id)} seq={pdu.sequence_number} in {self._state.name}: {why}",
            )
        )

    def _on_request(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        seq = pdu.sequence_number
        if cid == CommandId.ENQUIRE_LINK:
            self._queue(EnquireLinkResp(sequence_number=seq))  # §4.11: answered in any state
            return
        if cid == CommandId.UNBIND:
            if self._state is SessionState.OPEN:
                # §2.3 (Table 2-1): unbind is an operation of a bound session; before a bind
                # there is nothing to unbind -> ESME_RINVBNDSTS, and the connection stays open.
                refusal = UnbindResp(sequence_number=seq, command_status=CommandStatus.ESME_RINVBNDSTS)
                self._refuse(pdu, refusal, "not bound")
                return
            # §4.2: answer, then the session ends whichever side asked.
            self._queue(UnbindResp(sequence_number=seq))
            self._close(None)
            self._events.append(Unbound(by_peer=True))
            return
        allowed = _ACCEPTS[self.role].get(cid)
        if allowed is None:
            # §3.3: unknown to us, or a command our role never takes (e.g. deliver_sm at the SMSC).
            nack = GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDID)
            self._refuse(pdu, nack, f"not accepted by an {self.role.name}")
            return
        if isinstance(pdu, Bind):
            if self._state is not SessionState.OPEN or self._pending_bind is not None:
                # §4.1: one bind per session.
                refusal = error_response(cid, seq, CommandStatus.ESME_RALYBND)
                self._refuse(pdu, refusal, "already bound or binding")
                return
            self._pending_bind = pdu
            self._events.append(BindRequested(pdu))
            return
        if self._state not in allowed:
            # §2.3: e.g. submit_sm before binding or on a receiver-only bind.
            refusal = error_response(cid, seq, CommandStatus.ESME_RINVBNDSTS)
            self._refuse(pdu, refusal, "wrong bind state")
            return
        self._events.append(PduReceived(pdu))

    def _on_response(self, pdu: Pdu) -> None:
        seq = pdu.sequence_number
        entry = self._outstanding.get(seq)
        if entry is None or not (
            pdu.command_id == entry.request.command_id | RESPONSE_BIT or isinstance(pdu, GenericNack)
        ):
            what = "no request with that sequence_number" if entry is None else "wrong response type"
            self._events.append(
                ProtocolError(
                    CommandStatus.ESME_RUNKNOWNERR,
                    f"unexpected {command_name(pdu.command_id)} seq={seq}: {what}",
                )
            )
            return
        del self._outstanding[seq]
        request = entry.request
        status = getattr(pdu, "command_status", CommandStatus.ESME_ROK)
        if entry.internal:
            self._keepalive_seq = None
            return
        self._events.append(ResponseReceived(request, pdu))
        if isinstance(request, Bind):
            self._bind_in_flight = None
            if status == CommandStatus.ESME_ROK and isinstance(pdu, BindResp):
                self._bound(request.kind)
                self.their_system_id = pdu.system_id
                self._events.append(BindCompleted(request.kind, pdu.system_id))
            else:
                self._events.append(BindRejected(status))
        elif isinstance(request, Unbind):
            self._close(None)
            self._events.append(Unbound(by_peer=False))
