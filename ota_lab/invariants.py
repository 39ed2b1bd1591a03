"""The lab's invariants, computed from the cards' own reports (docs/labs.md "Invariants").

Both transports prove a run with :func:`check_invariants`: the SMPP path from the handset's report
of every card, the virtual one card by card from the cards' state. Per job (one card, one TAR):

* **lost**: actions the server believes applied (the first ``applied`` of the script) that are not
  in the card's journal;
* **duplicated**: journal entries (after the job's start counter) that break "the script's
  actions, in order, each once": the journal must be a prefix of the script's counted commands
  (WO 00/07153 claim 1c resends exactly the missing suffix), anything after the first divergence or
  beyond the script counts;
* **counter mismatch**: a job the server closed (confirmed/partial) whose counter differs from the
  card's, or an open/failed one whose card counter lies outside [CA, CA + actions not yet proven];
* **stuck**: jobs still pending at the campaign deadline (reported, not an error).

Glossary: CA confirmed action counter; TAR toolkit application reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ota_server.report import REPORT_STATES

__all__ = ["Invariants", "JobView", "check_invariants"]


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
    def of(cls, card: Any, job: Any) -> JobView:
        """From :meth:`CampaignRunner.outcomes` (a card and its reconciliation job)."""
        state = REPORT_STATES.get(job.phase, "pending")
        return cls(card.iccid, card.msisdn, state, job.applied, job.confirmed, job.start_counter, job.reason)

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


def check_invariants(
    jobs: Sequence[JobView], actions: Sequence[Any], tar_hex: str, network_report: dict[str, Any]
) -> Invariants:
    """lost / duplicated / counter mismatches / stuck from the cards' reports (module docstring)."""
    by_key: dict[str, dict[str, Any]] = {}
    for entry in network_report.get("cards", []):
        for key in ("iccid", "msisdn"):
            if entry.get(key):
                by_key[str(entry[key])] = entry
    counted = [a.counted.encode_t0().hex() for a in actions]
    n = len(counted)
    lost = duplicated = mismatches = stuck = missing = 0
    problems: list[dict[str, Any]] = []
    for job in jobs:
        entry = by_key.get(job.iccid) or by_key.get(job.msisdn) or {}
        app = next(
            (a for a in entry.get("applications", []) if str(a.get("tar", "")).lower() == tar_hex), None
        )
        if app is None:
            missing += 1
            continue
        start = job.start_counter
        journal = [
            str(e["apdu"]).lower()
            for e in sorted(app.get("journal", []), key=lambda e: int(e.get("counter", -1)))
            if start is not None and int(e.get("counter", -1)) > start
        ]
        prefix = 0
        while prefix < min(len(journal), n) and journal[prefix] == counted[prefix]:
            prefix += 1
        card_dup = len(journal) - prefix
        card_lost = sum((Counter(counted[: job.applied]) - Counter(journal[:prefix])).values())
        card_counter = app.get("action_counter")
        if job.confirmed is None or card_counter is None:
            mismatch = False
        elif job.state in ("confirmed", "partial"):
            mismatch = card_counter != job.confirmed
        else:
            mismatch = not job.confirmed <= card_counter <= job.confirmed + (n - job.applied)
        stuck += int(job.state == "pending")
        lost += card_lost
        duplicated += card_dup
        mismatches += int(mismatch)
        if card_lost or card_dup or mismatch:
            problems.append(
                {
                    "iccid": job.iccid,
                    "msisdn": job.msisdn,
                    "state": job.state,
                    "lost": card_lost,
                    "duplicated": card_dup,
                    "server_counter": job.confirmed,
                    "card_counter": card_counter,
                    "applied": job.applied,
                    "journal_after_start": len(journal),
                    "reason": job.reason,
                }
            )
    return Invariants(lost, duplicated, mismatches, stuck, missing, tuple(problems[:50]))
