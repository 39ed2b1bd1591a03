"""PURE: the campaign's jobs as the engine holds them: one slot per (card, step), built from the
campaign, the targeted cards and what the store kept from earlier runs.

Clauses: docs/campaigns.md §2 (targets, steps, per-card CSV parameters, ``run_if``), §6 (resume).

Glossary: slot one job (card, step) with what the engine needs around the pure Job: the card, its
keys while open, the actions, the bind its messages use; CA confirmed action counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from ota_protocols.errors import ConfigError
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_server.engine.campaign_spec import CampaignConfig
from ota_server.engine.job_model import Job, Phase
from ota_server.engine.records import JobRow, StoreSnapshot, TargetCard, job_extra, resume_job
from ota_server.model import Action, Card, Security, packet_keys_for
from ota_server.report import REPORT_STATES

__all__ = ["REPORT_STATES", "JobRecord", "JobSlot", "build_slots"]


class JobSlot:
    """One job (card, step). A card's steps run in order: ``next`` is admitted when this one ends."""

    __slots__ = (
        "_keys",
        "_pending",
        "actions",
        "bind",
        "card",
        "finished_at",
        "index",
        "job",
        "keysets",
        "next",
        "override",
        "previous",
        "run_if",
        "security",
        "started",
        "step",
        "tar_hex",
        "version",
    )

    def __init__(
        self,
        index: int,
        card: Card,
        keysets: Any,
        job: Job,
        *,
        step: int,
        security: Security,
        actions: tuple[Action, ...],
        run_if: str,
        bind: int,
    ) -> None:
        self.index = index
        self.card = card
        self.keysets = keysets
        self.job = job
        self.step = step
        self.security = security
        self.tar_hex = security.tar.hex()
        self.actions = actions
        self.run_if = run_if
        self.bind = bind
        self.version = 0
        self.started = False
        self.override: str | None = None  # "cancelled" / "skipped": ended by the engine, not the card
        self.next: JobSlot | None = None
        self.previous: JobSlot | None = None
        self.finished_at: float | None = None
        self._keys: PacketKeys | None = None
        self._pending: PendingActions | None = None  # made with the slot's first JobRecord

    @property
    def tar(self) -> bytes:
        return self.security.tar

    @property
    def counter_kvn(self) -> int:
        return self.security.counter_kvn

    @property
    def keys(self) -> PacketKeys:
        """The job's PacketKeys (key schedules kept while the job is open, see :meth:`forget_keys`)."""
        if self._keys is None:
            self._keys = packet_keys_for(self.keysets, self.security)
        return self._keys

    def pending_json(self, applied: int) -> list[list[str]]:
        """The actions not yet confirmed, as the jobs table keeps them (hex APDUs)."""
        return self.pending_actions().json(applied)

    def pending_actions(self) -> PendingActions:
        pending = self._pending
        if pending is None:
            pending = self._pending = PendingActions(self.actions)
        return pending

    def forget_keys(self) -> None:
        self._keys = None

    @property
    def ended(self) -> bool:
        return self.override is not None or self.job.phase.terminal

    @property
    def state(self) -> str:
        return self.override or REPORT_STATES.get(self.job.phase, "pending")

    def may_follow(self) -> bool:
        """A step runs after the card's previous step ended confirmed, or whatever it ended with
        when the step says ``run_if = "always"``."""
        return self.previous is None or self.run_if == "always" or self.previous.state == "confirmed"


def build_slots(
    config: CampaignConfig,
    cards: Iterable[TargetCard],
    snapshot: StoreSnapshot,
    *,
    issued_counter: int | None,
    first_index: int = 0,
) -> Iterator[JobSlot]:
    """Every targeted card's chain of step jobs, in card order (targets narrowed here: docs §2);
    ``first_index``: the engine's slot count when cards are added to a running engine (a worker)."""
    targets = config.targets
    csv_key = targets.csv.key if targets.csv else None
    index = first_index
    binds = max(1, config.pacing.binds)
    # Jobs are immutable: consecutive cards whose first Job is the same (n, CA), as a fleet's issued
    # counter makes them, share one (memory and time at start; one Job kept, so nothing grows).
    fresh = Job(n=-1)
    for target in cards:
        card = target.card
        if not targets.selects(card):
            continue
        previous: JobSlot | None = None
        for k, step_config in enumerate(config.steps):
            sec = step_config.security
            if sec.counter_kvn not in target.keysets:
                where = f"steps[{k}].security.kic" if len(config.steps) > 1 else "security.kic"
                raise ConfigError(
                    where, f"card {card.iccid} has no key set {sec.counter_kvn}", source=str(config.source)
                )
            actions = step_config.actions_for(getattr(card, csv_key) if csv_key else None)
            tar_hex = sec.tar.hex()
            # The stored CA: from earlier reports, else the issuer's record of the fleet (a wrong
            # record is caught by the PoR's "before" value); unknown: the job asks the card first.
            base = snapshot.confirmed.get((card.iccid, tar_hex), issued_counter)
            if fresh.n != len(actions) or fresh.confirmed != base:
                fresh = Job(n=len(actions), confirmed=base, start_counter=base)
            slot = JobSlot(
                index,
                card,
                target.keysets,
                fresh,
                step=k,
                security=sec,
                actions=actions,
                run_if=step_config.run_if,
                bind=index % binds,
            )
            stored = snapshot.jobs.get((card.iccid, tar_hex, k))
            if stored is not None:
                if stored.state in ("cancelled", "skipped"):
                    slot.override = stored.state
                    slot.job = replace(resume_job(stored, len(actions), base), phase=Phase.NEW)
                else:
                    slot.job = resume_job(stored, len(actions), base)
                finished_at = (stored.extra or {}).get("finished_at")
                slot.finished_at = float(finished_at) if isinstance(finished_at, int | float) else None
            if previous is not None:
                previous.next = slot
                slot.previous = previous
            previous = slot
            index += 1
            yield slot


class PendingActions:
    """A job's actions and the JSON of the ones not yet confirmed (the jobs table's ``pending``
    column), computed when a store first asks for a row with that many applied, then kept for the
    next rows. One per slot; the slot's JobRecords share it (not the slot: a store that outlives an
    engine keeps this, not the engine's slots and keys)."""

    __slots__ = ("_applied", "_json", "actions")

    def __init__(self, actions: tuple[Action, ...]) -> None:
        self.actions = actions
        self._applied = -1
        self._json: list[list[str]] = []

    def json(self, applied: int) -> list[list[str]]:
        if applied != self._applied:
            self._json = [a.to_json() for a in self.actions[applied:]]
            self._applied = applied
        return self._json


class JobRecord:
    """A job as one Commit keeps it: the immutable Job and the slot's few mutable facts, captured when
    the commit is made; the store's row (JSON columns and all) is built only by a store that needs it
    (:meth:`row`): the SQLite store at once, the lab's memory store only when a runner restarts."""

    __slots__ = ("_pending", "campaign", "card", "finished_at", "job", "override", "step", "tar", "wall")

    def __init__(self, campaign: str, slot: JobSlot, wall: float) -> None:
        self.campaign = campaign
        self.card = slot.card
        self.tar = slot.tar_hex
        self.step = slot.step
        self.job = slot.job
        self.override = slot.override
        self.finished_at = slot.finished_at
        pending = slot._pending
        self._pending = pending if pending is not None else slot.pending_actions()
        self.wall = wall

    @property
    def actions_json(self) -> list[list[str]]:
        """The actions this record's job has not yet confirmed, as hex APDUs (built on first ask)."""
        return self._pending.json(self.job.applied)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.card.iccid, self.tar, self.step)

    def row(self) -> JobRow:
        job = self.job
        return JobRow(
            campaign=self.campaign,
            iccid=self.card.iccid,
            tar=self.tar,
            state=self.override or job.phase.value,
            pending=self.actions_json,
            n=job.n,
            applied=job.applied,
            base=job.confirmed,
            start_counter=job.start_counter,
            attempts=job.attempts,
            queries=job.queries,
            resent_actions=job.resent_actions,
            outstanding=list(job.outstanding_cntrs),
            result=self.override or REPORT_STATES.get(job.phase, ""),
            reason=job.reason,
            counter_path=job.counter_path,
            statuses=list(job.statuses),
            updated_at=self.wall,
            extra=job_extra(job, self.finished_at),
            step=self.step,
        )
