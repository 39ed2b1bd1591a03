"""Events an :class:`~ota_protocols.smpp.session.SmppSession` reports (SMPP 3.4 §2, §3).

Facts, named in the past tense; the shell reads them from ``session.events()``.

Glossary: PDU protocol data unit; ESME the OTA platform side; SMSC the emulator side.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.smpp.pdu_codec import Bind, BindKind, Pdu

__all__ = [
    "BindCompleted",
    "BindRejected",
    "BindRequested",
    "ConnectionShouldClose",
    "Event",
    "PduReceived",
    "ProtocolError",
    "ResponseReceived",
    "ResponseTimedOut",
    "SessionTimerExpired",
    "Unbound",
]


@dataclass(frozen=True, slots=True)
class PduReceived:
    """A request for the shell to act on and answer (submit_sm at the SMSC, deliver_sm at the ESME)."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class BindRequested:
    """SMSC role: a bind_* arrived; answer with ``accept_bind`` or ``reject_bind``."""

    pdu: Bind


@dataclass(frozen=True, slots=True)
class BindCompleted:
    """The session is bound; ``their_system_id`` is the peer's system_id."""

    kind: BindKind
    their_system_id: str


@dataclass(frozen=True, slots=True)
class BindRejected:
    """ESME role: the bind was answered with an error status (or generic_nack)."""

    command_status: int


@dataclass(frozen=True, slots=True)
class Unbound:
    """unbind/unbind_resp exchanged; the session is CLOSED and the shell closes the socket."""

    by_peer: bool


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response (or generic_nack) matched, by sequence_number, to a request we sent."""

    request: Pdu
    response: Pdu


@dataclass(frozen=True, slots=True)
class ResponseTimedOut:
    """No response to ``pdu`` within the response timeout: its outcome is unknown."""

    sequence_number: int
    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke a rule; ``status`` is what was (or would be) answered."""

    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class SessionTimerExpired:
    """An SMPP 3.4 §7.2 timer ran out: ``timer`` is ``"session_init"`` (not bound in time; a
    ``ConnectionShouldClose`` follows) or ``"inactivity"`` (nothing received for ``elapsed_s``;
    the session has sent unbind)."""

    timer: str
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class ConnectionShouldClose:
    """The session cannot continue (broken framing, dead link); close the socket."""

    reason: str


Event = (
    PduReceived
    | BindRequested
    | BindCompleted
    | BindRejected
    | Unbound
    | ResponseReceived
    | ResponseTimedOut
    | ProtocolError
    | SessionTimerExpired
    | ConnectionShouldClose
)
