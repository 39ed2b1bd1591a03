"""PURE: what a shell tells the campaign engine, and what the engine asks the shell to do.

Events (facts, past tense) come in with ``now``; effects (imperative) go out in the order the shell
must perform them: a :class:`~ota_server.engine.records.Commit` first, then the :class:`Submit` and
:class:`Acknowledge` effects that depend on it (house-style §2.1; docs/campaigns.md §6).

Glossary: bind one ESME transceiver session (index into ``[pacing] binds``); token the engine's
handle for one SMS segment, given back in every answer about it; handle the shell's handle for one
deliver_sm, acknowledged only once what it carried is durable.

Immutable records all: the per-message ones (:class:`SubmitAnswered`, :class:`SubmitUnanswered`,
:class:`DeliverArrived`, :class:`Submit`) are NamedTuples, built per SMS (a frozen dataclass sets each
field through ``object.__setattr__``); the rare ones are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ota_protocols.smpp.pdu_codec import SubmitSm
from ota_server.engine.records import Commit

__all__ = [
    "Acknowledge",
    "Cancel",
    "DeliverArrived",
    "Effect",
    "EngineEvent",
    "LinkDown",
    "LinkUp",
    "Pause",
    "Resume",
    "Submit",
    "SubmitAnswered",
    "SubmitUnanswered",
]

Token = tuple[int, int, int]  # (job slot, CNTR, segment)


@dataclass(frozen=True, slots=True)
class LinkUp:
    bind: int


@dataclass(frozen=True, slots=True)
class LinkDown:
    bind: int
    unsent: tuple[object, ...] = ()  # tokens handed to the link but never written


class SubmitAnswered(NamedTuple):
    """A submit_sm_resp: ``status`` 0 = taken (SMPP 3.4 §4.4.2), else refused or throttled."""

    token: object
    status: int
    message_id: str = ""


class SubmitUnanswered(NamedTuple):
    """Written, but no submit_sm_resp (timeout or link lost): the SMSC may have taken it."""

    token: object
    reason: str


class DeliverArrived(NamedTuple):
    handle: object
    source_addr: str
    esm_class: int
    user_data: bytes
    receipted_message_id: str | None = None
    message_state: int | None = None
    relayed: bool = False  # from the shared store's inbox (another worker received it): never forwarded again


@dataclass(frozen=True, slots=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


EngineEvent = LinkUp | LinkDown | SubmitAnswered | SubmitUnanswered | DeliverArrived | Pause | Resume | Cancel


class Submit(NamedTuple):
    bind: int
    token: Token
    pdu: SubmitSm


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """deliver_sm_resp ESME_ROK for these handles (SMPP 3.4 §4.6.2), after the commit before it."""

    handles: tuple[object, ...]


Effect = Commit | Submit | Acknowledge
