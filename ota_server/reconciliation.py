"""PURE: one job's life, from the first message to done / partial / failed (patent WO 00/07153, claim 1c).

Clauses: TS 102 225 §5.2 and TS 31.115 §4.3 (PoR, statuses, SMS-SUBMIT path 0B),
protocols.md §6.4 (error PoRs: unsecured, CNTR possibly zero), TS 102 226 §5.1.2
(compact response ``NN SW1 SW2``) and §5.2.2 (expanded), docs/action-counter.md
(the ``AC 08 before after`` block ending the PoR's additional data).

Glossary: CA the confirmed action counter of (card, TAR); n the actions of the
unresolved script; x the number of its *last* actions that did not run; CNTR the
03.48 replay counter; SW status word; PoR proof of receipt.

Theory of operation. A job is the actions one campaign sends to one (card, TAR).
:func:`step` takes (job, event, now, policy) and returns a :class:`Transition`:
the new job, the commands for the shell, and an audit note. The shell persists the
new job (group commit) and, for a send, reserves a CNTR *before* the SMS leaves,
then reports it with :class:`Sent`.

States (:class:`Phase`)::

    NEW --Begin--> SENDING --Sent--> WAITING --PoR 00--> DONE | PARTIAL | FAILED
                      ^                 |  \\--PoR 00, transient x > 0--> SENDING (the last x)
                      |            deadline \\--PoR 00 from a query, x > 0--> SENDING (the last x)
                      +--deadline-- BACKOFF <-+   (query next, never a blind resend)

* At most one script per job is unresolved at a time, so one (card, TAR) never has
  two scripts in the air.
* CA unknown (first contact): the first message is a status query (an empty script).
  Its PoR gives CA, and the campaign's script follows.
* PoR status 00 (checksum verified by :func:`verify_por` when SPI2 asks for one):
  reported ``after`` = CA + n: all ran, DONE. CA <= after < CA + n: the last x did not
  run; from a script PoR its SW says why: permanent -> PARTIAL (FAILED if none of the
  job's actions ever ran), transient -> send exactly those x again with a fresh CNTR.
  From a query PoR the SW is unknown (the script or its PoR was lost): send the x
  again (x = 0: the PoR was lost, nothing is resent). ``after`` outside the range:
  counter mismatch, recorded; a script PoR leads to a query, a query PoR to FAILED.
* Timeout: no blind resend. Back off, then send a status query; its PoR decides.
* Other statuses: 0B / 08 keep waiting (deadline renewed); 02 (CNTR low) is a replayed
  copy of a packet, not a failure: keep waiting; 03 and 04 end the job FAILED (the card's
  counter forbids the campaign's packets). 01, 05, 06, 09 and 0A mean no script ran, and a
  radio that corrupts a byte earns them as surely as wrong keys or a wrong TAR do: they are
  resolved by a status query (a fence: an undamaged copy of the packet may still be in
  flight), and after ``max_attempts`` refusals in a row the job ends FAILED naming the
  status. 07 and RFU codes are resolved by a query.
* ``max_attempts`` bounds the scripts sent and the consecutive unanswered messages.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from ota_protocols.action_counter import (
    CardMessage,
    CardMessageKind,
    CounterReport,
    missing_actions,
    split_counter_report,
)
from ota_protocols.apdu.remote_commands import CompactResponse, ExpandedResponse
from ota_protocols.errors import DecodeError, LocalProtocolViolation, SecurityRejection
from ota_protocols.secured_packet.command_packet import (
    CPI_UDH,
    open_command_packet,
    parse_command_header,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponseStatus,
    decode_response_packet,
    status_meaning,
)
from ota_protocols.secured_packet.security_parameters import IntegrityMode, key_index
from ota_server.model import ScriptFormat, Security

# docs/action-counter.md and the brief: SWs that will fail again if resent.
PERMANENT_SWS = frozenset(
    {0x6A82, 0x6A83, 0x6A80, 0x6A88, 0x6981, 0x6986, 0x6985, 0x6B00, 0x6D00, 0x6E00, 0x6700}
)

_SW_MEANINGS = {
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A80: "incorrect data",
    0x6A88: "referenced data not found",
    0x6981: "command incompatible with file structure",
    0x6986: "command not allowed",
    0x6985: "conditions of use not satisfied",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6700: "wrong length",
    0x6F00: "technical problem",
    0x6581: "memory problem",
    0x9300: "toolkit busy",
}

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


def sw_meaning(sw: int) -> str:
    return _SW_MEANINGS.get(sw) or _SW_MEANINGS.get(sw & 0xFF00, "error")


# --------------------------------------------------------------------------- PoR verification


@dataclass(frozen=True, slots=True)
class PorReport:
    """A PoR whose integrity was checked as far as SPI2 allows."""

    tar: bytes
    cntr: int
    status: int
    counter: CounterReport | None  # status 00 only
    sw: int | None  # SW of the last command run (the failing one, if any)
    executed: int | None  # NN: commands run, the failing one included

    @property
    def meaning(self) -> str:
        return status_meaning(self.status)


@dataclass(frozen=True, slots=True)
class RejectedPor:
    """A PoR that cannot be trusted (forged, corrupt, undecodable): treated as lost."""

    tar: bytes
    reason: str


def verify_por(user_data: bytes, security: Security, keys: PacketKeys) -> PorReport | RejectedPor:
    """Decode a PoR TP-UD (``02 71 00`` first) with the job's key set and SPI."""
    tar = user_data[6:9] if len(user_data) >= 9 else b""
    try:
        decoded = decode_response_packet(user_data, security.spi, security.kic, security.kid, keys)
    except DecodeError as exc:
        return RejectedPor(tar, f"undecodable PoR: {exc}")
    if decoded.checksum_valid is False:
        return RejectedPor(decoded.tar, "PoR checksum wrong: forged or corrupt")
    if decoded.status != ResponseStatus.POR_OK:
        # protocols.md §6.4: error PoRs are read whatever SPI2 said; no script ran.
        return PorReport(decoded.tar, decoded.cntr, decoded.status, None, None, None)
    if security.por_checksum_required and decoded.checksum_valid is not True:
        # A status-00 PoR decides which actions ran: only a verified one may (claim 1c).
        return RejectedPor(
            decoded.tar, "status 00 PoR without the checksum SPI2 asked for: forged or corrupt"
        )
    try:
        standard, counter = split_counter_report(decoded.data)
        sw: int | None = None
        executed: int | None = None
        if standard:
            if security.script_format is ScriptFormat.EXPANDED:
                expanded = ExpandedResponse.decode(standard)
                executed = expanded.executed
                sw = expanded.r_apdus[-1].sw if expanded.r_apdus else None
            else:
                compact = CompactResponse.decode(standard)
                executed, sw = compact.executed, compact.sw
    except DecodeError as exc:
        return RejectedPor(decoded.tar, f"PoR additional data unreadable: {exc}")
    return PorReport(decoded.tar, decoded.cntr, decoded.status, counter, sw, executed)


# --------------------------------------------------------------------------- card-originated messages


@dataclass(frozen=True, slots=True)
class CardReport:
    """A card-originated secured packet (claims 7-9) whose CC was verified with the card's key set."""

    tar: bytes
    cntr: int  # the application's MO CNTR (replay rule: must exceed the last one accepted)
    message: CardMessage

    @property
    def label(self) -> str:
        """The report's ``counter_path``: "transaction" (kind 01) or "information" (kind 02)."""
        return "transaction" if self.message.kind is CardMessageKind.TRANSACTION_REQUEST else "information"


@dataclass(frozen=True, slots=True)
class RejectedCardMessage:
    """An MO packet that cannot be trusted (undecodable, no CC/DS, wrong checksum): recorded, ignored."""

    tar: bytes
    reason: str


def open_card_message(user_data: bytes, keysets: dict[int, PacketKeys]) -> CardReport | RejectedCardMessage:
    """Open ``02 70 00`` + a command packet sent BY the card (docs/action-counter.md "Deferred
    reports"; TS 102 225 §5.1 in the MO direction) with the card's key set named by KIc b8..b5.

    Only an authenticated packet counts (claim 4: the counter travels secured): SPI1 must ask for a
    CC or DS (an RC is no authentication) and the checksum must verify. The replay rule (CNTR
    higher than the last accepted, :func:`mo_cntr_fresh`) is the caller's, which owns the store.
    """
    tar = user_data[9:12] if len(user_data) >= 12 else b""
    if user_data[:3] != CPI_UDH:
        return RejectedCardMessage(tar, f"not a command packet: UDH {user_data[:3].hex()}")
    try:
        header = parse_command_header(user_data[3:], base_offset=3)
    except DecodeError as exc:
        return RejectedCardMessage(tar, f"undecodable card message: {exc}")
    tar = header.tar
    if header.spi.integrity not in (IntegrityMode.CC, IntegrityMode.DS):
        return RejectedCardMessage(tar, f"SPI {header.spi} asks for no CC/DS: unauthenticated, ignored")
    keys = keysets.get(key_index(header.kic)) or keysets.get(key_index(header.kid))
    if keys is None:
        return RejectedCardMessage(tar, f"no key set {key_index(header.kic)} for this card")
    try:
        opened = open_command_packet(header, keys)
    except (SecurityRejection, DecodeError) as exc:
        return RejectedCardMessage(tar, f"card message cannot be opened: {exc}")
    if opened.checksum_valid is not True:
        return RejectedCardMessage(tar, "card message checksum wrong: forged or corrupt")
    try:
        message = CardMessage.decode(opened.data)
    except DecodeError as exc:
        return RejectedCardMessage(tar, f"card message body unreadable: {exc}")
    return CardReport(tar, opened.cntr, message)


def mo_cntr_fresh(last_accepted: int | None, cntr: int) -> bool:
    """The server's replay rule for MO packets, counter mode "higher" (TS 102 225 §5.1.1 b5b4 = 10):
    a copy (duplicate, replay, late resend) carries a CNTR not above the last one accepted."""
    return cntr > (last_accepted if last_accepted is not None else 0)


# --------------------------------------------------------------------------- the job machine


class Phase(Enum):
    NEW = "new"
    SENDING = "sending"  # decided to send; the shell reserves a CNTR, then reports Sent
    WAITING = "waiting"  # a message is out, its PoR is awaited until the deadline
    BACKOFF = "backoff"  # waiting before the next message
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.DONE, Phase.PARTIAL, Phase.FAILED)


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
    deadline: float | None = None
    attempts: int = 0  # scripts sent
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
_JOB_VALUES = operator.attrgetter(*_JOB_FIELDS)
_JOB_SETTERS = tuple(Job.__dict__[name].__set__ for name in _JOB_FIELDS)  # slot descriptors
_JOB_POSITION = {name: i for i, name in enumerate(_JOB_FIELDS)}
_new_object = object.__new__


def job_replace(job: Job, **changes: Any) -> Job:
    """``dataclasses.replace(job, **changes)`` for the hot path: the same new Job (equal fields,
    same type), built by the slot descriptors instead of the generic replace + ``__init__``."""
    values = list(_JOB_VALUES(job))
    position = _JOB_POSITION
    for name, value in changes.items():
        at = position.get(name)
        if at is None:
            raise TypeError(f"Job has no field {name!r}")
        values[at] = value
    new = _new_object(Job)
    for setter, value in zip(_JOB_SETTERS, values, strict=True):
        setter(new, value)
    return new


# Events --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    pass


@dataclass(frozen=True, slots=True)
class Sent:
    kind: MessageKind
    cntr: int


@dataclass(frozen=True, slots=True)
class PorArrived:
    report: PorReport


@dataclass(frozen=True, slots=True)
class SubmitRefused:
    """The SMSC refused (or never answered) a submit_sm of this CNTR: delivery unknown or failed."""

    cntr: int
    detail: str


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    pass


@dataclass(frozen=True, slots=True)
class CardReportArrived:
    """An authenticated, fresh (MO CNTR higher) card message for this job's (card, TAR)."""

    report: CardReport


Event = Begin | Sent | PorArrived | SubmitRefused | DeadlinePassed | CardReportArrived


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


@dataclass(frozen=True, slots=True)
class Finish:
    phase: Phase
    reason: str


Command = SendScript | SendQuery | SendReply | Finish


@dataclass(frozen=True, slots=True)
class Transition:
    job: Job
    commands: tuple[Command, ...] = ()
    note: str | None = None  # for the audit history; None: nothing worth recording
    changed: bool = True


def _send(job: Job, kind: MessageKind, note: str | None = None) -> Transition:
    job = job_replace(job, phase=Phase.SENDING, next_kind=kind, deadline=None)
    command: Command = (
        SendScript(job.applied, job.n - job.applied) if kind is MessageKind.SCRIPT else SendQuery()
    )
    return Transition(job, (command,), note)


def _finish(job: Job, phase: Phase, reason: str) -> Transition:
    job = job_replace(job, phase=phase, reason=reason, deadline=None, next_kind=None)
    commands: tuple[Command, ...] = (Finish(phase, reason),)
    if job.replies:
        # Message 2 is still owed (never proven received): send it on its own, once more.
        commands = (SendReply(job.replies), *commands)
        job = job_replace(
            job, replies=(), reply_carriers=(), replies_sent=job.replies_sent + len(job.replies)
        )
    return Transition(job, commands, reason)


def _unchanged(job: Job, note: str | None = None) -> Transition:
    return Transition(job, (), note, changed=False)


def _with_status(job: Job, text: str) -> Job:
    # Keep the report short: each distinct status once, in order of first appearance.
    return job if text in job.statuses else job_replace(job, statuses=(*job.statuses, text))


def step(job: Job, event: Event, now: float, policy: Policy) -> Transition:
    """(job, event, now) -> (new job, commands, audit note). See the module docstring."""
    if isinstance(event, CardReportArrived):
        return _on_card_report(job, event.report, now, policy)
    if job.phase.terminal:
        if isinstance(event, PorArrived):
            return _unchanged(job, f"late PoR cntr={event.report.cntr} after the job ended, ignored")
        return _unchanged(job)
    if isinstance(event, Begin):
        if job.phase is not Phase.NEW:
            return _unchanged(job)
        if job.applied >= job.n:
            return _finish(job, Phase.DONE, "")
        # CA unknown, or a script of an earlier run unresolved (restart): ask the card first.
        unresolved = job.confirmed is None or job.script_cntr is not None
        return _send(job, MessageKind.QUERY if unresolved else MessageKind.SCRIPT)
    if isinstance(event, Sent):
        return _on_sent(job, event, now, policy)
    if isinstance(event, DeadlinePassed):
        return _on_deadline(job, now, policy)
    if isinstance(event, SubmitRefused):
        if job.phase is Phase.WAITING and event.cntr in job.outstanding_cntrs:
            # The SMS may or may not have left: resolve it like a lost message (by a query).
            return _on_deadline(_with_status(job, event.detail), now, policy, note=event.detail)
        return _unchanged(job)
    return _on_por(job, event.report, now, policy)


def _on_sent(job: Job, event: Sent, now: float, policy: Policy) -> Transition:
    if job.phase is not Phase.SENDING or event.kind is not job.next_kind:
        return _unchanged(job)
    deadline = now + policy.por_timeout_s
    if job.replies:
        # Every message sent while a reply is owed carries it (a repeated reply is harmless: not
        # counted, recorded again by the card); a status-00 PoR of one of them proves it answered.
        job = job_replace(
            job,
            reply_carriers=(*job.reply_carriers, (event.cntr, job.replies)),
            replies_sent=job.replies_sent + len(job.replies),
        )
    if event.kind is MessageKind.SCRIPT:
        job = job_replace(
            job,
            phase=Phase.WAITING,
            next_kind=None,
            script_cntr=event.cntr,
            script_count=job.n - job.applied,
            query_cntrs=(),
            attempts=job.attempts + 1,
            deadline=deadline,
        )
    else:
        job = job_replace(
            job,
            phase=Phase.WAITING,
            next_kind=None,
            query_cntrs=(*job.query_cntrs, event.cntr),
            queries=job.queries + 1,
            deadline=deadline,
        )
    return Transition(job, (), None)


def _on_deadline(job: Job, now: float, policy: Policy, *, note: str | None = None) -> Transition:
    if job.phase is Phase.BACKOFF:
        return _send(job, job.next_kind or MessageKind.QUERY, note)
    if job.phase is not Phase.WAITING:
        return _unchanged(job)
    unanswered = job.unanswered + 1
    job = _with_status(job_replace(job, unanswered=unanswered), STATUS_TIMEOUT)
    if unanswered >= policy.max_attempts:
        what = (
            f"outcome of the script cntr={job.script_cntr} unknown"
            if job.script_cntr is not None
            else "action counter unknown"
        )
        return _finish(job, Phase.FAILED, f"no PoR after {unanswered} messages: {what}")
    # No blind resend (smpp-and-peers.md §4): ask the card what ran, after a back-off.
    delay = policy.backoff(unanswered)
    if delay <= 0:
        return _send(job, MessageKind.QUERY, note or "PoR timeout: status query")
    job = job_replace(job, phase=Phase.BACKOFF, next_kind=MessageKind.QUERY, deadline=now + delay)
    return Transition(job, (), note or f"PoR timeout: status query in {delay:g} s")


def _replies_proven(job: Job, report: PorReport) -> Job:
    carried = dict(job.reply_carriers).get(report.cntr)
    if carried is None or report.status != ResponseStatus.POR_OK:
        return job
    # TS 102 225 §5.2: status 00 = the packet was accepted and its script ran from its first
    # command, which is the TRANSACTION REPLY: answered (its own SW failing is a card refusal).
    return job_replace(
        job,
        replies=tuple(s for s in job.replies if s not in carried),
        reply_carriers=tuple((c, seqs) for c, seqs in job.reply_carriers if c != report.cntr),
    )


def _on_por(job: Job, report: PorReport, now: float, policy: Policy) -> Transition:
    before = job
    job = _replies_proven(job, report)
    if report.cntr == job.script_cntr and job.script_cntr is not None:
        via = "por"
    elif report.cntr in job.query_cntrs:
        via = "query"
    elif report.status != ResponseStatus.POR_OK and report.cntr == 0 and job.outstanding_cntrs:
        via = "error"  # protocols.md §6.4: CNTR zero, matched to the job's open round
    else:
        note = f"stale PoR cntr={report.cntr} status {report.status:02X}, ignored"
        return Transition(job, (), note, changed=job.replies != before.replies)

    status = report.status
    if status == ResponseStatus.POR_OK:
        assert report.counter is not None
        return _reconcile(job_replace(job, unanswered=0), report, via, policy)
    text = f"{status:02X} {report.meaning}"
    job = _with_status(job, text)
    if status == ResponseStatus.CNTR_LOW:
        # A duplicated or late copy of a packet the card already took: the copy was a replay.
        return Transition(job, (), f"PoR {text}: a replayed copy, still waiting")
    if status in WAITING_STATUSES:
        if job.phase is Phase.WAITING:
            job = job_replace(job, deadline=now + policy.por_timeout_s)
        return Transition(job, (), f"PoR {text}: waiting for the actual PoR")
    if status in FAILING_STATUSES:
        return _finish(job, Phase.FAILED, f"PoR status {text}: no script ran")
    if status in REFUSED_STATUSES and job.phase is Phase.WAITING:
        refused = job.unanswered + 1
        job = job_replace(job, unanswered=refused)
        if refused >= policy.max_attempts:
            return _finish(
                job, Phase.FAILED, f"PoR status {text} for {refused} messages in a row: no script ran"
            )
        # No direct resend: a clean copy of the refused packet may still be on its way and would run
        # beside the resend. A status query with a fresh CNTR fences it off, then the counter decides.
        delay = policy.backoff(refused)
        if delay <= 0:
            return _send(job, MessageKind.QUERY, f"PoR {text}: status query")
        job = job_replace(job, phase=Phase.BACKOFF, next_kind=MessageKind.QUERY, deadline=now + delay)
        return Transition(job, (), f"PoR {text}: status query in {delay:g} s")
    # 07 and RFU / proprietary codes: unauthenticated, so let the action counter decide.
    return _on_deadline(job, now, policy, note=f"PoR {text}: status query")


def _reconcile(job: Job, report: PorReport, via: str, policy: Policy) -> Transition:
    counter = report.counter
    assert counter is not None
    after = counter.after
    if job.confirmed is None:
        # First contact: the query told us CA; now the script can be sent.
        job = job_replace(job, confirmed=after, start_counter=after, query_cntrs=(), script_cntr=None)
        return _send(job, MessageKind.SCRIPT, f"action counter {after}")
    base = job.confirmed
    count = job.script_count if job.script_cntr is not None else 0
    try:
        if via == "por" and counter.before != base:
            raise DecodeError("action_counter", 0, f"card counted from {counter.before}, not {base}")
        x = missing_actions(base, count, after)
    except DecodeError:
        job = job_replace(job, mismatches=job.mismatches + 1)
        detail = f"counter mismatch: card reports {counter.before}->{after}, expected {base}..{base + count}"
        job = _with_status(job, "counter mismatch")
        if via == "por":
            # Never resend on an unexplained counter; ask again instead.
            return _send(job, MessageKind.QUERY, detail)
        return _finish(job, Phase.FAILED, detail)

    executed = count - x
    job = _with_status(job, f"00 {report.meaning}")
    job = job_replace(
        job,
        applied=job.applied + executed,
        confirmed=after,
        script_cntr=None,
        script_count=0,
        query_cntrs=(),
        counter_path=via if via != "error" else job.counter_path,
        last_sw=report.sw if via == "por" else job.last_sw,
    )
    if x == 0:
        if via == "query" and count:
            job = _with_status(job, STATUS_FENCE_DONE)
        return _finish(job, Phase.DONE, "")
    first_missing = job.applied + 1  # 1-based action number
    if via == "por":
        sw = report.sw if report.sw is not None else 0x6F00
        why = f"last {x} not executed: action {first_missing} failed with SW {sw:04X} ({sw_meaning(sw)})"
        if sw in PERMANENT_SWS:
            job = _with_status(job, f"SW {sw:04X} {sw_meaning(sw)}: permanent, not resent")
            return _finish(job, Phase.PARTIAL if job.applied else Phase.FAILED, why)
        job = _with_status(job, f"SW {sw:04X} {sw_meaning(sw)}: transient, resent")
    else:
        why = "script lost" if x == count else f"last {x} not executed (PoR lost)"
        job = _with_status(job, STATUS_FENCE_RESEND)
    if job.attempts >= policy.max_attempts:
        return _finish(job, Phase.FAILED, f"gave up after {job.attempts} scripts: {why}")
    job = job_replace(job, resent_actions=job.resent_actions + x)
    return _send(job, MessageKind.SCRIPT, f"{why}: resending those {x}")


def _on_card_report(job: Job, card: CardReport, now: float, policy: Policy) -> Transition:
    """Claims 7-9: the counter in a card-originated message, under the FENCE rule.

    A counter value may decide a resend only when no script of the job can still be in flight.
    A status-00 PoR of a packet with CNTR q is a fence (counter mode "higher": every packet with a
    lower CNTR is refused from then on, so older scripts are dead). A card message is NOT a fence:
    a script sent before it but delivered after it may still run. Hence:

    * no unresolved script: the counter is authoritative (reconciled against CA with n = 0);
    * unresolved script: the report is recorded; only ``x = 0`` (the whole script ran, so nothing
      is resent) settles the job; otherwise a status query (carrying the reply of a transaction
      request: message 2 alone) is the fence, and its PoR decides as in claim 1c;
    * a counter below CA is an old report delivered late (counters never go down): ignored.
    """
    message = card.message
    label = card.label
    is_request = message.kind is CardMessageKind.TRANSACTION_REQUEST
    counter = message.counter
    head = f"{label} message" if not is_request else f"transaction request {message.sequence}"
    job = job_replace(job, mo_reports=job.mo_reports + 1, mo_counter=counter)
    if is_request:
        job = _with_status(job, "transaction request (claim 8): counter reported, reply owed")
    else:
        job = _with_status(job, "information message (claim 9): counter reported")
    if job.phase.terminal:
        note = f"{head}: counter {counter} after the job ended"
        if job.confirmed is not None and counter > job.confirmed:
            job = _with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
            note += f" (mismatch: the job confirmed {job.confirmed})"
        commands: tuple[Command, ...] = ()
        if is_request:
            commands = (SendReply((message.sequence,)),)
            job = job_replace(job, replies_sent=job.replies_sent + 1)
        return Transition(job, commands, note)
    if is_request and message.sequence not in job.replies:
        job = job_replace(job, replies=(*job.replies, message.sequence))

    if job.script_cntr is None:
        # Nothing of this job can run any more on the card: the report is authoritative.
        if job.confirmed is None:
            job = job_replace(
                job, confirmed=counter, start_counter=counter, counter_path=label, query_cntrs=()
            )
            note = f"{head}: action counter {counter} (first contact)"
            if job.phase in (Phase.NEW, Phase.SENDING):
                return Transition(job, (), note)  # Begin / the pending send carries on
            return _send(job, MessageKind.SCRIPT, note)
        if counter < job.confirmed:
            return Transition(job, (), f"{head}: counter {counter} below CA {job.confirmed}: an old report")
        if counter > job.confirmed:
            job = _with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
            return Transition(
                job, (), f"{head}: counter mismatch: card reports {counter}, expected {job.confirmed}"
            )
        job = job_replace(job, counter_path=label)
        note = f"{head}: counter {counter} = CA, {job.n - job.applied} action(s) to send"
        if job.phase in (Phase.WAITING, Phase.BACKOFF):
            # Only a first-contact query can be out here: the counter makes it moot.
            return _send(job_replace(job, query_cntrs=()), MessageKind.SCRIPT, note)
        return Transition(job, (), note)  # NEW / SENDING: the next message carries the reply

    base = job.confirmed if job.confirmed is not None else 0
    count = job.script_count
    try:
        x = missing_actions(base, count, counter)
    except DecodeError:
        if counter < base:
            note = f"{head}: counter {counter} below CA {base}: an old report"
        else:
            job = _with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
            note = f"{head}: counter mismatch: card reports {counter}, expected {base}..{base + count}"
        return _fence(job, is_request, note)
    if x == 0:
        # The whole script ran: safe without a fence, since nothing is resent (claim 1c, x = 0).
        job = job_replace(
            job,
            applied=job.applied + count,
            confirmed=counter,
            script_cntr=None,
            script_count=0,
            query_cntrs=(),
            unanswered=0,
            counter_path=label,
        )
        return _finish(job, Phase.DONE, "")
    note = (
        f"{head}: counter {counter}, the last {x} of script cntr={job.script_cntr} not run yet; "
        "not a fence (the script may still arrive): a status query decides"
    )
    return _fence(job, is_request, note)


def _fence(job: Job, is_request: bool, note: str) -> Transition:
    """A script is unresolved: never resend on a card message. A transaction request gets its
    reply now, in a status query (message 2 alone), which is also the fence."""
    if is_request and job.phase in (Phase.WAITING, Phase.BACKOFF):
        return _send(job, MessageKind.QUERY, note + "; reply in a status query")
    return Transition(job, (), note)
