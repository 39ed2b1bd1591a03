"""The virtual-time lab (ota_lab.virtual): determinism, the same outcome as over SMPP, the compact
fleet, the CLI defaults. Everything here runs in milliseconds (no sockets) except the one test that
also runs the lab over loopback SMPP (marked integration)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ota_lab.cli import main
from ota_lab.config import Transport, load_lab
from ota_lab.runner import run_lab
from ota_lab.virtual import build_run, run_virtual
from ota_lab.virtual.clock import VirtualClock
from tests.scenarios.labs import FIVE_ACTIONS, THREE_ACTIONS, scenario_lab

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "labs" / "smoke.toml"
LOSSY = ROOT / "configs" / "labs" / "lossy.toml"


def test_clock_runs_events_by_time_then_scheduling_order() -> None:
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []
    for at, name in ((2.0, "c"), (1.0, "a"), (2.0, "d"), (1.0, "b")):
        clock.at(at, lambda n=name: seen.append((clock.now, n)))
    clock.run(10.0, lambda: False)
    assert seen == [(1.0, "a"), (1.0, "b"), (2.0, "c"), (2.0, "d")] and clock.now == 10.0


def test_clock_never_runs_an_event_in_the_past() -> None:
    clock = VirtualClock()
    clock.at(5.0, lambda: clock.at(1.0, lambda: seen.append(clock.now)))
    seen: list[float] = []
    clock.run(10.0, lambda: False)
    assert seen == [5.0]


def test_shipped_labs_default_to_the_virtual_transport() -> None:
    for path in (SMOKE, LOSSY):
        assert load_lab(path).transport is Transport.VIRTUAL


@pytest.mark.parametrize("seed", [3, 17])
def test_same_seed_byte_identical_reports(tmp_path: Path, seed: int) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["run", str(LOSSY), "--seed", str(seed), "--report", str(first)]) == 0
    assert main(["run", str(LOSSY), "--seed", str(seed), "--report", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    report = json.loads(first.read_text())
    assert report["ok"] and report["cards"] and "wall_s" not in report
    assert report["network"]["radio_lost"]["mt"] > 0 and report["network"]["radio_lost"]["mo"] > 0
    other = tmp_path / "c.json"
    assert main(["run", str(LOSSY), "--seed", str(seed + 1), "--report", str(other)]) == 0
    assert other.read_bytes() != first.read_bytes()


def test_a_lossy_sweep_proves_every_seed_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(LOSSY), "--seeds", "1-25"]) == 0
    out = capsys.readouterr().out
    assert "seeds: 25 (25 ok, 0 failed)" in out
    assert "invariants: lost 0 duplicated 0 mismatches 0 stuck 0" in out


def test_sweep_report_separates_timings(tmp_path: Path) -> None:
    reports = [tmp_path / "1.json", tmp_path / "2.json"]
    for report in reports:
        assert main(["sweep", str(SMOKE), "--seeds", "1-5", "--jobs", "2", "--report", str(report)]) == 0
    a, b = (json.loads(r.read_text()) for r in reports)
    assert a["transport"] == "virtual" and a["failed_seeds"] == []
    assert {k: v for k, v in a.items() if k != "timing"} == {k: v for k, v in b.items() if k != "timing"}


def test_cards_sleep_as_snapshots_and_wake_unchanged(tmp_path: Path) -> None:
    """With 2 warm phones, most cards are put to sleep (a compressed snapshot of their persistent
    state) and woken again during a lossy run: the invariants, read from the snapshots, still hold,
    and a sleeping card costs well under 1 KiB. Without the lab's [product] draw: purse transactions
    keep every phone awake (its next transaction is always scheduled)."""
    lab = replace(load_lab(LOSSY), product=None)
    small = run_virtual(lab, 5, warm=2)
    assert small.ok, small.invariants
    run = build_run(lab, 5, tmp_path, warm=2)
    run.run()
    assert run.pool.slept > 0 and run.pool.woken > run.pool.slept // 2
    assert run.pool.live() <= 2 + 64  # only busy phones stay awake
    assert 0 < run.pool.snapshot_bytes() / max(1, run.pool.touched()) < 1024


def test_a_torn_five_action_script_is_resolved_by_the_counter(tmp_path: Path) -> None:
    lab = scenario_lab(
        tmp_path, actions=FIVE_ACTIONS, fleet=4, radio={"tear_probability": 0.5, "seed": 3}, name="tear"
    )
    result = run_virtual(replace(lab, transport=Transport.VIRTUAL), 1, keep_network_report=True)
    assert result.ok and result.summary["confirmed"] == 4, result.line()


def _final_state(result: object) -> list[tuple[object, ...]]:
    rows = []
    for card in result.cards:  # type: ignore[attr-defined]
        assert result.network_report is not None  # type: ignore[attr-defined]
        entry = next(e for e in result.network_report["cards"] if e["msisdn"] == card["msisdn"])  # type: ignore[attr-defined]
        app = next(a for a in entry["applications"] if a["tar"] == card["tar"])
        journal = tuple((e["counter"], e["apdu"]) for e in app["journal"])
        rows.append(
            (
                card["msisdn"],
                card["state"],
                card["executed"],
                card["start_counter"],
                card["confirmed_counter"],
                card["resent_actions"],
                card["counter_path"],
                app["action_counter"],
                journal,
            )
        )
    return sorted(rows)


SCENARIOS = {
    "lost-script": {
        "script": [{"direction": "mt", "action": "drop", "nth": 1}],
        "timing": {"validity_s": 0.3},
    },
    "lost-por": {
        "script": [
            {"direction": "mo", "action": "drop", "nth": 1, "tpdu": "sms-submit", "ud_prefix": "027100"}
        ]
    },
    "duplicated-mt": {"script": [{"direction": "mt", "action": "duplicate", "nth": 1, "delay_s": 0.05}]},
}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_one_scenario_both_ways_same_final_state(tmp_path: Path, name: str) -> None:
    """The same lab over loopback SMPP (wall clock) and on the virtual clock: the same per-card
    outcome (state, actions, counters, resends, proof path) and the same card journals."""
    spec = SCENARIOS[name]
    lab = scenario_lab(
        tmp_path, actions=THREE_ACTIONS, script=spec["script"], timing=spec.get("timing"), name=name
    )
    over_tcp = run_lab(
        replace(lab, transport=Transport.SMPP), 1, workdir=tmp_path / "tcp", keep_network_report=True
    )
    virtual = run_lab(replace(lab, transport=Transport.VIRTUAL), 1, keep_network_report=True)
    assert over_tcp.ok and virtual.ok, (over_tcp.line(), virtual.line())
    assert _final_state(over_tcp) == _final_state(virtual)
    assert over_tcp.summary["confirmed"] == virtual.summary["confirmed"] == 2
