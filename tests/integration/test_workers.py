"""Many workers on one campaign over loopback SMPP (issue #12, docs/campaigns.md §6.7): PostgreSQL holds
the truth, ``handset serve`` (a child process) is the network, every worker is the real
``ota-server campaign run --worker`` in a child process.

Three workers start on a campaign of 5,000 cards with three bind slots; one is SIGKILLed while
scripts of its cards are in the air; a fourth starts late, waits as a standby until the dead
worker's lease expires, then takes its bind slot; the dead worker's cards are claimed again and
resumed by the fence rule. At the end every card's server record (the shared store) equals the
card's own journal (the handset's report): no action twice, none lost, counters equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ota_server.campaign_report import build_report
from ota_server.card_store import CardStore
from ota_server.config import load_campaign
from tests.support.journals import check_journals
from tests.support.stores import job_states, rows, until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLEET_TEMPLATE = (ROOT / "configs" / "cards" / "fleet-template.toml").as_posix()
CARDS = int(__import__("os").environ.get("WORKERS_TEST_CARDS", "5000"))


def handset_toml(cards: int) -> str:
    return f"""
[smsc]
host = "127.0.0.1"
port = 0
system_id = "HANDSET"
throttle_per_s = 1000000.0
throttle_burst = 1000000
mo_window = 64
[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]
[fleet]
seed = "workers"
count = {cards}
card_template = "{FLEET_TEMPLATE}"
issued_action_counter = 0
[radio]
seed = 11
"""


CAMPAIGN = """
[campaign]
name = "fleet-update"
deadline_s = 300.0
concurrency = 400
[network]
handset_config = "handset.toml"
[smsc]
system_id = "ota"
password = "secret"
reconnect_backoff_s = 0.05
[pacing]
binds = 3
window = 64
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "b00010"
[retry]
por_timeout_s = 4.0
max_attempts = 6
backoff_s = 0.2
max_backoff_s = 1.0
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "014f5441"
"""


# Paced per bind, so the survivors cannot drain the campaign before the late worker holds the dead
# worker's slot, however fast this machine runs: the late worker always gets cards to run.
PACED_CAMPAIGN = CAMPAIGN.replace("window = 64\n", "window = 64\nmessages_per_second = 150\n", 1)


@contextlib.asynccontextmanager
async def handset_serve(tmp: Path) -> AsyncIterator[tuple[int, Path]]:
    """``handset serve`` in a child process; yields its port and, after the block, its report."""
    report = tmp / "handset-report.json"
    ready = tmp / "handset.port"
    # Its log into a file: a pipe read only at the end fills up (a stalled worker's deliver_sm
    # warnings) and would block the SMSC.
    with (tmp / "handset.err").open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "handset.cli", "--log-level", "WARNING", "serve",
            "--config", str(tmp / "handset.toml"), "--port", "0", "--ready-file", str(ready),
            "--report-file", str(report), "--exit-with-parent",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err, cwd=str(tmp),
        )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        assert b"listening on" in line, line
        yield int(ready.read_text()), report
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await process.communicate()
        assert process.returncode == 0, (tmp / "handset.err").read_text(errors="replace")[-2000:]


async def start_worker(tmp: Path, port: int, db: str, name: str) -> asyncio.subprocess.Process:
    # stderr into a file, not a pipe nobody reads until the end: a full pipe would block the worker.
    with (tmp / f"{name}.err").open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ota_server.cli", "campaign", "run", str(tmp / "c.toml"), "--worker",
            "--smsc", f"127.0.0.1:{port}", "--db", db, "--worker-ttl", "3",
            "--report", str(tmp / f"{name}.json"), "--log-level", "WARNING",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err, cwd=str(tmp),
        )  # fmt: skip


async def finish(process: asyncio.subprocess.Process, tmp: Path, name: str, timeout_s: float) -> str:
    """Wait (bounded) for a worker to end; its stderr."""
    async with asyncio.timeout(timeout_s):
        await process.wait()
    return (tmp / f"{name}.err").read_text(errors="replace")


def stored_report(db: str) -> dict[str, Any]:
    """The campaign's report as any host reads it from the shared store."""
    store = CardStore(db)
    try:
        report = build_report(store, "fleet-update")
    finally:
        store.close()
    assert report is not None
    return report


def in_the_air(db: str, pid: int) -> int:
    """Jobs of the worker with this pid whose script may be on its way (a PoR awaited)."""
    found = rows(
        db,
        "SELECT COUNT(*) FROM jobs j "
        "JOIN campaign_cards cc ON cc.campaign = j.campaign AND cc.iccid = j.iccid "
        f"JOIN workers w ON w.id = cc.worker WHERE w.pid = {pid} AND j.state = 'waiting'",
    )
    return int(found[0][0]) if found else 0


@pytest.mark.asyncio
async def test_three_workers_one_killed_a_fourth_late_every_card_once(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "handset.toml").write_text(handset_toml(CARDS))
    (tmp_path / "c.toml").write_text(PACED_CAMPAIGN)
    async with handset_serve(tmp_path) as (port, handset_report):
        workers = [await start_worker(tmp_path, port, pg_url, f"w{i}") for i in range(3)]
        victim = workers[0]
        await until(
            lambda: job_states(pg_url).get("done", 0) >= CARDS // 5 and in_the_air(pg_url, victim.pid) > 0, 90
        )
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        assert victim.returncode == -signal.SIGKILL
        late = await start_worker(tmp_path, port, pg_url, "w3")
        results = []
        for process, name in zip((*workers[1:], late), ("w1", "w2", "w3"), strict=True):
            stderr = await finish(process, tmp_path, name, 120)
            results.append((process.returncode, stderr[-2000:]))
        assert [code for code, _ in results] == [0, 0, 0], results
    network = json.loads(handset_report.read_text())

    report = stored_report(pg_url)
    assert rows(pg_url, "SELECT state FROM campaigns") == [("finished",)]
    assert len(report["cards"]) == CARDS
    check_journals(report["cards"], load_campaign(tmp_path / "c.toml").actions, network)
    assert {c["state"] for c in report["cards"]} == {"confirmed"}
    # The victim's cards with a script in the air were resumed by a status query (the fence), and the
    # late worker ran: it took the dead worker's bind slot over.
    assert sum(c["queries"] for c in report["cards"]) >= 1
    late_report = json.loads((tmp_path / "w3.json").read_text())
    assert late_report["worker"]["binds"] and late_report["summary"]["jobs"] > 0
    assert rows(pg_url, "SELECT COUNT(*) FROM inbox") == [(0,)]  # read by the owners, or swept at the end
    assert report["summary"]["por_received"] >= CARDS


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def write_paced(tmp: Path, cards: int, *, rate: float, concurrency: int) -> None:
    """The network of ``cards`` and the campaign on two binds at ``rate`` SMS/s each."""
    (tmp / "handset.toml").write_text(handset_toml(cards))
    paced = CAMPAIGN.replace("binds = 3", f"binds = 2\nmessages_per_second = {rate}")
    (tmp / "c.toml").write_text(paced.replace("concurrency = 400", f"concurrency = {concurrency}"))


@pytest.mark.asyncio
async def test_pause_resume_cancel_and_status_reach_every_worker_from_another_process(
    tmp_path: Path, pg_url: str
) -> None:
    cards = 600
    write_paced(tmp_path, cards, rate=60.0, concurrency=20)  # most cards unclaimed when the cancel comes
    async with handset_serve(tmp_path) as (port, handset_report):
        workers = [await start_worker(tmp_path, port, pg_url, f"w{i}") for i in range(2)]
        await until(lambda: job_states(pg_url).get("done", 0) >= 30, 60)
        paused = cli("campaign", "pause", "fleet-update", "--db", pg_url)
        assert paused.returncode == 0 and "2 worker(s)" in paused.stdout, paused
        status = cli("campaign", "status", "fleet-update", "--db", pg_url, "--json")
        assert status.returncode == 0, status.stderr
        seen = json.loads(status.stdout)
        assert seen["status"] == "paused" and len(seen["workers"]) == 2, seen
        resumed = cli("campaign", "resume", "fleet-update", "--db", pg_url)
        assert resumed.returncode == 0, resumed
        await until(lambda: job_states(pg_url).get("done", 0) >= 120, 60)
        cancelled = cli("campaign", "cancel", "fleet-update", "--db", pg_url)
        assert cancelled.returncode == 0, cancelled
        for i, process in enumerate(workers):
            stderr = await finish(process, tmp_path, f"w{i}", 60)
            assert process.returncode == 0, stderr[-2000:]
    network = json.loads(handset_report.read_text())
    report = stored_report(pg_url)
    assert rows(pg_url, "SELECT state FROM campaigns") == [("cancelled",)]
    history = {r[0] for r in rows(pg_url, "SELECT status FROM history WHERE kind = 'campaign'")}
    assert {"paused", "running", "cancelled"} <= history
    states = {c["state"] for c in report["cards"]}
    assert states <= {"confirmed", "cancelled"} and "cancelled" in states and len(report["cards"]) == cards
    check_journals(report["cards"], load_campaign(tmp_path / "c.toml").actions, network)
    exported = cli("report", "fleet-update", "--db", pg_url, "--json", str(tmp_path / "report.json"))
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads((tmp_path / "report.json").read_text())["cards"]) == cards
    assert cli("campaign", "status", "fleet-update", "--db", pg_url).stdout.startswith(
        "campaign fleet-update: cancelled"
    )


@pytest.mark.asyncio
async def test_a_stalled_worker_wakes_fenced_off_while_another_holds_its_cards(
    tmp_path: Path, pg_url: str
) -> None:
    # A SIGSTOPped worker is a zombie: its lease expires, the other worker takes its cards over; woken
    # up while they are being worked on, its first heartbeat, commit or send finds the lease gone.
    cards = 1500
    write_paced(tmp_path, cards, rate=150.0, concurrency=100)
    async with handset_serve(tmp_path) as (port, handset_report):
        zombie, other = [await start_worker(tmp_path, port, pg_url, f"w{i}") for i in range(2)]
        await until(
            lambda: job_states(pg_url).get("done", 0) >= 100 and in_the_air(pg_url, zombie.pid) > 0, 60
        )
        zombie.send_signal(signal.SIGSTOP)
        try:
            held = {
                r[0]
                for r in rows(
                    pg_url,
                    "SELECT cc.iccid FROM campaign_cards cc JOIN workers w ON w.id = cc.worker "
                    f"WHERE w.pid = {zombie.pid} AND cc.done = 0",
                )
            }
            assert held

            def taken_over() -> bool:
                found = rows(
                    pg_url,
                    "SELECT cc.iccid FROM campaign_cards cc JOIN workers w ON w.id = cc.worker "
                    f"WHERE w.pid = {other.pid}",
                )
                return bool(held & {r[0] for r in found})

            await until(taken_over, 60)
        finally:
            zombie.send_signal(signal.SIGCONT)
        zombie_err = await finish(zombie, tmp_path, "w0", 60)
        assert zombie.returncode == 1, zombie_err[-2000:]
        last = zombie_err.strip().splitlines()[-1]
        # Its lease expired: its next fence finds the lease gone, or (the reaper ended its database
        # session, so that a transaction it was stopped in holds no lock) its connection closed.
        fenced = "lost its cards" in last or "session was ended: its lease had expired" in last
        assert last.startswith("ota-server: ") and fenced and "Traceback" not in last, last
        other_err = await finish(other, tmp_path, "w1", 90)
        assert other.returncode == 0, other_err[-2000:]
    network = json.loads(handset_report.read_text())
    report = stored_report(pg_url)
    assert len(report["cards"]) == cards
    assert {c["state"] for c in report["cards"]} == {"confirmed"}
    check_journals(report["cards"], load_campaign(tmp_path / "c.toml").actions, network)
