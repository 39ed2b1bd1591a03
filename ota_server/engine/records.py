"""PURE: what the engine asks a store to keep, and what it reads back at start (one vocabulary for
every backend: SQLite in the SMPP shell, memory in the virtual lab).

Clauses: house-style §2 (write-ahead: a CNTR reservation is durable before its SMS leaves),
TS 102 225 §5.1.1 (a CNTR value is never used twice), docs/campaigns.md §6 (what a restart reads).

Glossary: CNTR 03.48 replay counter (per key set); KVN key version number; TAR toolkit application
reference; CA confirmed action counter; MO mobile originated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ota_server.engine.job_model import Job, Phase
from ota_server.model import Card, Keyset

__all__ = [
    "CAMPAIGN_STATES",
    "CampaignRow",
    "Commit",
    "Forwarded",
    "HistoryRow",
    "JobRow",
    "Reservation",
    "StoreSnapshot",
    "TargetCard",
    "job_extra",
    "resume_job",
]

CAMPAIGN_STATES = ("running", "paused", "cancelled", "finished")


@dataclass(slots=True)
class JobRow:
    campaign: str
    iccid: str
    tar: str
    state: str
    pending: list[list[str]]
    n: int
    applied: int
    base: int | None
    start_counter: int | None
    attempts: int
    queries: int
    resent_actions: int
    outstanding: list[int] = field(default_factory=list)
    result: str = ""
    reason: str = ""
    counter_path: str | None = None
    statuses: list[str] = field(default_factory=list)
    updated_at: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    step: int = 0

    def row(self) -> JobRow:
        return self

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.iccid, self.tar, self.step)


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A campaign's lifecycle row: the state the operator asked for and who runs it (the lease)."""

    name: str
    state: str  # running, paused, cancelled, finished
    source: str
    started_at: float | None
    updated_at: float
    runner_pid: int | None
    heartbeat_at: float | None
    runner_host: str | None = None
    runner_token: str | None = None


class Reservation(NamedTuple):
    """A CNTR the engine took for one message (TS 102 225 §5.1.1: stored before the SMS leaves)."""

    iccid: str
    kvn: int
    cntr: int
    campaign: str
    kind: str
    detail: str = ""


class HistoryRow(NamedTuple):
    at: float
    campaign: str | None
    iccid: str | None
    direction: str
    kind: str
    cntr: int | None = None
    status: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A deliver_sm for a card another worker owns (docs/campaigns.md §6.7): kept in the shared
    store's inbox by the Commit before its acknowledgement, handled by the card's owner."""

    msisdn: str
    esm_class: int
    user_data: bytes
    receipted_message_id: str | None = None
    message_state: int | None = None


class Commit(NamedTuple):
    """One durable write (an effect): everything in it commits atomically, and the effects after it
    (submits, deliver_sm acknowledgements) are performed only once it has. Immutable, like the
    Reservation and HistoryRow it carries; the three are NamedTuples, built per turn and per message
    (a frozen dataclass sets each field through ``object.__setattr__``). False when empty."""

    reservations: tuple[Reservation, ...] = ()
    jobs: tuple[Any, ...] = ()  # job_slots.JobRecord (or JobRow): ``row()`` gives the store's row
    counters: tuple[tuple[str, str, int], ...] = ()  # (ICCID, TAR hex, CA)
    mo_counters: tuple[tuple[str, str, int], ...] = ()  # (ICCID, TAR hex, last MO CNTR accepted)
    history: tuple[HistoryRow, ...] = ()
    at: float = 0.0  # wall clock
    forwarded: tuple[Forwarded, ...] = ()  # deliver_sm for another worker's cards (the inbox)

    def __bool__(self) -> bool:
        return bool(
            self.reservations
            or self.jobs
            or self.counters
            or self.mo_counters
            or self.history
            or self.forwarded
        )


@dataclass(frozen=True, slots=True)
class TargetCard:
    """A card the campaign may target, with its key sets (from the inventory or a fleet)."""

    card: Card
    keysets: Mapping[int, Keyset]


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What a store holds for a campaign when a run starts (read-only to the engine)."""

    cntrs: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (ICCID, KVN) -> last CNTR
    confirmed: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (ICCID, TAR hex) -> CA
    mo_cntrs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    jobs: Mapping[tuple[str, str, int], JobRow] = field(default_factory=dict)  # (ICCID, TAR, step)
    campaign: CampaignRow | None = None


def job_extra(job: Job, finished_at: float | None = None) -> dict[str, Any]:
    return {
        "finished_at": finished_at,
        "last_sw": job.last_sw,
        "script_cntr": job.script_cntr,
        "script_count": job.script_count,
        "query_cntrs": list(job.query_cntrs),
        "replies": list(job.replies),
        "mo_reports": job.mo_reports,
        "mo_counter": job.mo_counter,
        "replies_sent": job.replies_sent,
        "mismatches": job.mismatches,
        "unanswered": job.unanswered,
    }


def resume_job(row: JobRow, n: int, confirmed: int | None) -> Job:
    """A job of an earlier run of this campaign (same store): keep its outcome, or pick it up again."""
    extra = row.extra or {}
    phase = Phase(row.state) if row.state in {p.value for p in Phase} else Phase.NEW
    script_cntr = extra.get("script_cntr") if "script_cntr" in extra else None
    if "script_cntr" not in extra and row.outstanding:  # a row written before ``extra``
        script_cntr = row.outstanding[0]
    common: dict[str, Any] = {
        "n": n,
        "applied": row.applied,
        "confirmed": confirmed if confirmed is not None else row.base,
        "start_counter": row.start_counter,
        "attempts": row.attempts,
        "queries": row.queries,
        "resent_actions": row.resent_actions,
        "counter_path": row.counter_path,
        "statuses": tuple(row.statuses),
        "reason": row.reason,
        "mo_reports": int(extra.get("mo_reports", 0)),  # type: ignore[call-overload]
        "mo_counter": extra.get("mo_counter"),
        "replies_sent": int(extra.get("replies_sent", 0)),  # type: ignore[call-overload]
        "mismatches": int(extra.get("mismatches", 0)),  # type: ignore[call-overload]
        "last_sw": extra.get("last_sw"),
    }
    script_count = int(extra.get("script_count", n - row.applied)) if script_cntr is not None else 0  # type: ignore[call-overload]
    if phase.terminal:
        # A job that ended with its script's outcome unknown keeps it: a late PoR may still settle it.
        return Job(phase=phase, script_cntr=script_cntr, script_count=script_count, **common)
    # Unresolved message from the interrupted run: its CNTR marks a script that may have run, so the
    # restart begins with a status query (Begin sees script_cntr), never with a resend. The query is
    # the fence; owed transaction replies ride on it.
    return Job(
        script_cntr=script_cntr,
        script_count=script_count,
        replies=tuple(int(q) for q in extra.get("replies", ())),  # type: ignore[attr-defined]
        **common,
    )
