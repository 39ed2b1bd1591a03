"""Run one seed of a lab over real SMPP on loopback, in wall-clock time, and prove the outcome.

Concept (docs/labs.md): the seed's draw (:func:`ota_lab.draw.draw_mix`) and files
(:func:`ota_lab.seed_files.write_configs`) are shared with the virtual transport; here the handset
network runs in this event loop on 127.0.0.1 port 0 (:class:`handset.service.HandsetService`), the
OTA server's :class:`~ota_server.service.CampaignRunner` talks to it over real SMPP, scheduled events
(SMSC restarts, the seed's infrastructure faults) fire at their times, and the invariants
(:func:`ota_lab.invariants.check_steps`, every step of every card) are computed from the cards' own
reports. :func:`run_lab` picks the lab's transport.

Import rule: :mod:`ota_lab.virtual` never imports this module (the draw, the files, the invariants
and the result live in their own modules), so the two transports do not import each other.

Glossary: MT/MO mobile terminated/originated; PoR proof of receipt; SMSC short message service centre.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from handset.config import load_config
from handset.service import HandsetService
from ota_lab.config import LabConfig, Transport
from ota_lab.draw import InfraEvent, draw_mix
from ota_lab.invariants import Invariants, applications_of, check_steps, step_views
from ota_lab.result import NETWORK_KEYS as _NETWORK_KEYS
from ota_lab.result import LabResult
from ota_lab.seed_files import write_configs
from ota_protocols.errors import ConfigError, OtaSimError, StoreError
from ota_server.config import load_campaign
from ota_server.report import verify_jobs
from ota_server.service import CampaignFailed, CampaignRunner
from ota_server.store.backends import is_url

__all__ = ["run_lab", "run_lab_async"]

log = logging.getLogger(__name__)


async def run_lab_async(
    lab: LabConfig, seed: int, workdir: Path, *, keep_network_report: bool = False, db: str | None = None
) -> LabResult:
    """One seed in the running event loop; config files and the server's SQLite go to ``workdir``
    (``db``: a ``postgresql://`` URL of an empty database instead of that file).
    ``keep_network_report``: keep the handset's whole report (every card's journal) in the result.

    The seed's infrastructure events (``[infra]``) happen for real here: an SMSC restart or a link
    drop restarts the handset's SMSC (every SMPP link cut); a server crash cancels the runner (its
    lease left behind, aged past the lease's TTL as a dead host's would be) and starts a new one on
    the same database after the drawn delay; a database failure holds the database's write lock past
    the runner's busy timeout, so its commit fails and the run stops, then a new runner continues; a
    second runner is started beside the live one and must be refused."""
    mix = draw_mix(lab, seed)
    result = LabResult(lab.source, seed, mix)
    handset_path, campaign_path = write_configs(lab, mix, workdir)
    handset_config = load_config(handset_path)
    campaign = load_campaign(campaign_path)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    service = HandsetService(handset_config)
    port = await service.start(host="127.0.0.1", port=0)
    db: Path | str = db if db is not None else workdir / "ota-server.sqlite"
    timers: list[asyncio.TimerHandle] = []
    background: list[asyncio.Task[Any]] = []
    stopped = asyncio.Event()  # the current runner stopped (crash, database): a new one is due

    def new_runner() -> CampaignRunner:
        return CampaignRunner(
            campaign, smsc=("127.0.0.1", port), db_path=db, seed=mix.campaign_seed, progress=False
        )

    runner = new_runner()
    task: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(runner.run())

    def restart(at: float, outage: float | None = None, what: str = "smsc restart") -> None:
        restarted = service.request_restart(lab.events.smsc_outage_s if outage is None else outage)
        result.events.append(f"{what} at {at:g}s" + ("" if restarted else " (ignored: one under way)"))
        if restarted is not None:
            background.append(restarted)

    async def crash(at: float, delay: float) -> None:
        result.events.append(f"server crash at {at:g}s")
        task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError, OtaSimError):
                await task
            await _age_lease(db, campaign.campaign.name)
        finally:
            stopped.set()

    async def lock_database(at: float, hold: float) -> None:
        result.events.append(f"database write failure at {at:g}s")
        if is_url(db):
            import psycopg

            async with await psycopg.AsyncConnection.connect(str(db), autocommit=True) as conn:
                await conn.execute("BEGIN")
                await conn.execute("LOCK TABLE keysets, jobs, history IN ACCESS EXCLUSIVE MODE")
                try:
                    await asyncio.sleep(hold)  # a fault's duration, not synchronisation
                finally:
                    await conn.execute("ROLLBACK")
            return
        blocker = sqlite3.connect(db, timeout=10.0, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            await asyncio.sleep(hold)  # a fault's duration, not synchronisation
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    async def second_runner(at: float) -> None:
        intruder = new_runner()
        try:
            await intruder.run()
        except ConfigError as exc:
            result.events.append(f"second runner at {at:g}s: refused")
            log.info("second runner refused: %s", exc)
        else:
            result.events.append(f"second runner at {at:g}s: ADMITTED")
            result.error = "a second runner was admitted while the first held the lease"

    def fire(event: InfraEvent) -> None:
        kind = str(getattr(event.kind, "value", event.kind))
        if kind in ("smsc_restart", "link_drop"):
            restart(event.at, event.duration, kind.replace("_", " "))
        elif task.done():
            return  # no runner to hit
        elif kind == "server_crash":
            background.append(asyncio.ensure_future(crash(event.at, event.duration)))
        elif kind == "db_failure":
            background.append(
                asyncio.ensure_future(lock_database(event.at, max(event.duration, _LOCK_PAST_BUSY_S)))
            )
        elif kind == "second_runner":
            background.append(asyncio.ensure_future(second_runner(event.at)))

    try:
        for at in lab.events.smsc_restart_at_s:
            timers.append(loop.call_later(at, restart, at))
        for event in mix.infra:
            timers.append(loop.call_later(event.at, fire, event))
        report: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(campaign.campaign.deadline_s + 120.0):
                while True:
                    try:
                        report = await task
                        break
                    except asyncio.CancelledError:
                        current = asyncio.current_task()
                        if current is not None and current.cancelling():
                            raise  # the lab's own timeout, not a crash
                        await stopped.wait()  # the crash left its lease behind, aged
                    except (CampaignFailed, StoreError, ConfigError) as exc:
                        # It exits (exit 1): its lease is a dead process's now.
                        result.events.append(f"runner stopped: {exc}")
                        await _age_lease(db, campaign.campaign.name)
                    stopped.clear()
                    await asyncio.sleep(_RESTART_DELAY_S)  # the operator restarts it
                    result.events.append("runner restarted")
                    runner = new_runner()
                    task = asyncio.ensure_future(runner.run())
        except (OtaSimError, TimeoutError) as exc:
            result.error = result.error or f"{type(exc).__name__}: {exc}"
        network_report = service.report()
        if runner.engine is not None:
            found = check_steps(step_views(runner.engine.slots), applications_of(network_report))
            result.invariants = Invariants(*found[:5], tuple(found[5]))
            result.server_verification = {
                k: v
                for k, v in verify_jobs(runner.step_outcomes(), network_report).items()
                if k != "problems"
            }
        if keep_network_report:
            result.network_report = network_report
        smsc = network_report.get("smsc", {})
        result.network = {k: smsc[k] for k in _NETWORK_KEYS if k in smsc}
        if report is not None:
            result.summary = report["summary"]
            result.cards = report["cards"]
    finally:
        for timer in timers:
            timer.cancel()
        for pending in background:
            if not pending.done():
                pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await service.stop()
        result.wall_s = time.monotonic() - started
    return result


_RESTART_DELAY_S = 0.5
_LOCK_PAST_BUSY_S = 5.5  # the card store's busy timeout is 5 s: a shorter lock only delays a commit


async def _age_lease(db: Path | str, campaign: str) -> None:
    """A stopped runner's lease as another host sees it after the TTL: its heartbeat long past (the
    runner ran in this process, so "is its pid alive" cannot tell; docs/campaigns.md §6.4). The
    database may still be locked by a database fault: bounded retries, the loop kept free."""
    if is_url(db):
        import psycopg

        for _ in range(100):
            try:
                async with await psycopg.AsyncConnection.connect(str(db), autocommit=True) as conn:
                    await conn.execute("SET lock_timeout = 50")
                    await conn.execute(
                        "UPDATE campaigns SET heartbeat_at = heartbeat_at - 3600 WHERE name = %s", (campaign,)
                    )
                return
            except psycopg.errors.LockNotAvailable:
                await asyncio.sleep(0.1)  # a bounded wait for the fault's lock to go
        return
    for _ in range(100):
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=0.05)) as conn, conn:
                conn.execute(
                    "UPDATE campaigns SET heartbeat_at = heartbeat_at - 3600 WHERE name = ?", (campaign,)
                )
            return
        except sqlite3.OperationalError:
            await asyncio.sleep(0.1)  # a bounded wait for the fault's lock to go


def run_lab(
    lab: LabConfig,
    seed: int,
    *,
    workdir: Path | None = None,
    keep_network_report: bool = False,
    shards: int = 1,
    db: str | None = None,
) -> LabResult:
    """One seed from start to end over the lab's transport: on the virtual clock
    (:func:`ota_lab.virtual.run_virtual`), or over SMPP in a fresh event loop (and a temporary
    directory by default). ``shards``: the virtual fleet in that many worker processes."""
    if lab.transport is Transport.VIRTUAL:
        from ota_lab.virtual import run_virtual  # lazily: an SMPP run never loads the virtual lab

        return run_virtual(lab, seed, workdir=workdir, keep_network_report=keep_network_report, shards=shards)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run_lab_async(lab, seed, workdir, keep_network_report=keep_network_report, db=db))
    with tempfile.TemporaryDirectory(prefix="ota-lab-") as tmp:
        return asyncio.run(
            run_lab_async(lab, seed, Path(tmp), keep_network_report=keep_network_report, db=db)
        )
