"""HTTP dashboard benchmark: ms per poll of ``GET /api/dashboard`` and ``GET /api/campaigns/NAME`` on a
store of ``--cards`` job rows, store aggregates against the full report.

    python -m benchmarks.http_dashboard [--cards 100000] [--polls 5] [--db URL]

The store (a fresh SQLite file, or a ``postgresql://`` database given with ``--db``) is filled
through its own API: ``import_cards`` for the inventory, ``commit`` for the jobs (one step per card,
a seeded mix of confirmed, partial, failed and open jobs with PoR statuses and SWs) and three history
rows per card. The campaign is not hosted (no runner): every figure comes from the store. Both paths
run in the same process on the same store through Starlette's TestClient: "aggregates" is the
route as it is (``campaign_summary``: GROUP BY in the database), "full report" is the same route
with that function replaced by the one it replaced (``build_report``: every job and history row
read into Python). The ratio is full report / aggregates. Each route is asked once before timing
(and the answers of the two paths are checked equal).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.card_store import CardStore, HistoryRow, JobRow
from ota_server.engine.records import Commit
from ota_server.model import Card, Keyset

CAMPAIGN = "bench"
CHUNK = 10_000


def fill(db: str, cards: int, seed: int) -> None:
    rng = random.Random(seed)
    store = CardStore(db)
    try:
        store.set_campaign_state(CAMPAIGN, "finished", at=1.0, source="bench.toml")
        for start in range(0, cards, CHUNK):
            batch = range(start, min(cards, start + CHUNK))
            inventory = []
            jobs = []
            history = []
            for i in batch:
                iccid = f"8988211{i:012d}"
                keyset = Keyset(
                    kvn=1,
                    kic_algorithm=CipherAlgorithm.AES_CBC,
                    kid_algorithm=IntegrityAlgorithm.AES_CMAC,
                    kic=bytes(16),
                    kid=bytes(16),
                )
                inventory.append(
                    (Card(iccid=iccid, imsi=f"00101{i:010d}", msisdn=f"49{i:010d}", index=i), [keyset])
                )
                state, statuses, sw = rng.choices(
                    (
                        ("done", ["00 PoR OK"], 0x9000),
                        ("partial", ["00 PoR OK"], 0x6A82),
                        ("failed", ["no PoR after 3 attempts"], None),
                        ("failed", ["01 RC/CC/DS failed"], None),
                        ("waiting", [], None),
                    ),
                    weights=(80, 5, 5, 2, 8),
                )[0]
                extra: dict[str, object] = {"finished_at": 2.0 + i / 1000, "last_sw": sw}
                jobs.append(
                    JobRow(CAMPAIGN, iccid, "b00010", state, [], 1, 1 if state == "done" else 0, None, None,
                           1, 0, rng.randint(0, 1), statuses=statuses, updated_at=2.0, extra=extra)
                )  # fmt: skip
                history += [
                    HistoryRow(2.0, CAMPAIGN, iccid, "mt", "script", i, "reserved", ""),
                    HistoryRow(2.0, CAMPAIGN, iccid, "mt", "submit_resp", None, "accepted", ""),
                    HistoryRow(2.0, CAMPAIGN, iccid, "mo", "por", i, statuses[0][:2] if statuses else "", ""),
                ]
            store.import_cards(inventory)
            store.commit(Commit(jobs=tuple(jobs), history=tuple(history), at=2.0))
    finally:
        store.close()


def full_report_summary(store: CardStore, name: str, campaign_state: str) -> dict[str, Any]:
    """The figures as the routes drew them before the aggregates: from the full report."""
    from ota_server.campaign_report import build_report

    report = build_report(store, name)
    assert report is not None
    jobs = store.job_counts(name)
    return {"summary": report["summary"], "failures": report["failures"], "jobs": dict(sorted(jobs.items()))}


def time_routes(db: str, polls: int) -> dict[str, tuple[float, Any]]:
    """{route: (median ms per GET, its JSON)}."""
    from starlette.testclient import TestClient

    from ota_server.http.app import build_app
    from ota_server.http.platform import Platform

    out = {}
    platform = Platform(db, smsc=("127.0.0.1", 1))
    with TestClient(build_app(platform, token=None)) as client:
        for route in ("/api/dashboard", f"/api/campaigns/{CAMPAIGN}"):
            answer = client.get(route)
            assert answer.status_code == 200, answer.text
            times = []
            for _ in range(polls):
                t0 = time.perf_counter()
                client.get(route).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            out[route] = (statistics.median(times), _stable(answer.json()))
    return out


def _stable(doc: Any) -> Any:
    """The answer without the figures that move between two GETs (heartbeat age, lease left)."""
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in ("runner", "text", "workers")}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.http_dashboard", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cards", type=int, default=100_000, help="job rows (one card, one step each)")
    parser.add_argument("--polls", type=int, default=5, help="timed GETs per route and path (median)")
    parser.add_argument(
        "--db", help="a postgresql:// URL of an empty database (default: a temporary SQLite file)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cards < 1 or args.polls < 1:
        parser.error("--cards and --polls must be at least 1")
    import ota_server.http.platform as platform_module

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.sqlite")
        t0 = time.perf_counter()
        fill(db, args.cards, args.seed)
        filled_s = time.perf_counter() - t0
        print(f"store: {args.cards} cards, jobs and {3 * args.cards} history rows in {filled_s:.1f} s")
        aggregate = platform_module.campaign_summary
        results: dict[str, dict[str, tuple[float, Any]]] = {}
        paths: dict[str, Callable[..., dict[str, Any]]] = {
            "full report": full_report_summary,
            "aggregates": aggregate,
        }
        for label, summary in paths.items():
            platform_module.campaign_summary = summary  # type: ignore[assignment]
            try:
                results[label] = time_routes(db, args.polls)
            finally:
                platform_module.campaign_summary = aggregate
    print(f"{'route':28} {'full report ms':>15} {'aggregates ms':>14} {'ratio':>7}")
    same = True
    for route in results["aggregates"]:
        before, doc_before = results["full report"][route]
        after, doc_after = results["aggregates"][route]
        same &= doc_before == doc_after
        print(f"{route:28} {before:15.1f} {after:14.1f} {before / after:6.1f}x")
    print("answers of both paths equal" if same else "ANSWERS DIFFER between the two paths")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
