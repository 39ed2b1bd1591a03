"""The OTA server on the virtual clock: the campaign engine of the SMPP path, driven by a thin shell.

Shared with ``ota_server.service``, unchanged: :class:`ota_server.engine.campaign.CampaignEngine`
(every campaign decision: targets, steps, per-card parameters, admission, pacing, the job machine,
PoR and card-message handling, retries, pause / resume / cancel, the infrastructure rules) and the
store vocabulary (:mod:`ota_server.engine.records`). This module only moves its effects:

* a :class:`~ota_server.engine.records.Commit` goes to :class:`MemoryStore`, which keeps the same
  durability semantics as the SQLite store: a commit is atomic, and a crash loses exactly what was
  not committed (:meth:`VirtualOtaServer.crash` drops the engine; :meth:`restart` builds a new one
  from the store's snapshot, as ``ota-server campaign run`` does after a kill);
* a :class:`~ota_server.engine.events.Submit` goes to :meth:`VirtualNetwork.submit` as the
  ``SubmitSm`` object the SMPP link would encode; its answer comes back as its own clock event;
* the engine's one deadline is one virtual-clock event, cancelled by a version number;
* SMSC restarts and ESME link drops are :class:`~ota_server.engine.events.LinkDown` / ``LinkUp``.

Glossary: bind one ESME session; durable what the store holds; lease the one-runner rule.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from ota_lab.virtual.clock import VirtualClock
from ota_lab.virtual.network import VirtualNetwork
from ota_protocols.errors import StoreError
from ota_protocols.fleet import DerivedCard, FleetSpec, derive_card
from ota_protocols.smpp.pdu_codec import DeliverSm
from ota_server.config import CampaignConfig
from ota_server.engine import outcome
from ota_server.engine.campaign import CampaignEngine
from ota_server.engine.events import DeliverArrived, LinkDown, LinkUp, Submit, SubmitAnswered
from ota_server.engine.lease import decide_lease
from ota_server.engine.records import CampaignRow, Commit, StoreSnapshot, TargetCard
from ota_server.model import Card, Keyset, keysets_of
from ota_server.report import Stats

__all__ = ["MemoryStore", "VirtualOtaServer"]

HEARTBEAT_S = 1.0  # virtual seconds between lease renewals (the SMPP shell polls every 0.2 s)


class MemoryStore:
    """The lab's store: what the SQLite store keeps, in memory, with the same commit semantics."""

    def __init__(self) -> None:
        self.cntrs: dict[tuple[str, int], int] = {}
        self.confirmed: dict[tuple[str, str], int] = {}
        self.mo_cntrs: dict[tuple[str, str], int] = {}
        self.jobs: dict[tuple[str, str, int], Any] = {}  # JobRecord
        self.campaign: CampaignRow | None = None
        self.fail_writes = False  # the database-write-failure fault

    def commit(self, commit: Commit) -> None:
        if not commit:
            return
        if self.fail_writes:
            raise StoreError("memory store: write refused (database write failure fault)")
        for r in commit.reservations:
            key = (r.iccid, r.kvn)
            self.cntrs[key] = max(self.cntrs.get(key, 0), r.cntr)
        jobs = self.jobs
        for record in commit.jobs:
            jobs[record.key] = record  # its row is built only if a runner restarts
        for iccid, tar, value in commit.counters:
            self.confirmed[(iccid, tar)] = value
        for iccid, tar, value in commit.mo_counters:
            self.mo_cntrs[(iccid, tar)] = max(self.mo_cntrs.get((iccid, tar), 0), value)

    def snapshot(self) -> StoreSnapshot:
        return StoreSnapshot(
            cntrs=dict(self.cntrs),
            confirmed=dict(self.confirmed),
            mo_cntrs=dict(self.mo_cntrs),
            jobs={key: record.row() for key, record in self.jobs.items()},
            campaign=self.campaign,
        )

    def acquire_lease(self, name: str, *, token: str, now: float, alive: bool) -> bool:
        """docs/campaigns.md §6.4, the same decision as the SQLite store's (one process: the holder
        is on this "host", ``alive`` says whether its runner still runs)."""
        decision = decide_lease(self.campaign, token=token, host="lab", now=now, holder_alive=alive)
        if decision.granted:
            self.campaign = CampaignRow(name, "running", "", now, now, 1, now, "lab", token)
        return decision.granted


class _FleetKeysets(Mapping[int, Keyset]):
    """A card's key sets, derived from the fleet spec on first use (most cards never need them).
    Which KVNs a card has is the spec's (``derive_card`` makes one key set per template, in order):
    asking whether a card has a KVN (the engine does, for every card, at start) derives nothing."""

    __slots__ = ("_derive", "_index", "_keysets", "_kvns")

    def __init__(self, derive: Callable[[int], DerivedCard], index: int, kvns: frozenset[int]) -> None:
        self._derive = derive
        self._index = index
        self._kvns = kvns
        self._keysets: dict[int, Keyset] | None = None

    def _load(self) -> dict[int, Keyset]:
        if self._keysets is None:
            self._keysets = {k.kvn: k for k in keysets_of(self._derive(self._index))}
        return self._keysets

    def __getitem__(self, kvn: int) -> Keyset:
        return self._load()[kvn]

    def get(self, kvn: int, default: Any = None) -> Any:  # Mapping.get, without its KeyError round trip
        return self._load().get(kvn, default)

    def __iter__(self) -> Iterator[int]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, kvn: object) -> bool:
        return kvn in self._kvns


class VirtualOtaServer:
    """A runner of the campaign on the virtual clock (module docstring)."""

    def __init__(
        self,
        config: CampaignConfig,
        fleet: FleetSpec,
        network: VirtualNetwork,
        clock: VirtualClock,
        *,
        seed: object,
        system_id: str,
        store: MemoryStore | None = None,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.network = network
        self.clock = clock
        self.seed = seed
        self.system_id = system_id
        self.store = store if store is not None else MemoryStore()
        pool = network.pool
        # The pool's memo of the derivation when the server's fleet is the network's (the lab's case):
        # the card and the server then derive a card's identity and keys once between them.
        derive: Callable[[int], DerivedCard] = (
            pool.derived if fleet == pool.spec else functools.partial(derive_card, fleet)
        )
        kvns = frozenset(t.kvn for t in fleet.keysets)
        self._cards = [
            TargetCard(
                Card(iccid=pool.iccid(i), imsi="", msisdn=pool.msisdn(i), index=i),
                _FleetKeysets(derive, i, kvns),
            )
            for i in fleet.indices
        ]
        self.engine: CampaignEngine | None = None
        self.crash_after_commit = False  # the server-crash fault: die right after the next commit
        self._past_stats: list[Stats] = []
        self.runs = 0  # engines started (1 + restarts after crashes and database failures)
        self.stopped_reason: str | None = None  # why the current engine stopped (crash, database)
        self._version = 0  # voids the clock events of an engine that crashed
        self._timer_at: float | None = None
        self._token = ""
        # The engine's run has ended: read after every clock event (the driver's stop test), so kept
        # as a plain attribute, taken from the engine after each call into it (_arm ends every one).
        self.finished = False

    # ------------------------------------------------------------------ lifecycle of the runner

    def start(self) -> None:
        """A runner starts: takes the lease, reads the store, lets the engine begin, binds."""
        self.runs += 1
        self._version += 1
        self._token = f"run-{self.runs}"
        now = self.clock.now
        if not self.store.acquire_lease(self.config.campaign.name, token=self._token, now=now, alive=False):
            raise StoreError("lease refused")  # pragma: no cover - the previous runner is always dead here
        remaining = max(0.0, self.config.campaign.deadline_s - now)
        engine = CampaignEngine(
            self.config,
            self._cards,
            self.store.snapshot(),
            rng=random.Random(f"{self.seed}/run/{self.runs}" if self.runs > 1 else self.seed),
            issued_counter=self.fleet.issued_action_counter,
            deadline_s=remaining,
            audit=False,  # the lab keeps no audit trail; the invariants read the cards' journals
        )
        self.engine = engine
        self.stopped_reason = None
        engine.start(now)
        self._perform()
        if now >= self.network.down_until:
            self._bind_all()
        else:
            self.link_cut(self.network.down_until)  # started during an outage: binds when it ends
        self.clock.at(now + HEARTBEAT_S, self._heartbeat, self._version)

    def _heartbeat(self, version: int) -> None:
        """The runner's poll (docs/campaigns.md §6.4): renew the lease while this runner lives."""
        row = self.store.campaign
        if version != self._version or self.engine is None or self.engine.finished or row is None:
            return
        if row.runner_token == self._token:
            self.store.campaign = replace(row, heartbeat_at=self.clock.now)
        self.clock.at(self.clock.now + HEARTBEAT_S, self._heartbeat, version)

    def crash(self, why: str = "crash") -> None:
        """The runner dies: everything not committed is lost (the engine and its effects not yet
        performed); messages already handed to the SMSC stay in the network."""
        if self.engine is not None:
            self._past_stats.append(self.engine.stats)  # the lab reports every run's traffic
        self.engine = None
        self.finished = False
        self.stopped_reason = why
        self._version += 1
        self._timer_at = None
        self.network.esme_gone = True  # its binds are gone; the lease stays behind, stale

    def second_runner_refused(self) -> bool:
        """A second runner on the same campaign and store while this one holds the lease."""
        assert self.store.campaign is not None
        return not self.store.acquire_lease(
            self.config.campaign.name, token="intruder", now=self.clock.now, alive=self.engine is not None
        )

    # ------------------------------------------------------------------ the link

    def _bind_all(self) -> None:
        engine = self.engine
        if engine is None:
            return
        for bind in range(max(1, self.config.pacing.binds)):
            engine.handle(LinkUp(bind), self.clock.now)
        self._perform()
        self.network.esme_back()

    def link_cut(self, until: float) -> None:
        """SMSC restart or ESME link drop: every bind down until ``until``, then bound again. Down
        longer than ``[smsc] reconnect_window_s``, the run fails (docs/campaigns.md §6.2): the
        runner stops, no card fails, and the operator starts it again."""
        engine = self.engine
        if engine is not None:
            for bind in range(max(1, self.config.pacing.binds)):
                engine.handle(LinkDown(bind), self.clock.now)
            self._perform()
        window = self.config.smsc.reconnect_window_s
        if until - self.clock.now > window:
            self.clock.at(self.clock.now + window, self._link_failed, self._version)
        self.clock.at(until, self._rebind, self._version, until)

    def _link_failed(self, version: int) -> None:
        if version == self._version and self.engine is not None and self.clock.now < self.network.down_until:
            self.crash("link failed: no bind within the reconnect window")

    def _rebind(self, version: int, until: float) -> None:
        if version != self._version or self.clock.now < self.network.down_until:
            return
        self._bind_all()

    # ------------------------------------------------------------------ effects, timers, deliveries

    def _perform(self) -> None:
        """Perform the engine's effects in order. The virtual SMSC answers a submit_sm at once: its
        answers are fed back before the next turn, so one clock event is one turn, not one per SMS
        (a zero-latency SMPP session; deliver_sm still arrive as their own events)."""
        engine = self.engine
        if engine is not None:
            store = self.store
            submit = self.network.submit
            system_id = self.system_id
            while True:
                effects = engine.effects()
                if not effects:
                    break
                answers: list[SubmitAnswered] = []
                for effect in effects:
                    if type(effect) is Submit:
                        status, message_id = submit(effect.pdu, system_id)
                        answers.append(SubmitAnswered(effect.token, status, message_id))
                    elif isinstance(effect, Commit):
                        try:
                            store.commit(effect)
                        except StoreError:
                            # docs/campaigns.md §6.5: the run stops; nothing after the failed commit happens.
                            self.crash("database")
                            return
                        if self.crash_after_commit:
                            # The worst moment to die: reservations durable, their messages never sent.
                            self.crash_after_commit = False
                            self.crash("crash")
                            return
                if answers:
                    now = self.clock.now
                    handle = engine.handle
                    for answer in answers:
                        handle(answer, now)
        self._arm()

    def _arm(self) -> None:
        engine = self.engine
        if engine is None:
            return
        self.finished = engine.finished
        deadline = engine.next_deadline()
        if deadline is None or (
            self._timer_at is not None and self._timer_at <= deadline and self._timer_at >= self.clock.now
        ):
            return
        self._timer_at = deadline
        self.clock.at(deadline, self._on_timer, self._version, deadline)

    def _on_timer(self, version: int, deadline: float) -> None:
        if version != self._version or self.engine is None or self._timer_at != deadline:
            return
        self._timer_at = None
        self.engine.handle_deadline(self.clock.now)
        self._perform()

    def on_deliver(self, pdu: DeliverSm) -> None:
        engine = self.engine
        if engine is None:
            # No runner: the SMSC keeps the deliver_sm (not acknowledged) and offers it again on
            # the next bind; the lab models that by holding it until the runner is back.
            self.network.hold_for_esme(pdu)
            return
        engine.handle(
            DeliverArrived(None, pdu.source_addr, pdu.esm_class, pdu.payload, None, None), self.clock.now
        )
        self._perform()

    # ------------------------------------------------------------------ results

    def summary(self, duration_s: float) -> dict[str, Any]:
        assert self.engine is not None
        if self._past_stats:
            total = Stats()
            for stats in (*self._past_stats, self.engine.stats):
                for name in Stats.__dataclass_fields__:
                    setattr(total, name, getattr(total, name) + getattr(stats, name))
            self.engine.stats = total
            self._past_stats = []
        summary = outcome.summary(self.engine, duration_s)
        summary["duration_s"] = round(duration_s, 3)
        return summary
