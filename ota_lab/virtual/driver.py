"""One seed of a lab on the virtual clock: the same draw, configs, protocol code and invariants as
:func:`ota_lab.runner.run_lab_async` over SMPP, in one process, no sockets, no sleeps.

``run_virtual(lab, seed)`` draws the fault mix (:func:`ota_lab.runner.draw_mix`), writes and loads the
seed's handset and campaign configs exactly as the SMPP path does (:func:`ota_lab.runner.write_configs`,
``handset.config.load_config``, ``ota_server.config.load_campaign``), builds the fleet
(:class:`~ota_lab.virtual.cards.CardPool`), the network (:class:`~ota_lab.virtual.network.VirtualNetwork`)
and the server (:class:`~ota_lab.virtual.server.VirtualOtaServer`) on one :class:`VirtualClock`, fires
the lab's events (SMSC restarts) at their virtual times and runs until every job is closed or the
campaign deadline. The invariants are :func:`ota_lab.runner.check_invariants` and
the server's own verification (:func:`ota_lab.virtual.server.server_verification`, as
``ota_server.service.verification``), fed card by card (in chunks) from the cards' own state so
that a million-card fleet never needs its whole network report in memory.

Determinism: every generator comes from the seed (radio seed and campaign seed drawn by ``draw_mix``;
per phone generators seeded from the radio seed and the MSISDN as the handset does), events run in
(time, sequence) order, nothing reads the wall clock or iterates a set; the same seed gives the same
:class:`~ota_lab.runner.LabResult` and byte-identical reports (``LabResult.to_dict(timings=False)``).
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import sim_emulator.api as api
from handset.config import HandsetConfig, load_config
from ota_lab.config import LabConfig
from ota_lab.runner import (
    _NETWORK_KEYS,
    FaultMix,
    Invariants,
    JobView,
    LabResult,
    check_invariants,
    draw_mix,
    write_configs,
)
from ota_lab.virtual.cards import WARM_CARDS, CardPool
from ota_lab.virtual.clock import VirtualClock
from ota_lab.virtual.network import VirtualNetwork
from ota_lab.virtual.server import REPORT_STATES, VirtualOtaServer, server_verification
from ota_protocols.errors import ConfigError, OtaSimError
from ota_server.config import CampaignConfig, load_campaign, load_network_inventory

__all__ = ["CARD_ROWS_LIMIT", "VirtualRun", "build_run", "run_virtual"]

CARD_ROWS_LIMIT = 10_000  # per-card rows in the report up to this fleet size (the totals always)
_CHUNK = 1000


@functools.lru_cache(maxsize=8)
def _template(path: str) -> api.CardTemplate:
    """Templates are immutable and shared by every card: load each once per process."""
    return api.load_card_template(path)


class VirtualRun:
    """A built, not yet run, virtual lab: clock, pool, network, server (for tests and benchmarks)."""

    def __init__(
        self,
        lab: LabConfig,
        mix: FaultMix,
        handset: HandsetConfig,
        campaign: CampaignConfig,
        *,
        warm: int = WARM_CARDS,
    ) -> None:
        self.lab, self.mix, self.handset, self.campaign = lab, mix, handset, campaign
        if handset.fleet is None:
            raise ConfigError(
                "network.fleet",
                'the virtual transport needs a [fleet]; use transport = "smpp"',
                source=lab.source,
            )
        assert campaign.network.handset_config is not None
        inventory = load_network_inventory(campaign.network.handset_config)
        template_path = handset.resolve(handset.fleet.card_template)
        if not template_path.exists():
            raise ConfigError(
                "fleet.card_template", f"no such file {str(template_path)!r}", source=lab.source
            )
        self.clock = VirtualClock()
        self.pool = CardPool(handset.fleet.spec(), _template(str(template_path)))
        self.events: list[str] = []
        system_id = campaign.smsc.system_id or (inventory.esmes[0][0] if inventory.esmes else "")
        self.server: VirtualOtaServer | None = None
        self.network = VirtualNetwork(handset, self.pool, self.clock, to_esme=self._to_esme, warm=warm)
        self.server = VirtualOtaServer(
            campaign, inventory.fleet, self.network, self.clock, seed=mix.campaign_seed, system_id=system_id
        )

    def _to_esme(self, pdu: Any) -> None:
        # deliver_sm reaches the ESME as its own event (never inside the network's call stack).
        assert self.server is not None
        self.clock.soon(self.server.on_deliver, pdu)

    def run(self) -> None:
        assert self.server is not None
        outage = self.lab.events.smsc_outage_s
        rebind = self.campaign.smsc.reconnect_backoff_s
        for at in self.lab.events.smsc_restart_at_s:
            self.clock.at(at, self._restart, at, outage, rebind)
        every = self.handset.smsc.restart_every_s
        if every > 0:
            self.clock.at(every, self._periodic, every, rebind)
        self.server.start()
        server = self.server
        self.clock.run(self.campaign.campaign.deadline_s, lambda: server.finished)

    def _restart(self, at: float, outage: float, rebind: float) -> None:
        if self.clock.now < self.network.down_until:
            self.events.append(f"smsc restart at {at:g}s (ignored: one under way)")
            return
        self.events.append(f"smsc restart at {at:g}s")
        self.network.restart(outage, rebind)

    def _periodic(self, every: float, rebind: float) -> None:
        if self.clock.now >= self.network.down_until:
            self.network.restart(self.handset.smsc.restart_outage_s, rebind)
        self.clock.at(self.clock.now + every, self._periodic, every, rebind)

    # ------------------------------------------------------------------ results

    def result(self, seed: int, *, keep_network_report: bool = False) -> LabResult:
        server, pool = self.server, self.pool
        assert server is not None
        result = LabResult(self.lab.source, seed, self.mix)
        actions, tar_hex = server.actions, server.tar_hex
        lost = dup = mism = stuck = missing = 0
        problems: list[dict[str, Any]] = []
        sv = {
            "lost_actions": 0,
            "duplicated_actions": 0,
            "counter_mismatches": 0,
            "cards_missing_from_network_report": 0,
        }
        cards_report: list[dict[str, Any]] = []
        rows = server.count <= CARD_ROWS_LIMIT
        counted = [a.counted.encode_t0().hex() for a in actions]
        for start in range(pool.first, pool.first + server.count, _CHUNK):
            indices = range(start, min(start + _CHUNK, pool.first + server.count))
            views, pairs, entries = [], [], []
            for index in indices:
                job = server.job(index)
                card = server.card(index)
                state = REPORT_STATES.get(job.phase, "pending")
                views.append(
                    JobView(
                        card.iccid,
                        card.msisdn,
                        state,
                        job.applied,
                        job.confirmed,
                        job.start_counter,
                        job.reason,
                    )
                )
                pairs.append((card, job))
                app = pool.application(index, tar_hex)
                entry = {"iccid": card.iccid, "msisdn": card.msisdn, "applications": [app] if app else []}
                entries.append(entry)
            network_report = {"cards": entries}
            inv = check_invariants(views, actions, tar_hex, network_report)
            lost, dup, mism = lost + inv.lost, dup + inv.duplicated, mism + inv.mismatches
            stuck, missing = stuck + inv.stuck, missing + inv.missing_cards
            problems.extend(inv.problems[: max(0, 50 - len(problems))])
            v = server_verification(pairs, counted, tar_hex, entries)
            for key in sv:
                sv[key] += v[key]
            if keep_network_report:
                cards_report.extend(entries)
        result.invariants = Invariants(lost, dup, mism, stuck, missing, tuple(problems))
        result.server_verification = sv
        counters = self.network.report_counters()
        result.network = {k: counters[k] for k in _NETWORK_KEYS if k in counters}
        result.events = list(self.events)
        result.summary = server.summary(self.clock.now)
        result.timeline = server.timeline()
        if rows:
            result.cards = [server.card_row(i) for i in range(pool.first, pool.first + server.count)]
        if keep_network_report:
            result.network_report = {"cards": cards_report, "smsc": counters}
        return result


def build_run(lab: LabConfig, seed: int, workdir: Path, *, warm: int = WARM_CARDS) -> VirtualRun:
    mix = draw_mix(lab, seed)
    handset_path, campaign_path = write_configs(lab, mix, workdir)
    return VirtualRun(lab, mix, load_config(handset_path), load_campaign(campaign_path), warm=warm)


def run_virtual(
    lab: LabConfig,
    seed: int,
    *,
    workdir: Path | None = None,
    keep_network_report: bool = False,
    warm: int = WARM_CARDS,
) -> LabResult:
    """One seed of ``lab`` on the virtual clock (module docstring)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ota-lab-v-") as tmp:
        directory = workdir if workdir is not None else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        mix = draw_mix(lab, seed)
        try:
            run = build_run(lab, seed, directory, warm=warm)
        except ConfigError:
            raise
        try:
            run.run()
            result = run.result(seed, keep_network_report=keep_network_report)
        except OtaSimError as exc:
            result = LabResult(lab.source, seed, mix, error=f"{type(exc).__name__}: {exc}")
    result.wall_s = time.perf_counter() - started
    return result
