"""Named lab scenarios for the infrastructure faults of issue #10, on the virtual clock: the same
campaign engine as over TCP (tests/integration/test_infrastructure_faults.py runs each case over
loopback SMPP), faults at fixed times by ``[[infra.schedule]]``, invariants from the cards' journals.

Case 6 of the issue (``--smsc`` without ``--db``) is a rule of the command line, not of a running
campaign: it has its TCP test only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ota_lab.config import Transport, load_lab
from ota_lab.result import LabResult
from ota_lab.runner import run_lab
from ota_lab.toml_writer import dumps
from tests.scenarios.labs import HANDSET, THREE_ACTIONS, TIMING, assert_proved

CARDS = 6


def infra_lab(tmp: Path, name: str, schedule: list[dict[str, Any]], *, window_s: float = 30.0) -> Any:
    lab = {
        "lab": {"name": name, "transport": "virtual", "fleet_size": CARDS},
        "network": {
            "handset_config": str(HANDSET),
            "smsc": {"throttle_per_s": 100000.0, "throttle_burst": 100000},
        },
        "campaign": {
            # Two SMS a second: the campaign spans the schedule, so every fault meets open jobs.
            "smsc": {
                "system_id": "ota",
                "password": "secret",
                "source_addr": "12345",
                "max_messages_per_second": 2.0,
                "reconnect_window_s": window_s,
            },
            "security": {"spi": "1639", "kic": "12", "kid": "12", "tar": "b00010"},
            "actions": THREE_ACTIONS,
        },
        "timing": TIMING | {"deadline_s": 120.0},
        "infra": {"schedule": schedule},
    }
    path = tmp / f"{name}.toml"
    path.write_text(dumps(lab))
    return load_lab(path)


def run(lab: Any) -> LabResult:
    return run_lab(lab, 1, keep_network_report=True)


def test_a_second_runner_is_refused_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    result = run(infra_lab(tmp_path, "second-runner", [{"kind": "second_runner", "at_s": 1.0}]))
    assert_proved(result, actions=3)
    assert result.events == ["second runner at 1s: refused"]


def test_three_smsc_restarts_longer_than_the_por_timeout_cost_no_job(tmp_path: Path) -> None:
    schedule = [{"kind": "smsc_restart", "at_s": at, "duration_s": 1.5} for at in (0.5, 2.5, 4.5)]
    result = run(infra_lab(tmp_path, "smsc-restarts", schedule))
    assert_proved(result, actions=3)
    assert sum("smsc_restart" in e for e in result.events) == 3
    assert result.summary["queries_sent"] == 0  # no timer ran out while the link was down


def test_a_database_write_failure_stops_the_runner_and_the_next_one_finishes(tmp_path: Path) -> None:
    schedule = [{"kind": "db_failure", "at_s": 1.2, "duration_s": 1.0}]
    result = run(infra_lab(tmp_path, "db-failure", schedule))
    assert_proved(result, actions=3)
    assert result.summary["runner_starts"] == 2
    assert any("runner restarted" in e and "database" in e for e in result.events), result.events


def test_the_server_killed_four_times_right_after_a_commit_loses_and_repeats_nothing(tmp_path: Path) -> None:
    schedule = [{"kind": "server_crash", "at_s": at, "duration_s": 0.5} for at in (0.4, 1.3, 2.2, 3.1)]
    result = run(infra_lab(tmp_path, "server-killed", schedule))
    assert_proved(result, actions=3)
    assert result.summary["runner_starts"] == 5
    assert not any("gave up" in card["reason"] for card in result.cards)


@pytest.mark.parametrize("name", ["smsc-unreachable-at-start", "peer-never-binds"])
def test_a_link_that_never_binds_fails_the_run_not_the_cards(tmp_path: Path, name: str) -> None:
    # Down from the start (or a peer that never answers the bind) for longer than the reconnect
    # window: the runner stops, no card fails; restarted, it binds once the outage is over.
    at = 0.0 if name.startswith("smsc") else 1.0
    schedule = [{"kind": "link_drop", "at_s": at, "duration_s": 6.0}]
    result = run(infra_lab(tmp_path, name, schedule, window_s=2.0))
    assert_proved(result, actions=3)
    assert any("link failed" in e for e in result.events), result.events
    assert result.summary["runner_starts"] >= 2


def test_the_same_schedule_over_tcp_ends_in_the_same_card_state(tmp_path: Path) -> None:
    schedule = [
        {"kind": "smsc_restart", "at_s": 0.7, "duration_s": 1.0},
        {"kind": "second_runner", "at_s": 1.5},
        {"kind": "server_crash", "at_s": 2.4, "duration_s": 0.5},
    ]
    lab = infra_lab(tmp_path, "mixed", schedule)
    virtual = run(lab)
    over_tcp = run_lab(
        replace(lab, transport=Transport.SMPP), 1, workdir=tmp_path / "tcp", keep_network_report=True
    )
    for result in (virtual, over_tcp):
        assert_proved(result, actions=3)
    final = [
        {(c["msisdn"], c["state"], c["executed"], c["confirmed_counter"]) for c in r.cards}
        for r in (virtual, over_tcp)
    ]
    assert final[0] == final[1]


def test_a_multi_step_campaign_with_targets_and_card_parameters_ends_the_same_both_ways(
    tmp_path: Path,
) -> None:
    """[product] draws the multi-step script: an MSISDN range of the fleet as [targets], each card's
    own EF.SPN and purse amount from a CSV, three [[steps]]. Same seed, both transports: the same
    final state of every job (card, step) and the same journals."""
    lab = {
        "lab": {"name": "multi-step", "transport": "virtual", "fleet_size": 8},
        "network": {
            "handset_config": str(HANDSET),
            "smsc": {"throttle_per_s": 100000.0, "throttle_burst": 100000},
        },
        "campaign": {"path": str(HANDSET.parent / "campaigns" / "demo.toml")},
        "product": {"script": ["multi-step"], "por_path": ["deliver-report"]},
        "timing": TIMING | {"deadline_s": 60.0},
    }
    path = tmp_path / "multi-step.toml"
    path.write_text(dumps(lab))
    loaded = load_lab(path)
    virtual = run(loaded)
    over_tcp = run_lab(
        replace(loaded, transport=Transport.SMPP), 1, workdir=tmp_path / "tcp", keep_network_report=True
    )
    for result in (virtual, over_tcp):
        assert result.ok, result.line()
        assert result.invariants.stuck == 0
    steps = {c.get("step") for c in virtual.cards}
    assert len(steps) == 3 and len(virtual.cards) < 3 * 8  # three steps, and [targets] left cards out

    def final(result: LabResult) -> list[tuple[Any, ...]]:
        assert result.network_report is not None
        journals = {
            (e["msisdn"], a["tar"]): tuple((j["counter"], j["apdu"]) for j in a["journal"])
            for e in result.network_report["cards"]
            for a in e["applications"]
        }
        return sorted(
            (
                c["msisdn"],
                c.get("step"),
                c["state"],
                c["executed"],
                c["confirmed_counter"],
                journals.get((c["msisdn"], c["tar"])),
            )
            for c in result.cards
        )

    assert final(virtual) == final(over_tcp)
