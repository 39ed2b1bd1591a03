"""Campaign lifecycle over loopback SMPP: pause/resume and kill/resume end where an uninterrupted run
ends (compared card by card), ``[pacing]`` holds its rate per bind (measured from the SMSC's own
submit_sm arrival times), and no key appears in any output."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ota_server.card_store import CardStore
from ota_server.config import load_campaign
from ota_server.service import CampaignRunner, verification
from tests.integration.network import (
    RFM_SELECT_SPN,
    RFM_THREE_ACTIONS,
    ROOT,
    campaign_toml,
    handset_toml,
    running_network,
    stop_after,
)

pytestmark = pytest.mark.integration

ACTIONS = RFM_THREE_ACTIONS
CARDS = 40


def outcome(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((c["iccid"], c["state"], c["executed"], c["confirmed_counter"]) for c in report["cards"])


async def baseline(tmp: Path) -> dict[str, Any]:
    base = tmp / "baseline"
    base.mkdir()
    async with running_network(base, handset_toml(count=CARDS)) as network:
        path = base / "c.toml"
        path.write_text(campaign_toml(network.config_path, actions=ACTIONS))
        runner = CampaignRunner(
            load_campaign(path), smsc=("127.0.0.1", network.port), db_path=base / "db", progress=False
        )
        return await runner.run()


@pytest.mark.asyncio
async def test_pause_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    expected = await baseline(tmp_path)
    async with running_network(tmp_path, handset_toml(count=CARDS)) as network:
        path = tmp_path / "c.toml"
        path.write_text(campaign_toml(network.config_path, actions=ACTIONS))
        db = tmp_path / "db"
        runner = CampaignRunner(
            load_campaign(path), smsc=("127.0.0.1", network.port), db_path=db, progress=False, poll_s=0.01
        )
        reached = stop_after(network, 10)
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(60):
            await reached.wait()
            control = CardStore(db)
            control.set_campaign_state("it", "paused", at=0.0)  # what `ota-server campaign pause` writes
            await runner.state_changed.wait()
            assert runner.state == "paused"
            runner.state_changed.clear()
            control.set_campaign_state("it", "running", at=0.0)  # `ota-server campaign resume`
            await runner.state_changed.wait()
            report = await task
        notes = [h for h in control.campaign_history("it")]
        control.close()
        # Rows of one commit are stored reservations first, so compare times, not row order.
        paused_at = next(h.at for h in notes if h.kind == "campaign" and h.status == "paused")
        resumed_at = next(h.at for h in notes if h.kind == "campaign" and h.status == "running")
        sent = [h for h in notes if h.direction == "mt" and h.kind in ("script", "query")]
        assert not [h for h in sent if paused_at < h.at < resumed_at]
        report["verification"] = verification(
            runner.outcomes(), runner.actions, runner.tar_hex, network.service.report()
        )
    assert outcome(report) == outcome(expected)
    assert report["verification"]["lost_actions"] == report["verification"]["duplicated_actions"] == 0
    assert report["verification"]["counter_mismatches"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
async def test_killed_run_resumes_from_the_database_to_the_same_end(
    tmp_path: Path, how: signal.Signals
) -> None:
    expected = await baseline(tmp_path)
    async with running_network(tmp_path, handset_toml(count=CARDS)) as network:
        path = tmp_path / "c.toml"
        path.write_text(campaign_toml(network.config_path, actions=ACTIONS))
        db = tmp_path / "db"
        reached = stop_after(network, 25)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ota_server.cli", "campaign", "run", str(path),
            "--smsc", f"127.0.0.1:{network.port}", "--db", str(db), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(60):
            await reached.wait()
            proc.send_signal(how)  # a crash (SIGKILL) or Ctrl-C (SIGINT) mid-campaign
            await proc.wait()
        runner = CampaignRunner(
            load_campaign(path), smsc=("127.0.0.1", network.port), db_path=db, progress=False
        )
        report = await runner.run()
        check = verification(runner.outcomes(), runner.actions, runner.tar_hex, network.service.report())
    assert outcome(report) == outcome(expected)
    assert check["lost_actions"] == check["duplicated_actions"] == check["counter_mismatches"] == 0


@pytest.mark.asyncio
async def test_cancel_ends_open_jobs_cancelled_and_loses_no_record(tmp_path: Path) -> None:
    async with running_network(tmp_path, handset_toml(count=CARDS)) as network:
        path = tmp_path / "c.toml"
        path.write_text(
            campaign_toml(network.config_path, actions=ACTIONS).replace(
                "[campaign]", "[campaign]\nconcurrency = 5"
            )
        )
        db = tmp_path / "db"
        runner = CampaignRunner(
            load_campaign(path), smsc=("127.0.0.1", network.port), db_path=db, progress=False, poll_s=0.01
        )
        reached = stop_after(network, 6)
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(60):
            await reached.wait()
            control = CardStore(db)
            control.set_campaign_state("it", "cancelled", at=0.0)
            report = await task
            control.close()
        check = verification(runner.outcomes(), runner.actions, runner.tar_hex, network.service.report())
    states = {c["state"] for c in report["cards"]}
    assert (
        report["state"] == "cancelled"
        and "cancelled" in states
        and states <= {"confirmed", "partial", "cancelled"}
    )
    assert check["lost_actions"] == check["duplicated_actions"] == check["counter_mismatches"] == 0


@pytest.mark.asyncio
async def test_pacing_holds_the_rate_per_bind_within_ten_percent(tmp_path: Path) -> None:
    rate, binds = 200.0, 2
    # The issuer's counter is known: every job's script is queued at once, so each bind has a backlog
    # the whole time and its measured rate is the pacer's, not the PoR round trips'.
    toml = handset_toml(count=300).replace("\n[radio]", "issued_action_counter = 0\n\n[radio]", 1)
    async with running_network(tmp_path, toml) as network:
        toml = campaign_toml(network.config_path, actions=[RFM_SELECT_SPN]).replace("window = 32\n", "")
        toml += f"[pacing]\nmessages_per_second = {rate}\nbinds = {binds}\nwindow = 32\n"
        path = tmp_path / "c.toml"
        path.write_text(toml)
        runner = CampaignRunner(
            load_campaign(path), smsc=("127.0.0.1", network.port), db_path=tmp_path / "db", progress=False
        )
        report = await runner.run()
        server = network.service.server
        assert server is not None
        arrivals = {k: v for k, v in server.submit_arrivals.items() if k.startswith("ota#")}
    assert report["summary"]["confirmed"] + report["summary"]["partial"] == 300
    assert len(arrivals) == binds
    for bind, times in arrivals.items():
        measured = (len(times) - 1) / (times[-1] - times[0])
        assert abs(measured - rate) <= 0.1 * rate, (bind, measured, len(times))


def test_no_key_material_in_any_output(tmp_path: Path) -> None:
    """Run, report (table, JSON, CSV, audit), status and export: no key hex anywhere."""
    from ota_protocols.fleet import derive_card
    from ota_server.config import load_network_inventory

    inventory = load_network_inventory(ROOT / "configs" / "handset.toml")
    keys = {k.kic.hex() for i in inventory.fleet.indices for k in derive_card(inventory.fleet, i).keysets}
    keys |= {k.kid.hex() for i in inventory.fleet.indices for k in derive_card(inventory.fleet, i).keysets}
    db = tmp_path / "db"

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ota_server.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    outputs = [
        cli(
            "campaign",
            "run",
            "configs/campaigns/demo.toml",
            "--db",
            str(db),
            "--report",
            str(tmp_path / "r.json"),
            "--log-level",
            "DEBUG",
        ),
        cli(
            "report",
            "demo",
            "--db",
            str(db),
            "--json",
            str(tmp_path / "j.json"),
            "--csv",
            str(tmp_path / "c.csv"),
        ),
        cli("campaign", "status", "demo", "--db", str(db)),
        cli("cards", "export", "--db", str(db)),
    ]
    iccid = json.loads((tmp_path / "r.json").read_text())["cards"][0]["iccid"]
    outputs.append(cli("report", "demo", "--db", str(db), "--audit", iccid))
    outputs += [(tmp_path / n).read_text() for n in ("r.json", "j.json", "c.csv")]
    text = "\n".join(outputs).lower()
    assert iccid in text and not [k for k in keys if k in text]
