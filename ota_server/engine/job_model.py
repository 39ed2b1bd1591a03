"""PURE: the job's data and vocabulary: phases, the Job record, its events and commands.

A job is the actions one campaign step sends to one (card, TAR) (patent WO 00/07153, claim 1c). The
transitions that move it live in :mod:`ota_server.engine.job_machine` (PoRs, timers, the SMSC's
answers) and :mod:`ota_server.engine.card_messages` (claims 7-9); this module holds what both share.

Glossary: CA the confirmed action counter of (card, TAR); n the actions of the job; CNTR the 03.48
replay counter; PoR proof of receipt; MO mobile originated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, NamedTuple

from ota_protocols.errors import LocalProtocolViolation
from ota_protocols.secured_packet.response_packet import ResponseStatus
from ota_server.engine.card_reports import CardReport
from ota_server.engine.por_verification import PorReport

# TS 102 225 §5.2: after these no script ran. 03 / 04: the card's counter refuses the campaign's
# packets for good. The others are what a corrupted packet earns too, so they are retried through
# a fence query until max_attempts refusals in a row show a configuration problem.
FAILING_STATUSES = frozenset({0x03, 0x04})
REFUSED_STATUSES = frozenset({0x01, 0x05, 0x06, 0x09, 0x0A})
WAITING_STATUSES = frozenset({ResponseStatus.MORE_TIME_NEEDED, ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT})

# Report statuses that are not a PoR status (docs/campaigns.md §3 lists every one with its meaning).
STATUS_TIMEOUT = "no PoR in time: status query (never a blind resend)"
STATUS_FENCE_DONE = "status query: the script ran, its PoR was lost (nothing resent)"
STATUS_FENCE_RESEND = "status query: the last actions did not run (those resent)"
STATUS_SMSC_REFUSED = "SMSC refused the message: sent again"


class Phase(Enum):
    NEW = "new"
    SENDING = "sending"  # decided to send; the engine reserves a CNTR, then steps Sent
    WAITING = "waiting"  # a message is reserved or out; its PoR is awaited (timer from acceptance)
    BACKOFF = "backoff"  # waiting before the next message
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"

    __hash__ = object.__hash__  # members are singletons: identity hash in C (Enum hashes its name in Python)

    terminal: bool  # DONE, PARTIAL, FAILED: set on each member below (a plain attribute, read per event)


_TERMINAL = frozenset((Phase.DONE, Phase.PARTIAL, Phase.FAILED))
for _phase in Phase:
    _phase.terminal = _phase in _TERMINAL
del _phase


class MessageKind(Enum):
    SCRIPT = "script"
    QUERY = "query"


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    por_timeout_s: float = 5.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def backoff(self, unanswered: int) -> float:
        return min(self.backoff_s * (2 ** max(unanswered - 1, 0)), self.max_backoff_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    n: int  # actions of the campaign for this (card, TAR)
    phase: Phase = Phase.NEW
    applied: int = 0  # actions confirmed run: always the first ``applied`` ones
    confirmed: int | None = None  # CA; None until first contact
    start_counter: int | None = None  # CA when this campaign first learned it
    next_kind: MessageKind | None = None
    script_cntr: int | None = None  # the unresolved script, if any
    script_count: int = 0
    query_cntrs: tuple[int, ...] = ()  # queries sent about the unresolved round
    deadline: float | None = None  # WAITING: None until the SMSC accepted the message
    attempts: int = 0  # scripts sent (a script the SMSC refused is not an attempt)
    queries: int = 0
    resent_actions: int = 0
    unanswered: int = 0  # consecutive messages without a usable PoR
    counter_path: str | None = None  # "por" (script PoR) or "query" (status query PoR)
    mismatches: int = 0
    last_sw: int | None = None
    reason: str = ""
    statuses: tuple[str, ...] = ()
    # Card-originated reports (claims 7-9) and the message-2 answers they are owed.
    mo_reports: int = 0  # authenticated, fresh card messages seen for this (card, TAR)
    mo_counter: int | None = None  # the action counter the last of them carried
    replies: tuple[int, ...] = ()  # transaction requests (sequences) not yet proven answered
    reply_carriers: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (CNTR, sequences it carried)
    replies_sent: int = 0  # TRANSACTION REPLY commands sent (each copy counts)

    @property
    def pending_first(self) -> int:
        return self.applied

    @property
    def outstanding_cntrs(self) -> tuple[int, ...]:
        head = () if self.script_cntr is None else (self.script_cntr,)
        return head + self.query_cntrs


# job_replace builds a Job without __init__: only sound while Job validates nothing on construction.
if "__post_init__" in Job.__dict__:  # pragma: no cover - a guard for whoever adds one
    raise LocalProtocolViolation(
        "Job gained __post_init__: job_replace would skip it; use dataclasses.replace"
    )
_JOB_FIELDS = tuple(f.name for f in fields(Job))
_JOB_FIELD_SET = frozenset(_JOB_FIELDS)


class _JobDraft:
    """Job's slot layout without Job's frozen ``__setattr__``: :func:`job_replace` fills one with
    plain attribute stores, then makes it a Job (``__class__`` assignment; the layouts are equal, so
    Python allows it). Nothing else ever holds a draft."""

    __slots__ = Job.__slots__


def _job_replace_source() -> str:
    copy = "\n".join(f"    new.{name} = job.{name}" for name in _JOB_FIELDS)
    return (
        "def job_replace(job, /, **changes):\n"
        "    new = _new(_JobDraft)\n"
        f"{copy}\n"
        "    for name, value in changes.items():\n"
        "        if name not in _FIELDS:\n"
        "            raise TypeError(f'Job has no field {name!r}')\n"
        "        _setattr(new, name, value)\n"
        "    new.__class__ = _Job\n"
        "    return new\n"
    )


_namespace: dict[str, Any] = {
    "_new": object.__new__,
    "_JobDraft": _JobDraft,
    "_Job": Job,
    "_FIELDS": _JOB_FIELD_SET,
    "_setattr": setattr,
}
exec(_job_replace_source(), _namespace)  # generated from Job's own field list, as dataclasses does
job_replace: Callable[..., Job] = _namespace["job_replace"]
job_replace.__doc__ = """``dataclasses.replace(job, **changes)`` for the hot path: the same new Job (equal
fields, same type), copied slot by slot (one line per field, generated from ``fields(Job)``) instead of the
generic replace + frozen ``__init__`` (about 3x cheaper than descriptor-by-descriptor)."""
job_replace.__module__ = __name__
del _namespace


# Events --------------------------------------------------------------------
# Immutable all. The ones every transaction builds (Sent, Accepted, PorArrived; Finish below) are
# NamedTuples: a frozen dataclass sets each field through object.__setattr__.


@dataclass(frozen=True, slots=True)
class Begin:
    pass


class Sent(NamedTuple):
    """The engine reserved ``cntr`` for the message the job asked for (durable before it leaves)."""

    kind: MessageKind
    cntr: int


class Accepted(NamedTuple):
    """The SMSC took the message of ``cntr`` (submit_sm_resp ESME_ROK), or may have (no answer):
    the attempt and its PoR timer start now (docs/campaigns.md §6.2)."""

    cntr: int


class PorArrived(NamedTuple):
    report: PorReport


@dataclass(frozen=True, slots=True)
class SubmitRefused:
    """The SMSC refused the submit_sm of this CNTR with an error status (SMPP 3.4 §4.4.2): the
    message never left, so its script cannot run (throttling is the pacer's, never this)."""

    cntr: int
    detail: str


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    pass


@dataclass(frozen=True, slots=True)
class CardReportArrived:
    """An authenticated, fresh (MO CNTR higher) card message for this job's (card, TAR)."""

    report: CardReport


Event = Begin | Sent | Accepted | PorArrived | SubmitRefused | DeadlinePassed | CardReportArrived


# Commands ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendScript:
    """Send actions[first : first + count] under a fresh CNTR."""

    first: int
    count: int


@dataclass(frozen=True, slots=True)
class SendQuery:
    """Send an empty script (status query) under a fresh CNTR."""


@dataclass(frozen=True, slots=True)
class SendReply:
    """Message 2 on its own, for a job that will send nothing more: a command packet whose script
    is the TRANSACTION REPLY of each sequence (no counted action). Not tracked by the job."""

    sequences: tuple[int, ...]


class Finish(NamedTuple):
    phase: Phase
    reason: str


Command = SendScript | SendQuery | SendReply | Finish


class Transition(NamedTuple):
    """What one step gives the engine (immutable; a NamedTuple, built per event: cheaper than a frozen
    dataclass, whose ``__init__`` sets each field through ``object.__setattr__``)."""

    job: Job
    commands: tuple[Command, ...] = ()
    note: str | None = None  # for the audit history; None: nothing worth recording
    changed: bool = True
    # False: the change need not survive a crash (a timer started: a restarted runner fences with a
    # status query anyway), so it adds no row to the next commit.
    durable: bool = True


def go_send(job: Job, kind: MessageKind, note: str | None = None, **changes: Any) -> Transition:
    """SENDING the ``kind`` next; ``changes``: other fields the same step sets (one new Job, not two)."""
    job = job_replace(job, **changes, phase=Phase.SENDING, next_kind=kind, deadline=None)
    command: Command = (
        SendScript(job.applied, job.n - job.applied) if kind is MessageKind.SCRIPT else SendQuery()
    )
    return Transition(job, (command,), note)


def go_finish(job: Job, phase: Phase, reason: str, **changes: Any) -> Transition:
    """End in ``phase``; ``changes``: other fields the same step sets (one new Job, not two)."""
    commands: tuple[Command, ...] = (Finish(phase, reason),)
    replies = changes.get("replies", job.replies)
    if replies:
        # Message 2 is still owed (never proven received): send it on its own, once more.
        commands = (SendReply(replies), *commands)
        sent = changes.get("replies_sent", job.replies_sent)
        changes.update(replies=(), reply_carriers=(), replies_sent=sent + len(replies))
    job = job_replace(job, **changes, phase=phase, reason=reason, deadline=None, next_kind=None)
    return Transition(job, commands, reason)


def unchanged(job: Job, note: str | None = None) -> Transition:
    return Transition(job, (), note, changed=False)


def with_status(job: Job, text: str) -> Job:
    # Keep the report short: each distinct status once, in order of first appearance.
    return job if text in job.statuses else job_replace(job, statuses=(*job.statuses, text))


def statuses_with(statuses: tuple[str, ...], *texts: str) -> tuple[str, ...]:
    """``statuses`` after :func:`with_status` of each text in turn (for a step that builds one Job)."""
    for text in texts:
        if text not in statuses:
            statuses = (*statuses, text)
    return statuses
