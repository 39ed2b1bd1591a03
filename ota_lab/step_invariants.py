"""The lab's invariants for every job of a campaign (every step, per-card actions), from the cards'
own journals: what the sweeps count as lost, duplicated, counter mismatches and stuck.

Clauses: WO 00/07153 claim 1c (a card runs a script's actions in order and stops at the first
failure; the server resends exactly the missing suffix), docs/labs.md "Invariants".

Per (card, TAR), the jobs of that TAR in step order share the card's action counter and journal.
Walking the journal (entries after the first job's start counter, by counter): each job consumes
the longest prefix of its own actions found there, in order; whatever is left over ran although
no job sent it that way: **duplicated**. A job whose server record says more actions ran than it
consumed lost the difference: **lost**. **Counter mismatch**: a closed job (confirmed / partial)
whose confirmed counter differs from the card's, or an open / failed one whose card counter lies
outside [CA, CA + actions not yet proven]. **Stuck**: jobs still pending at the lab's deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["StepView", "check_steps"]


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
