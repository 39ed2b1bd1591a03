"""The SMPP shell of the campaign engine: SQLite store, smpplib ESME links, the event loop's clock.

Clauses: house-style §2 and §2.1 (a thin asyncio shell around ONE pure engine; effects performed
in order, a Commit before what depends on it), docs/campaigns.md §6 (the exactly-once rules for the
infrastructure: lease, database errors, the SMSC link).

Glossary: engine :class:`~ota_server.engine.campaign.CampaignEngine`; bind one ESME transceiver
session; lease the campaign's one-runner lock (pid, host, token, heartbeat).

Theory of operation. :meth:`CampaignRunner.run` loads the targeted cards and a snapshot of the
store, takes the campaign's lease (a second runner exits 2 naming the live one), starts the
embedded network unless ``--smsc`` names one, opens ``[pacing] binds`` links and lets the engine
decide everything else. Every link event and timer becomes one engine call; after each call the
shell performs the engine's effects in order: the Commit in one SQLite transaction, then the
submits it released and the deliver_sm acknowledgements. A database error, a lost lease or a link
that stays down longer than ``[smsc] reconnect_window_s`` stops the run: :class:`CampaignFailed`,
exit 1, one line; nothing that was not durable was acknowledged or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError, StoreError
from ota_server.card_store import CardStore, LeaseLost
from ota_server.commit_writer import CommitWriter
from ota_server.config import CampaignConfig, NetworkInventory, load_network_inventory
from ota_server.embedded_network import CampaignFailed, EmbeddedNetwork
from ota_server.engine import outcome
from ota_server.engine.campaign import CampaignEngine
from ota_server.engine.events import (
    Acknowledge,
    Cancel,
    DeliverArrived,
    EngineEvent,
    LinkDown,
    LinkUp,
    Pause,
    Resume,
    Submit,
    SubmitAnswered,
    SubmitUnanswered,
)
from ota_server.engine.job_model import Job
from ota_server.engine.job_slots import build_slots
from ota_server.engine.records import Commit, StoreSnapshot, TargetCard
from ota_server.inventory import fleet_cards as inventory_fleet_cards
from ota_server.model import Action, Card
from ota_server.progress import BINDING, STARTING_NETWORK, Ticker, print_summary
from ota_server.report import Stats, verification, verify_jobs
from ota_server.smpp_link import DeliverReceived as LinkDeliver
from ota_server.smpp_link import EsmeLink, LinkFailed, LinkSettings, RoundTrips, SubmitRequest
from ota_server.smpp_link import LinkDown as LinkLost
from ota_server.smpp_link import LinkUp as LinkBound
from ota_server.smpp_link import SubmitAccepted as LinkAccepted
from ota_server.smpp_link import SubmitRejected as LinkRejected
from ota_server.smpp_link import SubmitUnknown as LinkUnknown

__all__ = ["CampaignFailed", "CampaignRunner", "print_summary", "verification"]

log = logging.getLogger(__name__)

TURN_EVENTS = 32  # link events per engine turn (see CampaignRunner._on_link_events)
# Net allocations between two young GC collections while a campaign runs (CPython's default: 700):
# what one message allocates dies with it, so most young collections found little, and cost up to
# a tenth of the server's CPU per transaction in benchmarks.e2e. The virtual lab does the same
# (ota_lab/virtual/driver.py). Restored when the run ends.
YOUNG_GC_THRESHOLD = 10_000


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CampaignRunner:
    """Runs one campaign to its end over SMPP and returns the report (a JSON-ready dict)."""

    # Commits written by the commit writer's thread (ota_server/commit_writer.py). A worker
    # (ota_server/worker.py) commits on the loop's thread instead: its polls share the store's
    # connection with its fenced commits.
    group_commit = True

    def __init__(
        self,
        config: CampaignConfig,
        *,
        smsc: tuple[str, int] | None = None,
        db_path: Path | str | None = None,
        seed: int = 1,
        progress: bool | None = None,
        pcap: Path | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.config = config
        self.smsc = smsc
        self.db_path = db_path
        self.pcap = pcap
        self.seed = seed
        self.poll_s = poll_s
        self.progress = sys.stdout.isatty() if progress is None else progress
        # The first step's (a one-step campaign's only) security and actions: ota_lab reads these.
        self.tar_hex = config.security.tar.hex()
        self.actions: tuple[Action, ...] = config.actions
        self.state_changed = asyncio.Event()  # set on every pause / resume / cancel the engine applies
        self.ready = asyncio.Event()  # set once the checks passed, the lease is held and the engine exists
        self.engine: CampaignEngine | None = None
        self._store: CardStore | None = None
        self._writer: CommitWriter | None = None  # while the links run: Commits off the loop thread
        self._links: list[EsmeLink] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        self._done = asyncio.Event()
        self._failure: str | None = None
        self._closing = False
        self._token = secrets.token_hex(8)
        self._host = socket.gethostname()

    # ------------------------------------------------------------------ what tests and the lab read

    @property
    def state(self) -> str:
        return self.engine.state if self.engine is not None else "running"

    @property
    def stats(self) -> Stats:
        return self.engine.stats if self.engine is not None else Stats()

    def round_trips(self) -> RoundTrips:
        """submit_sm -> submit_sm_resp times of every bind of this run (benchmarks read them)."""
        total = RoundTrips()
        for link in self._links:
            total.merge(link.round_trips)
        return total

    def ack_times(self) -> RoundTrips:
        """deliver_sm read -> deliver_sm_resp written, every bind of this run: how long each
        deliver_sm held the SMSC's MO window (benchmarks read them)."""
        total = RoundTrips()
        for link in self._links:
            total.merge(link.ack_times)
        return total

    def outcomes(self) -> list[tuple[Card, Job]]:
        """Every target card with its first step's job as it stands (final once :meth:`run` returned)."""
        assert self.engine is not None
        return [(s.card, s.job) for s in self.engine.slots if s.step == 0]

    def step_outcomes(self) -> list[tuple[Card, Job, tuple[Action, ...], str]]:
        assert self.engine is not None
        return self.engine.step_outcomes()

    # ------------------------------------------------------------------ run

    async def run(self) -> dict[str, Any]:
        self._loop = loop = asyncio.get_running_loop()
        cfg = self.config
        inventory: NetworkInventory | None = None
        if cfg.network.handset_config is not None:
            inventory = load_network_inventory(cfg.network.handset_config)
        elif self.smsc is None:
            raise ConfigError(
                "network.handset_config",
                "required for the embedded network (or give --smsc)",
                source=str(cfg.source),
            )
        if self.smsc is not None and self.db_path is None:
            # docs/campaigns.md §6.6: the state of a campaign on a network that keeps its cards must
            # outlive the run (to resume it) and must never be an earlier run's file picked up unasked.
            raise ConfigError(
                "--db", "required with --smsc: name the campaign's database (a new file starts afresh)"
            )
        system_id, password = cfg.smsc.system_id, cfg.smsc.password
        if system_id is None:
            if self.smsc is not None or inventory is None or not inventory.esmes:
                why = "with --smsc" if self.smsc is not None else "(no [[smsc.esmes]] in the network config)"
                raise ConfigError("smsc.system_id", f"required {why}", source=str(cfg.source))
            system_id, password = inventory.esmes[0]
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ota-server-")))
            db_path = self.db_path if self.db_path is not None else workdir / "ota-server.sqlite"
            store = CardStore(db_path)
            stack.callback(store.close)
            self._store = store
            if self.smsc is None and store.describes_cards():
                # The embedded network starts fresh cards on every run: resuming against new ones
                # would report every earlier action as lost.
                raise ConfigError(
                    "--db",
                    f"{store.path} holds card state from an earlier run, but the embedded network starts "
                    "fresh cards every run: use a new --db (or none), or a network that keeps its cards "
                    "(--smsc)",
                )
            cards, issued = self._targets(store, inventory)
            # Before the lease: a campaign that targets nothing must not leave a campaigns row behind
            # (ota-server serve would show it running, its runner being the live server).
            if next(build_slots(cfg, cards, StoreSnapshot(), issued_counter=issued), None) is None:
                raise ConfigError("targets", "no card of the inventory matches", source=str(cfg.source))
            lease = store.acquire_lease(
                cfg.campaign.name,
                token=self._token,
                pid=os.getpid(),
                host=self._host,
                at=time.time(),
                source=str(cfg.source),
                alive=_pid_alive,
            )
            if not lease.granted:
                raise ConfigError("campaign", lease.refusal)
            if lease.takeover:
                log.warning("campaign %s: took the lease over from %s", cfg.campaign.name, lease.holder)
            tars = {step.security.tar.hex() for step in cfg.steps}
            deadline_s = cfg.campaign.deadline_s
            if cfg.campaign.deadline is not None:
                deadline_s = min(deadline_s, max(0.0, cfg.campaign.deadline.timestamp() - time.time()))
            engine = CampaignEngine(
                cfg,
                cards,
                store.snapshot(cfg.campaign.name, tars),
                rng=random.Random(self.seed),
                issued_counter=issued,
                wall_offset=time.time() - loop.time(),
                deadline_s=deadline_s,
            )
            if not engine.slots:
                raise ConfigError("targets", "no card of the inventory matches", source=str(cfg.source))
            self.engine = engine
            self.ready.set()
            log.info(
                "campaign %s: %d cards, %d step(s), %d jobs",
                cfg.campaign.name,
                len(engine.by_msisdn),
                len(cfg.steps),
                len(engine.slots),
            )
            network: EmbeddedNetwork | None = None
            network_report: dict[str, Any] | None = None
            # Progress from the first moment: the embedded network takes a second or two to start.
            ticker = Ticker(engine, loop, progress=self.progress)
            ticker.start(STARTING_NETWORK if self.smsc is None else BINDING)
            threshold = gc.get_threshold()
            if threshold[0] < YOUNG_GC_THRESHOLD:
                gc.set_threshold(YOUNG_GC_THRESHOLD, *threshold[1:])
            try:
                host_port = self.smsc
                if host_port is None:
                    assert cfg.network.handset_config is not None
                    network = EmbeddedNetwork(cfg.network.handset_config, workdir, pcap=self.pcap)
                    host_port = ("127.0.0.1", await network.start())
                    ticker.set_phase(BINDING)
                await self._drive(host_port, system_id, password or "")
            finally:
                if gc.get_threshold()[0] == YOUNG_GC_THRESHOLD:  # ours, not one set since
                    gc.set_threshold(*threshold)
                ticker.stop()
                self._closing = True  # what the links still report now is history, not work
                self._stop_writer()  # its Commits durable, the sends behind them handed to the links
                for link in self._links:
                    await link.close()
                self._stop_timers()
                with contextlib.suppress(StoreError):
                    # Whatever the engine still holds (history of the last answers) goes down too.
                    while effects := engine.effects():
                        self._perform(effects, send=False)
                    store.release_lease(
                        cfg.campaign.name,
                        token=self._token,
                        state="finished" if all(s.ended for s in engine.slots) else engine.state,
                        at=time.time(),
                    )
                if network is not None:
                    network_report = await network.stop()
            if self._failure is not None:
                raise CampaignFailed(self._failure)
            report = outcome.report(engine, loop.time())
            if network_report is not None:
                report["verification"] = verify_jobs(engine.step_outcomes(), network_report)
            return report

    def _targets(
        self, store: CardStore, inventory: NetworkInventory | None
    ) -> tuple[list[TargetCard], int | None]:
        """The cards the campaign may target, with their key sets (a fleet is imported first)."""
        issued: int | None = None
        if self.config.targets.fleet:
            assert inventory is not None
            fleet = inventory.fleet
            issued = fleet.issued_action_counter
            fleet_cards = inventory_fleet_cards(fleet)
            store.import_cards(fleet_cards)
            known = {c.iccid: c for c in store.cards()}  # tags come from the store (cards import)
            cards = [known.get(c.iccid, c) for c, _ in fleet_cards]
        else:
            cards = store.cards()
        keysets = store.keysets()
        return [TargetCard(card, keysets.get(card.iccid, {})) for card in cards], issued

    # ------------------------------------------------------------------ driving the engine

    async def _drive(self, host_port: tuple[str, int], system_id: str, password: str) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        engine = self.engine
        assert engine is not None
        if cfg.campaign.start_at is not None:
            delay = cfg.campaign.start_at.timestamp() - time.time()
            if delay > 0:
                log.warning(
                    "campaign %s starts at %s (in %.0f s)", cfg.campaign.name, cfg.campaign.start_at, delay
                )
                await asyncio.sleep(delay)
        s = cfg.smsc
        settings = LinkSettings(
            host=host_port[0],
            port=host_port[1],
            system_id=system_id,
            password=password,
            system_type=s.system_type,
            bind_timeout_s=s.bind_timeout_s,
            response_timeout_s=s.response_timeout_s,
            enquire_link_s=s.enquire_link_s,
            reconnect_backoff_s=s.reconnect_backoff_s,
            reconnect_window_s=s.reconnect_window_s,
        )
        # [pacing] binds: N transceiver binds; a job's messages always use the same bind.
        self._links = [
            EsmeLink(settings, loop, lambda events, bind=bind: self._on_link_events(bind, events))
            for bind in range(max(1, cfg.pacing.binds))
        ]
        engine.start(loop.time())
        self._after()  # the first Commit (every target's row) on this thread, before any link runs
        assert self._store is not None
        if self.group_commit:
            self._writer = CommitWriter(self._store, loop, lambda reason: self._fail(reason))
        for link in self._links:
            link.start()
        self._poll_handle = loop.call_later(self.poll_s, self._poll)
        await self._done.wait()

    def _feed(self, event: EngineEvent, *, perform: bool = True) -> None:
        engine = self.engine
        assert engine is not None and self._loop is not None
        if self._failure is not None or self._closing:
            return
        engine.handle(event, self._loop.time())
        if perform:
            self._after()

    def _after(self) -> None:
        """Perform the engine's effects, re-arm its one timer, notice the end."""
        engine = self.engine
        assert engine is not None and self._loop is not None
        try:
            while effects := engine.effects():
                self._perform(effects)
        except StoreError as exc:
            self._fail(f"database: {exc}")
            return
        if engine.finished:
            self._done.set()
            return
        deadline = engine.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        engine = self.engine
        assert engine is not None and self._loop is not None
        if self._failure is None and not self._closing:
            engine.handle_deadline(self._loop.time())
            self._after()

    def _perform(self, effects: list[Any], *, send: bool = True) -> None:
        """In order: a Commit must be durable before the submits and acks after it (house-style §2).
        While the links run, the commit writer makes it durable and performs what follows it."""
        store = self._store
        assert store is not None
        writer = self._writer
        submits: dict[int, list[SubmitRequest]] = {}
        acks: dict[Any, list[object]] = {}
        for effect in effects:
            if isinstance(effect, Commit):
                self._flush(submits, acks, send)
                if writer is not None:
                    writer.commit(effect)
                else:
                    self._commit(store, effect)
            elif isinstance(effect, Submit):
                submits.setdefault(effect.bind, []).append(SubmitRequest(effect.token, effect.pdu))
            elif isinstance(effect, Acknowledge):
                for handle in effect.handles:
                    bind, link_handle = handle  # type: ignore[misc]
                    acks.setdefault(bind, []).append(link_handle)
        self._flush(submits, acks, send)

    def _commit(self, store: CardStore, commit: Commit) -> None:
        store.commit(commit)

    def _flush(
        self, submits: dict[int, list[SubmitRequest]], acks: dict[Any, list[object]], send: bool
    ) -> None:
        if send and (submits or acks):
            links = self._links
            to_submit = [(links[bind], requests) for bind, requests in submits.items()]
            to_acknowledge = list(acks.items())

            def perform() -> None:
                # Any thread (the links lock): the commit writer's once what precedes is durable.
                for link, requests in to_submit:
                    link.submit_many(requests)
                for bind, handles in to_acknowledge:
                    self._acknowledge(bind, handles)

            if self._writer is not None:
                self._writer.send(perform)
            else:
                perform()
        submits.clear()
        acks.clear()

    def _acknowledge(self, bind: Any, handles: list[object]) -> None:
        self._links[bind].acknowledge(handles)

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
            log.error("campaign %s stopped: %s", self.config.campaign.name, reason)
        self._stop_timers()
        self._done.set()

    def _stop_timers(self) -> None:
        for handle in (self._timer, self._poll_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._poll_handle = None

    # ------------------------------------------------------------------ link events -> engine events

    def _on_link_events(self, bind: int, events: list[Any]) -> None:
        """Link events in turns of at most ``TURN_EVENTS``: one commit per turn (group commit), and
        a large batch does not hold the submits and acknowledgements of its first events back until
        its last one has been handled (the link and the SMSC stay busy meanwhile)."""
        for start in range(0, len(events), TURN_EVENTS):
            self._on_link_turn(bind, events[start : start + TURN_EVENTS])

    def _on_link_turn(self, bind: int, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, LinkDeliver):
                self._feed(
                    DeliverArrived(
                        (bind, event.handle),
                        event.source_addr,
                        event.esm_class,
                        event.user_data,
                        event.receipted_message_id,
                        event.message_state,
                    ),
                    perform=False,
                )
            elif isinstance(event, LinkAccepted):
                self._feed(SubmitAnswered(event.token, 0, event.message_id), perform=False)
            elif isinstance(event, LinkRejected):
                self._feed(SubmitAnswered(event.token, event.command_status), perform=False)
            elif isinstance(event, LinkUnknown):
                self._feed(SubmitUnanswered(event.token, event.reason), perform=False)
            elif isinstance(event, LinkBound):
                log.info("SMSC bound on bind %d (%s)", bind, event.their_system_id)
                self._feed(LinkUp(bind), perform=False)
            elif isinstance(event, LinkLost):
                if not self._closing:
                    log.warning("bind %d: %s; reconnecting", bind, event.reason)
                self._feed(LinkDown(bind, tuple(event.unsent)), perform=False)
            elif isinstance(event, LinkFailed) and not self._closing:
                self._fail(event.reason)
        if self._failure is None and not self._closing:
            self._after()

    # ------------------------------------------------------------------ lifecycle (campaigns row)

    def _poll(self) -> None:
        """Event-loop timer: renew the lease, read the state ``campaign pause|resume|cancel`` wrote.
        While the links run the store is the commit writer's: the renewal goes through its queue
        (in order with the Commits, never blocking the loop on a transaction in progress) and its
        answer comes back to the loop."""
        assert self._loop is not None and self._store is not None and self.engine is not None
        self._poll_handle = self._loop.call_later(self.poll_s, self._poll)
        if self._writer is not None:
            self._writer.send(self._renew_lease)
        else:
            self._renew_lease()

    def _renew_lease(self) -> None:
        """On the commit writer's thread (or the loop's when there is none); results go to the loop."""
        assert self._loop is not None and self._store is not None
        writer = self._writer
        try:
            with writer.lock if writer is not None else contextlib.nullcontext():
                wanted = self._store.renew_lease(self.config.campaign.name, token=self._token, at=time.time())
        except StoreError as exc:
            reason = str(exc) if isinstance(exc, LeaseLost) else f"database: {exc}"
            self._loop.call_soon_threadsafe(self._fail, reason)
            return
        self._loop.call_soon_threadsafe(self._apply_wanted, wanted)

    def _apply_wanted(self, wanted: str) -> None:
        """The state ``campaign pause|resume|cancel`` wrote, as an engine event."""
        engine = self.engine
        assert engine is not None
        if self._failure is not None or self._closing:
            return
        if wanted == engine.state or engine.state == "cancelled":
            return
        event: EngineEvent | None = {"paused": Pause(), "running": Resume(), "cancelled": Cancel()}.get(
            wanted
        )
        if event is not None:
            log.warning("campaign %s: %s", self.config.campaign.name, wanted)
            self._feed(event)
            self.state_changed.set()

    def pause(self) -> None:
        self._feed(Pause())
        self.state_changed.set()

    def resume(self) -> None:
        self._feed(Resume())
        self.state_changed.set()

    def cancel(self) -> None:
        self._feed(Cancel())
        self.state_changed.set()
