"""``campaign status``'s liveness rule: the one a new runner takes the lease over with
(engine/lease.decide_lease): a holder on this host whose pid is gone, or any holder whose heartbeat
is older than LEASE_TTL_S, is not running."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ota_server.campaign_report import campaign_status, runner_liveness
from ota_server.engine.lease import LEASE_TTL_S, decide_lease
from ota_server.engine.records import CampaignRow

HERE, NOW = "lab1", 1_000_000.0


def row(
    state: str = "running", *, pid: int | None = 42, host: str | None = HERE, age: float | None = 0.3
) -> CampaignRow:
    return CampaignRow(
        name="x",
        state=state,
        source="c.toml",
        started_at=0.0,
        updated_at=0.0,
        runner_pid=pid,
        heartbeat_at=None if age is None or pid is None else NOW - age,
        runner_host=host if pid is not None else None,
        runner_token="t" if pid is not None else None,
    )


def never_asked(pid: int) -> bool:
    raise AssertionError(f"a pid on another host says nothing here (asked about {pid})")


def runs(pid: int) -> bool:
    return True


def gone(pid: int) -> bool:
    return False


@pytest.mark.parametrize(
    ("campaign", "probe", "alive", "why"),
    [
        (row(), runs, True, ""),
        (row(), gone, False, "gone"),  # killed: known at once on this host, whatever its heartbeat
        (row(age=LEASE_TTL_S + 1), runs, False, "silent"),  # hung, or its pid reused
        (row(age=None), runs, False, "silent"),  # never beat
        (row(host="lab2"), never_asked, True, ""),
        (row(host="lab2", age=LEASE_TTL_S + 1), never_asked, False, "silent"),
        (row(host=None, age=1.0), never_asked, True, ""),  # a row written before the host column
    ],
)
def test_liveness_follows_the_lease_rule(
    campaign: CampaignRow, probe: Callable[[int], bool], alive: bool, why: str
) -> None:
    runner = runner_liveness(campaign, now=NOW, host=HERE, pid_alive=probe)
    assert runner is not None and (runner.alive, runner.why) == (alive, why)
    # The same verdict as a runner starting now: a live holder refuses it, a dead one is taken over.
    assert campaign.runner_pid is not None
    holder_alive = probe(campaign.runner_pid) if campaign.runner_host == HERE else None
    decision = decide_lease(campaign, token="new", host=HERE, now=NOW, holder_alive=holder_alive)
    assert decision.granted is not alive


def test_no_holder_is_no_runner() -> None:
    assert runner_liveness(row(pid=None), now=NOW, host=HERE, pid_alive=never_asked) is None


@pytest.mark.parametrize(
    ("campaign", "pid_runs", "status", "text"),
    [
        (row(), True, "running", "running (pid 42 on host lab1, heartbeat 0.3 s ago)"),
        (row("paused"), True, "paused", "paused (runner pid 42 on host lab1, heartbeat 0.3 s ago)"),
        (
            row("cancelled"),
            True,
            "cancelling",
            "cancelling (runner pid 42 on host lab1, heartbeat 0.3 s ago, settling the messages in flight)",
        ),
        (row("cancelled"), False, "cancelled", "cancelled"),
        (row("finished", pid=None), False, "finished", "finished"),
        (
            row(age=42.0),
            False,
            "interrupted",
            "interrupted: runner pid 42 gone (heartbeat 42.0 s ago); continue with: "
            "ota-server campaign run c.toml --db 'my db' --smsc HOST:PORT",
        ),
        (
            row(pid=None),
            False,
            "interrupted",
            "interrupted: no runner (the last run stopped before the end); continue with: "
            "ota-server campaign run c.toml --db 'my db' --smsc HOST:PORT",
        ),
        (
            row("paused", age=42.0),
            False,
            "paused",
            "paused; runner pid 42 gone (heartbeat 42.0 s ago); continue with: "
            "ota-server campaign run c.toml --db 'my db' --smsc HOST:PORT",
        ),
    ],
)
def test_status_sentences(campaign: CampaignRow, pid_runs: bool, status: str, text: str) -> None:
    runner = runner_liveness(campaign, now=NOW, host=HERE, pid_alive=lambda pid: pid_runs)
    result = campaign_status(campaign, runner, db=Path("my db"))
    assert (result.status, result.text) == (status, text)
    assert (result.continue_with is not None) == ("continue with" in text)
