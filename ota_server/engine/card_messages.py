"""PURE: a job's answer to a card's own counter report (claims 7-9), under the fence rule.

Clauses: WO 00/07153 claims 7-9 (the counter reaches the server in a transaction request or an
information message), claim 1c (the last x actions did not run: send exactly those), TS 102 225
§5.1.1 counter mode "higher" (what makes a status-00 PoR a fence), docs/campaigns.md §6.

Glossary: CA confirmed action counter; x actions of the unresolved script not run; message 2 the
TRANSACTION REPLY answering a transaction request (claim 8).
"""

from __future__ import annotations

from ota_protocols.action_counter import CardMessageKind, missing_actions
from ota_protocols.errors import DecodeError
from ota_server.engine.card_reports import CardReport
from ota_server.engine.job_model import (
    Command,
    Job,
    MessageKind,
    Phase,
    Policy,
    SendReply,
    Transition,
    go_finish,
    go_send,
    job_replace,
    with_status,
)

__all__ = ["on_card_report"]


def on_card_report(job: Job, card: CardReport, now: float, policy: Policy) -> Transition:
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
        job = with_status(job, "transaction request (claim 8): counter reported, reply owed")
    else:
        job = with_status(job, "information message (claim 9): counter reported")
    if job.phase.terminal:
        note = f"{head}: counter {counter} after the job ended"
        followed = _follow_after_end(job, counter, label)
        if followed is not None:
            job, note = followed, f"{note}: the unresolved script ran; record follows the card"
        elif job.confirmed is not None and counter > job.confirmed:
            job = with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
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
            return go_send(job, MessageKind.SCRIPT, note)
        if counter < job.confirmed:
            return Transition(job, (), f"{head}: counter {counter} below CA {job.confirmed}: an old report")
        if counter > job.confirmed:
            job = with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
            return Transition(
                job, (), f"{head}: counter mismatch: card reports {counter}, expected {job.confirmed}"
            )
        job = job_replace(job, counter_path=label)
        note = f"{head}: counter {counter} = CA, {job.n - job.applied} action(s) to send"
        if job.phase in (Phase.WAITING, Phase.BACKOFF):
            # Only a first-contact query can be out here: the counter makes it moot.
            return go_send(job_replace(job, query_cntrs=()), MessageKind.SCRIPT, note)
        return Transition(job, (), note)  # NEW / SENDING: the next message carries the reply

    base = job.confirmed if job.confirmed is not None else 0
    count = job.script_count
    try:
        x = missing_actions(base, count, counter)
    except DecodeError:
        if counter < base:
            note = f"{head}: counter {counter} below CA {base}: an old report"
        else:
            job = with_status(job_replace(job, mismatches=job.mismatches + 1), "counter mismatch")
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
        return go_finish(job, Phase.DONE, "")
    note = (
        f"{head}: counter {counter}, the last {x} of script cntr={job.script_cntr} not run yet; "
        "not a fence (the script may still arrive): a status query decides"
    )
    return _fence(job, is_request, note)


def _fence(job: Job, is_request: bool, note: str) -> Transition:
    """A script is unresolved: never resend on a card message. A transaction request gets its
    reply now, in a status query (message 2 alone), which is also the fence."""
    if is_request and job.phase in (Phase.WAITING, Phase.BACKOFF):
        return go_send(job, MessageKind.QUERY, note + "; reply in a status query")
    return Transition(job, (), note)


def _follow_after_end(job: Job, counter: int, label: str) -> Job | None:
    """docs/campaigns.md §6.3: a job that ended with a script unresolved (FAILED "outcome unknown",
    or cancelled with a script out) learns from an authenticated counter what of it ran. Nothing
    is resent after the end, so no fence is needed: the record just follows the card."""
    if job.script_cntr is None or job.confirmed is None:
        return None
    try:
        x = missing_actions(job.confirmed, job.script_count, counter)
    except DecodeError:
        return None
    executed = job.script_count - x
    if executed == 0:
        return None
    applied = job.applied + executed
    phase = Phase.DONE if applied >= job.n else Phase.PARTIAL
    return with_status(
        job_replace(
            job,
            applied=applied,
            confirmed=counter,
            script_cntr=None,
            script_count=0,
            query_cntrs=(),
            counter_path=label,
            phase=phase,
            reason="" if phase is Phase.DONE else f"{job.reason}; {executed} action(s) ran after the end",
        ),
        "late counter report: record follows the card",
    )
