r"""PURE: one job's life, from the first message to done / partial / failed (patent WO 00/07153, claim 1c).

Clauses: TS 102 225 §5.2 and TS 31.115 §4.3 (PoR, statuses, SMS-SUBMIT path 0B),
protocols.md §6.4 (error PoRs: unsecured, CNTR possibly zero), SMPP 3.4 §4.4.2 (a submit_sm_resp
with an error status: the message was not taken), docs/action-counter.md, docs/campaigns.md §6.

Glossary: CA the confirmed action counter of (card, TAR); n the actions of the job; x the number
of the unresolved script's *last* actions that did not run; CNTR the 03.48 replay counter.

Theory of operation. :func:`step` takes (job, event, now, policy) and returns a
:class:`~ota_server.engine.job_model.Transition`: the new job, commands, and an audit note. Which
handler runs is a table, :data:`TRANSITIONS`, keyed by (phase, event type); every pair is in it,
handled or explicitly :data:`IGNORED` (a test walks them all), as h11's ``_state.py`` does.

States::

    NEW --Begin--> SENDING --Sent--> WAITING --Accepted--> (timer) --PoR 00--> DONE | PARTIAL | FAILED
                      ^                 |   \--PoR 00, x > 0, transient--> SENDING (the last x)
                      |            deadline  \--SubmitRefused--> BACKOFF (same kind again)
                      +--deadline-- BACKOFF <-+   (a status query next, never a blind resend)

* Sent: the engine reserved the CNTR (durable before the SMS leaves). The PoR timer starts only at
  Accepted, when the SMSC took the message (an unanswered submit counts as taken: it may have
  left). A message the SMSC refused never left: it is not an attempt and goes again after a
  back-off; ``max_attempts`` refusals in a row end the job FAILED naming the SMSC's status.
* At most one script per job is unresolved at a time, so one (card, TAR) never has two scripts in
  the air. CA unknown (first contact): the first message is a status query.
* PoR status 00 (verified): ``after`` = CA + n: all ran, DONE. CA <= after < CA + n: the last x did
  not run; from a script PoR its SW says why: permanent -> PARTIAL (FAILED if none ever ran),
  transient -> send exactly those x again. From a query PoR: send the x again (x = 0: the PoR was
  lost, nothing is resent). ``after`` outside the range: counter mismatch, recorded.
* Timeout: no blind resend. Back off, then send a status query; its PoR decides.
* Other statuses: 0B / 08 keep waiting; 02 (CNTR low) is a replayed copy: keep waiting; 03 and 04
  end the job FAILED; 01, 05, 06, 09 and 0A (no script ran; a corrupted packet earns them too) go
  through a fence query, FAILED after ``max_attempts`` refusals in a row; 07 and RFU: a query.
* An authenticated PoR that arrives after the job ended is still reconciled: the record follows the
  card (docs/campaigns.md §6.3), and its note says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ota_protocols.action_counter import missing_actions
from ota_protocols.errors import DecodeError, LocalProtocolViolation
from ota_protocols.secured_packet.response_packet import ResponseStatus
from ota_server.engine.card_messages import on_card_report
from ota_server.engine.job_model import (
    FAILING_STATUSES,
    REFUSED_STATUSES,
    STATUS_FENCE_DONE,
    STATUS_FENCE_RESEND,
    STATUS_SMSC_REFUSED,
    STATUS_TIMEOUT,
    WAITING_STATUSES,
    Accepted,
    Begin,
    CardReportArrived,
    DeadlinePassed,
    Event,
    Job,
    MessageKind,
    Phase,
    Policy,
    PorArrived,
    Sent,
    SubmitRefused,
    Transition,
    go_finish,
    go_send,
    job_replace,
    statuses_with,
    unchanged,
    with_status,
)
from ota_server.engine.por_verification import PERMANENT_SWS, PorReport, sw_meaning

__all__ = ["EVENT_TYPES", "IGNORED", "TRANSITIONS", "step"]

Handler = Callable[[Job, Any, float, Policy], Transition]


def step(job: Job, event: Event, now: float, policy: Policy) -> Transition:
    """(job, event, now) -> (new job, commands, audit note), by :data:`TRANSITIONS`."""
    handler = TRANSITIONS.get((job.phase, type(event)))
    if handler is None:
        raise LocalProtocolViolation(f"job machine: no transition for {type(event).__name__} in {job.phase}")
    return handler(job, event, now, policy)


def _ignore(job: Job, event: Any, now: float, policy: Policy) -> Transition:
    return unchanged(job)


IGNORED: Handler = _ignore


def _on_begin(job: Job, event: Begin, now: float, policy: Policy) -> Transition:
    if job.applied >= job.n:
        return go_finish(job, Phase.DONE, "")
    # CA unknown, or a script of an earlier run unresolved (restart): ask the card first.
    unresolved = job.confirmed is None or job.script_cntr is not None
    return go_send(job, MessageKind.QUERY if unresolved else MessageKind.SCRIPT)


def _on_accepted(job: Job, event: Accepted, now: float, policy: Policy) -> Transition:
    """docs/campaigns.md §6.2: the attempt and its PoR timer start when the SMSC takes the message."""
    if job.deadline is not None or event.cntr not in job.outstanding_cntrs:
        return unchanged(job)
    # A script counts as an attempt once the SMSC took it: one reserved, then lost with the server
    # (killed before it left) or refused by the SMSC, never used up the job's attempts.
    attempts = job.attempts + 1 if event.cntr == job.script_cntr else job.attempts
    job = job_replace(job, deadline=now + policy.por_timeout_s, attempts=attempts)
    return Transition(job, (), None, durable=False)


def _on_submit_refused(job: Job, event: SubmitRefused, now: float, policy: Policy) -> Transition:
    """SMPP 3.4 §4.4.2: an error status in submit_sm_resp means the SMSC did not take the message:
    its script cannot run, so it leaves the outstanding set and is not counted as an attempt."""
    if event.cntr not in job.outstanding_cntrs:
        return unchanged(job)
    was_script = event.cntr == job.script_cntr
    latest = job.outstanding_cntrs[-1] == event.cntr
    if was_script:
        job = job_replace(job, script_cntr=None, script_count=0)
    else:
        job = job_replace(
            job,
            query_cntrs=tuple(c for c in job.query_cntrs if c != event.cntr),
            queries=max(0, job.queries - 1),
        )
    job = with_status(job, STATUS_SMSC_REFUSED)
    if job.phase is not Phase.WAITING or not latest or job.deadline is not None:
        return Transition(job, (), f"{event.detail} (cntr={event.cntr})")
    refused = job.unanswered + 1
    job = job_replace(job, unanswered=refused)
    if refused >= policy.max_attempts:
        return go_finish(job, Phase.FAILED, f"SMSC refused {refused} messages in a row: {event.detail}")
    # An unresolved script (an older one, whose query was refused) still needs its fence first.
    kind = MessageKind.SCRIPT if was_script and job.script_cntr is None else MessageKind.QUERY
    delay = policy.backoff(refused)
    if delay <= 0:
        return go_send(job, kind, f"{event.detail}: sent again")
    job = job_replace(job, phase=Phase.BACKOFF, next_kind=kind, deadline=now + delay)
    return Transition(job, (), f"{event.detail}: sent again in {delay:g} s")


def _on_deadline_event(job: Job, event: DeadlinePassed, now: float, policy: Policy) -> Transition:
    return _on_deadline(job, now, policy)


def _on_por_event(job: Job, event: PorArrived, now: float, policy: Policy) -> Transition:
    return _on_por(job, event.report, now, policy)


def _on_card_report_event(job: Job, event: CardReportArrived, now: float, policy: Policy) -> Transition:
    return on_card_report(job, event.report, now, policy)


def _on_late_por(job: Job, event: PorArrived, now: float, policy: Policy) -> Transition:
    """docs/campaigns.md §6.3: a verified PoR for a job that already ended (FAILED with its outcome
    unknown, or cancelled while a script was out) still tells what ran: the record follows the card."""
    report = event.report
    if report.status != ResponseStatus.POR_OK or report.counter is None:
        return unchanged(job, f"late PoR cntr={report.cntr} status {report.status:02X} after the job ended")
    if report.cntr not in job.outstanding_cntrs or job.confirmed is None:
        return unchanged(job, f"late PoR cntr={report.cntr} after the job ended: nothing unresolved, ignored")
    count = job.script_count if job.script_cntr is not None else 0
    try:
        x = missing_actions(job.confirmed, count, report.counter.after)
    except DecodeError:
        job = with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
        return Transition(
            job, (), f"late PoR cntr={report.cntr}: counter {report.counter.after} out of range"
        )
    executed = count - x
    applied = job.applied + executed
    phase = Phase.DONE if applied >= job.n else (Phase.PARTIAL if applied else job.phase)
    note = (
        f"late PoR cntr={report.cntr} after the job ended: {executed} more action(s) ran; "
        "record follows the card"
    )
    job = job_replace(
        job,
        applied=applied,
        confirmed=report.counter.after,
        script_cntr=None,
        script_count=0,
        query_cntrs=(),
        counter_path=job.counter_path or "late",
        phase=phase,
        reason=job.reason
        if phase is Phase.FAILED
        else (f"{job.reason}; settled by a late PoR" if job.reason else ""),
    )
    return Transition(with_status(job, "late PoR: record follows the card"), (), note)


def _on_sent(job: Job, event: Sent, now: float, policy: Policy) -> Transition:
    if event.kind is not job.next_kind:
        return unchanged(job)
    deadline = None  # the timer starts at Accepted (docs/campaigns.md §6.2)
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
        return go_send(job, job.next_kind or MessageKind.QUERY, note)
    if job.phase is not Phase.WAITING:
        return unchanged(job)
    unanswered = job.unanswered + 1
    statuses = statuses_with(job.statuses, STATUS_TIMEOUT)
    if unanswered >= policy.max_attempts:
        what = (
            f"outcome of the script cntr={job.script_cntr} unknown"
            if job.script_cntr is not None
            else "action counter unknown"
        )
        reason = f"no PoR after {unanswered} messages: {what}"
        return go_finish(job, Phase.FAILED, reason, unanswered=unanswered, statuses=statuses)
    # No blind resend (smpp-and-peers.md §4): ask the card what ran, after a back-off.
    delay = policy.backoff(unanswered)
    if delay <= 0:
        note = note or "PoR timeout: status query"
        return go_send(job, MessageKind.QUERY, note, unanswered=unanswered, statuses=statuses)
    job = job_replace(
        job,
        unanswered=unanswered,
        statuses=statuses,
        phase=Phase.BACKOFF,
        next_kind=MessageKind.QUERY,
        deadline=now + delay,
    )
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
    if job.reply_carriers:  # a message of this job carried message 2
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
        return _reconcile(job, report, via, policy)
    text = f"{status:02X} {report.meaning}"
    if status in WAITING_STATUSES and job.phase is Phase.WAITING:
        statuses = statuses_with(job.statuses, text)
        job = job_replace(job, statuses=statuses, deadline=now + policy.por_timeout_s)
        return Transition(job, (), f"PoR {text}: waiting for the actual PoR")
    job = with_status(job, text)
    if status == ResponseStatus.CNTR_LOW:
        # A duplicated or late copy of a packet the card already took: the copy was a replay.
        return Transition(job, (), f"PoR {text}: a replayed copy, still waiting")
    if status in WAITING_STATUSES:
        return Transition(job, (), f"PoR {text}: waiting for the actual PoR")
    if status in FAILING_STATUSES:
        return go_finish(job, Phase.FAILED, f"PoR status {text}: no script ran")
    if status in REFUSED_STATUSES and job.phase is Phase.WAITING:
        refused = job.unanswered + 1
        job = job_replace(job, unanswered=refused)
        if refused >= policy.max_attempts:
            return go_finish(
                job, Phase.FAILED, f"PoR status {text} for {refused} messages in a row: no script ran"
            )
        # No direct resend: a clean copy of the refused packet may still be on its way and would run
        # beside the resend. A status query with a fresh CNTR fences it off, then the counter decides.
        delay = policy.backoff(refused)
        if delay <= 0:
            return go_send(job, MessageKind.QUERY, f"PoR {text}: status query")
        job = job_replace(job, phase=Phase.BACKOFF, next_kind=MessageKind.QUERY, deadline=now + delay)
        return Transition(job, (), f"PoR {text}: status query in {delay:g} s")
    # 07 and RFU / proprietary codes: unauthenticated, so let the action counter decide.
    return _on_deadline(job, now, policy, note=f"PoR {text}: status query")


def _reconcile(job: Job, report: PorReport, via: str, policy: Policy) -> Transition:
    """A verified status-00 PoR (``unanswered`` back to 0): what ran, and what comes next. Each
    outcome is one new Job (the fields this step sets, gathered, then one :func:`job_replace`)."""
    counter = report.counter
    assert counter is not None
    after = counter.after
    if job.confirmed is None:
        # First contact: the query told us CA; now the script can be sent.
        return go_send(
            job,
            MessageKind.SCRIPT,
            f"action counter {after}",
            unanswered=0,
            confirmed=after,
            start_counter=after,
            query_cntrs=(),
            script_cntr=None,
        )
    base = job.confirmed
    count = job.script_count if job.script_cntr is not None else 0
    try:
        if via == "por" and counter.before != base:
            raise DecodeError("action_counter", 0, f"card counted from {counter.before}, not {base}")
        x = missing_actions(base, count, after)
    except DecodeError:
        detail = f"counter mismatch: card reports {counter.before}->{after}, expected {base}..{base + count}"
        statuses = statuses_with(job.statuses, "counter mismatch")
        mismatches = job.mismatches + 1
        if via == "por":
            # Never resend on an unexplained counter; ask again instead.
            return go_send(
                job, MessageKind.QUERY, detail, unanswered=0, mismatches=mismatches, statuses=statuses
            )
        return go_finish(job, Phase.FAILED, detail, unanswered=0, mismatches=mismatches, statuses=statuses)

    executed = count - x
    applied = job.applied + executed
    ok = f"00 {report.meaning}"
    changes: dict[str, Any] = {
        "unanswered": 0,
        "applied": applied,
        "confirmed": after,
        "script_cntr": None,
        "script_count": 0,
        "query_cntrs": (),
        "counter_path": via if via != "error" else job.counter_path,
        "last_sw": report.sw if via == "por" else job.last_sw,
    }
    if x == 0:
        if via == "query" and count:
            changes["statuses"] = statuses_with(job.statuses, ok, STATUS_FENCE_DONE)
        else:
            changes["statuses"] = statuses_with(job.statuses, ok)
        return go_finish(job, Phase.DONE, "", **changes)
    first_missing = applied + 1  # 1-based action number
    if via == "por":
        sw = report.sw if report.sw is not None else 0x6F00
        why = f"last {x} not executed: action {first_missing} failed with SW {sw:04X} ({sw_meaning(sw)})"
        if sw in PERMANENT_SWS:
            permanent = f"SW {sw:04X} {sw_meaning(sw)}: permanent, not resent"
            changes["statuses"] = statuses_with(job.statuses, ok, permanent)
            return go_finish(job, Phase.PARTIAL if applied else Phase.FAILED, why, **changes)
        transient = f"SW {sw:04X} {sw_meaning(sw)}: transient, resent"
        changes["statuses"] = statuses_with(job.statuses, ok, transient)
    else:
        why = "script lost" if x == count else f"last {x} not executed (PoR lost)"
        changes["statuses"] = statuses_with(job.statuses, ok, STATUS_FENCE_RESEND)
    if job.attempts >= policy.max_attempts:
        return go_finish(job, Phase.FAILED, f"gave up after {job.attempts} scripts: {why}", **changes)
    changes["resent_actions"] = job.resent_actions + x
    return go_send(job, MessageKind.SCRIPT, f"{why}: resending those {x}", **changes)


EVENT_TYPES: tuple[type, ...] = (
    Begin,
    Sent,
    Accepted,
    PorArrived,
    SubmitRefused,
    DeadlinePassed,
    CardReportArrived,
)

_OPEN: dict[type, Handler] = {
    PorArrived: _on_por_event,
    SubmitRefused: _on_submit_refused,
    DeadlinePassed: _on_deadline_event,
    CardReportArrived: _on_card_report_event,
}
_TERMINAL: dict[type, Handler] = {
    Begin: IGNORED,  # a job resumed already settled is never begun again
    Sent: IGNORED,
    Accepted: IGNORED,  # no timer for an ended job
    PorArrived: _on_late_por,
    SubmitRefused: IGNORED,  # the message never left: nothing ran, nothing to record
    DeadlinePassed: IGNORED,
    CardReportArrived: _on_card_report_event,  # the record follows the card there too
}
TRANSITIONS: dict[tuple[Phase, type], Handler] = {
    **{(Phase.NEW, e): IGNORED for e in EVENT_TYPES},
    (Phase.NEW, Begin): _on_begin,
    (Phase.NEW, CardReportArrived): _on_card_report_event,
    **{(Phase.SENDING, e): h for e, h in _OPEN.items()},
    (Phase.SENDING, Begin): IGNORED,
    (Phase.SENDING, Sent): _on_sent,
    (Phase.SENDING, Accepted): IGNORED,  # an older message of the job; the next one's timer counts
    (Phase.SENDING, DeadlinePassed): IGNORED,  # no timer runs while the engine reserves
    **{(Phase.WAITING, e): h for e, h in _OPEN.items()},
    (Phase.WAITING, Begin): IGNORED,
    (Phase.WAITING, Sent): IGNORED,  # stale: a Sent for a message not asked for
    (Phase.WAITING, Accepted): _on_accepted,
    **{(Phase.BACKOFF, e): h for e, h in _OPEN.items()},
    (Phase.BACKOFF, Begin): IGNORED,
    (Phase.BACKOFF, Sent): IGNORED,
    (Phase.BACKOFF, Accepted): IGNORED,  # the back-off's own deadline decides
    **{(phase, e): h for phase in (Phase.DONE, Phase.PARTIAL, Phase.FAILED) for e, h in _TERMINAL.items()},
}
