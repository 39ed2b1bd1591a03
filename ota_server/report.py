"""The campaign report's pure parts (PURE): states, counters, per-card rows, verification.

One definition serves both shells that run campaigns: :class:`ota_server.service.CampaignRunner`
(asyncio, real SMPP) and the virtual-time lab (``ota_lab.virtual``), so that a report means the same
thing on both (docs/campaigns.md §3, docs/labs.md "Virtual time").

* :data:`REPORT_STATES` / :func:`state_of`: a job's phase as the report's state;
* :class:`Stats`: the runner's message counters, :func:`stats_summary` their summary fields;
* :func:`card_row`: one card's row (``cards`` in the report);
* :func:`check_card` / :func:`verify_jobs` / :func:`verification`: the proof of a run against the
  cards' own journals (lost = expected - journal, duplicated = journal - expected, as multisets of
  counted APDUs after the job's start counter; mismatch = the server's confirmed counter is not the
  card's action counter; docs/action-counter.md claim 1c).

Keys never appear here: a row names the card (ICCID, MSISDN) and the TAR only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ota_protocols.prometheus import Histogram
from ota_server.engine.job_model import Job, Phase
from ota_server.model import Action, Card

__all__ = [
    "REPORT_MEANINGS",
    "REPORT_STATES",
    "Stats",
    "application_entry",
    "card_row",
    "card_state",
    "check_card",
    "counted_hex",
    "state_of",
    "stats_summary",
    "verification",
    "verify_jobs",
]

REPORT_STATES = {
    Phase.DONE: "confirmed",
    Phase.PARTIAL: "partial",
    Phase.FAILED: "failed",
}

# docs/campaigns.md §3: what the report's per-card fields say.
REPORT_MEANINGS = {
    "state": {
        "confirmed": "every action proven run by the card's action counter (claim 1c)",
        "partial": "some actions ran; the rest failed permanently (reason names the SW)",
        "failed": "no action of this campaign ran, or the outcome could not be proven",
        "pending": "still open at the campaign deadline (resumed by the next run on this --db)",
    },
    "counter_path": {
        "por": "the script's own PoR (claims 5-6)",
        "query": "a status query's PoR: a fence, older scripts are dead",
        "transaction": "a card's transaction request (claim 8)",
        "information": "a card's information message (claim 9)",
    },
}


def state_of(job: Job) -> str:
    """The report state of a job: confirmed / partial / failed, else pending."""
    return REPORT_STATES.get(job.phase, "pending")


def card_state(states: Sequence[str]) -> str:
    """A card's state from its steps' states, in step order."""
    return next((s for s in states if s != "confirmed"), "confirmed")


POR_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Stats:
    messages_sent: int = 0  # SMS segments handed to the SMSC
    packets_sent: int = 0  # command packets (scripts + queries)
    scripts_sent: int = 0
    queries_sent: int = 0
    submit_accepted: int = 0
    submit_failed: int = 0
    por_received: int = 0
    por_rejected: int = 0
    por_unmatched: int = 0
    receipts: int = 0
    throttled: int = 0
    mo_received: int = 0  # card messages accepted (authenticated, fresh MO CNTR)
    mo_rejected: int = 0  # undecodable, unauthenticated or wrong checksum
    mo_replayed: int = 0  # MO CNTR not above the last accepted: a copy, never processed twice
    mo_unmatched: int = 0  # unknown MSISDN, or a TAR without a job of this campaign
    replies_sent: int = 0  # TRANSACTION REPLY commands sent (message 2)
    # For ``ota-server serve``'s /metrics (counted by the engine, read at scrape time):
    submits: int = 0  # submit_sm released to a link (segments; a throttled one counts again)
    submit_status: Counter[int] = field(default_factory=Counter)  # submit_sm_resp command_status
    por_status: Counter[int] = field(default_factory=Counter)  # matched PoRs by response status
    # SMSC acceptance of a job's latest message (its PoR timer's start) -> its PoR, in seconds.
    por_latency: Histogram = field(default_factory=lambda: Histogram(POR_LATENCY_BUCKETS_S))


def stats_summary(stats: Stats, resent_actions: int) -> dict[str, int]:
    """The summary's message counters, in the report's order."""
    return {
        "messages_sent": stats.messages_sent,
        "packets_sent": stats.packets_sent,
        "scripts_sent": stats.scripts_sent,
        "queries_sent": stats.queries_sent,
        "por_received": stats.por_received,
        "por_rejected": stats.por_rejected,
        "resent_actions": resent_actions,
        "throttled": stats.throttled,
        "card_messages": stats.mo_received,
        "card_messages_rejected": stats.mo_rejected,
        "card_messages_replayed": stats.mo_replayed,
        "card_messages_unmatched": stats.mo_unmatched,
        "replies_sent": stats.replies_sent,
    }


def card_row(
    iccid: str, msisdn: str, tar_hex: str, state: str, job: Job, *, step: str | None = None
) -> dict[str, Any]:
    """One card's (one step's) row of the report (docs/campaigns.md §3, :data:`REPORT_MEANINGS`)."""
    row: dict[str, Any] = {"iccid": iccid, "msisdn": msisdn}
    if step is not None:
        row["step"] = step
    row.update(
        tar=tar_hex,
        state=state,
        actions=job.n,
        executed=job.applied,
        attempts=job.attempts,
        queries=job.queries,
        resent_actions=job.resent_actions,
        counter_path=job.counter_path,
        start_counter=job.start_counter,
        confirmed_counter=job.confirmed,
        card_messages=job.mo_reports,
        card_message_counter=job.mo_counter,
        replies_sent=job.replies_sent,
        replies_owed=len(job.replies),
        counter_mismatches=job.mismatches,
        reason=job.reason,
        statuses=list(job.statuses),
    )
    return row


# --------------------------------------------------------------------------- verification


def counted_hex(actions: Iterable[Action]) -> list[str]:
    """The counted APDU of each action (T=0 encoding, lower-case hex): what a journal records."""
    return [a.counted.encode_t0().hex() for a in actions]


def application_entry(entry: dict[str, Any] | None, tar_hex: str) -> dict[str, Any] | None:
    """The card report's application entry for ``tar_hex`` (``SimCard.report`` format), or None."""
    for candidate in (entry or {}).get("applications", []):
        if str(candidate.get("tar", "")).lower().replace(" ", "") == tar_hex:
            return candidate
    return None


def check_card(
    app: dict[str, Any], counted: Sequence[str], start_counter: int | None, confirmed: int | None
) -> tuple[int, int, bool, Any]:
    """One card against its journal: (lost, duplicated, counter mismatch, the card's counter).

    ``counted``: the counted APDUs the server believes applied, in order."""
    start = start_counter if start_counter is not None else -1
    journal = Counter(
        str(e.get("apdu", "")).lower()
        for e in app.get("journal", [])
        if isinstance(e, dict) and int(e.get("counter", -1)) > start
    )
    expected = Counter(counted)
    card_counter = app.get("action_counter")
    return (
        sum((expected - journal).values()),
        sum((journal - expected).values()),
        confirmed is not None and card_counter != confirmed,
        card_counter,
    )


def verification(
    jobs: Sequence[tuple[Card, Job]], actions: Sequence[Action], tar_hex: str, network_report: dict[str, Any]
) -> dict[str, Any]:
    """:func:`verify_jobs` for jobs that share one TAR and one action list (a one-step campaign)."""
    return verify_jobs([(card, job, tuple(actions), tar_hex) for card, job in jobs], network_report)


def verify_jobs(
    jobs: Sequence[tuple[Card, Job, tuple[Action, ...], str]], network_report: dict[str, Any]
) -> dict[str, Any]:
    """Prove the run against the cards' own journals (the handset's report).

    expected = counted APDUs of the actions the server believes applied; journal = the
    card's entries for the TAR with counter > the counter at campaign start.
    lost = expected - journal, duplicated = journal - expected (multisets);
    counter mismatch = server's confirmed counter differs from the card's.
    """
    cards = (
        network_report.get("cards", network_report) if isinstance(network_report, dict) else network_report
    )
    by_key: dict[str, dict[str, Any]] = {}
    for entry in cards if isinstance(cards, list) else []:
        if isinstance(entry, dict):
            for key in ("iccid", "msisdn"):
                if entry.get(key):
                    by_key[str(entry[key])] = entry
    lost = duplicated = mismatches = missing = 0
    details = []
    # Steps on one TAR share the card's action counter and journal: check them together, in order.
    groups: dict[tuple[str, str], list[tuple[Card, Job, tuple[Action, ...]]]] = {}
    for card, job, actions, tar_hex in jobs:
        groups.setdefault((card.iccid, tar_hex), []).append((card, job, actions))
    for (_, tar_hex), members in groups.items():
        card = members[0][0]
        started = [m for m in members if m[1].start_counter is not None]
        if not started:
            continue  # never contacted: nothing expected, no counter known
        confirmed = next((m[1].confirmed for m in reversed(members) if m[1].confirmed is not None), None)
        counted: list[str] = []
        for _, member_job, actions in members:
            counted += counted_hex(actions[: member_job.applied])
        app = application_entry(by_key.get(card.iccid) or by_key.get(card.msisdn), tar_hex)
        if app is None:
            missing += 1
            continue
        card_lost, card_dup, mismatch, card_counter = check_card(
            app, counted, started[0][1].start_counter, confirmed
        )
        lost += card_lost
        duplicated += card_dup
        mismatches += int(mismatch)
        if card_lost or card_dup or mismatch:
            details.append(
                {
                    "iccid": card.iccid,
                    "lost": card_lost,
                    "duplicated": card_dup,
                    "server_counter": confirmed,
                    "card_counter": card_counter,
                }
            )
    return {
        "lost_actions": lost,
        "duplicated_actions": duplicated,
        "counter_mismatches": mismatches,
        "cards_missing_from_network_report": missing,
        "problems": details[:50],
    }
