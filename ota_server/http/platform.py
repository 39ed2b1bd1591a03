"""The long-running OTA platform behind ``ota-server serve``: campaigns hosted in this event loop.

Clauses: house-style §2.1 (one engine: every hosted campaign is a
:class:`~ota_server.service.CampaignRunner`, the shell ``campaign run`` uses, on the same store),
docs/campaigns.md §1.1 (pause / resume / cancel write the campaigns row the runner polls, as the
CLI does) and §6.4 (one runner per campaign: the lease).

Glossary: hosted a campaign this process runs (or ran since it started); row the campaign's line
in the store's ``campaigns`` table, which outlives any process.

Theory of operation. :meth:`Platform.create` takes a checked :class:`CampaignConfig` (the one
loader, ``config.campaign_from_mapping``) and starts its runner as a task of this loop; the HTTP
handlers and the runners share the loop and the database file (each runner has its own
connection, as a second ``campaign run`` would). What the API reads comes from the store, so a
campaign of an earlier process reads the same as one running here: the status routes and the
dashboard from its aggregates (:func:`~ota_server.campaign_report.campaign_summary`: GROUP BY in the
database, no job row read into Python, polled every second), the report and the card pages from
every row (:func:`~ota_server.campaign_report.build_report`); live figures (rates, links, latency)
come from the hosted runner's engine. A sampler timer records, once a second, each hosted engine's
accepted submits and PoRs for the dashboard's rates; it keeps ``history_s`` of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError, OtaSimError
from ota_server.campaign_report import (
    LIFECYCLE,
    audit_rows,
    build_report,
    campaign_status,
    campaign_summary,
    lifecycle_refusal,
    runner_liveness,
    status_document,
)
from ota_server.card_store import CardStore
from ota_server.engine.campaign_spec import CampaignConfig
from ota_server.inventory import import_inventory, parse_inventory_text
from ota_server.service import CampaignRunner

log = logging.getLogger(__name__)


class NotFound(OtaSimError):
    """No such campaign or card (HTTP 404)."""


class Conflict(OtaSimError):
    """The request contradicts the campaign's state (HTTP 409)."""


def open_store(db: Path | str) -> CardStore:
    """The serve process's one way to open its ``--db``, a SQLite path or a ``postgresql://`` URL
    (the runners open theirs as campaign run does)."""
    return CardStore(db)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


@dataclass
class Hosted:
    """A campaign this process runs or ran: its runner, its task and the dashboard's samples."""

    config: CampaignConfig
    runner: CampaignRunner
    task: asyncio.Task[None] | None = None
    submitted_at: float = 0.0
    report: dict[str, Any] | None = None  # the runner's report once it returned
    error: str | None = None  # why it stopped, when it failed
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (loop time, accepted, PoRs)
    sampled_last: bool = False  # the sample after its end is taken

    @property
    def name(self) -> str:
        return self.config.campaign.name

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()


class Platform:
    """Campaigns, cards and figures of one card store, for the HTTP API and the dashboard."""

    def __init__(
        self,
        db: Path | str,
        *,
        smsc: tuple[str, int] | None,
        seed: int = 1,
        poll_s: float = 0.2,
        sample_s: float = 1.0,
        history_s: float = 300.0,
    ) -> None:
        self.db = db
        self.smsc = smsc
        self.seed = seed
        self.poll_s = poll_s
        self.sample_s = sample_s
        self.history = max(2, int(history_s / sample_s) + 1)
        self.hosted: dict[str, Hosted] = {}
        self._store: CardStore | None = None
        self._sampler: asyncio.TimerHandle | None = None
        self._host = socket.gethostname()

    # ------------------------------------------------------------------ lifecycle of the platform

    @property
    def store(self) -> CardStore:
        """The API's own connection (reads, lifecycle writes, imports), opened by :meth:`start`."""
        if self._store is None:
            raise OtaSimError("the platform is not started")
        return self._store

    def start(self) -> None:
        """Open the store and start sampling; in the event loop's thread (sqlite3 connections
        belong to the thread that opened them)."""
        self._store = open_store(self.db)
        self._sample()

    async def close(self) -> None:
        """Stop sampling; stop every runner (its lease is released, its state stays as it was:
        a running campaign reads "interrupted" and continues on the next start)."""
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        tasks = [h.task for h in self.hosted.values() if h.task is not None and not h.task.done()]
        for task in tasks:
            task.cancel()  # the watcher, and through it the runner's task
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._store is not None:
            self._store.close()
            self._store = None

    def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for hosted in self.hosted.values():
            engine = hosted.runner.engine
            if engine is None or hosted.sampled_last:
                continue
            hosted.sampled_last = not hosted.active  # one sample after the end, then no more
            hosted.samples.append((now, engine.stats.submit_accepted, engine.stats.por_received))
            while len(hosted.samples) > self.history:
                hosted.samples.popleft()
        self._sampler = loop.call_later(self.sample_s, self._sample)

    # ------------------------------------------------------------------ campaigns

    async def create(self, config: CampaignConfig, *, start_timeout_s: float = 30.0) -> Hosted:
        """Start ``config``'s runner in this loop and wait until it holds the lease and its engine
        exists (or failed: its ConfigError is the answer). Refused (409) while a runner holds the
        campaign."""
        name = config.campaign.name
        known = self.hosted.get(name)
        if known is not None and known.active:
            raise Conflict(f"campaign {name} is already running in this server")
        row = self.store.campaign(name)
        if row is not None:
            holder = runner_liveness(row, now=time.time(), host=self._host, pid_alive=_pid_alive)
            if holder is not None and holder.alive:
                raise Conflict(f"campaign {name} is run by {holder.describe()}")
        runner = CampaignRunner(
            config, smsc=self.smsc, db_path=self.db, seed=self.seed, progress=False, poll_s=self.poll_s
        )
        hosted = Hosted(config, runner, submitted_at=time.time())
        loop = asyncio.get_running_loop()
        run = loop.create_task(runner.run(), name=f"campaign {name}")
        # Hosted from here on, so that a request cancelled while waiting leaves no runner unwatched.
        hosted.task = loop.create_task(self._watch(hosted, run))
        self.hosted[name] = hosted
        ready = loop.create_task(runner.ready.wait())
        try:
            await asyncio.wait({run, ready}, timeout=start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        failure = run.exception() if run.done() and not run.cancelled() else None
        if failure is not None:
            del self.hosted[name]  # its checks failed: nothing runs, the caller gets that error
            await asyncio.gather(hosted.task, return_exceptions=True)
            raise failure
        return hosted

    async def _watch(self, hosted: Hosted, run: asyncio.Task[dict[str, Any]]) -> None:
        """Keep the runner's report, or the one line that stopped it."""
        try:
            hosted.report = await run
            log.info("campaign %s: ended", hosted.name)
        except OtaSimError as exc:  # ConfigError, CampaignFailed, StoreError: one line, kept for the API
            hosted.error = str(exc)
            log.error("campaign %s: %s", hosted.name, exc)
        except Exception as exc:  # a bug: the supervisor of the runners logs it, the server stays up
            hosted.error = f"internal error: {type(exc).__name__}"
            log.exception("campaign %s failed", hosted.name)

    def control(self, name: str, command: str) -> dict[str, Any]:
        """``pause``, ``resume`` or ``cancel``: the state the CLI's command writes; the runner polls it."""
        row = self._row(name)
        refusal = lifecycle_refusal(row, command)
        if refusal is not None:
            raise Conflict(refusal)
        self.store.set_campaign_state(name, LIFECYCLE[command], at=time.time())
        return self.status(name)

    def _row(self, name: str) -> Any:
        row = self.store.campaign(name)
        if row is None:
            raise NotFound(f"no campaign {name!r}")
        return row

    def status(self, name: str, *, with_summary: bool = False) -> dict[str, Any]:
        """The status document; ``with_summary`` adds the report's ``summary`` and ``failures`` (the
        dashboard's), from the same store aggregates as its counts (never the full report)."""
        row = self._row(name)
        runner = runner_liveness(row, now=time.time(), host=self._host, pid_alive=_pid_alive)
        workers = self.store.live_workers(row.name)
        summary = campaign_summary(self.store, row.name, row.state)
        status = campaign_status(row, runner, db=self.db, workers=workers)
        out = status_document(self.store, row, status, summary)
        out["live"] = self.live(name)
        if with_summary:
            out["summary"] = summary["summary"]
            out["failures"] = summary["failures"]
        return out

    def live(self, name: str) -> dict[str, Any] | None:
        """What only the hosting process knows: the engine's progress, links, rates, last error."""
        hosted = self.hosted.get(name)
        if hosted is None:
            return None
        engine = hosted.runner.engine
        out: dict[str, Any] = {
            "active": hosted.active,
            "error": hosted.error,
            "engine_state": hosted.runner.state,
            "jobs_total": len(engine.slots) if engine is not None else None,
            "jobs_done": engine.jobs_done() if engine is not None else 0,
            "cards": dict(engine.counts()) if engine is not None else {},
            "links_bound": engine.links_bound() if engine is not None else [],
            "sms_accepted": engine.stats.submit_accepted if engine is not None else 0,
            "por_received": engine.stats.por_received if engine is not None else 0,
        }
        out["rates"] = self.rates(hosted)
        if hosted.report is not None and "verification" in hosted.report:
            out["verification"] = hosted.report["verification"]
        return out

    def rates(self, hosted: Hosted) -> dict[str, list[float]]:
        """SMS/s and PoR/s per sample interval over the kept history (oldest first)."""
        samples = list(hosted.samples)
        t, sms, por = [], [], []
        for (t0, a0, p0), (t1, a1, p1) in itertools.pairwise(samples):
            dt = t1 - t0
            if dt <= 0:
                continue
            t.append(round(t1 - samples[-1][0], 1))
            sms.append(round((a1 - a0) / dt, 2))
            por.append(round((p1 - p0) / dt, 2))
        return {"t_s": t, "sms_per_s": sms, "por_per_s": por}

    def campaigns(self, *, with_summary: bool = False) -> list[dict[str, Any]]:
        """Every campaign of the store (and every one hosted here), with its counts (and, with
        ``with_summary``, the summary and failures of its report: the dashboard's)."""
        out = []
        names = [r.name for r in self.store.campaigns()]
        names += [n for n in self.hosted if n not in names]
        for name in names:
            row = self.store.campaign(name)
            hosted = self.hosted.get(name)
            if row is None:  # hosted, failed before its row was written (a refused config, say)
                assert hosted is not None
                entry = {"campaign": name, "state": "failed", "status": "failed", "live": self.live(name)}
                if with_summary:
                    entry["summary"] = entry["failures"] = None
                out.append(entry)
                continue
            out.append(self.status(name, with_summary=with_summary))
        return out

    def report(self, name: str) -> dict[str, Any]:
        report = build_report(self.store, name)
        if report is None:
            raise NotFound(f"no campaign {name!r}")
        hosted = self.hosted.get(name)
        if hosted is not None and hosted.report is not None and "verification" in hosted.report:
            report["verification"] = hosted.report["verification"]
        return report

    # ------------------------------------------------------------------ cards

    def _card(self, ident: str) -> Any:
        for card in self.store.cards():
            if ident in (card.iccid, card.msisdn):
                return card
        raise NotFound(f"no card with ICCID or MSISDN {ident!r}")

    def card(self, ident: str, *, with_keys: bool = False) -> dict[str, Any]:
        """One card: identity, tags, key sets (CNTR; key hex only ``with_keys``), its jobs' states and
        its audit trail across campaigns."""
        card = self._card(ident)
        cntrs = self.store.cntrs()
        keysets = []
        for kvn, ks in sorted(self.store.keysets().get(card.iccid, {}).items()):
            entry: dict[str, Any] = {
                "kvn": kvn,
                "kic_algorithm": ks.kic_algorithm.value,
                "kid_algorithm": ks.kid_algorithm.value,
                "cntr": cntrs.get((card.iccid, kvn), 0),
            }
            if with_keys:
                entry["kic"] = ks.kic.hex()
                entry["kid"] = ks.kid.hex()
            keysets.append(entry)
        jobs = []
        for row in self.store.campaigns():
            report = build_report(self.store, row.name)
            if report is not None:
                jobs += [{"campaign": row.name, **c} for c in report["cards"] if c["iccid"] == card.iccid]
        return {
            "iccid": card.iccid,
            "imsi": card.imsi,
            "msisdn": card.msisdn,
            "tags": list(card.tags),
            "keysets": keysets,
            "jobs": jobs,
            "audit": audit_rows(self.store, None, card.iccid),
        }

    def campaign_card(self, name: str, ident: str) -> dict[str, Any]:
        """One card's jobs in one campaign and its audit trail there."""
        report = self.report(name)
        card = self._card(ident)
        rows = [c for c in report["cards"] if c["iccid"] == card.iccid]
        if not rows:
            raise NotFound(f"campaign {name}: card {card.iccid} is not a target")
        return {
            "campaign": name,
            "iccid": card.iccid,
            "msisdn": card.msisdn,
            "jobs": rows,
            "audit": audit_rows(self.store, name, card.iccid),
        }

    def import_cards(self, text: str) -> dict[str, int]:
        """``cards import`` for a CSV body: every row checked, then one transaction (all or nothing)."""
        source = "request body"
        cards = parse_inventory_text(text, source)
        if not cards:
            raise ConfigError("", "no rows: expected the header and at least one card", source=source)
        added, updated = import_inventory(self.store, cards, source)
        return {"added": added, "updated": updated}
