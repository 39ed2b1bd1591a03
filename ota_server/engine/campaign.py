"""PURE: the campaign engine, the one place that holds campaign behaviour (house-style §2.1).

Clauses: docs/campaigns.md (targets, steps, pacing, lifecycle, §6 the exactly-once rules, the fence
rule among them), docs/action-counter.md (claim 1c), house-style §2 (write-ahead CNTR reservation),
SMPP 3.4 §2.7 / §4.4.2 (window, submit_sm_resp), TS 102 225 §5.1.1 (CNTR never reused).

Glossary: slot one job (card, step); CA confirmed action counter; CNTR 03.48 replay counter;
PoR proof of receipt; MO mobile originated; bind one ESME transceiver session.

Theory of operation (sans-I/O, like h11 and aioquic). A shell builds the engine from the campaign,
the targeted cards and a :class:`~ota_server.engine.records.StoreSnapshot`, calls :meth:`start`, then
feeds it events, each with ``now`` (:meth:`handle`), calls :meth:`handle_deadline` when
:meth:`next_deadline` has passed, and after each call performs :meth:`effects` in order:

1. a :class:`~ota_server.engine.records.Commit`: the CNTRs just reserved, job rows, counters, MO
   CNTRs and history, in ONE durable write; nothing after it may be performed if it fails;
2. :class:`~ota_server.engine.events.Submit` effects the pacer released (only messages whose
   reservation an earlier or this Commit holds), and
3. :class:`~ota_server.engine.events.Acknowledge` for deliver_sm whose content the Commit holds.

The engine decides admission (``concurrency`` open jobs, a card's steps in order, ``run_if``),
pacing (:class:`~ota_server.engine.pacing.BindPacer` per bind), every job transition
(:mod:`~ota_server.engine.job_machine`), PoR and card-message matching, pause / resume / cancel and
the campaign deadline. The infrastructure rules of docs/campaigns.md §6.2 live here: a job's PoR
timer starts when the SMSC takes its message; while a job's bind is down its timers are held (and
shifted by the outage when it comes back); a message queued for a job that no longer wants it is
dropped, never sent.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ota_protocols.errors import OtaSimError
from ota_server.engine.campaign_spec import CampaignConfig
from ota_server.engine.deliveries import DeliveryRouter
from ota_server.engine.events import (
    Acknowledge,
    Cancel,
    DeliverArrived,
    Effect,
    EngineEvent,
    LinkDown,
    LinkUp,
    Pause,
    Resume,
    SubmitAnswered,
    SubmitUnanswered,
)
from ota_server.engine.job_machine import step
from ota_server.engine.job_model import (
    Begin,
    DeadlinePassed,
    Event,
    Finish,
    Job,
    Phase,
    Policy,
    SendQuery,
    SendReply,
    SendScript,
    Transition,
    job_replace,
)
from ota_server.engine.job_slots import REPORT_STATES, JobRecord, JobSlot, build_slots
from ota_server.engine.outbound import Outbound
from ota_server.engine.records import Commit, Forwarded, HistoryRow, StoreSnapshot, TargetCard
from ota_server.model import Action
from ota_server.report import Stats, card_state

if TYPE_CHECKING:
    import random

__all__ = ["CampaignEngine"]

TIMELINE_BINS = 200
_SENDS = (SendScript, SendQuery)  # the commands that ask the outbound side for a message


class CampaignEngine:
    """One campaign's behaviour, driven by events and deadlines (module docstring)."""

    def __init__(
        self,
        config: CampaignConfig,
        cards: Iterable[TargetCard],
        snapshot: StoreSnapshot,
        *,
        rng: random.Random,
        issued_counter: int | None = None,
        wall_offset: float = 0.0,
        deadline_s: float | None = None,
        audit: bool = True,
        worker: bool = False,
    ) -> None:
        self.config = config
        self.name = config.campaign.name
        self.rng = rng
        self.wall_offset = wall_offset  # wall clock = now + wall_offset (history rows, finished_at)
        # The audit trail (history rows: every message, answer and note). A lab that keeps no audit
        # trail turns it off; no decision reads it.
        self.audit = audit
        # A worker (docs/campaigns.md §6.7): cards arrive while it runs (add_cards) and leave when
        # they end (release_cards); it ends only once told no more will come (close_intake); a
        # deliver_sm for a card it does not hold is forwarded to the shared store's inbox.
        self.forwards = worker
        self.intake = worker
        self._forwarded: list[Forwarded] = []
        self.deadline_s = config.campaign.deadline_s if deadline_s is None else deadline_s
        self.policy = Policy(
            por_timeout_s=config.retry.por_timeout_s,
            max_attempts=config.retry.max_attempts,
            backoff_s=config.retry.backoff_s,
            max_backoff_s=config.retry.max_backoff_s,
        )
        self.stats = Stats()
        self.issued_counter = issued_counter
        self.slots: list[JobSlot] = list(build_slots(config, cards, snapshot, issued_counter=issued_counter))
        self.by_msisdn: dict[str, list[JobSlot]] = {}
        for slot in self.slots:
            self.by_msisdn.setdefault(slot.card.msisdn, []).append(slot)
        self._ca: dict[tuple[str, str], int] = {}  # (ICCID, TAR) -> CA as this run proved it
        # The cards whose deliver_sm this engine handles: every card, or a worker's held ones.
        self._held = dict(self.by_msisdn) if worker else self.by_msisdn
        self._router = DeliveryRouter(self, dict(snapshot.mo_cntrs), self._held)
        self._out = Outbound(self, dict(snapshot.cntrs))
        self._open: dict[int, JobSlot] = {}
        self._waiting: list[JobSlot] = []
        self._dirty: dict[int, JobSlot] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._history: list[HistoryRow] = []
        self._acks: list[object] = []
        self._effects: list[Effect] = []
        self._turn_at: float | None = None  # inputs arrived since the last effects(): a turn is due
        self._timers: list[tuple[float, int, int]] = []
        self.state = "running"
        self.cancelling = False
        self.finished = False
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._deadline_at: float | None = None
        # Timeline (plots): SMS accepted and jobs closed per bin over the campaign deadline.
        self.bin_s = max(self.deadline_s, 1e-9) / TIMELINE_BINS
        self.sent_bins = [0] * TIMELINE_BINS
        self.closed_bins = {state: [0] * TIMELINE_BINS for state in ("confirmed", "partial", "failed")}
        stored = snapshot.campaign
        if stored is not None and stored.state == "cancelled":
            self.state = "cancelled"
            self.cancelling = True
            for slot in self.slots:
                if not slot.ended:
                    self._cancel_slot(slot, offline=True, now=0.0)
        elif stored is not None and stored.state == "paused":
            self.state = "paused"

    # ------------------------------------------------------------------ the shell's interface

    def start(self, now: float) -> None:
        self.started_at = now
        self._deadline_at = now + self.deadline_s
        self._dirty.update((s.index, s) for s in self.slots)  # every target has a row from the start
        for slot in self.slots:
            if slot.ended or (slot.previous is not None and not slot.previous.ended):
                continue
            if slot.previous is not None and slot.job.phase is Phase.NEW and not slot.may_follow():
                self._skip_rest(slot, slot.previous, now)
                continue
            self._waiting.append(slot)
        self._waiting.reverse()  # pop() from the end takes them in card order
        self._admit(now)
        self._check_finished(now)
        self._pending_turn(now)

    def handle(self, event: EngineEvent, now: float) -> None:
        if isinstance(event, DeliverArrived):
            self._router.deliver(event, now)
            if event.handle is not None:  # a transport that needs no acknowledgement passes None
                self._acks.append(event.handle)
        elif isinstance(event, SubmitAnswered):
            self._out.answered(event, now)
        elif isinstance(event, SubmitUnanswered):
            self._out.unanswered(event, now)
        elif isinstance(event, LinkUp):
            self._on_link_up(event.bind, now)
        elif isinstance(event, LinkDown):
            self._on_link_down(event, now)
        elif isinstance(event, Pause):
            self.pause(now)
        elif isinstance(event, Resume):
            self.resume(now)
        elif isinstance(event, Cancel):
            self.cancel(now)
        self._pending_turn(now)

    def handle_deadline(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, index, version = heapq.heappop(timers)
            slot = self.slots[index]
            if version != slot.version or slot.job.deadline != deadline or slot.ended:
                continue  # superseded
            if not self._out.bound(slot.bind):
                continue  # held: re-armed, shifted by the outage, when the bind comes back
            self.step_slot(slot, DeadlinePassed(), now)
        self._router.expire(now)
        if self._deadline_at is not None and now >= self._deadline_at and not self.finished:
            self._history_note(now, "campaign", "deadline", "campaign deadline: open jobs end as pending")
            self._finish_run(now)
        self._pending_turn(now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_deadline` has work (job timers of bound binds, the pacers,
        the PoR reassembler, the campaign deadline)."""
        if self.finished:
            return None
        best = self._deadline_at
        timers = self._timers
        slots = self.slots
        while timers:
            deadline, index, version = timers[0]
            slot = slots[index]
            job = slot.job
            ended = slot.override is not None or job.phase.terminal  # slot.ended, inline
            if version != slot.version or job.deadline != deadline or ended:
                heapq.heappop(timers)
                continue
            if best is None or deadline < best:
                best = deadline
            break
        for at in (self._out.next_time(self._last_now), self._router.next_deadline()):
            if at is not None and (best is None or at < best):
                best = at
        return best

    def effects(self) -> list[Effect]:
        """What the shell must do now, in order; call it until it returns nothing. Inputs since the
        last call are taken as one turn (group commit). A turn that received deliver_sm comes out in
        two parts: first a Commit of what they settled and their Acknowledge (so the SMSC's MO window
        is not held while packets are built), then the reservations, their Commit and the Submits."""
        if self._turn_at is None and not self._effects:
            return []
        if self._turn_at is not None:
            now = self._turn_at
            if self._acks:
                self._commit(now)
                self._effects.append(Acknowledge(tuple(self._acks)))
                self._acks.clear()
            else:
                self._turn_at = None
                self._turn(now)
        out, self._effects = self._effects, []
        return out

    def _pending_turn(self, now: float) -> None:
        self._last_now = now
        self._turn_at = now

    # ------------------------------------------------------------------ a worker's cards

    def add_cards(self, cards: Iterable[TargetCard], snapshot: StoreSnapshot, now: float) -> int:
        """Cards a worker claimed while running, with what the store holds for them (their CNTRs,
        CAs, MO CNTRs and jobs: a card another worker held resumes as after a crash, so a script that
        may be in the air is settled by a status query first, the fence rule of docs/campaigns.md
        §6.3). They queue behind the cards already waiting. Returns the jobs added."""
        added = list(
            build_slots(
                self.config, cards, snapshot, issued_counter=self.issued_counter, first_index=len(self.slots)
            )
        )
        if not added:
            return 0
        self._out.learn_cntrs(snapshot.cntrs)
        self._router.learn_mo_cntrs(snapshot.mo_cntrs)
        self.slots.extend(added)
        for slot in added:
            self.by_msisdn.setdefault(slot.card.msisdn, []).append(slot)
            if self._held is not self.by_msisdn:
                self._held.setdefault(slot.card.msisdn, []).append(slot)
        self._dirty.update((s.index, s) for s in added)  # every target has a row from the start
        queued = []
        for slot in added:
            if self.cancelling and not slot.ended:
                self._cancel_slot(slot, offline=True, now=now)
                continue
            if slot.ended or slot.previous is not None:
                continue
            queued.append(slot)
        self._waiting[:0] = reversed(queued)  # behind the waiting ones: pop() takes from the end
        self._admit(now)
        self._check_finished(now)
        self._pending_turn(now)
        return len(added)

    @property
    def backlog(self) -> int:
        """Jobs open or waiting for a place (a worker claims more cards below ``concurrency``)."""
        return len(self._open) + len(self._waiting)

    def settled_cards(self) -> list[str]:
        """ICCIDs of cards held whose every job ended with nothing left to learn (no script whose
        outcome a late PoR could still settle): the worker marks them done once this is durable,
        then :meth:`release_cards`."""
        return [
            slots[0].card.iccid
            for slots in self._held.values()
            if all(s.ended and (s.override is not None or s.job.script_cntr is None) for s in slots)
        ]

    def ended_cards(self) -> list[str]:
        """ICCIDs of cards held whose every job ended (a worker leaving marks them done)."""
        return [slots[0].card.iccid for slots in self._held.values() if all(s.ended for s in slots)]

    def holds(self, msisdn: str) -> bool:
        return msisdn in self._held

    def release_cards(self, iccids: Iterable[str]) -> None:
        """Forget ended cards (their slots stay for the report): what still arrives for them is
        another worker's or nobody's."""
        wanted = set(iccids)
        for msisdn in [m for m, slots in self._held.items() if slots[0].card.iccid in wanted]:
            for slot in self._held.pop(msisdn):
                self._close(slot)

    def close_intake(self, now: float) -> None:
        """No more cards will come: the run ends when the held ones have."""
        if self.intake:
            self.intake = False
            self._check_finished(now)
            self._pending_turn(now)

    def forward(self, item: Forwarded) -> None:
        self._forwarded.append(item)

    # ------------------------------------------------------------------ lifecycle

    def pause(self, now: float) -> None:
        """Stop new sends; messages out settle (their PoRs and timeouts are still handled)."""
        if self.state == "running":
            self.state = "paused"
            self._history_note(now, "campaign", self.state, "")

    def resume(self, now: float) -> None:
        if self.state == "paused":
            self.state = "running"
            self._history_note(now, "campaign", self.state, "")
            self._admit(now)

    def cancel(self, now: float) -> None:
        """End every job that has no script in flight as cancelled; a job whose script may still run
        stays open until its fence (status query) tells what ran, and sends no further script."""
        if self.state == "cancelled":
            return
        self.state = "cancelled"
        self.cancelling = True
        self._history_note(now, "campaign", self.state, "")
        for slot in self._waiting:
            self._cancel_slot(slot, now=now)
        self._waiting.clear()
        for slot in self.slots:
            if not slot.ended and (not slot.started or slot.job.script_cntr is None):
                self._cancel_slot(slot, now=now)
        self._check_finished(now)

    def _cancel_slot(self, slot: JobSlot, *, now: float, offline: bool = False) -> None:
        reason = "cancelled"
        if offline and slot.job.script_cntr is not None:
            # Never started again: a script of the interrupted run may have run; say so.
            reason = f"cancelled with script cntr={slot.job.script_cntr} in flight: outcome unknown"
        slot.override = "cancelled"
        slot.job = replace(slot.job, reason=reason)
        slot.finished_at = now + self.wall_offset
        self._dirty[slot.index] = slot
        if slot.started and not offline:
            slot.version += 1  # its timers are void
            self._close(slot)
        slot.started = True

    def _skip_rest(self, slot: JobSlot | None, previous: JobSlot, now: float) -> None:
        while slot is not None:
            slot.override = "skipped"
            slot.job = replace(slot.job, reason=f"not run: step {previous.step + 1} ended {previous.state}")
            slot.finished_at = now + self.wall_offset
            slot.started = True
            self._dirty[slot.index] = slot
            slot = slot.next

    def cancel_open_slot(self, slot: JobSlot, now: float) -> None:
        """Cancel: a job whose fence said what ran asks for a script; the rest is never sent."""
        self._cancel_slot(slot, now=now)
        self._check_finished(now)

    def note_sent(self, now: float) -> None:
        self.sent_bins[self._bin(now)] += 1

    def _finish_run(self, now: float) -> None:
        self.finished = True
        self.ended_at = now

    def _check_finished(self, now: float) -> None:
        if not self._open and not self._waiting and not self.finished and not self.intake:
            self._finish_run(now)

    # ------------------------------------------------------------------ admission

    def _admit(self, now: float) -> None:
        if self.state != "running":
            return
        limit = self.config.campaign.concurrency
        while self._waiting and len(self._open) < limit:
            slot = self._waiting.pop()
            if slot.ended:
                continue
            slot.started = True
            self._open[slot.index] = slot
            job = slot.job
            if job.phase is Phase.NEW and job.script_cntr is None and job.attempts == 0 and job.queries == 0:
                # A later step on a TAR an earlier step just used starts from the counter it left.
                base = self._ca.get((slot.card.iccid, slot.tar_hex), job.confirmed)
                if base != job.confirmed or base != job.start_counter:
                    slot.job = job_replace(job, confirmed=base, start_counter=base)
            self._router.register(slot)
            self.step_slot(slot, Begin(), now)

    def _close(self, slot: JobSlot) -> None:
        """The slot's job is over for this run: free its place, forget its keys."""
        if self._open.pop(slot.index, None) is not None:
            self._router.unregister(slot)
        slot.forget_keys()

    # ------------------------------------------------------------------ transitions

    def step_slot(self, slot: JobSlot, event: Event, now: float) -> None:
        if slot.override is not None:
            return  # cancelled or skipped: whatever still arrives for it is in the history only
        self.apply(slot, step(slot.job, event, now, self.policy), now)

    def apply(self, slot: JobSlot, t: Transition, now: float) -> None:
        before = slot.job
        job = slot.job = t.job
        if t.note and self.audit:
            self._history.append(
                HistoryRow(
                    now + self.wall_offset,
                    self.name,
                    slot.card.iccid,
                    "note",
                    "job",
                    None,
                    t.job.phase.value,
                    t.note,
                )
            )
        note = t.note
        if not t.changed and not note:
            return
        if t.durable or note:
            self._dirty[slot.index] = slot
        confirmed = job.confirmed
        if confirmed is not None and confirmed != before.confirmed:
            key = (slot.card.iccid, slot.tar_hex)
            self._counters[key] = confirmed
            self._ca[key] = confirmed
        for command in t.commands:
            if isinstance(command, _SENDS):
                self._out.to_send[slot.index] = slot
            elif isinstance(command, SendReply):
                self._out.replies_out.append((slot, command.sequences))
            elif isinstance(command, Finish):
                self._on_finish(slot, now)
        phase = job.phase
        if phase is not before.phase:
            if before.phase.terminal and not phase.terminal:  # pragma: no cover - the table forbids it
                raise OtaSimError(f"job {slot.card.iccid} left a terminal phase")
            if phase.terminal:
                self._count_closed(before, job, now)
        deadline = job.deadline
        if deadline is not None and deadline != before.deadline:
            slot.version += 1
            heapq.heappush(self._timers, (deadline, slot.index, slot.version))

    def _count_closed(self, before: Job, job: Job, now: float) -> None:
        state = REPORT_STATES.get(job.phase)
        if state is not None:
            self.closed_bins[state][self._bin(now)] += 1
            old = REPORT_STATES.get(before.phase)
            if old is not None:  # a late report moved an ended job (the record follows the card)
                self.closed_bins[old][self._bin(now)] -= 1

    def _on_finish(self, slot: JobSlot, now: float) -> None:
        slot.finished_at = now + self.wall_offset
        nxt = slot.next
        if nxt is not None and not nxt.ended and not self.cancelling:
            if nxt.may_follow():
                self._waiting.append(nxt)  # next in line: pop() takes it before other cards
            else:
                self._skip_rest(nxt, slot, now)
        if not slot.started:
            # Settled by a card message before it was admitted (a resumed job): never opened.
            slot.started = True
            if slot in self._waiting:
                self._waiting.remove(slot)
        elif slot.job.script_cntr is None:
            self._close(slot)
        else:
            # Ended with a script's outcome unknown: its place is free, but a late PoR may still
            # settle it (docs/campaigns.md §6.3), so the PoR index keeps it.
            self._open.pop(slot.index, None)
        self._admit(now)
        self._check_finished(now)

    # ------------------------------------------------------------------ the link

    def _on_link_up(self, bind: int, now: float) -> None:
        down_since = self._out.link_up(bind)
        self._history_note(now, "link", "up", f"bind {bind}")
        if down_since is None or self.started_at is None:
            return
        # docs/campaigns.md §6.2: no job runs out of time for want of a link; its timers were held.
        outage = max(0.0, now - max(down_since, self.started_at))
        for slot in self._open.values():
            if slot.bind == bind and slot.job.deadline is not None:
                slot.job = replace(slot.job, deadline=slot.job.deadline + outage)
                slot.version += 1
                heapq.heappush(self._timers, (slot.job.deadline, slot.index, slot.version))
                self._dirty[slot.index] = slot

    def _on_link_down(self, event: LinkDown, now: float) -> None:
        self._out.link_down(event, now)
        self._history_note(now, "link", "down", f"bind {event.bind}")

    # ------------------------------------------------------------------ the turn: commit, then send

    def _turn(self, now: float) -> None:
        """Reserve and build what the jobs asked for, put it all in ONE Commit, then release what
        the pacers allow (the Submits follow the Commit that holds them)."""
        self._last_now = now
        out = self._out
        if out.to_send or out.replies_out:
            out.reserve_and_build(now)
        self._commit(now)
        submits = out.pump(now)
        if submits:
            self._effects.extend(submits)

    def _commit(self, now: float) -> None:
        if (
            self._dirty
            or self._out.reservations
            or self._counters
            or self._history
            or self._router.dirty_mo
            or self._forwarded
        ):
            wall = now + self.wall_offset
            name = self.name
            commit = Commit(
                reservations=self._out.take_reservations(),
                jobs=tuple([JobRecord(name, slot, wall) for slot in self._dirty.values()]),
                counters=tuple([(i, t, v) for (i, t), v in self._counters.items()]) if self._counters else (),
                mo_counters=self._router.take_dirty_mo(),
                history=tuple(self._history),
                at=wall,
                forwarded=tuple(self._forwarded),
            )
            self._forwarded.clear()
            self._dirty.clear()
            self._counters.clear()
            self._history.clear()
            self._effects.append(commit)

    # ------------------------------------------------------------------ history, report

    def _history_note(self, now: float, kind: str, status: str, detail: str) -> None:
        if not self.audit:
            return
        self._history.append(
            HistoryRow(now + self.wall_offset, self.name, None, "note", kind, None, status, detail)
        )

    def history(self, row: HistoryRow) -> None:
        if self.audit:
            self._history.append(row)

    def _bin(self, now: float) -> int:
        start = self.started_at or 0.0
        return min(max(int((now - start) / self.bin_s), 0), TIMELINE_BINS - 1)

    def counts(self) -> Counter[str]:
        """Cards by overall state: confirmed when every step was, else the first other step's state."""
        c: Counter[str] = Counter()
        for slots in self.by_msisdn.values():
            c[card_state([slot.state for slot in slots])] += 1
        return c

    def step_outcomes(self) -> list[tuple[Any, Job, tuple[Action, ...], str]]:
        """Every job (card, step) with its actions and TAR (for :func:`ota_server.report.verify_jobs`)."""
        return [(s.card, s.job, s.actions, s.tar_hex) for s in self.slots]

    @property
    def resent_actions(self) -> int:
        return sum(s.job.resent_actions for s in self.slots)

    def links_bound(self) -> list[bool]:
        """Per bind (``[pacing] binds``): whether its link is bound now."""
        return [self._out.bound(bind) for bind in range(len(self._out.pacers))]

    def jobs_done(self) -> int:
        return sum(1 for s in self.slots if s.ended)

    def timeline(self) -> dict[str, Any]:
        return {
            "bin_s": self.bin_s,
            "sent": list(self.sent_bins),
            "closed": {k: list(v) for k, v in self.closed_bins.items()},
        }
