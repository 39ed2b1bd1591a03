"""The CI slice of the infrastructure sweeps (issue #10): the same lab files the closing figures come
from, a few seeds each, judged by the lab's invariants from the cards' journals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ota_lab(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
    )


def test_a_virtual_infra_sweep_slice_loses_and_repeats_nothing(tmp_path: Path) -> None:
    report = tmp_path / "sweep.json"
    done = ota_lab(
        "sweep", "configs/labs/infra.toml", "--seeds", "1-30", "--report", str(report), timeout_s=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    results = data["results"]
    assert len(results) == 30 and all(r["ok"] for r in results)
    kinds = {event.split(" at ")[0] for r in results for event in r["events"]}
    # Every kind of infrastructure fault met a running campaign in this slice.
    assert {"smsc_restart", "link_drop", "server crash", "database write failure", "second runner"} <= kinds
    assert sum(r["invariants"]["stuck"] for r in results) == 0


@pytest.mark.integration
def test_a_seed_of_the_tcp_infra_lab_survives_every_fault_for_real(tmp_path: Path, db_url: str) -> None:
    # Seed 4 draws two SMSC restarts, two link drops, a server crash and a database failure; on the
    # SQLite store and on PostgreSQL (--db URL: the lock held past the lock timeout there).
    report = tmp_path / "seed4.json"
    db = ["--db", db_url] if db_url.startswith("postgresql://") else []
    done = ota_lab(
        "run", "configs/labs/infra-smpp.toml", "--seed", "4", "--report", str(report), *db, timeout_s=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["ok"] and data["invariants"]["stuck"] == 0
    events = " | ".join(data["events"])
    assert "database write failure" in events and "runner restarted" in events and "smsc restart" in events
