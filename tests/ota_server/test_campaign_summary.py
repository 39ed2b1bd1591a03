"""The status and dashboard figures from the store's aggregates (``campaign_summary``) equal the full
report's (``build_report``, which reads every job row), on both backends (SQLite file, PostgreSQL)."""

from __future__ import annotations

import random

import pytest

from ota_server.campaign_report import build_report, campaign_summary
from ota_server.card_store import CardStore, HistoryRow, JobRow
from ota_server.engine.records import Commit

STORED_STATES = ("new", "sending", "waiting", "backoff", "done", "partial", "failed", "cancelled", "skipped")
STATUSES = (
    "00 PoR OK",
    "01 RC/CC/DS failed",
    "0B response by SMS-SUBMIT",
    "06 TAR unknown",
    "no PoR after 3 attempts",
    "counter mismatch",
    "SW 6A82 file not found: permanent, not resent",
)
REASONS = ("", "timeout", "command failed: SW 6982 security status", "SMSC refused", "sw 1234 lower case")
HISTORY = (
    ("mt", "script", "reserved"),
    ("mt", "query", "reserved"),
    ("mt", "reply", "reserved"),
    ("mt", "submit_resp", "accepted"),
    ("mt", "submit_resp", "failed"),
    ("mo", "por", "00"),
    ("mo", "por", "rejected"),
    ("mo", "por", "unmatched"),
    ("mo", "por", None),
    ("mo", "por", ""),
    ("mt", "submit_resp", None),
    ("mo", "receipt", "delivered"),
    ("note", "lease", None),
)


def _mixed_jobs(rng: random.Random, campaign: str, cards: int) -> list[JobRow]:
    """Cards of one to three steps (one TAR each), every stored state, PoR statuses, last SWs stored or
    named only by the reason, script CNTRs in flight."""
    jobs = []
    for i in range(cards):
        iccid = f"89882110000{i:08d}"
        for step in rng.sample(range(3), rng.randint(1, 3)):  # steps written in any order
            extra: dict[str, object] = {"finished_at": 1000.0 + i}
            if rng.random() < 0.5:
                extra["last_sw"] = rng.choice((0x9000, 0x6A82, 0x6982, None))
            if rng.random() < 0.3:
                extra["script_cntr"] = rng.randint(1, 50)
            jobs.append(
                JobRow(
                    campaign,
                    iccid,
                    f"b0001{step}",
                    rng.choice(STORED_STATES),
                    [],
                    3,
                    rng.randint(0, 3),
                    None,
                    None,
                    rng.randint(0, 4),
                    rng.randint(0, 2),
                    rng.randint(0, 3),
                    statuses=rng.sample(STATUSES, rng.randint(0, 3)),
                    reason=rng.choice(REASONS),
                    updated_at=1.0,
                    extra=extra,
                    step=step,
                )
            )
    return jobs


@pytest.mark.parametrize("campaign_state", ["running", "cancelled", "finished"])
def test_the_aggregates_equal_the_full_reports_counts(db_url: str, campaign_state: str) -> None:
    rng = random.Random(7)
    store = CardStore(db_url)
    try:
        store.set_campaign_state("mixed", campaign_state, at=1.0, source="mixed.toml")
        store.set_campaign_state("other", "running", at=1.0)  # its rows must not count
        history = tuple(
            HistoryRow(2.0, rng.choice(("mixed", "other")), "8988211", d, k, 1, s, "")
            for d, k, s in rng.choices(HISTORY, k=300)
        )
        store.commit(
            Commit(jobs=(*_mixed_jobs(rng, "mixed", 120), *_mixed_jobs(rng, "other", 10)), history=history)
        )
        report = build_report(store, "mixed")
        assert report is not None
        aggregate = campaign_summary(store, "mixed", campaign_state)
        jobs = dict(sorted(store.job_counts("mixed").items()))
        assert aggregate == {"summary": report["summary"], "failures": report["failures"], "jobs": jobs}
        # The fixture exercises what it claims to: every card state the run can show, both tables.
        summary = aggregate["summary"]
        assert summary["cards"] == 120 and summary["confirmed"] > 0 and summary["failed"] > 0
        assert summary["pending" if campaign_state != "cancelled" else "cancelled"] > 0
        assert summary["messages_accepted"] > 0 and summary["por_received"] > 0
        assert len(aggregate["failures"]["by_por_status"]) > 3
        assert any("SW 6982" in k for k in aggregate["failures"]["by_status_word"])
    finally:
        store.close()


def test_an_empty_campaign_has_zero_counts(db_url: str) -> None:
    store = CardStore(db_url)
    try:
        store.set_campaign_state("empty", "running", at=1.0)
        report = build_report(store, "empty")
        assert report is not None
        assert campaign_summary(store, "empty", "running") == {
            "summary": report["summary"],
            "failures": report["failures"],
            "jobs": {},
        }
        assert report["summary"]["cards"] == 0
    finally:
        store.close()
