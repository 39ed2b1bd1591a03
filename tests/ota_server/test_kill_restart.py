"""SIGKILL the campaign server mid-run and start it again on the same DB: nothing lost, nothing twice.

The network is an in-process handset service (loopback, port 0) holding sim_emulator cards; the
server is ``ota-server campaign run --smsc`` in a child process, on either store (a SQLite file or
a PostgreSQL database). The test polls the server's database read-only (bounded loop with a
deadline) until some jobs are done and some have a script in the air, SIGKILLs it, restarts it,
and checks the cards' own journals (HandsetService.report() and ota_server.service.verification):
every action exactly once, server counters == card counters, no job left open. The campaign is a
purse campaign (TAR bfff01, purse_reload), and the subscribers pay meanwhile, so transaction
requests (claim 8) arrive in both runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from handset.config import load_config
from handset.service import HandsetService
from ota_server.config import load_campaign
from ota_server.engine.job_model import Job
from ota_server.model import Card
from ota_server.service import verification
from tests.support.stores import job_states

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CARDS = 24

HANDSET = f"""
[smsc]
host = "127.0.0.1"
port = 0
system_id = "HANDSET"
[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]
[fleet]
seed = "kill-restart"
count = {CARDS}
card_template = "{(ROOT / "configs/cards/fleet-template.toml").as_posix()}"
issued_action_counter = 0
[radio]
seed = 5
"""

CAMPAIGN = """
[campaign]
name = "killed"
deadline_s = 120.0
[network]
handset_config = "handset.toml"
[smsc]
system_id = "ota"
password = "secret"
max_messages_per_second = 12
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "bfff01"
[retry]
por_timeout_s = 3.0
max_attempts = 8
backoff_s = 0.2
max_backoff_s = 1.0
[[actions]]
type = "purse_reload"
amount = 100
[[actions]]
type = "purse_reload"
amount = 250
"""


async def run_server(tmp: Path, port: int, report: Path, db: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ota_server.cli",
        "campaign",
        "run",
        str(tmp / "c.toml"),
        "--smsc",
        f"127.0.0.1:{port}",
        "--db",
        db,
        "--report",
        str(report),
        "--log-level",
        "WARNING",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(tmp),
    )


@pytest.mark.asyncio
async def test_sigkill_mid_campaign_then_restart_loses_and_repeats_nothing(
    tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "handset.toml").write_text(HANDSET)
    (tmp_path / "c.toml").write_text(CAMPAIGN)
    service = HandsetService(load_config(tmp_path / "handset.toml"))
    port = await service.start(host="127.0.0.1", port=0)
    assert service.network is not None
    msisdns = [phone for phone in service.network.phones][:CARDS]
    try:
        first = await run_server(tmp_path, port, tmp_path / "first.json", db_url)
        killed_at: dict[str, int] = {}
        async with asyncio.timeout(60):
            while True:  # bounded polling of the child's DB (read-only)
                states = job_states(db_url)
                if states.get("done", 0) >= 3 and states.get("waiting", 0) >= 1:
                    killed_at = states
                    break
                assert first.returncode is None, "the server ended before it could be killed"
                await asyncio.sleep(0.02)
        for msisdn in msisdns[::5]:
            service.network.start_transaction(msisdn)  # payments while the server is down
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert killed_at.get("done", 0) < CARDS

        second = await run_server(tmp_path, port, tmp_path / "second.json", db_url)
        for msisdn in msisdns[1::5]:
            service.network.start_transaction(msisdn)  # and while it runs again
        async with asyncio.timeout(90):
            _, stderr = await second.communicate()
        assert second.returncode == 0, stderr.decode(errors="replace")[-2000:]
        # Let the last MT of the network settle before reading the cards.
        await asyncio.sleep(0)
        network_report = service.report()
    finally:
        await service.stop()

    report = json.loads((tmp_path / "second.json").read_text())
    assert report["summary"]["pending"] == 0, report["summary"]
    assert report["summary"]["confirmed"] == CARDS, [c for c in report["cards"] if c["state"] != "confirmed"]
    jobs = [
        (
            Card(iccid=c["iccid"], imsi="", msisdn=c["msisdn"]),
            Job(n=c["actions"], applied=c["executed"], confirmed=c["confirmed_counter"], start_counter=0),
        )
        for c in report["cards"]
    ]
    config = load_campaign(tmp_path / "c.toml")
    proof = verification(jobs, config.actions, "bfff01", network_report)
    assert proof["cards_missing_from_network_report"] == 0
    assert (proof["lost_actions"], proof["duplicated_actions"], proof["counter_mismatches"]) == (0, 0, 0), (
        proof
    )
    paths = {c["counter_path"] for c in report["cards"]}
    assert paths <= {"por", "query", "transaction", "information"}
    assert report["summary"]["card_messages_replayed"] == 0
