"""PURE: a campaign's outcome as the report shows it: the summary counters and one row per job.

Clauses: docs/campaigns.md §3 (report format; every state and counter path has its meaning in
:data:`ota_server.report.REPORT_MEANINGS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ota_server.report import REPORT_MEANINGS, card_row, stats_summary

if TYPE_CHECKING:
    from ota_server.engine.campaign import CampaignEngine

__all__ = ["report", "settled_by", "summary"]


def summary(engine: CampaignEngine, now: float) -> dict[str, Any]:
    counts = engine.counts()
    end = engine.ended_at if engine.ended_at is not None else now
    return {
        "cards": len(engine.by_msisdn),
        "jobs": len(engine.slots),
        "confirmed": counts["confirmed"],
        "partial": counts["partial"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "cancelled": counts["cancelled"],
        "skipped": counts["skipped"],
        **stats_summary(engine.stats, engine.resent_actions),
        "settled_by": settled_by(engine),
        "duration_s": round(end - (engine.started_at or 0.0), 3),
    }


def settled_by(engine: CampaignEngine) -> dict[str, int]:
    """Ended jobs by the path that reported the counter they ended on (docs/campaigns.md §3
    ``counter_path``): a script's PoR, a status query's PoR, a transaction request (claim 8), an
    information message (claim 9); ``none`` for jobs that ended without one (skipped, cancelled,
    failed before any counter)."""
    out = {"por": 0, "query": 0, "transaction": 0, "information": 0, "none": 0}
    for slot in engine.slots:
        if slot.ended:
            path = slot.job.counter_path or "none"
            out[path] = out.get(path, 0) + 1
    return out


def report(engine: CampaignEngine, now: float) -> dict[str, Any]:
    """The JSON report without ``verification`` (the shell adds it from the cards' own journals)."""
    config = engine.config
    cards = [
        card_row(
            slot.card.iccid,
            slot.card.msisdn,
            slot.tar_hex,
            slot.state,
            slot.job,
            step=config.steps[slot.step].name,
        )
        for slot in engine.slots
    ]
    ended = all(slot.ended for slot in engine.slots)
    state = engine.state if engine.state == "cancelled" else ("finished" if ended else engine.state)
    return {
        "campaign": engine.name,
        "tar": config.security.tar.hex(),
        "summary": summary(engine, now),
        "cards": cards,
        "meanings": REPORT_MEANINGS,
        "state": state,
    }
