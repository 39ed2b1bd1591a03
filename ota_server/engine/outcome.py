"""PURE: a campaign's outcome as the report shows it: the summary counters and one row per job.

Clauses: docs/campaigns.md §3 (report format; every state and counter path has its meaning in
:data:`ota_server.report.REPORT_MEANINGS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ota_server.report import REPORT_MEANINGS, card_row, stats_summary

if TYPE_CHECKING:
    from ota_server.engine.campaign import CampaignEngine

__all__ = ["report", "summary"]


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
        "duration_s": round(end - (engine.started_at or 0.0), 3),
    }


def report(engine: CampaignEngine, now: float) -> dict[str, Any]:
    """The JSON report without ``verification`` (the shell adds it from the cards' own journals)."""
    config = engine.config
    cards = [
        card_row(
            slot.card.iccid,
            slot.card.msisdn,
            slot.tar.hex(),
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
