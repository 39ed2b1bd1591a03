"""One seed of a lab on the virtual clock: the same draw, configs, protocol code and invariants as
:func:`ota_lab.runner.run_lab_async` over SMPP, in one process, no sockets, no sleeps.

``run_virtual(lab, seed)`` draws the fault mix (:func:`ota_lab.runner.draw_mix`), writes and loads the
seed's handset and campaign configs exactly as the SMPP path does (:func:`ota_lab.runner.write_configs`,
``handset.config.load_config``, ``ota_server.config.load_campaign``), builds the fleet
(:class:`~ota_lab.virtual.cards.CardPool`), the network (:class:`~ota_lab.virtual.network.VirtualNetwork`)
and the server (:class:`~ota_lab.virtual.server.VirtualOtaServer`) on one :class:`VirtualClock`, fires
the lab's events (SMSC restarts) at their virtual times and runs until every job is closed or the
campaign deadline. The invariants are :func:`ota_lab.runner.check_invariants` and
the server's own verification (:func:`ota_server.report.check_card`, the per-card
core of ``ota_server.report.verify_jobs``), fed card by card (in chunks) from the cards' own state so
that a million-card fleet never needs its whole network report in memory.

Determinism: every generator comes from the seed (radio seed and campaign seed drawn by ``draw_mix``;
per phone generators seeded from the radio seed and the MSISDN as the handset does), events run in
(time, sequence) order, nothing reads the wall clock or iterates a set; the same seed gives the same
:class:`~ota_lab.runner.LabResult` and byte-identical reports (``LabResult.to_dict(timings=False)``).
"""

from __future__ import annotations

import functools
import gc
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import sim_emulator.api as api
from handset.config import HandsetConfig, load_config
from ota_lab.config import LabConfig
from ota_lab.draw import FaultMix, draw_mix
from ota_lab.invariants import Invariants, check_steps, step_views
from ota_lab.result import NETWORK_KEYS as _NETWORK_KEYS
from ota_lab.result import LabResult
from ota_lab.seed_files import write_configs
from ota_lab.virtual.cards import WARM_CARDS, CardPool
from ota_lab.virtual.clock import VirtualClock
from ota_lab.virtual.network import VirtualNetwork
from ota_lab.virtual.server import VirtualOtaServer
from ota_protocols.errors import ConfigError, OtaSimError
from ota_protocols.fleet import FleetSpec, index_of_msisdn
from ota_server.config import CampaignConfig, load_campaign, load_network_inventory
from ota_server.report import card_row

__all__ = ["CARD_ROWS_LIMIT", "VirtualRun", "build_run", "merge_shards", "run_shard", "run_virtual"]

CARD_ROWS_LIMIT = 10_000  # per-card rows in the report up to this fleet size (the totals always)
_CHUNK = 1000
# Allocations between young collections while a campaign runs. A campaign makes no cyclic garbage
# (gc.collect() after a 10^4-card run with collection off finds 0 unreachable objects): a young
# collection only scans live state (woken cards, jobs) at ~50-100 ms each, 17-20 CPU-µs/tx at
# 100,000. At 10^6 none runs in a 10^4-card campaign; cyclic garbage, should some appear (a
# traceback kept by a log record), waits for at most 10^6 allocations.
_GC_THRESHOLD = 1_000_000


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
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} of {shards}")
        self.shard, self.shards = shard, shards
        self.lab, self.mix = lab, mix
        if handset.fleet is None:
            raise ConfigError(
                "network.fleet",
                'the virtual transport needs a [fleet]; use transport = "smpp"',
                source=lab.source,
            )
        assert campaign.network.handset_config is not None
        inventory = load_network_inventory(campaign.network.handset_config)
        spec, fleet = handset.fleet.spec(), inventory.fleet
        traffic_seed: object = None
        campaign_seed: object = mix.campaign_seed
        if shards > 1:
            spec, fleet = _slice(spec, shard, shards), _slice(fleet, shard, shards)
            handset, campaign = _split_limits(handset, campaign, shard, shards)
            traffic_seed = f"{handset.radio.seed}/shard/{shard}/{shards}"
            campaign_seed = f"{mix.campaign_seed}/shard/{shard}/{shards}"
        self.handset, self.campaign = handset, campaign
        template_path = handset.resolve(handset.fleet.card_template)
        if not template_path.exists():
            raise ConfigError(
                "fleet.card_template", f"no such file {str(template_path)!r}", source=lab.source
            )
        self.clock = VirtualClock()
        self.pool = CardPool(spec, _template(str(template_path)))
        self.events: list[str] = []
        self._restart_delay = 2.0  # before a runner that stopped is started again (a fault's duration)
        self.second_runner_admitted = False
        system_id = campaign.smsc.system_id or (inventory.esmes[0][0] if inventory.esmes else "")
        self.server: VirtualOtaServer | None = None
        self.network = VirtualNetwork(
            handset, self.pool, self.clock, to_esme=self._to_esme, warm=warm, traffic_seed=traffic_seed
        )
        self.server = VirtualOtaServer(
            campaign, fleet, self.network, self.clock, seed=campaign_seed, system_id=system_id
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
        for event in self.mix.infra:
            self.clock.at(event.at, self._infra, event.kind, event.at, event.duration)
        server = self.server
        # The collector's young generations would otherwise scan the fleet's long-lived state (jobs,
        # snapshots, warm cards) hundreds of times a campaign: freeze what exists, collect rarely.
        # Memory is freed by reference counting as before; only the scanning changes.
        threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(_GC_THRESHOLD, *threshold[1:])
        try:
            server.start()
            gc.freeze()  # the engine's jobs, built at start, are long-lived fleet state too
            deadline = self.campaign.campaign.deadline_s
            while True:
                self.clock.run(deadline, lambda: server.finished or server.engine is None)
                if server.finished or self.clock.now >= deadline or not len(self.clock):
                    break
                if server.engine is None:
                    # The runner died (crash, database failure): the operator restarts it later.
                    self.clock.run(min(deadline, self.clock.now + self._restart_delay), lambda: False)
                    if self.clock.now >= deadline:
                        break
                    self.events.append(f"runner restarted at {self.clock.now:g}s ({server.stopped_reason})")
                    server.store.fail_writes = False
                    server.start()
            if server.engine is None:
                # The results are read from the store, like the CLI's report after the deadline.
                server.crash_after_commit = False
                server.store.fail_writes = False
                server.start()
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
            # The speed-only memo (derived keys) is working set, not fleet state.
            self.pool.forget_derived()

    def _restart(self, at: float, outage: float, rebind: float) -> None:
        if self.clock.now < self.network.down_until:
            self.events.append(f"smsc restart at {at:g}s (ignored: one under way)")
            return
        self.events.append(f"smsc restart at {at:g}s")
        self.network.restart(outage, rebind)
        assert self.server is not None
        self.server.link_cut(self.network.down_until)

    def _periodic(self, every: float, rebind: float) -> None:
        if self.clock.now >= self.network.down_until:
            self.network.restart(self.handset.smsc.restart_outage_s, rebind)
            assert self.server is not None
            self.server.link_cut(self.network.down_until)
        self.clock.at(self.clock.now + every, self._periodic, every, rebind)

    def _infra(self, kind: str, at: float, duration: float) -> None:
        """docs/labs.md "Infrastructure faults": one drawn event, executed on the same runner shell."""
        server = self.server
        assert server is not None
        kind = getattr(kind, "value", kind)
        if kind in ("smsc_restart", "link_drop"):
            if self.clock.now < self.network.down_until:
                self.events.append(f"{kind} at {at:g}s (ignored: an outage under way)")
                return
            self.events.append(f"{kind} at {at:g}s for {duration:g}s")
            self.network.restart(duration, self.campaign.smsc.reconnect_backoff_s)
            server.link_cut(self.network.down_until)
        elif kind == "server_crash":
            if server.engine is None:
                return
            self.events.append(f"server crash at {at:g}s")
            self._restart_delay = max(duration, 0.001)
            server.crash_after_commit = True
        elif kind == "db_failure":
            if server.engine is None:
                return
            self.events.append(f"database write failure at {at:g}s")
            self._restart_delay = max(duration, 0.001)
            server.store.fail_writes = True
        elif kind == "second_runner":
            if server.engine is None:
                return
            refused = server.second_runner_refused()
            self.events.append(f"second runner at {at:g}s: {'refused' if refused else 'ADMITTED'}")
            if not refused:
                self.second_runner_admitted = True

    # ------------------------------------------------------------------ results

    def result(self, seed: int, *, keep_network_report: bool = False, rows: bool | None = None) -> LabResult:
        server, pool = self.server, self.pool
        assert server is not None and server.engine is not None
        engine = server.engine
        result = LabResult(self.lab.source, seed, self.mix)
        views = step_views(engine.slots)
        entries: dict[str, dict[str, Any]] = {}

        def application(iccid: str, msisdn: str, tar_hex: str) -> dict[str, Any] | None:
            index = index_of_msisdn(pool.spec, msisdn)
            if index is None:
                return None
            app = pool.application(index, tar_hex)
            if keep_network_report and app is not None:
                entry = entries.setdefault(iccid, {"iccid": iccid, "msisdn": msisdn, "applications": []})
                entry["applications"].append(app)
            return app

        lost, dup, mism, stuck, missing, problems = check_steps(views, application)
        if self.second_runner_admitted:
            problems.insert(0, {"second_runner": "admitted while the first held the lease"})
            dup += 1
        result.invariants = Invariants(lost, dup, mism, stuck, missing, tuple(problems))
        result.server_verification = {
            "lost_actions": lost,
            "duplicated_actions": dup,
            "counter_mismatches": mism,
            "cards_missing_from_network_report": missing,
        }
        counters = self.network.report_counters()
        result.network = {k: counters[k] for k in _NETWORK_KEYS if k in counters}
        result.events = list(self.events)
        result.summary = server.summary(self.clock.now)
        result.summary["runner_starts"] = server.runs
        result.timeline = engine.timeline()
        if rows is None:
            rows = len(engine.slots) <= CARD_ROWS_LIMIT
        if rows:
            result.cards = [
                card_row(
                    s.card.iccid,
                    s.card.msisdn,
                    s.tar.hex(),
                    s.state,
                    s.job,
                    step=self.campaign.steps[s.step].name if len(self.campaign.steps) > 1 else None,
                )
                for s in engine.slots
            ]
        if keep_network_report:
            result.network_report = {"cards": list(entries.values()), "smsc": counters}
        return result


def _slice(spec: FleetSpec, shard: int, shards: int) -> FleetSpec:
    """Shard ``shard`` of ``shards``: a contiguous range of the fleet's indices (cards are independent:
    identity and keys come from the fleet seed and the index, so a card is the same in any shard)."""
    lo, hi = spec.count * shard // shards, spec.count * (shard + 1) // shards
    return replace(spec, first_index=spec.first_index + lo, count=hi - lo)


def _part(total: int, shard: int, shards: int) -> int:
    """An integer limit split so that the shards' parts add up to it (the first ones get the rest)."""
    return total // shards + (1 if shard < total % shards else 0)


def _split_limits(
    handset: HandsetConfig, campaign: CampaignConfig, shard: int, shards: int
) -> tuple[HandsetConfig, CampaignConfig]:
    """The shared limits, split per shard: the ESME's pacing and the SMSC's throttle (rates / K),
    the SMSC's MT queue bound and burst, and the campaign's concurrency (integers split exactly)."""
    smsc = handset.smsc
    handset = replace(
        handset,
        smsc=replace(
            smsc,
            throttle_per_s=smsc.throttle_per_s / shards,
            throttle_burst=max(1, _part(smsc.throttle_burst, shard, shards)) if smsc.throttle_burst else 0,
            max_queued_mt=max(1, _part(smsc.max_queued_mt, shard, shards)),
        ),
    )
    c = campaign
    campaign = replace(
        c,
        campaign=replace(c.campaign, concurrency=max(1, _part(c.campaign.concurrency, shard, shards))),
        smsc=replace(c.smsc, max_messages_per_second=c.smsc.max_messages_per_second / shards),
    )
    return handset, campaign


def build_run(
    lab: LabConfig, seed: int, workdir: Path, *, warm: int = WARM_CARDS, shard: int = 0, shards: int = 1
) -> VirtualRun:
    mix = draw_mix(lab, seed)
    handset_path, campaign_path = write_configs(lab, mix, workdir)
    handset, campaign = load_config(handset_path), load_campaign(campaign_path)
    return VirtualRun(lab, mix, handset, campaign, warm=warm, shard=shard, shards=shards)


def run_shard(
    lab: LabConfig, seed: int, shard: int, shards: int, *, warm: int = WARM_CARDS, rows: bool = True
) -> LabResult:
    """One shard of one seed (a worker process's job): its part of the fleet, its part of the limits."""
    with tempfile.TemporaryDirectory(prefix="ota-lab-v-") as tmp:
        run = build_run(lab, seed, Path(tmp), warm=warm, shard=shard, shards=shards)
        try:
            run.run()
            return run.result(seed, rows=rows)
        except OtaSimError as exc:
            return LabResult(lab.source, seed, run.mix, error=f"{type(exc).__name__}: {exc}")


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)


def merge_shards(parts: Sequence[LabResult]) -> LabResult:
    """The shards' results as one, in shard order (= fleet order): counters and invariants summed,
    problems and card rows concatenated, the duration the longest shard's, events shard 0's (every
    shard sees the same scheduled events)."""
    first = parts[0]
    result = LabResult(first.lab, first.seed, first.mix)
    errors = [p.error for p in parts if p.error]
    if errors:
        result.error = errors[0]
        return result
    summary: dict[str, Any] = {}
    for p in parts:
        _add(summary, p.summary)
    summary["duration_s"] = max(float(p.summary.get("duration_s", 0.0)) for p in parts)
    result.summary = {k: summary[k] for k in first.summary}
    inv = [p.invariants for p in parts]
    problems = tuple(x for i in inv for x in i.problems)[:50]
    result.invariants = Invariants(
        sum(i.lost for i in inv),
        sum(i.duplicated for i in inv),
        sum(i.mismatches for i in inv),
        sum(i.stuck for i in inv),
        sum(i.missing_cards for i in inv),
        problems,
    )
    for attr in ("server_verification", "network"):
        total: dict[str, Any] = {}
        for p in parts:
            _add(total, getattr(p, attr))
        setattr(result, attr, total)
    result.events = list(first.events)
    timelines = [p.timeline for p in parts if p.timeline is not None]
    if first.timeline is not None and len(timelines) == len(parts):
        timeline = dict(first.timeline)
        timeline["sent"] = [sum(col) for col in zip(*(t["sent"] for t in timelines), strict=True)]
        timeline["closed"] = {
            k: [sum(col) for col in zip(*(t["closed"][k] for t in timelines), strict=True)]
            for k in first.timeline["closed"]
        }
        result.timeline = timeline
    result.cards = [row for p in parts for row in p.cards]
    return result


def run_virtual(
    lab: LabConfig,
    seed: int,
    *,
    workdir: Path | None = None,
    keep_network_report: bool = False,
    warm: int = WARM_CARDS,
    shards: int = 1,
) -> LabResult:
    """One seed of ``lab`` on the virtual clock (module docstring); ``shards`` > 1 runs the fleet in
    that many worker processes (docs/labs.md "Shards": K is part of the run's identity)."""
    if shards > 1:
        return _run_sharded(lab, seed, shards, warm=warm)
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


def _run_sharded(lab: LabConfig, seed: int, shards: int, *, warm: int) -> LabResult:
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ota-lab-v-") as tmp:
        probe = build_run(lab, seed, Path(tmp), warm=warm)  # config errors here, in the caller
        rows = probe.pool.spec.count <= CARD_ROWS_LIMIT
        del probe
    with ProcessPoolExecutor(max_workers=shards) as pool:
        futures = [pool.submit(run_shard, lab, seed, s, shards, warm=warm, rows=rows) for s in range(shards)]
        result = merge_shards([f.result() for f in futures])
    result.wall_s = time.perf_counter() - started
    return result
