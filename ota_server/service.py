"""The campaign runner: config -> store, embedded network, ESME, job machines, clock, report.

Clauses: house-style §2 (thin asyncio shell around pure cores; write-ahead CNTR
reservation, group commit), docs/action-counter.md (claim 1c, reconciliation.py),
smpp-and-peers.md §1.2-§1.6 (what goes into submit_sm, what comes back in deliver_sm).

Glossary: job one (card, TAR) of the campaign; CA confirmed action counter; CNTR
03.48 replay counter; PoR proof of receipt; MT/MO mobile terminated/originated.

Theory of operation. One :class:`_JobSlot` per targeted card holds the pure
:class:`~ota_server.reconciliation.Job` and what the shell needs around it (card,
PacketKeys, actions). Every input (ESME event, timer) becomes a ``step`` of that
job; the resulting commands are collected and executed once per loop iteration by
:meth:`CampaignRunner._flush`: reserve CNTRs, apply ``Sent`` to the jobs, commit
reservations + job rows + history in ONE transaction, and only then hand the
segments to the ESME thread. Timers: a heap of (deadline, job) and one
``loop.call_at`` handle for its head. At most ``concurrency`` jobs are open at once;
the ESME's window and pace bound the SMS in flight.

The embedded network (no ``--smsc``) is ``handset serve`` run as a child process:
its first stdout line names the port; its stdout/stderr are drained into the log; on
exit it gets SIGTERM and writes its report of every card, from which
:func:`verification` proves the run (lost = duplicated = mismatches = 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ota_protocols.apdu import card_commands
from ota_protocols.errors import ConfigError, OtaSimError, StoreError, TransportError
from ota_protocols.fleet import derive_card
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server import command_builder
from ota_server.card_store import CardStore, HistoryRow, JobRow, Reservation
from ota_server.config import CampaignConfig, NetworkInventory, load_network_inventory
from ota_server.esme import (
    DeliverReceived,
    EsmeEvent,
    EsmeLink,
    EsmeSettings,
    LinkDown,
    LinkFailed,
    LinkUp,
    SubmitAccepted,
    SubmitRejected,
    SubmitRequest,
    SubmitUnknown,
    Throttled,
)
from ota_server.model import Action, Card, Keyset, Security, packet_keys_for
from ota_server.por_matcher import (
    CPI_UDH,
    Candidate,
    DeliverKind,
    OutstandingIndex,
    PorAssembler,
    choose,
    classify_deliver,
)
from ota_server.reconciliation import (
    Begin,
    CardReport,
    CardReportArrived,
    DeadlinePassed,
    Event,
    Finish,
    Job,
    MessageKind,
    Phase,
    Policy,
    PorArrived,
    PorReport,
    RejectedPor,
    SendQuery,
    SendReply,
    SendScript,
    Sent,
    SubmitRefused,
    Transition,
    mo_cntr_fresh,
    open_card_message,
    step,
    verify_por,
)
from ota_server.report import (
    REPORT_MEANINGS,
    REPORT_STATES,
    Stats,
    card_row,
    card_state,
    stats_summary,
    verify_jobs,
)
from ota_server.report import (
    verification as verification,  # re-exported: the tests and ota_lab.runner import it here
)

log = logging.getLogger(__name__)
progress_log = logging.getLogger("ota_server.progress")  # the CLI shows it at INFO unless --log-level ERROR

_PORT_LINE = re.compile(r"listening on ([0-9.]+):(\d+)")


class CampaignFailed(TransportError):
    """The campaign could not run (SMSC unreachable, network did not start): exit 1."""


# --------------------------------------------------------------------------- embedded network


class EmbeddedNetwork:
    """``handset serve`` as a child process (never imported: ota_server meets it over SMPP).

    The child runs with ``--exit-with-parent`` and a stdin pipe whose write end only this
    process holds: if the server dies, even by SIGKILL, the child reads EOF and stops.
    ``pcap`` (``campaign run --pcap``) is passed on as ``handset serve --pcap``.
    """

    def __init__(self, handset_config: Path, workdir: Path, *, pcap: Path | None = None) -> None:
        self.handset_config = handset_config
        self.pcap = pcap
        self.report_file = workdir / "handset-report.json"
        self.ready_file = workdir / "handset-ready"
        self._proc: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []
        self.port: int | None = None

    async def start(self, timeout_s: float = 60.0) -> int:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "handset.cli",
            "serve",
            "--config",
            str(self.handset_config),
            "--port",
            "0",
            "--ready-file",
            str(self.ready_file),
            "--report-file",
            str(self.report_file),
            "--exit-with-parent",
            *(["--pcap", str(Path(self.pcap).resolve())] if self.pcap is not None else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        stderr_tail: list[str] = []
        self._drains.append(asyncio.create_task(self._drain(self._proc.stderr, stderr_tail)))
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        await self._proc.wait()
                        await asyncio.sleep(0)  # let the stderr drain catch up
                        tail = " | ".join(stderr_tail[-3:]) or "no output"
                        raise CampaignFailed(
                            f"embedded network ({self.handset_config}) exited with status "
                            f"{self._proc.returncode} before listening: {tail}"
                        )
                    text = line.decode("utf-8", "replace").strip()
                    log.info("network: %s", text)
                    match = _PORT_LINE.search(text)
                    if match:
                        self.port = int(match.group(2))
                        break
        except TimeoutError:
            await self.stop()
            raise CampaignFailed(f"embedded network did not report its port within {timeout_s:g} s") from None
        self._drains.append(asyncio.create_task(self._drain(self._proc.stdout, None)))
        return self.port

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, tail: list[str] | None) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if tail is not None:
                tail.append(text)
                del tail[:-20]
            log.debug("network: %s", text)

    async def stop(self, timeout_s: float = 15.0) -> dict[str, Any] | None:
        """SIGTERM, bounded wait (then SIGKILL), and the report file if the network wrote one."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
            except TimeoutError:
                log.warning("embedded network ignored SIGTERM for %g s: killing it", timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._drains:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await task
            task.cancel()
        self._proc = None
        try:
            return json.loads(self.report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("no usable network report at %s: %s", self.report_file, exc)
            return None


# --------------------------------------------------------------------------- jobs


@dataclass(slots=True)
class _JobSlot:
    """One job: (card, step). A card's steps run in order: ``next`` is admitted when this one ends."""

    index: int
    card: Card
    keys: PacketKeys
    counter_kvn: int
    job: Job
    step: int = 0
    security: Security | None = None
    actions: tuple[Action, ...] = ()
    run_if: str = "confirmed"
    version: int = 0
    started: bool = False
    cntr_kinds: dict[int, MessageKind] = field(default_factory=dict)
    override: str | None = None  # "cancelled" / "skipped": ended by the runner, not by the card
    next: _JobSlot | None = None
    finished_at: float | None = None  # wall clock of the end (the plot's x)
    bind: int = 0  # the ESME link its messages go through

    @property
    def tar(self) -> bytes:
        assert self.security is not None
        return self.security.tar

    @property
    def ended(self) -> bool:
        return self.override is not None or self.job.phase.terminal

    @property
    def state(self) -> str:
        return self.override or REPORT_STATES.get(self.job.phase, "pending")


class CampaignRunner:
    """Runs one campaign to its end and returns the report (a JSON-ready dict)."""

    def __init__(
        self,
        config: CampaignConfig,
        *,
        smsc: tuple[str, int] | None = None,
        db_path: Path | None = None,
        seed: int = 1,
        progress: bool | None = None,
        pcap: Path | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.config = config
        self.pcap = pcap  # the embedded network's capture file (handset serve --pcap)
        self.smsc = smsc
        self.db_path = db_path
        self.rng = random.Random(seed)
        self.policy = Policy(
            por_timeout_s=config.retry.por_timeout_s,
            max_attempts=config.retry.max_attempts,
            backoff_s=config.retry.backoff_s,
            max_backoff_s=config.retry.max_backoff_s,
        )
        # The first step's (a one-step campaign's only) security and actions: ota_lab reads these.
        self.security = config.security
        self.tar_hex = config.security.tar.hex()
        self.actions: tuple[Action, ...] = config.actions
        self.poll_s = poll_s  # how often the campaigns row (pause / resume / cancel) is read
        self.state = "running"
        self.state_changed = asyncio.Event()  # set on every pause / resume / cancel the runner applies
        self._esmes: list[EsmeLink] = []
        self._poll_handle: asyncio.TimerHandle | None = None
        self._cancelling = False
        self.stats = Stats()
        self.progress = sys.stdout.isatty() if progress is None else progress
        self._slots: list[_JobSlot] = []
        self._by_token: dict[tuple[int, int], _JobSlot] = {}
        self._index: OutstandingIndex[int] = OutstandingIndex()
        self._assembler = PorAssembler(timeout_s=max(60.0, 4 * config.retry.por_timeout_s))
        self._waiting: list[_JobSlot] = []
        self._open = 0
        self._to_send: dict[int, _JobSlot] = {}
        self._dirty: dict[int, _JobSlot] = {}
        self._history: list[HistoryRow] = []
        self._counters: dict[tuple[str, str], int] = {}
        self._by_msisdn: dict[str, list[_JobSlot]] = {}
        self._token_segments: dict[tuple[int, int], int] = {}  # segments of a message not yet answered
        self._ca: dict[tuple[str, str], int] = {}  # (ICCID, TAR) -> CA as this run proved it
        self._mo_keys: dict[str, dict[int, PacketKeys]] = {}
        self._mo_cntrs: dict[tuple[str, str], int] = {}
        self._mo_dirty: dict[tuple[str, str], int] = {}
        self._replies_out: list[tuple[_JobSlot, tuple[int, ...]]] = []
        self._flush_scheduled = False
        self._timers: list[tuple[float, int, int]] = []
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._finished = asyncio.Event()
        self._failure: str | None = None
        self._esme: EsmeLink | None = None
        self._store: CardStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._ended_at: float | None = None

    def outcomes(self) -> list[tuple[Card, Job]]:
        """Every target card with its first step's job as it stands (final once :meth:`run` returned)."""
        return [(s.card, s.job) for s in self._slots if s.step == 0]

    def step_outcomes(self) -> list[tuple[Card, Job, tuple[Action, ...], str]]:
        """Every job (card, step) with that card's actions and the step's TAR (for :func:`verification`)."""
        return [(s.card, s.job, s.actions, s.tar.hex()) for s in self._slots]

    # ------------------------------------------------------------------ run

    async def run(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
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
        system_id, password = cfg.smsc.system_id, cfg.smsc.password
        if system_id is None:
            if self.smsc is not None or inventory is None or not inventory.esmes:
                why = "with --smsc" if self.smsc is not None else "(no [[smsc.esmes]] in the network config)"
                raise ConfigError("smsc.system_id", f"required {why}", source=str(cfg.source))
            system_id, password = inventory.esmes[0]
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ota-server-")))
            db_path = self.db_path
            if db_path is None:
                db_path = workdir / "ota-server.sqlite" if self.smsc is None else Path("ota-server.sqlite")
            store = CardStore(db_path)
            stack.callback(store.close)
            self._store = store
            if self.smsc is None and store.describes_cards():
                # The embedded network starts fresh cards on every run: the counters and jobs this
                # database holds describe cards that no longer exist, and "resuming" against new ones
                # would report every earlier action as lost.
                raise ConfigError(
                    "--db",
                    f"{db_path} holds card state from an earlier run, but the embedded network starts "
                    "fresh cards every run: use a new --db (or none), or a network that keeps its cards "
                    "(--smsc HOST:PORT)",
                )
            self._load_jobs(store, inventory)
            network: EmbeddedNetwork | None = None
            host_port = self.smsc
            if host_port is None:
                assert cfg.network.handset_config is not None
                network = EmbeddedNetwork(cfg.network.handset_config, workdir, pcap=self.pcap)
                port = await network.start()
                host_port = ("127.0.0.1", port)
            network_report: dict[str, Any] | None = None
            try:
                await self._run_jobs(host_port, system_id, password or "")
            finally:
                for esme in self._esmes:
                    await esme.close()
                self._flush_now()
                if self._poll_handle is not None:
                    self._poll_handle.cancel()
                self._close_campaign_row()
                if network is not None:
                    network_report = await network.stop()
            if self._failure is not None:
                raise CampaignFailed(self._failure)
            return self._report(network_report if network is not None else None)

    def _load_jobs(self, store: CardStore, inventory: NetworkInventory | None) -> None:
        cfg = self.config
        targets = cfg.targets
        issued: int | None = None
        if targets.fleet:
            assert inventory is not None
            fleet = inventory.fleet
            issued = fleet.issued_action_counter
            fleet_cards: list[tuple[Card, list[Keyset]]] = []
            for i in fleet.indices:
                derived = derive_card(fleet, i)
                keysets = [
                    Keyset(
                        kvn=k.kvn,
                        kic_algorithm=CipherAlgorithm(k.kic_algorithm),
                        kid_algorithm=IntegrityAlgorithm(k.kid_algorithm),
                        kic=k.kic,
                        kid=k.kid,
                    )
                    for k in derived.keysets
                ]
                card = Card(iccid=derived.iccid, imsi=derived.imsi, msisdn=derived.msisdn, index=i)
                fleet_cards.append((card, keysets))
            store.import_cards(fleet_cards)
            known = {c.iccid: c for c in store.cards()}  # tags come from the store (cards import)
            cards = [known.get(c.iccid, c) for c, _ in fleet_cards]
        else:
            cards = store.cards()
        cards = [c for c in cards if targets.selects(c)]
        if not cards:
            raise ConfigError("targets", "no card of the inventory matches", source=str(cfg.source))
        all_keysets = store.keysets()
        self._mo_cntrs = store.mo_counters()
        tars = {step.security.tar.hex() for step in cfg.steps}
        confirmed = {tar: store.confirmed_counters(tar) for tar in tars}
        previous = store.load_step_jobs(cfg.campaign.name)
        row = store.campaign(cfg.campaign.name)
        cancelled = row is not None and row.state == "cancelled"
        csv_key = targets.csv.key if targets.csv else None
        for card in cards:
            keysets = all_keysets.get(card.iccid, {})
            prev_slot: _JobSlot | None = None
            for k, step_config in enumerate(cfg.steps):
                sec = step_config.security
                if sec.counter_kvn not in keysets:
                    where = f"steps[{k}].security.kic" if len(cfg.steps) > 1 else "security.kic"
                    raise ConfigError(
                        where, f"card {card.iccid} has no key set {sec.counter_kvn}", source=str(cfg.source)
                    )
                actions = step_config.actions_for(getattr(card, csv_key) if csv_key else None)
                tar_hex = sec.tar.hex()
                n = len(actions)
                # The server's stored CA: from earlier reports, else the issuer's record of the fleet (a
                # wrong record is caught by the PoR's "before" value); unknown -> the job asks the card
                # first. A later step on the same TAR takes the counter when it is admitted.
                base = confirmed[tar_hex].get(card.iccid, issued)
                job = Job(n=n, confirmed=base, start_counter=base)
                stored = previous.get((card.iccid, tar_hex, k))
                slot = _JobSlot(
                    len(self._slots),
                    card,
                    packet_keys_for(keysets, sec),
                    sec.counter_kvn,
                    job,
                    step=k,
                    security=sec,
                    actions=actions,
                    run_if=step_config.run_if,
                    bind=len(self._slots) % cfg.pacing.binds,
                )
                if stored is not None:
                    if stored.state in ("cancelled", "skipped"):
                        slot.override = stored.state
                        slot.job = replace(_resume(stored, n, base), phase=Phase.NEW)
                    else:
                        slot.job = _resume(stored, n, base)
                    slot.finished_at = _float((stored.extra or {}).get("finished_at"))
                else:
                    self._dirty[slot.index] = slot  # every target has a row from the start (reports)
                if cancelled and not slot.ended:
                    self._cancel_slot(slot, offline=True)
                if prev_slot is not None:
                    prev_slot.next = slot
                prev_slot = slot
                self._slots.append(slot)
                self._by_msisdn.setdefault(card.msisdn, []).append(slot)
            # Card messages come under the card's own key set (KIc b8..b5), whatever the campaign's.
            self._mo_keys[card.iccid] = {kvn: ks.packet_keys() for kvn, ks in keysets.items()}
        log.info(
            "campaign %s: %d cards, %d step(s), %d jobs",
            cfg.campaign.name,
            len(cards),
            len(cfg.steps),
            len(self._slots),
        )

    async def _run_jobs(self, host_port: tuple[str, int], system_id: str, password: str) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        s = cfg.smsc
        store = self._store
        assert store is not None
        wall = time.time()
        row = store.campaign(cfg.campaign.name)
        if row is None or row.state != "cancelled":
            # ``run`` (re)starts the campaign: a paused or interrupted one continues from the database.
            store.set_campaign_state(
                cfg.campaign.name, "running", at=wall, source=str(cfg.source), runner_pid=os.getpid()
            )
        else:
            self.state = "cancelled"
            self._cancelling = True
        self._flush_now()  # the rows of every target, before anything is sent
        if cfg.campaign.start_at is not None:
            delay = cfg.campaign.start_at.timestamp() - time.time()
            if delay > 0:
                log.warning(
                    "campaign %s starts at %s (in %.0f s)", cfg.campaign.name, cfg.campaign.start_at, delay
                )
                await asyncio.sleep(delay)
        settings = EsmeSettings(
            host=host_port[0],
            port=host_port[1],
            system_id=system_id,
            password=password,
            system_type=s.system_type,
            source_addr=s.source_addr,
            source_addr_ton=s.source_addr_ton,
            source_addr_npi=s.source_addr_npi,
            dest_addr_ton=s.dest_addr_ton,
            dest_addr_npi=s.dest_addr_npi,
            registered_delivery=s.registered_delivery,
            window=cfg.pacing.window,
            max_messages_per_second=cfg.pacing.messages_per_second,
            response_timeout_s=s.response_timeout_s,
            enquire_link_s=s.enquire_link_s,
            reconnect_attempts=s.reconnect_attempts,
            reconnect_backoff_s=s.reconnect_backoff_s,
            validity_period_s=cfg.campaign.validity_period_s,
        )
        # [pacing] binds: N transceiver binds, each with its own window and rate (the SMSC throttles
        # per bind); a job's messages always use the same bind, so its segments stay in order.
        self._esmes = [EsmeLink(settings, loop, self._on_esme_events) for _ in range(cfg.pacing.binds)]
        self._esme = self._esmes[0]
        self._started_at = loop.time()
        for esme in self._esmes:
            esme.start()
        for slot in self._slots:
            if slot.ended or (slot.step > 0 and not self._previous_ended(slot)):
                continue
            if slot.step > 0 and slot.job.phase is Phase.NEW and not self._may_follow(slot):
                self._skip_rest(slot, self._previous(slot))
                continue
            self._waiting.append(slot)
        self._waiting.reverse()  # pop() from the end takes them in card order
        self._admit()
        self._check_finished()
        deadline_s = cfg.campaign.deadline_s
        if cfg.campaign.deadline is not None:
            deadline_s = min(deadline_s, max(0.0, cfg.campaign.deadline.timestamp() - time.time()))
        deadline = loop.call_later(deadline_s, self._deadline_reached)
        self._poll_handle = loop.call_later(self.poll_s, self._poll)
        ticker = _Ticker(self, loop)
        ticker.start()
        try:
            await self._finished.wait()
            # duration_s: from the first bind to the last job's end, not the network's shutdown.
            self._ended_at = loop.time()
        finally:
            deadline.cancel()
            ticker.stop()
            if self._timer_handle is not None:
                self._timer_handle.cancel()

    def _previous(self, slot: _JobSlot) -> _JobSlot:
        return next(s for s in self._by_msisdn[slot.card.msisdn] if s.next is slot)

    def _previous_ended(self, slot: _JobSlot) -> bool:
        return slot.step == 0 or self._previous(slot).ended

    def _may_follow(self, slot: _JobSlot) -> bool:
        """A step runs after the card's previous step ended confirmed, or whatever it ended with
        when the step says ``run_if = "always"``."""
        previous = self._previous(slot)
        return slot.run_if == "always" or previous.state == "confirmed"

    def _skip_rest(self, slot: _JobSlot | None, previous: _JobSlot) -> None:
        while slot is not None:
            slot.override = "skipped"
            slot.job = replace(slot.job, reason=f"not run: step {previous.step + 1} ended {previous.state}")
            slot.finished_at = time.time()
            self._dirty[slot.index] = slot
            slot = slot.next
        self._schedule_flush()

    def _deadline_reached(self) -> None:
        log.warning("campaign deadline reached: open jobs end as pending")
        self._finished.set()

    # ------------------------------------------------------------------ lifecycle (campaigns row)

    def _poll(self) -> None:
        """Event-loop timer: read the state ``campaign pause|resume|cancel`` wrote, note we are alive."""
        assert self._loop is not None and self._store is not None
        self._poll_handle = self._loop.call_later(self.poll_s, self._poll)
        try:
            wanted = self._store.heartbeat(self.config.campaign.name, at=time.time())
        except Exception as exc:  # a locked or vanished database: keep running, try again
            log.warning("campaign state poll failed: %s", exc)
            return
        if wanted is None or wanted == self.state or self.state == "cancelled":
            return
        if wanted == "paused":
            self.pause()
        elif wanted == "running":
            self.resume()
        elif wanted == "cancelled":
            self.cancel()

    def pause(self) -> None:
        """Stop new sends; messages out settle (their PoRs and timeouts are still handled)."""
        if self.state == "running":
            log.warning("campaign %s paused", self.config.campaign.name)
            self.state = "paused"
            self._note_state()

    def resume(self) -> None:
        if self.state == "paused":
            log.warning("campaign %s resumed", self.config.campaign.name)
            self.state = "running"
            self._note_state()
            self._admit()
            self._schedule_flush()

    def cancel(self) -> None:
        """End every job that has no script in flight as cancelled; a job whose script may still run
        stays open until its fence (status query) tells what ran, and sends no further script."""
        if self.state == "cancelled":
            return
        log.warning("campaign %s cancelled", self.config.campaign.name)
        self.state = "cancelled"
        self._cancelling = True
        self._note_state()
        for slot in list(self._waiting):
            self._cancel_slot(slot)
        self._waiting.clear()
        for slot in self._slots:
            if not slot.ended and (not slot.started or slot.job.script_cntr is None):
                self._cancel_slot(slot)
        self._schedule_flush()
        self._check_finished()

    def _cancel_slot(self, slot: _JobSlot, *, offline: bool = False) -> None:
        reason = "cancelled"
        if offline and slot.job.script_cntr is not None:
            # Never started again: a script of the interrupted run may have run; say so.
            reason = f"cancelled with script cntr={slot.job.script_cntr} in flight: outcome unknown"
        slot.override = "cancelled"
        slot.job = replace(slot.job, reason=reason)
        slot.finished_at = time.time()
        self._dirty[slot.index] = slot
        if slot.started and not offline:
            slot.version += 1  # its timers are void
            self._index.unregister(slot.card.msisdn, slot.tar, slot.index)
            self._open -= 1
        slot.started = True

    def _note_state(self) -> None:
        self._history.append(
            HistoryRow(time.time(), self.config.campaign.name, None, "note", "campaign", None, self.state, "")
        )
        self.state_changed.set()
        self._schedule_flush()

    def _close_campaign_row(self) -> None:
        store = self._store
        if store is None:
            return
        name = self.config.campaign.name
        done = all(slot.ended for slot in self._slots)
        try:
            row = store.campaign(name)
            state = row.state if row is not None else self.state
            if done and state != "cancelled":
                state = "finished"
            store.set_campaign_state(name, state, at=time.time(), runner_pid=None)
        except StoreError as exc:
            log.warning("cannot record the end of campaign %s: %s", name, exc)

    def _admit(self) -> None:
        if self.state != "running":
            return
        limit = self.config.campaign.concurrency
        now = self._now()
        while self._waiting and self._open < limit:
            slot = self._waiting.pop()
            slot.started = True
            self._open += 1
            job = slot.job
            if job.phase is Phase.NEW and job.script_cntr is None and job.attempts == 0 and job.queries == 0:
                # A later step on a TAR an earlier step just used starts from the counter it left.
                base = self._ca.get((slot.card.iccid, slot.tar.hex()), job.confirmed)
                slot.job = replace(job, confirmed=base, start_counter=base)
            self._index.register(slot.card.msisdn, slot.tar, slot.index)
            self._apply(slot, step(slot.job, Begin(), now, self.policy), now)

    def _check_finished(self) -> None:
        if self._open == 0 and not self._waiting:
            self._finished.set()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ------------------------------------------------------------------ transitions

    def _step(self, slot: _JobSlot, event: Event) -> None:
        now = self._now()
        self._apply(slot, step(slot.job, event, now, self.policy), now)

    def _apply(self, slot: _JobSlot, t: Transition, now: float) -> None:
        if slot.override is not None:
            return  # cancelled or skipped: whatever still arrives for it is in the history only
        before = slot.job
        slot.job = t.job
        if t.note:
            self._history.append(
                HistoryRow(
                    time.time(),
                    self.config.campaign.name,
                    slot.card.iccid,
                    "note",
                    "job",
                    None,
                    t.job.phase.value,
                    t.note,
                )
            )
            log.debug("job %s: %s", slot.card.iccid, t.note)
        if not t.changed and not t.note:
            return
        self._dirty[slot.index] = slot
        if t.job.confirmed is not None and t.job.confirmed != before.confirmed:
            self._counters[(slot.card.iccid, slot.tar.hex())] = t.job.confirmed
            self._ca[(slot.card.iccid, slot.tar.hex())] = t.job.confirmed
        for command in t.commands:
            if isinstance(command, SendScript | SendQuery):
                self._to_send[slot.index] = slot
            elif isinstance(command, SendReply):
                self._replies_out.append((slot, command.sequences))
            elif isinstance(command, Finish):
                self._finish(slot)
        if t.job.deadline is not None and t.job.deadline != before.deadline:
            slot.version += 1
            heapq.heappush(self._timers, (t.job.deadline, slot.index, slot.version))
            self._rearm()
        self._schedule_flush()

    def _finish(self, slot: _JobSlot) -> None:
        slot.finished_at = time.time()
        nxt = slot.next
        if nxt is not None and not nxt.ended and not self._cancelling:
            if self._may_follow(nxt):
                self._waiting.append(nxt)  # next in line: pop() takes it before other cards
            else:
                self._skip_rest(nxt, slot)
        if not slot.started:
            # Settled by a card message before it was admitted (a resumed job): never opened.
            slot.started = True
            if slot in self._waiting:
                self._waiting.remove(slot)
            self._check_finished()
            return
        self._index.unregister(slot.card.msisdn, slot.tar, slot.index)
        self._open -= 1
        self._admit()
        self._check_finished()

    # ------------------------------------------------------------------ timers

    def _rearm(self) -> None:
        if not self._timers:
            return
        head = self._timers[0][0]
        if self._timer_at is not None and self._timer_at <= head:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        assert self._loop is not None
        self._timer_at = head
        self._timer_handle = self._loop.call_at(head, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._timer_at = None
        now = self._now()
        while self._timers and self._timers[0][0] <= now:
            deadline, index, version = heapq.heappop(self._timers)
            if index < 0:
                continue  # the reassembler's deadline: handled below
            slot = self._slots[index]
            if version != slot.version or slot.job.deadline != deadline:
                continue  # superseded
            self._apply(slot, step(slot.job, DeadlinePassed(), now, self.policy), now)
        for expired in self._assembler.expire(now):
            self._history.append(
                HistoryRow(
                    time.time(),
                    self.config.campaign.name,
                    None,
                    "mo",
                    "por_segments",
                    None,
                    "expired",
                    f"{expired.originator} ref={expired.reference} "
                    f"parts {expired.received_seqs} of {expired.total}",
                )
            )
        assembler_deadline = self._assembler.next_deadline()
        if assembler_deadline is not None:
            heapq.heappush(self._timers, (assembler_deadline, -1, -1))
        self._rearm()

    # ------------------------------------------------------------------ group commit + send

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        try:
            self._flush_now()
        except StoreError as exc:
            self._failure = f"card store: {exc}"
            self._finished.set()

    def _flush_now(self) -> None:
        store = self._store
        if store is None:
            return
        now = self._now() if self._loop is not None else 0.0
        wall = time.time()
        campaign = self.config.campaign.name
        sends: list[tuple[_JobSlot, MessageKind]] = []
        reservations: list[Reservation] = []
        held: dict[int, _JobSlot] = {}
        for slot in self._to_send.values():
            job = slot.job
            if job.phase is not Phase.SENDING or job.next_kind is None or slot.override is not None:
                continue  # a PoR settled it meanwhile
            if self.state == "paused":
                held[slot.index] = slot  # pause: nothing new leaves; sent once resumed
                continue
            if self._cancelling and job.next_kind is MessageKind.SCRIPT:
                # Cancel: the fence said what ran (job.applied); the rest is never sent.
                self._cancel_slot(slot)
                self._check_finished()
                continue
            sends.append((slot, job.next_kind))
            step_note = f" step {slot.step + 1}" if len(self.config.steps) > 1 else ""
            reservations.append(
                Reservation(
                    slot.card.iccid,
                    slot.counter_kvn,
                    campaign,
                    job.next_kind.value,
                    (f"actions {job.applied + 1}..{job.n} " if job.next_kind is MessageKind.SCRIPT else "")
                    + f"TAR {slot.tar.hex()}{step_note}",
                )
            )
        self._to_send = held
        replies_out, self._replies_out = self._replies_out, []
        if self.state == "paused":
            self._replies_out, replies_out = replies_out, []
        for slot, sequences in replies_out:
            reservations.append(
                Reservation(
                    slot.card.iccid,
                    slot.counter_kvn,
                    campaign,
                    "reply",
                    "transaction reply " + ",".join(str(q) for q in sequences),
                )
            )
        cntrs = store.reserve(reservations, at=wall) if reservations else []
        reply_cntrs = cntrs[len(sends) :]
        cntrs = cntrs[: len(sends)]
        requests: list[list[SubmitRequest]] = [[] for _ in range(max(1, len(self._esmes)))]
        for (slot, kind), cntr in zip(sends, cntrs, strict=True):
            job = slot.job
            assert slot.security is not None
            actions = slot.actions[job.applied :] if kind is MessageKind.SCRIPT else ()
            # Message 2 (claim 8): owed TRANSACTION REPLYs first, then exactly the missing actions.
            actions = (*_reply_actions(job.replies), *actions)
            self.stats.replies_sent += len(job.replies)
            segments = command_builder.build_user_data(slot.keys, slot.security, cntr, actions, rng=self.rng)
            self._apply(slot, step(job, Sent(kind, cntr), now, self.policy), now)
            slot.cntr_kinds[cntr] = kind
            for ud in segments:
                token = (slot.index, cntr)
                self._by_token[token] = slot
                self._token_segments[token] = self._token_segments.get(token, 0) + 1
                requests[slot.bind % len(requests)].append(SubmitRequest(token, slot.card.msisdn, ud))
            self.stats.packets_sent += 1
            if kind is MessageKind.SCRIPT:
                self.stats.scripts_sent += 1
            else:
                self.stats.queries_sent += 1
        for (slot, sequences), cntr in zip(replies_out, reply_cntrs, strict=True):
            # Not tracked by the job (it sends nothing more): its PoR is recorded as unmatched.
            assert slot.security is not None
            segments = command_builder.build_user_data(
                slot.keys, slot.security, cntr, _reply_actions(sequences), rng=self.rng
            )
            for ud in segments:
                requests[slot.bind % len(requests)].append(
                    SubmitRequest((slot.index, cntr), slot.card.msisdn, ud)
                )
            self.stats.packets_sent += 1
            self.stats.replies_sent += len(sequences)
        rows = [self._row(slot, wall) for slot in self._dirty.values()]
        self._dirty.clear()
        counters = [(iccid, tar, value) for (iccid, tar), value in self._counters.items()]
        self._counters.clear()
        mo_counters = [(iccid, tar, value) for (iccid, tar), value in self._mo_dirty.items()]
        self._mo_dirty.clear()
        history, self._history = self._history, []
        # Write-ahead (house-style §2): reservations, jobs, counters (CA and accepted MO CNTRs) and
        # history durable in ONE transaction before any SMS leaves.
        store.commit(jobs=rows, counters=counters, history=history, mo_counters=mo_counters, at=wall)
        self._flush_scheduled = False
        for esme, batch in zip(self._esmes, requests, strict=False):
            if batch:
                self.stats.messages_sent += len(batch)
                esme.submit_many(batch)

    def _row(self, slot: _JobSlot, wall: float) -> JobRow:
        job = slot.job
        return JobRow(
            campaign=self.config.campaign.name,
            iccid=slot.card.iccid,
            tar=slot.tar.hex(),
            state=slot.override or job.phase.value,
            pending=[a.to_json() for a in slot.actions[job.applied :]],
            n=job.n,
            applied=job.applied,
            base=job.confirmed,
            start_counter=job.start_counter,
            attempts=job.attempts,
            queries=job.queries,
            resent_actions=job.resent_actions,
            outstanding=list(job.outstanding_cntrs),
            result=slot.override or REPORT_STATES.get(job.phase, ""),
            reason=job.reason,
            counter_path=job.counter_path,
            statuses=list(job.statuses),
            updated_at=wall,
            extra=_job_extra(job, slot.finished_at),
            step=slot.step,
        )

    # ------------------------------------------------------------------ ESME events

    def _on_esme_events(self, events: list[EsmeEvent]) -> None:
        for event in events:
            if isinstance(event, DeliverReceived):
                self._on_deliver(event)
            elif isinstance(event, SubmitAccepted):
                self.stats.submit_accepted += 1
                slot = self._answered(event.token)
                if slot is not None:
                    self._history.append(
                        HistoryRow(
                            time.time(),
                            self.config.campaign.name,
                            slot.card.iccid,
                            "mt",
                            "submit_resp",
                            event.token[1],  # type: ignore[index]
                            "accepted",
                            f"message_id={event.message_id}",
                        )
                    )
            elif isinstance(event, SubmitRejected | SubmitUnknown):
                self.stats.submit_failed += 1
                slot = self._answered(event.token)
                detail = (
                    f"submit_sm refused with status {event.command_status:#x}"
                    if isinstance(event, SubmitRejected)
                    else event.reason
                )
                if slot is not None:
                    _, cntr = event.token  # type: ignore[misc]
                    self._history.append(
                        HistoryRow(
                            time.time(),
                            self.config.campaign.name,
                            slot.card.iccid,
                            "mt",
                            "submit_resp",
                            cntr,
                            "failed",
                            detail,
                        )
                    )
                    self._step(slot, SubmitRefused(cntr, detail))
            elif isinstance(event, Throttled):
                self.stats.throttled += 1
            elif isinstance(event, LinkUp):
                log.info("SMSC bound (%s)", event.their_system_id)
            elif isinstance(event, LinkDown):
                log.warning("%s; reconnecting", event.reason)
            elif isinstance(event, LinkFailed):
                self._failure = event.reason
                self._finished.set()
        self._schedule_flush()

    def _answered(self, token: object) -> _JobSlot | None:
        """The job of a submit_sm just answered; forgotten once every segment of it was."""
        key: tuple[int, int] = token  # type: ignore[assignment]
        slot = self._by_token.get(key)
        left = self._token_segments.get(key, 1) - 1
        if left <= 0:
            self._by_token.pop(key, None)
            self._token_segments.pop(key, None)
        else:
            self._token_segments[key] = left
        return slot

    def _on_deliver(self, event: DeliverReceived) -> None:
        msisdn = event.source_addr.lstrip("+")
        kind = classify_deliver(event.esm_class, event.user_data)
        campaign = self.config.campaign.name
        if kind is DeliverKind.RECEIPT:
            self.stats.receipts += 1
            self._history.append(
                HistoryRow(
                    time.time(),
                    campaign,
                    None,
                    "mo",
                    "receipt",
                    None,
                    str(event.message_state),
                    event.receipted_message_id,
                )
            )
            return
        if kind is DeliverKind.OTHER:
            self._history.append(HistoryRow(time.time(), campaign, None, "mo", "other", None, None, msisdn))
            return
        user_data: bytes | None = event.user_data
        if kind is DeliverKind.CARD_MESSAGE:
            self._on_card_message(msisdn, event.user_data)
            return
        if kind is DeliverKind.POR_SEGMENT:
            try:
                user_data = self._assembler.add(msisdn, event.user_data, self._now())
            except OtaSimError as exc:
                self.stats.por_rejected += 1
                self._history.append(
                    HistoryRow(time.time(), campaign, None, "mo", "por", None, "rejected", str(exc))
                )
                return
            deadline = self._assembler.next_deadline()
            if deadline is not None:
                heapq.heappush(self._timers, (deadline, -1, -1))
                self._rearm()
            if user_data is None:
                return
        assert user_data is not None
        if user_data.startswith(CPI_UDH):
            self._on_card_message(msisdn, user_data)  # a concatenated card message, reassembled
            return
        self._on_por(msisdn, user_data)

    def _on_card_message(self, msisdn: str, user_data: bytes) -> None:
        """Claims 7-9: an MO secured packet from a card. Authenticate, apply the replay rule per
        (card, TAR), then hand the counter to the job (the fence rule lives in reconciliation.py).
        Whatever happens, the deliver_sm was already acknowledged; nothing here raises."""
        campaign = self.config.campaign.name
        slots = self._by_msisdn.get(msisdn)
        slot = slots[0] if slots else None
        if slots is None or slot is None:
            self.stats.mo_unmatched += 1
            self._history.append(
                HistoryRow(time.time(), campaign, None, "mo", "card_message", None, "unknown", msisdn)
            )
            return
        iccid = slot.card.iccid
        opened = open_card_message(user_data, self._mo_keys.get(iccid, {}))
        if not isinstance(opened, CardReport):
            self.stats.mo_rejected += 1
            self._history.append(
                HistoryRow(
                    time.time(), campaign, iccid, "mo", "card_message", None, "rejected", opened.reason
                )
            )
            log.warning("card message from %s rejected: %s", msisdn, opened.reason)
            return
        message = opened.message
        key = (iccid, opened.tar.hex())
        what = f"{opened.label} seq={message.sequence} counter={message.counter} TAR {opened.tar.hex()}"
        if not mo_cntr_fresh(self._mo_cntrs.get(key), opened.cntr):
            self.stats.mo_replayed += 1
            self._history.append(
                HistoryRow(
                    time.time(),
                    campaign,
                    iccid,
                    "mo",
                    "card_message",
                    opened.cntr,
                    "replayed",
                    f"{what}: MO CNTR not above {self._mo_cntrs.get(key)}, ignored",
                )
            )
            return
        # Accepted: the new MO CNTR is committed with the job's outcome, before any reply leaves.
        self._mo_cntrs[key] = opened.cntr
        self._mo_dirty[key] = opened.cntr
        self.stats.mo_received += 1
        # The card's job on that TAR: the open one (a card runs one step at a time), else the last.
        same_tar = [s for s in slots if s.tar == opened.tar and s.override is None]
        open_jobs = [s for s in same_tar if s.started and not s.job.phase.terminal]
        slot = open_jobs[0] if open_jobs else (same_tar[-1] if same_tar else None)  # type: ignore[assignment]
        if slot is None:
            self.stats.mo_unmatched += 1
            self._history.append(
                HistoryRow(time.time(), campaign, iccid, "mo", "card_message", opened.cntr, "no job", what)
            )
            self._schedule_flush()
            return
        self._history.append(
            HistoryRow(time.time(), campaign, iccid, "mo", "card_message", opened.cntr, "accepted", what)
        )
        self._step(slot, CardReportArrived(opened))

    def _on_por(self, msisdn: str, user_data: bytes) -> None:
        campaign = self.config.campaign.name
        tar = user_data[6:9]
        candidates: list[Candidate[int, PorReport | RejectedPor]] = []
        for index in self._index.candidates(msisdn, tar):
            slot = self._slots[index]
            assert slot.security is not None
            report = verify_por(user_data, slot.security, slot.keys)
            if isinstance(report, PorReport):
                candidates.append(
                    Candidate(
                        index, frozenset(slot.job.outstanding_cntrs), report.cntr, report.status, report
                    )
                )
            else:
                candidates.append(Candidate(index, frozenset(), None, None, report))
        chosen = choose(candidates)
        if chosen is None or not isinstance(chosen.report, PorReport):
            rejected = next((c.report for c in candidates if isinstance(c.report, RejectedPor)), None)
            if rejected is not None:
                self.stats.por_rejected += 1
                iccid = self._slots[candidates[0].job].card.iccid
                self._history.append(
                    HistoryRow(time.time(), campaign, iccid, "mo", "por", None, "rejected", rejected.reason)
                )
                log.warning("PoR from %s rejected: %s", msisdn, rejected.reason)
            else:
                self.stats.por_unmatched += 1
                self._history.append(
                    HistoryRow(
                        time.time(),
                        campaign,
                        None,
                        "mo",
                        "por",
                        None,
                        "unmatched",
                        f"{msisdn} TAR {tar.hex()}",
                    )
                )
            return
        slot = self._slots[chosen.job]
        report = chosen.report
        self.stats.por_received += 1
        counter = f" AC {report.counter.before}->{report.counter.after}" if report.counter else ""
        sw = f" SW {report.sw:04X}" if report.sw is not None else ""
        self._history.append(
            HistoryRow(
                time.time(),
                campaign,
                slot.card.iccid,
                "mo",
                "por",
                report.cntr,
                f"{report.status:02X}",
                f"{report.meaning}{counter}{sw}",
            )
        )
        self._step(slot, PorArrived(report))

    # ------------------------------------------------------------------ report

    def counts(self) -> Counter[str]:
        """Cards by overall state: confirmed when every step was, else the first other step's state."""
        c: Counter[str] = Counter()
        for slots in self._by_msisdn.values():
            c[card_state([slot.state for slot in slots])] += 1
        return c

    def _report(self, network_report: dict[str, Any] | None) -> dict[str, Any]:
        assert self._loop is not None
        counts = self.counts()
        cards = [
            card_row(
                slot.card.iccid,
                slot.card.msisdn,
                slot.tar.hex(),
                slot.state,
                slot.job,
                step=self.config.steps[slot.step].name,
            )
            for slot in self._slots
        ]
        report: dict[str, Any] = {
            "campaign": self.config.campaign.name,
            "tar": self.tar_hex,
            "summary": {
                "cards": len(self._by_msisdn),
                "jobs": len(self._slots),
                "confirmed": counts["confirmed"],
                "partial": counts["partial"],
                "failed": counts["failed"],
                "pending": counts["pending"],
                "cancelled": counts["cancelled"],
                "skipped": counts["skipped"],
                **stats_summary(self.stats, sum(s.job.resent_actions for s in self._slots)),
                "duration_s": round(
                    (self._ended_at if self._ended_at is not None else self._loop.time()) - self._started_at,
                    3,
                ),
            },
            "cards": cards,
            "meanings": REPORT_MEANINGS,
        }
        report["state"] = (
            self.state
            if self.state == "cancelled"
            else ("finished" if all(slot.ended for slot in self._slots) else self.state)
        )
        if network_report is not None:
            report["verification"] = verify_jobs(self.step_outcomes(), network_report)
        return report


def _resume(row: JobRow, n: int, confirmed: int | None) -> Job:
    """A job of an earlier run of this campaign (same DB): keep its outcome, or pick it up again."""
    phase = Phase(row.state) if row.state in {p.value for p in Phase} else Phase.NEW
    common: dict[str, Any] = {
        "n": n,
        "applied": row.applied,
        "confirmed": confirmed if confirmed is not None else row.base,
        "start_counter": row.start_counter,
        "attempts": row.attempts,
        "queries": row.queries,
        "resent_actions": row.resent_actions,
        "counter_path": row.counter_path,
        "statuses": tuple(row.statuses),
        "reason": row.reason,
        "mo_reports": int((row.extra or {}).get("mo_reports", 0)),
        "mo_counter": (row.extra or {}).get("mo_counter"),
        "replies_sent": int((row.extra or {}).get("replies_sent", 0)),
        "mismatches": int((row.extra or {}).get("mismatches", 0)),
    }
    if phase.terminal:
        return Job(phase=phase, **common)
    # Unresolved message from the crashed run: its CNTR marks a script that may have run, so
    # the restart begins with a status query (Begin sees script_cntr), never with a resend. The
    # query is the fence; owed transaction replies ride on it.
    extra = row.extra or {}
    if "script_cntr" in extra:
        outstanding = extra["script_cntr"]
    else:  # a row written before ``extra``: the first outstanding CNTR may be a script's
        outstanding = row.outstanding[0] if row.outstanding else None
    return Job(
        script_cntr=outstanding,
        script_count=n - row.applied if outstanding is not None else 0,
        replies=tuple(int(q) for q in extra.get("replies", ())),
        **common,
    )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _job_extra(job: Job, finished_at: float | None = None) -> dict[str, Any]:
    return {
        "finished_at": finished_at,
        "last_sw": job.last_sw,
        "script_cntr": job.script_cntr,
        "replies": list(job.replies),
        "mo_reports": job.mo_reports,
        "mo_counter": job.mo_counter,
        "replies_sent": job.replies_sent,
        "mismatches": job.mismatches,
    }


def _reply_actions(sequences: Sequence[int]) -> tuple[Action, ...]:
    """TRANSACTION REPLY (accepted) per sequence: navigation-like, never counted (action-counter.md)."""
    return tuple(
        Action(f"reply {q}", (card_commands.transaction_reply(q, accepted=True),)) for q in sequences
    )


# --------------------------------------------------------------------------- progress


class _Ticker:
    """Live progress: a rich bar on a TTY, else an INFO line every few seconds (a timer, not a sleep)."""

    def __init__(self, runner: CampaignRunner, loop: asyncio.AbstractEventLoop) -> None:
        self.runner = runner
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.progress: Any = None
        self.task: Any = None
        self.last_sent = 0
        self.last_at = loop.time()
        self.rate = 0.0

    def start(self) -> None:
        if self.runner.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"),
            )
            self.task = self.progress.add_task(
                self.runner.config.campaign.name, total=len(self.runner._slots), stats=""
            )
            self.progress.start()
        self._tick()

    def _line(self) -> tuple[int, str]:
        r = self.runner
        c = r.counts()
        now = self.loop.time()
        elapsed = now - self.last_at
        if elapsed > 0:
            self.rate = (r.stats.messages_sent - self.last_sent) / elapsed
        self.last_sent, self.last_at = r.stats.messages_sent, now
        done = c["confirmed"] + c["partial"] + c["failed"]
        text = (
            f"sent {r.stats.messages_sent}  PoR ok {r.stats.por_received}  confirmed {c['confirmed']}  "
            f"partial {c['partial']}  resent {sum(s.job.resent_actions for s in r._slots)}  "
            f"pending {c['pending']}  failed {c['failed']}  {self.rate:.0f} SMS/s"
        )
        return done, text

    def _tick(self) -> None:
        done, text = self._line()
        if self.progress is not None:
            self.progress.update(self.task, completed=done, stats=text)
            interval = 0.2
        else:
            progress_log.info("progress: %d/%d done; %s", done, len(self.runner._slots), text)
            interval = 5.0
        self.handle = self.loop.call_later(interval, self._tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        done, text = self._line()
        if self.progress is not None:
            self.progress.update(self.task, completed=done, stats=text)
            self.progress.stop()
        else:
            progress_log.info("progress: %d/%d done; %s", done, len(self.runner._slots), text)


def print_summary(report: dict[str, Any], file: Any = None) -> None:
    """The final summary table (rich; plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    summary = report["summary"]
    table = Table(title=f"campaign {report['campaign']} (TAR {report['tar']})")
    table.add_column("result")
    table.add_column("count", justify="right")
    for key in (
        "cards",
        "confirmed",
        "partial",
        "failed",
        "pending",
        "messages_sent",
        "queries_sent",
        "por_received",
        "resent_actions",
        "duration_s",
    ):
        table.add_row(key, str(summary[key]))
    if "verification" in report:
        v = report["verification"]
        for key in ("lost_actions", "duplicated_actions", "counter_mismatches"):
            table.add_row(f"verification.{key}", str(v[key]))
    console.print(table)
    reasons = Counter(c["reason"] for c in report["cards"] if c["reason"])
    for reason, count in reasons.most_common(5):
        console.print(f"  {count} x {reason}")
