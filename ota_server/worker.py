"""The worker shell: one of many stateless processes running ONE campaign from a shared store.

Clauses: docs/campaigns.md §6.7 (workers), §6.3 (the fence rule), §6.4 (a single runner and workers
exclude each other), house-style §2 (write-ahead: the Commit that reserves a CNTR is durable before
the SMS leaves; a worker's Commit is also fenced by its lease and claims).

Glossary: worker ``ota-server campaign run CAMPAIGN --db URL --smsc HOST:PORT --worker``; claim a
card the worker holds; bind slot one of the campaign's ``[pacing] binds``; inbox deliver_sm a
worker received for another worker's card.

Theory of operation. :class:`WorkerRunner` is the SMPP shell of :class:`~ota_server.service.CampaignRunner`
with a worker's store instead of the campaign lease. It enrolls the campaign's cards (idempotent),
takes a worker lease, then waits as a standby until it holds a bind slot (at most ``--binds``;
never more than the campaign's ``[pacing] binds`` in all, so the SMS/s per bind and the binds in
all hold across workers). The engine is the same one, in worker mode, with as many binds as slots
held. Every poll (``poll_s``) renews the lease and reads the state the operator asked for, reaps
workers whose lease expired, marks the cards it ended done and releases them, feeds the inbox rows
of its cards to the engine, and claims a batch when fewer than ``concurrency`` jobs are open or
waiting. A worker ends once nothing is left to claim, nothing is held by another worker and its own
jobs ended; it then gives its claims, bind slots and lease back (the last one out finishes the
campaign). A lost lease, or any database error, stops it at once: exit 1, nothing more sent.

PoR routing: the SMSC gives an ESME's deliver_sm to any of its binds (handset's SMSC: the system_id's
connection with the fewest in flight), so it may reach a worker that does not hold the card. The
engine forwards it in its Commit to the shared inbox and only then is it acknowledged; the owner
reads it at its next poll (latency: one poll). Chosen over routing at the SMSC (SMPP 3.4 has no
per-subscriber routing an ESME can ask for) and over LISTEN/NOTIFY (SQLite has none; the poll is
needed anyway for the lease; a PoR is awaited for seconds, not milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from dataclasses import replace
from typing import Any

from ota_protocols.errors import ConfigError, StoreError
from ota_server.card_store import CardStore
from ota_server.config import NetworkInventory, load_network_inventory
from ota_server.embedded_network import CampaignFailed
from ota_server.engine import outcome
from ota_server.engine.campaign import CampaignEngine
from ota_server.engine.events import DeliverArrived
from ota_server.engine.records import Commit, StoreSnapshot, TargetCard
from ota_server.progress import BINDING, Ticker
from ota_server.service import CampaignRunner
from ota_server.store.workers import WORKER_TTL_S, WorkerStore

__all__ = ["INBOX", "WorkerRunner"]

log = logging.getLogger(__name__)

INBOX = "inbox"  # the Acknowledge "bind" of deliver_sm read from the inbox: acknowledged by deleting them


class WorkerRunner(CampaignRunner):
    """One worker of a campaign (module docstring); :meth:`run` returns its own cards' report."""

    # Fenced commits on the loop's thread, between the polls that claim, reap and read the inbox on
    # the same connection (a group commit writer would interleave with them).
    group_commit = False

    def __init__(
        self,
        config: Any,
        *,
        smsc: tuple[str, int] | None,
        db_path: Any,
        seed: int = 1,
        progress: bool | None = None,
        poll_s: float = 0.2,
        binds: int = 1,
        batch: int = 0,
        ttl_s: float = WORKER_TTL_S,
    ) -> None:
        super().__init__(config, smsc=smsc, db_path=db_path, seed=seed, progress=progress, poll_s=poll_s)
        self.worker_id = secrets.token_hex(8)
        self.want_binds = max(1, binds)
        self.batch = batch if batch > 0 else max(1, config.campaign.concurrency)
        self.ttl_s = ttl_s
        self.binds_held: list[int] = []
        self._ws: WorkerStore | None = None
        self._targets_by_iccid: dict[str, TargetCard] = {}
        self._tars: set[str] = set()
        self._renewed_at = 0.0  # event-loop time the lease was last proven live (heartbeat or commit)

    async def run(self) -> dict[str, Any]:
        self._loop = loop = asyncio.get_running_loop()
        cfg = self.config
        name = cfg.campaign.name
        if self.smsc is None:
            raise ConfigError("--worker", "needs --smsc: the workers of a campaign share one SMSC")
        if self.db_path is None:
            raise ConfigError("--worker", "needs --db: the store the workers share (postgresql://...)")
        system_id, password = cfg.smsc.system_id, cfg.smsc.password
        if system_id is None:
            raise ConfigError("smsc.system_id", "required with --smsc", source=str(cfg.source))
        inventory: NetworkInventory | None = None
        if cfg.network.handset_config is not None:
            inventory = load_network_inventory(cfg.network.handset_config)
        with contextlib.ExitStack() as stack:
            store = CardStore(self.db_path)
            stack.callback(store.close)
            self._store = store
            cards, issued = self._targets(store, inventory)
            targets = [t for t in cards if cfg.targets.selects(t.card)]
            if not targets:
                raise ConfigError("targets", "no card of the inventory matches", source=str(cfg.source))
            self._targets_by_iccid = {t.card.iccid: t for t in targets}
            self._tars = {step.security.tar.hex() for step in cfg.steps}
            ws = self._ws = WorkerStore(store, name, self.worker_id, ttl_s=self.ttl_s)
            ws.enroll([t.card.iccid for t in targets])
            refusal = ws.register(host=self._host, pid=os.getpid(), source=str(cfg.source))
            if refusal is not None:
                raise ConfigError("campaign", refusal)
            log.info(
                "campaign %s: worker %s joined (%d cards in the campaign)", name, self.worker_id, len(targets)
            )
            engine: CampaignEngine | None = None
            ticker: Ticker | None = None
            try:
                held = await self._standby(ws)
                deadline_s = cfg.campaign.deadline_s
                if cfg.campaign.deadline is not None:
                    deadline_s = min(deadline_s, max(0.0, cfg.campaign.deadline.timestamp() - time.time()))
                # As many binds as slots held: each paced at [pacing] messages_per_second.
                self.config = replace(cfg, pacing=replace(cfg.pacing, binds=max(1, len(held))))
                engine = CampaignEngine(
                    self.config,
                    [],
                    StoreSnapshot(campaign=store.campaign(name)),
                    rng=random.Random(self.seed),
                    issued_counter=issued,
                    wall_offset=time.time() - loop.time(),
                    deadline_s=deadline_s,
                    worker=True,
                )
                self.engine = engine
                if not held:
                    engine.close_intake(loop.time())  # nothing left to do: the campaign ended meanwhile
                else:
                    ticker = Ticker(engine, loop, progress=self.progress)
                    ticker.start(BINDING)
                    await self._drive(self.smsc, system_id, password or "")
            finally:
                if ticker is not None:
                    ticker.stop()
                self._closing = True
                for link in self._links:
                    await link.close()
                self._stop_timers()
                with contextlib.suppress(StoreError):
                    if engine is not None:
                        while effects := engine.effects():
                            self._perform(effects, send=False)
                    ws.leave(engine.ended_cards() if engine is not None else [])
            if self._failure is not None:
                raise CampaignFailed(self._failure)
            assert engine is not None
            report = outcome.report(engine, loop.time())
            report["worker"] = {"id": self.worker_id, "binds": self.binds_held}
            return report

    async def _standby(self, ws: WorkerStore) -> list[int]:
        """Wait, renewing the lease, until this worker holds a bind slot (or nothing is left)."""
        total = max(1, self.config.pacing.binds)
        while True:
            ws.heartbeat()
            self._renewed_at = asyncio.get_running_loop().time()
            ws.reap()
            held = ws.take_bind_slots(total, self.want_binds)
            if held:
                self.binds_held = held
                log.info("worker %s: bind slot(s) %s of %d", self.worker_id, held, total)
                return held
            if ws.others_open() == 0:
                return []
            await asyncio.sleep(self.poll_s)  # a standby: every slot is held by a live worker

    # ------------------------------------------------------------------ hooks of the SMPP shell

    def _commit(self, store: CardStore, commit: Commit) -> None:
        assert self._ws is not None and self._loop is not None
        store.commit(commit, fence=self._ws.fence)
        self._renewed_at = self._loop.time()

    def _flush(self, submits: dict[int, Any], acks: dict[Any, list[object]], send: bool) -> None:
        """Submits leave only while the lease is known live: one not proven within half its TTL (the
        process stalled, say) is checked first, and a lost one sends nothing more (LeaseLost)."""
        assert self._loop is not None and self._ws is not None
        if send and submits and self._loop.time() - self._renewed_at > self.ttl_s / 2:
            try:
                self._ws.heartbeat()
            except StoreError:
                submits.clear()
                acks.clear()
                raise
            self._renewed_at = self._loop.time()
        super()._flush(submits, acks, send)

    def _acknowledge(self, bind: Any, handles: list[object]) -> None:
        if bind == INBOX:
            assert self._ws is not None
            self._ws.delete_inbox([int(h) for h in handles])  # type: ignore[call-overload]
            return
        super()._acknowledge(bind, handles)

    def _poll(self) -> None:
        """Lease, operator's state, reaping, settled cards, inbox, claims (module docstring)."""
        loop, engine, ws, store = self._loop, self.engine, self._ws, self._store
        assert loop is not None and engine is not None and ws is not None and store is not None
        self._poll_handle = loop.call_later(self.poll_s, self._poll)
        if self._failure is not None or self._closing:
            return
        added: list[TargetCard] = []
        snapshot: StoreSnapshot | None = None
        close = False
        try:
            wanted = ws.heartbeat()
            self._renewed_at = loop.time()
            ws.reap()
            settled = engine.settled_cards()
            if settled:
                ws.finish_cards(settled)  # their last rows are durable: every effect ran before this poll
                engine.release_cards(settled)
            inbox = ws.take_inbox()
            # Paused: nothing new. Cancelled: claimed and cancelled at once, so every card gets its row.
            if (
                engine.intake
                and engine.state != "paused"
                and engine.backlog < self.config.campaign.concurrency
            ):
                iccids = ws.claim(self.batch)
                if iccids:
                    added = [self._targets_by_iccid[i] for i in iccids if i in self._targets_by_iccid]
                    snapshot = store.snapshot(self.config.campaign.name, self._tars, iccids)
                elif engine.backlog == 0 and ws.others_open() == 0:
                    close = True
        except StoreError as exc:
            self._fail(str(exc))
            return
        self._apply_wanted(wanted)
        now = loop.time()
        for item in inbox:
            self._feed(
                DeliverArrived(
                    (INBOX, item.id),
                    item.msisdn,
                    item.esm_class,
                    item.user_data,
                    item.receipted_message_id,
                    item.message_state,
                    relayed=True,
                ),
                perform=False,
            )
        if snapshot is not None:
            engine.add_cards(added, snapshot, now)
        if close:
            engine.close_intake(now)
        self._after()
