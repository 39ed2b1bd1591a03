"""The lab's invariants for every job of a campaign (every step, per-card actions), computed from
the cards' own journals (docs/labs.md "Invariants"); both transports prove a run with
:func:`check_steps` (:func:`check_invariants` is the same check for one-step report rows).

Clauses: WO 00/07153 claim 1c (a card runs a script's actions in order and stops at the first
failure; the server resends exactly the missing suffix).

Per (card, TAR), the jobs of that TAR in step order share the card's action counter and journal.
Walking the journal (entries after the first job's start counter, by counter), each job consumes
the longest prefix of its own actions found there, in order:

* **duplicated**: what is left over ran although no job sent it that way;
* **lost**: a job whose server record says more actions ran than it consumed lost the difference;
* **counter mismatch**: a closed job (confirmed / partial) whose confirmed counter differs from the
  card's, or an open / failed one whose card counter lies outside [CA, CA + actions not yet proven];
* **stuck**: jobs still pending at the lab's deadline (reported; a sweep counts them).

Glossary: CA confirmed action counter; TAR toolkit application reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ota_server.report import application_entry, counted_hex

__all__ = [
    "Invariants",
    "JobView",
    "StepView",
    "applications_of",
    "check_invariants",
    "check_steps",
    "step_views",
]


@dataclass(frozen=True, slots=True)
class Invariants:
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    stuck: int = 0
    missing_cards: int = 0
    problems: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.mismatches == self.missing_cards == 0


@dataclass(frozen=True, slots=True)
class JobView:
    """What the invariants need of one job: the server's belief about one (card, TAR)."""

    iccid: str
    msisdn: str
    state: str  # confirmed | partial | failed | pending
    applied: int
    confirmed: int | None
    start_counter: int | None
    reason: str = ""

    @classmethod
    def from_report(cls, row: dict[str, Any]) -> JobView:
        """From one ``cards[]`` row of an ``ota-server campaign run --report`` file."""
        return cls(
            str(row["iccid"]),
            str(row["msisdn"]),
            str(row["state"]),
            int(row["executed"]),
            row.get("confirmed_counter"),
            row.get("start_counter"),
            str(row.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class StepView:
    """The server's belief about one job (card, step)."""

    iccid: str
    msisdn: str
    tar_hex: str
    step: int
    state: str  # confirmed | partial | failed | pending | cancelled | skipped
    applied: int
    confirmed: int | None
    start_counter: int | None
    counted: tuple[str, ...]  # the counted APDU of each of the job's actions, T=0 hex
    reason: str = ""


def check_steps(
    views: Iterable[StepView], application: Any
) -> tuple[int, int, int, int, int, list[dict[str, Any]]]:
    """(lost, duplicated, mismatches, stuck, missing cards, problems). ``application(iccid, msisdn,
    tar_hex)`` returns the card's report entry for that TAR (``SimCard.report`` format) or None."""
    groups: dict[tuple[str, str], list[StepView]] = {}
    stuck = 0
    for view in views:
        groups.setdefault((view.iccid, view.tar_hex), []).append(view)
        stuck += int(view.state == "pending")
    lost = duplicated = mismatches = missing = 0
    problems: list[dict[str, Any]] = []
    for (iccid, tar_hex), members in groups.items():
        members.sort(key=lambda v: v.step)
        started = [m for m in members if m.start_counter is not None]
        if not started:
            continue  # never contacted: nothing expected
        app = application(iccid, members[0].msisdn, tar_hex)
        if app is None:
            missing += 1
            continue
        start = started[0].start_counter
        journal = [
            str(e["apdu"]).lower()
            for e in sorted(app.get("journal", []), key=lambda e: int(e.get("counter", -1)))
            if start is not None and int(e.get("counter", -1)) > start
        ]
        at = 0
        card_lost = 0
        for member in members:
            taken = _prefix(journal, at, member.counted)
            at += taken
            card_lost += max(0, member.applied - taken)
        card_dup = len(journal) - at
        card_counter = app.get("action_counter")
        last = next((m for m in reversed(members) if m.confirmed is not None), None)
        mismatch = False
        if last is not None and card_counter is not None:
            assert last.confirmed is not None
            if last.state in ("confirmed", "partial"):
                mismatch = card_counter != last.confirmed
            else:
                open_actions = len(last.counted) - last.applied
                mismatch = not last.confirmed <= card_counter <= last.confirmed + open_actions
        lost += card_lost
        duplicated += card_dup
        mismatches += int(mismatch)
        if card_lost or card_dup or mismatch:
            problems.append(
                {
                    "iccid": iccid,
                    "tar": tar_hex,
                    "states": [m.state for m in members],
                    "lost": card_lost,
                    "duplicated": card_dup,
                    "server_counter": last.confirmed if last else None,
                    "card_counter": card_counter,
                    "applied": [m.applied for m in members],
                    "journal_after_start": len(journal),
                    "reasons": [m.reason for m in members],
                }
            )
    return lost, duplicated, mismatches, stuck, missing, problems[:50]


def _prefix(journal: Sequence[str], at: int, counted: Sequence[str]) -> int:
    n = 0
    while n < len(counted) and at + n < len(journal) and journal[at + n] == counted[n]:
        n += 1
    return n


def step_views(slots: Iterable[Any]) -> list[StepView]:
    """The engine's jobs (``CampaignEngine.slots``) as the invariants see them."""
    return [
        StepView(
            slot.card.iccid,
            slot.card.msisdn,
            slot.tar.hex(),
            slot.step,
            slot.state,
            slot.job.applied,
            slot.job.confirmed,
            slot.job.start_counter,
            tuple(counted_hex(slot.actions)),
            slot.job.reason,
        )
        for slot in slots
    ]


def applications_of(network_report: dict[str, Any]) -> Callable[[str, str, str], dict[str, Any] | None]:
    """``application(iccid, msisdn, tar_hex)`` over a handset report (``HandsetService.report()``)."""
    by_key: dict[str, dict[str, Any]] = {}
    for entry in network_report.get("cards", []):
        for key in ("iccid", "msisdn"):
            if entry.get(key):
                by_key[str(entry[key])] = entry
    return lambda iccid, msisdn, tar: application_entry(by_key.get(iccid) or by_key.get(msisdn), tar)


def _invariants(found: tuple[int, int, int, int, int, list[dict[str, Any]]]) -> Invariants:
    lost, duplicated, mismatches, stuck, missing, problems = found
    return Invariants(lost, duplicated, mismatches, stuck, missing, tuple(problems))


def check_invariants(
    jobs: Sequence[JobView], actions: Sequence[Any], tar_hex: str, network_report: dict[str, Any]
) -> Invariants:
    """:func:`check_steps` for one-step jobs that share one action list (report rows, say)."""
    counted = tuple(counted_hex(actions))
    views = [
        StepView(
            j.iccid, j.msisdn, tar_hex, 0, j.state, j.applied, j.confirmed, j.start_counter, counted, j.reason
        )
        for j in jobs
    ]
    return _invariants(check_steps(views, applications_of(network_report)))
