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
  copy of a packet, not a failure: keep waiting; 01, 03, 04, 05, 06, 09, 0A end the job
  FAILED (no script ran: keys, TAR or security level are wrong); 07 and RFU codes are
  resolved by a query.
* ``max_attempts`` bounds the scripts sent and the consecutive unanswered messages.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from ota_protocols.action_counter import CounterReport, missing_actions, split_counter_report
from ota_protocols.apdu.remote_commands import CompactResponse, ExpandedResponse
from ota_protocols.errors import DecodeError
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponseStatus,
    decode_response_packet,
    status_meaning,
)
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

# TS 102 225 §5.2: after these no script ran; they are configuration problems, not loss.
FAILING_STATUSES = frozenset({0x01, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0A})
WAITING_STATUSES = frozenset({ResponseStatus.MORE_TIME_NEEDED, ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT})


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

    @property
    def pending_first(self) -> int:
        return self.applied

    @property
    def outstanding_cntrs(self) -> tuple[int, ...]:
        head = () if self.script_cntr is None else (self.script_cntr,)
        return head + self.query_cntrs


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


Event = Begin | Sent | PorArrived | SubmitRefused | DeadlinePassed


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
class Finish:
    phase: Phase
    reason: str


Command = SendScript | SendQuery | Finish


@dataclass(frozen=True, slots=True)
class Transition:
    job: Job
    commands: tuple[Command, ...] = ()
    note: str | None = None  # for the audit history; None: nothing worth recording
    changed: bool = True


def _send(job: Job, kind: MessageKind, note: str | None = None) -> Transition:
    job = replace(job, phase=Phase.SENDING, next_kind=kind, deadline=None)
    command: Command = (
        SendScript(job.applied, job.n - job.applied) if kind is MessageKind.SCRIPT else SendQuery()
    )
    return Transition(job, (command,), note)


def _finish(job: Job, phase: Phase, reason: str) -> Transition:
    job = replace(job, phase=phase, reason=reason, deadline=None, next_kind=None)
    return Transition(job, (Finish(phase, reason),), reason)


def _unchanged(job: Job, note: str | None = None) -> Transition:
    return Transition(job, (), note, changed=False)


def _with_status(job: Job, text: str) -> Job:
    # Keep the report short: each distinct status once, in order of first appearance.
    return job if text in job.statuses else replace(job, statuses=(*job.statuses, text))


def step(job: Job, event: Event, now: float, policy: Policy) -> Transition:
    """(job, event, now) -> (new job, commands, audit note). See the module docstring."""
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
    if event.kind is MessageKind.SCRIPT:
        job = replace(
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
        job = replace(
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
    job = replace(job, unanswered=unanswered)
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
    job = replace(job, phase=Phase.BACKOFF, next_kind=MessageKind.QUERY, deadline=now + delay)
    return Transition(job, (), note or f"PoR timeout: status query in {delay:g} s")


def _on_por(job: Job, report: PorReport, now: float, policy: Policy) -> Transition:
    if report.cntr == job.script_cntr and job.script_cntr is not None:
        via = "por"
    elif report.cntr in job.query_cntrs:
        via = "query"
    elif report.status != ResponseStatus.POR_OK and report.cntr == 0 and job.outstanding_cntrs:
        via = "error"  # protocols.md §6.4: CNTR zero, matched to the job's open round
    else:
        return _unchanged(job, f"stale PoR cntr={report.cntr} status {report.status:02X}, ignored")

    status = report.status
    if status == ResponseStatus.POR_OK:
        assert report.counter is not None
        return _reconcile(replace(job, unanswered=0), report, via, policy)
    text = f"{status:02X} {report.meaning}"
    job = _with_status(job, text)
    if status == ResponseStatus.CNTR_LOW:
        # A duplicated or late copy of a packet the card already took: the copy was a replay.
        return Transition(job, (), f"PoR {text}: a replayed copy, still waiting")
    if status in WAITING_STATUSES:
        if job.phase is Phase.WAITING:
            job = replace(job, deadline=now + policy.por_timeout_s)
        return Transition(job, (), f"PoR {text}: waiting for the actual PoR")
    if status in FAILING_STATUSES:
        return _finish(job, Phase.FAILED, f"PoR status {text}: no script ran")
    # 07 and RFU / proprietary codes: unauthenticated, so let the action counter decide.
    return _on_deadline(job, now, policy, note=f"PoR {text}: status query")


def _reconcile(job: Job, report: PorReport, via: str, policy: Policy) -> Transition:
    counter = report.counter
    assert counter is not None
    after = counter.after
    if job.confirmed is None:
        # First contact: the query told us CA; now the script can be sent.
        job = replace(job, confirmed=after, start_counter=after, query_cntrs=(), script_cntr=None)
        return _send(job, MessageKind.SCRIPT, f"action counter {after}")
    base = job.confirmed
    count = job.script_count if job.script_cntr is not None else 0
    try:
        if via == "por" and counter.before != base:
            raise DecodeError("action_counter", 0, f"card counted from {counter.before}, not {base}")
        x = missing_actions(base, count, after)
    except DecodeError:
        job = replace(job, mismatches=job.mismatches + 1)
        detail = f"counter mismatch: card reports {counter.before}->{after}, expected {base}..{base + count}"
        job = _with_status(job, "counter mismatch")
        if via == "por":
            # Never resend on an unexplained counter; ask again instead.
            return _send(job, MessageKind.QUERY, detail)
        return _finish(job, Phase.FAILED, detail)

    executed = count - x
    job = replace(
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
        return _finish(job, Phase.DONE, "")
    first_missing = job.applied + 1  # 1-based action number
    if via == "por":
        sw = report.sw if report.sw is not None else 0x6F00
        why = f"last {x} not executed: action {first_missing} failed with SW {sw:04X} ({sw_meaning(sw)})"
        if sw in PERMANENT_SWS:
            return _finish(job, Phase.PARTIAL if job.applied else Phase.FAILED, why)
    else:
        why = "script lost" if x == count else f"last {x} not executed (PoR lost)"
    if job.attempts >= policy.max_attempts:
        return _finish(job, Phase.FAILED, f"gave up after {job.attempts} scripts: {why}")
    job = replace(job, resent_actions=job.resent_actions + x)
    return _send(job, MessageKind.SCRIPT, f"{why}: resending those {x}")
