"""The job machine is a table: every (phase, event) pair is handled or explicitly ignored, and the
infrastructure rules of docs/campaigns.md §6.2-§6.3 hold at the level of one job."""

from __future__ import annotations

import itertools

import pytest

from ota_protocols.action_counter import CardMessage, CardMessageKind, CounterReport
from ota_protocols.errors import LocalProtocolViolation
from ota_server.engine.card_reports import CardReport
from ota_server.engine.job_machine import EVENT_TYPES, IGNORED, TRANSITIONS, step
from ota_server.engine.job_model import (
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
)
from ota_server.engine.por_verification import PorReport

POLICY = Policy(por_timeout_s=5.0, max_attempts=3, backoff_s=1.0, max_backoff_s=4.0)
TAR = bytes.fromhex("b00010")


def _event(kind: type) -> Event:
    return {
        Begin: Begin(),
        Sent: Sent(MessageKind.SCRIPT, 8),
        Accepted: Accepted(7),
        PorArrived: PorArrived(PorReport(TAR, 7, 0, CounterReport(10, 12), 0x9000, 2)),
        SubmitRefused: SubmitRefused(7, "SMSC refused submit_sm with status 0x00000008"),
        DeadlinePassed: DeadlinePassed(),
        CardReportArrived: CardReportArrived(
            CardReport(TAR, 3, CardMessage(CardMessageKind.INFORMATION, 0, 12))
        ),
    }[kind]


def _job(phase: Phase) -> Job:
    """A job of 4 actions, 2 proven, a script of the last 2 out with CNTR 7 (outcome unknown)."""
    return Job(
        n=4,
        phase=phase,
        applied=2,
        confirmed=10,
        start_counter=8,
        script_cntr=7,
        script_count=2,
        attempts=1,
        next_kind=MessageKind.SCRIPT if phase is Phase.SENDING else None,
        deadline=100.0 if phase in (Phase.WAITING, Phase.BACKOFF) else None,
    )


def test_every_phase_event_pair_is_in_the_table() -> None:
    missing = [(p, e) for p, e in itertools.product(Phase, EVENT_TYPES) if (p, e) not in TRANSITIONS]
    assert missing == []
    assert set(TRANSITIONS) == set(itertools.product(Phase, EVENT_TYPES))


@pytest.mark.parametrize(("phase", "kind"), list(itertools.product(Phase, EVENT_TYPES)))
def test_every_pair_transitions_or_is_explicitly_ignored(phase: Phase, kind: type) -> None:
    job = _job(phase)
    t = step(job, _event(kind), 50.0, POLICY)
    if TRANSITIONS[(phase, kind)] is IGNORED:
        assert t.job is job and not t.changed and t.commands == ()
    else:
        assert isinstance(t.job, Job)
    # A job never leaves a terminal phase for an open one.
    assert not (phase.terminal and not t.job.phase.terminal)


def test_an_event_outside_the_table_is_our_bug() -> None:
    with pytest.raises(LocalProtocolViolation, match="no transition for str"):
        step(_job(Phase.WAITING), "not an event", 0.0, POLICY)  # type: ignore[arg-type]


def test_the_timer_starts_when_the_smsc_takes_the_message_not_at_reservation() -> None:
    job = Job(n=2, confirmed=0, start_counter=0)
    job = step(job, Begin(), 0.0, POLICY).job
    job = step(job, Sent(MessageKind.SCRIPT, 1), 0.0, POLICY).job
    assert job.phase is Phase.WAITING and job.deadline is None  # queued behind pacing: no clock runs
    job = step(job, Accepted(1), 42.0, POLICY).job
    assert job.deadline == 42.0 + POLICY.por_timeout_s


def test_a_refused_submit_is_not_an_attempt_and_is_sent_again_after_the_backoff() -> None:
    job = step(
        step(Job(n=2, confirmed=0, start_counter=0), Begin(), 0.0, POLICY).job,
        Sent(MessageKind.SCRIPT, 1),
        0.0,
        POLICY,
    ).job
    t = step(job, SubmitRefused(1, "SMSC refused submit_sm with status 0x00000045"), 1.0, POLICY)
    assert t.job.phase is Phase.BACKOFF and t.job.attempts == 0 and t.job.script_cntr is None
    assert t.job.next_kind is MessageKind.SCRIPT and t.job.deadline == 1.0 + POLICY.backoff(1)
    t = step(t.job, DeadlinePassed(), t.job.deadline, POLICY)
    assert t.job.phase is Phase.SENDING and t.job.next_kind is MessageKind.SCRIPT


def test_refusals_in_a_row_end_the_job_naming_the_smsc_status() -> None:
    job = step(Job(n=2, confirmed=0, start_counter=0), Begin(), 0.0, POLICY).job
    now = 0.0
    for cntr in range(1, POLICY.max_attempts + 1):
        job = step(job, Sent(job.next_kind or MessageKind.SCRIPT, cntr), now, POLICY).job
        t = step(job, SubmitRefused(cntr, "SMSC refused submit_sm with status 0x00000045"), now, POLICY)
        job = t.job
        if job.phase is Phase.BACKOFF:
            now = job.deadline or now
            job = step(job, DeadlinePassed(), now, POLICY).job
    assert job.phase is Phase.FAILED and "0x00000045" in job.reason and job.attempts == 0


def test_a_late_por_after_the_job_failed_moves_the_record_to_what_the_card_did() -> None:
    failed = _job(Phase.FAILED)
    late = PorArrived(PorReport(TAR, 7, 0, CounterReport(10, 12), 0x9000, 2))
    t = step(failed, late, 500.0, POLICY)
    assert t.job.phase is Phase.DONE and t.job.applied == 4 and t.job.confirmed == 12
    assert "record follows the card" in (t.note or "") and t.commands == ()


def test_a_late_counter_report_after_the_job_failed_moves_the_record_too() -> None:
    failed = _job(Phase.FAILED)
    report = CardReportArrived(CardReport(TAR, 3, CardMessage(CardMessageKind.INFORMATION, 0, 11)))
    t = step(failed, report, 500.0, POLICY)
    assert t.job.phase is Phase.PARTIAL and t.job.applied == 3 and t.job.confirmed == 11
