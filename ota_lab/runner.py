"""Run one seed of a lab over real SMPP on loopback, in wall-clock time, and prove the outcome.

Concept (docs/labs.md): the seed's draw (:func:`ota_lab.draw.draw_mix`) and files
(:func:`ota_lab.seed_files.write_configs`) are shared with the virtual transport; here the handset
network runs in this event loop on 127.0.0.1 port 0 (:class:`handset.service.HandsetService`), the
OTA server's :class:`~ota_server.service.CampaignRunner` talks to it over real SMPP, scheduled events
(SMSC restarts) fire at their times, and the invariants (:func:`ota_lab.invariants.check_invariants`)
are computed from the cards' own reports. :func:`run_lab` picks the lab's transport.

Import rule: :mod:`ota_lab.virtual` never imports this module (the draw, the files, the invariants
and the result live in their own modules), so the two transports do not import each other.

Glossary: MT/MO mobile terminated/originated; PoR proof of receipt; SMSC short message service centre.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path

from handset.config import load_config
from handset.service import HandsetService
from ota_lab.config import LabConfig, Transport
from ota_lab.draw import draw_mix
from ota_lab.invariants import JobView, check_invariants
from ota_lab.result import NETWORK_KEYS as _NETWORK_KEYS
from ota_lab.result import LabResult
from ota_lab.seed_files import write_configs
from ota_protocols.errors import OtaSimError
from ota_server.config import load_campaign
from ota_server.report import verification
from ota_server.service import CampaignRunner

__all__ = ["run_lab", "run_lab_async"]

log = logging.getLogger(__name__)


async def run_lab_async(
    lab: LabConfig, seed: int, workdir: Path, *, keep_network_report: bool = False
) -> LabResult:
    """One seed in the running event loop; config files and the server's SQLite go to ``workdir``.
    ``keep_network_report``: keep the handset's whole report (every card's journal) in the result."""
    mix = draw_mix(lab, seed)
    result = LabResult(lab.source, seed, mix)
    handset_path, campaign_path = write_configs(lab, mix, workdir)
    handset_config = load_config(handset_path)
    campaign = load_campaign(campaign_path)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    service = HandsetService(handset_config)
    port = await service.start(host="127.0.0.1", port=0)
    timers: list[asyncio.TimerHandle] = []
    restarts: list[asyncio.Task[None]] = []

    def restart(at: float) -> None:
        task = service.request_restart(lab.events.smsc_outage_s)
        result.events.append(f"smsc restart at {at:g}s" + ("" if task else " (ignored: one under way)"))
        if task is not None:
            restarts.append(task)

    try:
        runner = CampaignRunner(
            campaign,
            smsc=("127.0.0.1", port),
            db_path=workdir / "ota-server.sqlite",
            seed=mix.campaign_seed,
            progress=False,
        )
        for at in lab.events.smsc_restart_at_s:
            timers.append(loop.call_later(at, restart, at))
        try:
            async with asyncio.timeout(campaign.campaign.deadline_s + 120.0):
                report = await runner.run()
        except (OtaSimError, TimeoutError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            report = None
        network_report = service.report()
        result.invariants = check_invariants(
            [JobView.of(card, job) for card, job in runner.outcomes()],
            runner.actions,
            runner.tar_hex,
            network_report,
        )
        if keep_network_report:
            result.network_report = network_report
        result.server_verification = {
            k: v
            for k, v in verification(
                runner.outcomes(), runner.actions, runner.tar_hex, network_report
            ).items()
            if k != "problems"
        }
        smsc = network_report.get("smsc", {})
        result.network = {k: smsc[k] for k in _NETWORK_KEYS if k in smsc}
        if report is not None:
            result.summary = report["summary"]
            result.cards = report["cards"]
    finally:
        for timer in timers:
            timer.cancel()
        for task in restarts:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await service.stop()
        result.wall_s = time.monotonic() - started
    return result


def run_lab(
    lab: LabConfig,
    seed: int,
    *,
    workdir: Path | None = None,
    keep_network_report: bool = False,
    shards: int = 1,
) -> LabResult:
    """One seed from start to end over the lab's transport: on the virtual clock
    (:func:`ota_lab.virtual.run_virtual`), or over SMPP in a fresh event loop (and a temporary
    directory by default). ``shards``: the virtual fleet in that many worker processes."""
    if lab.transport is Transport.VIRTUAL:
        from ota_lab.virtual import run_virtual  # lazily: an SMPP run never loads the virtual lab

        return run_virtual(lab, seed, workdir=workdir, keep_network_report=keep_network_report, shards=shards)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run_lab_async(lab, seed, workdir, keep_network_report=keep_network_report))
    with tempfile.TemporaryDirectory(prefix="ota-lab-") as tmp:
        return asyncio.run(run_lab_async(lab, seed, Path(tmp), keep_network_report=keep_network_report))
