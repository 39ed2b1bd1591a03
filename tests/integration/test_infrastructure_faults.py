"""Exactly-once beyond the radio (issue #10, docs/campaigns.md §6.2-§6.6), each case over loopback TCP:
the network (SMSC + phones + SIMs) runs in the test's event loop on 127.0.0.1, the OTA server is the
real ``ota-server campaign run`` in a child process, and every case ends by comparing the server's
record of every card with the card's own journal: no action lost, none twice, counters equal.

1. a second runner on the same --db is refused (exit 2, naming the live one);
2. the SMSC restarts three times mid-campaign: no job fails, nothing is lost or doubled;
3. the database refuses writes mid-run: exit 1 with one line; the next run finishes the job;
4. the server is SIGKILLed four times and resumed; the SMSC unreachable at start fails the run, not
   the cards; on a paced loss-free network no job times out before its SMS has left;
5. a peer that accepts TCP but never answers the bind, or speaks HTTP: exit 1 with the reason,
   nothing counted as sent;
6. --smsc without --db: exit 2, one line, no database touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from handset.config import load_config
from handset.service import HandsetService
from tests.support.journals import check_journals
from tests.support.stores import job_states, until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLEET_TEMPLATE = (ROOT / "configs" / "cards" / "fleet-template.toml").as_posix()
SPN = 'type = "update_binary"\npath = "3F00/7F20/6F46"\noffset = 0\ndata = "014f5441"\n'
ADN = 'type = "update_record"\npath = "3F00/7F10/6F3A"\nrecord = 1\ndata = "' + "41" * 30 + '"\n'
HPPLMN = 'type = "update_binary"\npath = "3F00/7F20/6F31"\noffset = 0\ndata = "02"\n'


def handset_toml(cards: int) -> str:
    return f"""
[smsc]
host = "127.0.0.1"
port = 0
system_id = "HANDSET"
throttle_per_s = 100000.0
throttle_burst = 100000
rp_timeout_s = 0.3
retry_min_s = 0.1
retry_max_s = 0.3
[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]
[fleet]
seed = "infra-faults"
count = {cards}
card_template = "{FLEET_TEMPLATE}"
issued_action_counter = 0
[radio]
seed = 3
"""


def campaign_toml(*, rate: float = 0.0, por_timeout_s: float = 2.0, extra_smsc: str = "") -> str:
    return f"""
[campaign]
name = "infra"
deadline_s = 120.0
[network]
handset_config = "handset.toml"
[smsc]
system_id = "ota"
password = "secret"
reconnect_backoff_s = 0.05
reconnect_window_s = 20.0
{extra_smsc}
[pacing]
messages_per_second = {rate}
window = 16
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "b00010"
[retry]
por_timeout_s = {por_timeout_s}
max_attempts = 4
backoff_s = 0.2
max_backoff_s = 1.0
[[actions]]
{SPN}
[[actions]]
{ADN}
[[actions]]
{HPPLMN}
"""


@contextlib.asynccontextmanager
async def network(tmp: Path, cards: int) -> AsyncIterator[tuple[HandsetService, int]]:
    (tmp / "handset.toml").write_text(handset_toml(cards))
    service = HandsetService(load_config(tmp / "handset.toml"))
    port = await service.start(host="127.0.0.1", port=0)
    try:
        yield service, port
    finally:
        await service.stop()


async def start_runner(tmp: Path, port: int, *, report: str = "report.json", db: str | None = "ota.sqlite"):  # type: ignore[no-untyped-def]
    """``db``: a file name in ``tmp``, or a postgresql:// URL."""
    args = ["-m", "ota_server.cli", "campaign", "run", str(tmp / "c.toml"), "--smsc", f"127.0.0.1:{port}"]
    if db is not None:
        args += ["--db", db if db.startswith("postgresql://") else str(tmp / db)]
    args += ["--report", str(tmp / report), "--log-level", "WARNING"]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(tmp),
    )


async def finish(process: asyncio.subprocess.Process, timeout_s: float = 90.0) -> tuple[int, str]:
    async with asyncio.timeout(timeout_s):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


def proof(tmp: Path, service: HandsetService, report_name: str = "report.json") -> dict[str, Any]:
    """The server's final record of every card against the card's own journal."""
    report = json.loads((tmp / report_name).read_text())
    from ota_server.config import load_campaign

    check_journals(report["cards"], load_campaign(tmp / "c.toml").actions, service.report())
    states = {c["state"] for c in report["cards"]}
    assert states <= {"confirmed", "partial"}, [
        c for c in report["cards"] if c["state"] not in ("confirmed",)
    ]
    return report


@pytest.mark.asyncio
async def test_1_a_second_runner_on_the_same_database_is_refused(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "c.toml").write_text(campaign_toml(rate=40.0))
    async with network(tmp_path, 40) as (service, port):
        first = await start_runner(tmp_path, port, db=db_url)
        await until(lambda: job_states(db_url).get("done", 0) >= 2)
        second = await start_runner(tmp_path, port, report="second.json", db=db_url)
        code, stderr = await finish(second)
        assert code == 2, stderr
        line = stderr.strip().splitlines()[-1]
        assert line.startswith("ota-server: ") and "campaign is run by pid" in line and "one runner" in line
        assert "Traceback" not in stderr
        code, stderr = await finish(first)
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    assert report["summary"]["confirmed"] == 40


@pytest.mark.asyncio
async def test_2_smsc_restarts_cost_no_job_and_no_action(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "c.toml").write_text(campaign_toml(rate=30.0, por_timeout_s=1.0))
    async with network(tmp_path, 60) as (service, port):
        runner = await start_runner(tmp_path, port, db=db_url)
        for done in (5, 20, 35):
            await until(lambda done=done: job_states(db_url).get("done", 0) >= done)
            await service.restart_smsc(outage_s=1.5)  # longer than the PoR timeout: timers must hold
        code, stderr = await finish(runner)
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    assert report["summary"]["confirmed"] == 60 and report["summary"]["failed"] == 0


@pytest.mark.asyncio
async def test_3_a_database_that_refuses_writes_stops_the_run_and_the_next_run_finishes(
    tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "c.toml").write_text(campaign_toml(rate=40.0))
    db = db_url
    async with network(tmp_path, 40) as (service, port):
        runner = await start_runner(tmp_path, port, db=db)
        await until(lambda: job_states(db).get("done", 0) >= 3)
        # Another process takes the write lock and keeps it past the runner's 5 s busy (SQLite) or
        # lock (PostgreSQL) timeout: every commit of the runner fails, as on a full disk or a
        # read-only remount.
        with write_lock_held(db):
            code, stderr = await finish(runner, timeout_s=60.0)
        assert code == 1, stderr[-2000:]
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("ota-server: database: ") and str(db) in last and "Traceback" not in stderr
        again = await start_runner(tmp_path, port, db=db)
        code, stderr = await finish(again)
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    assert report["summary"]["confirmed"] == 40


@contextlib.contextmanager
def write_lock_held(db: str) -> Iterator[None]:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE keysets, jobs, history IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                blocker.execute("ROLLBACK")
        return
    sqlite_blocker = sqlite3.connect(db, timeout=10.0, isolation_level=None)
    sqlite_blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        sqlite_blocker.execute("ROLLBACK")
        sqlite_blocker.close()


@pytest.mark.asyncio
async def test_4_sigkill_four_times_then_resume_fails_nothing_and_repeats_nothing(
    tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "c.toml").write_text(campaign_toml(rate=25.0, por_timeout_s=1.0))
    db = db_url
    async with network(tmp_path, 60) as (service, port):
        for kill in range(4):
            runner = await start_runner(tmp_path, port, db=db)
            target = 6 * (kill + 1)
            await until(lambda target=target: job_states(db).get("done", 0) >= target)
            runner.send_signal(signal.SIGKILL)
            await runner.wait()
            assert runner.returncode == -signal.SIGKILL
        last = await start_runner(tmp_path, port, db=db)  # the killed runners' leases are taken over at once
        code, stderr = await finish(last)
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    assert report["summary"]["confirmed"] == 60
    reasons = [c["reason"] for c in report["cards"] if c["reason"]]
    assert not any("gave up" in r or "no PoR" in r for r in reasons), reasons


@pytest.mark.asyncio
async def test_4b_an_unreachable_smsc_fails_the_run_not_the_cards(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(campaign_toml(extra_smsc="reconnect_window_s = 0.5"))
    (tmp_path / "c.toml").write_text(
        (tmp_path / "c.toml").read_text().replace("reconnect_window_s = 20.0\n", "")
    )
    async with network(tmp_path, 10) as (service, port):
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed_port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        code, stderr = await finish(await start_runner(tmp_path, closed_port))
        assert code == 1, stderr
        assert f"SMSC 127.0.0.1:{closed_port}: connection refused" in stderr.strip().splitlines()[-1]
        assert set(job_states(str(tmp_path / "ota.sqlite"))) <= {
            "new",
            "sending",
            "waiting",
        }  # no card failed
        code, stderr = await finish(await start_runner(tmp_path, port))
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    assert report["summary"]["confirmed"] == 10


@pytest.mark.asyncio
async def test_4c_paced_and_loss_free_no_job_times_out_before_its_sms_left(tmp_path: Path) -> None:
    # 80 cards at 20 SMS/s: the last SMS leaves after 4 s, four PoR timeouts after its CNTR was taken.
    (tmp_path / "c.toml").write_text(campaign_toml(rate=20.0, por_timeout_s=1.0))
    async with network(tmp_path, 80) as (service, port):
        code, stderr = await finish(await start_runner(tmp_path, port))
        assert code == 0, stderr[-2000:]
        report = proof(tmp_path, service)
    summary = report["summary"]
    assert summary["confirmed"] == 80 and summary["queries_sent"] == 0, summary
    assert summary["packets_sent"] == summary["scripts_sent"] == 80  # one script each, never a query


def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts TCP, reads nothing, answers nothing (a hung or firewalled SMSC)."""


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("peer", "reason"), [(_silent, "bind_transceiver_resp"), (_http, "SMPP")])
async def test_5_a_peer_that_is_not_an_smsc_fails_the_run_with_the_reason(
    tmp_path: Path, peer: Any, reason: str
) -> None:
    (tmp_path / "handset.toml").write_text(handset_toml(5))
    (tmp_path / "c.toml").write_text(
        campaign_toml(extra_smsc="bind_timeout_s = 0.3").replace(
            "reconnect_window_s = 20.0", "reconnect_window_s = 1.0"
        )
    )
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        code, stderr = await finish(await start_runner(tmp_path, port), timeout_s=30.0)
    finally:
        server.close()
    assert code == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"ota-server: SMSC 127.0.0.1:{port}") and reason in last, last
    assert "Traceback" not in stderr
    with sqlite3.connect(tmp_path / "ota.sqlite") as conn:
        failed = conn.execute("SELECT count(*) FROM jobs WHERE state = 'failed'").fetchone()[0]
        accepted = conn.execute("SELECT count(*) FROM history WHERE kind = 'submit_resp'").fetchone()[0]
    assert failed == 0 and accepted == 0


@pytest.mark.asyncio
async def test_6_smsc_without_db_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    (tmp_path / "handset.toml").write_text(handset_toml(2))
    (tmp_path / "c.toml").write_text(campaign_toml())
    (tmp_path / "ota-server.sqlite").write_text("an earlier run's file: must not be reused silently")
    code, stderr = await finish(await start_runner(tmp_path, 1, db=None), timeout_s=30.0)
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [
        "ota-server: --db: required with --smsc: name the campaign's database (a new file starts afresh)"
    ]
    assert (tmp_path / "ota-server.sqlite").read_text().startswith("an earlier run's file")
