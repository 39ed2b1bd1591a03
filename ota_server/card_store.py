"""The platform's persistent state: inventory, key sets with their CNTR, jobs, history; in SQLite (the
embedded default, a file) or PostgreSQL (a ``postgresql://`` URL: the shared store of many workers).

Clauses: TS 102 225 §5.1.1 (CNTR must grow for counter modes 10/11: a value is never
used twice), house-style §2 (write-ahead: reserving a CNTR, i.e. incrementing it and
recording the message as sent with it, is committed before the SMS leaves; a crash can
burn a value, never reuse one), docs/action-counter.md (per (card, TAR) the confirmed
action counter CA).

Glossary: CNTR 03.48 replay counter (per key set), KVN key version number, TAR toolkit
application reference, CA confirmed action counter, WAL SQLite write-ahead log.

The queries are written once here (and in ota_server/store/workers.py); the schema, its versions
and the few dialect differences are in ota_server/store/.

Durability: SQLite: WAL with ``synchronous=FULL``: a committed transaction survives power loss, so the
commit that reserves a CNTR does too (docs/campaigns.md §6.5; ``NORMAL`` would only survive a
process crash); PostgreSQL: ``fsync`` and ``synchronous_commit`` as it ships. Group commit keeps
that affordable: the engine gathers a loop iteration's worth of reservations, job updates and
history rows into one :class:`~ota_server.engine.records.Commit`, written in one transaction
(:meth:`CardStore.commit`) before any of its messages leaves. Key
material is stored but never logged or reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ota_protocols.errors import StoreError
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.engine.lease import LeaseDecision, decide_lease
from ota_server.engine.records import (
    CAMPAIGN_STATES,
    CampaignRow,
    Commit,
    HistoryRow,
    JobRow,
    StoreSnapshot,
)
from ota_server.model import Card, Keyset
from ota_server.store.backends import Backend, LeaseLost, open_backend

__all__ = ["CAMPAIGN_STATES", "CampaignRow", "CardStore", "HistoryRow", "JobGroup", "JobRow", "LeaseLost"]

log = logging.getLogger(__name__)

_JOB_COLUMNS = (
    "campaign", "iccid", "tar", "state", "pending", "n", "applied", "base", "start_counter", "attempts",
    "queries", "resent_actions", "outstanding", "result", "reason", "counter_path", "statuses",
    "updated_at", "extra", "step",
)  # fmt: skip
# json.dumps with its defaults is this encoder's encode behind a dozen keyword checks: the same
# text for half the cost, four times per job row of every group commit. Stateless, never grows.
_to_json = json.JSONEncoder().encode

_UPSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({','.join('?' * len(_JOB_COLUMNS))}) "
    "ON CONFLICT (campaign, iccid, tar, step) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _JOB_COLUMNS[3:])
)

_CAMPAIGN_COLUMNS = (
    "name, state, source, started_at, updated_at, runner_pid, heartbeat_at, runner_host, runner_token"
)


@dataclass(frozen=True, slots=True)
class JobGroup:
    """Jobs of one campaign alike in what the report's failure tables read (:meth:`CardStore.job_groups`)."""

    state: str  # as stored: new, waiting, done, partial, failed, ...
    statuses: list[str]
    last_sw: int | None
    sw_reason: str  # the reason, when no last SW is stored and it may name one; else ""
    script_in_flight: bool  # extra.script_cntr is set
    jobs: int
    resent_actions: int


class CardStore:
    """One database (SQLite or PostgreSQL); use from one thread at a time (the
    campaign runner's commit writer, ota_server/commit_writer.py, writes from its own thread under
    its lock)."""

    def __init__(self, db: Path | str) -> None:
        """``db``: a SQLite file path, or a ``postgresql://`` URL (ota_server/store/backends.py)."""
        self._db = open_backend(db)
        self.path = self._db.name  # what messages call it: the path, or the URL without password
        self.forward_to = ""  # the campaign whose inbox a Commit's forwarded deliver_sm go to

    @property
    def backend(self) -> Backend:
        return self._db

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ inventory

    def import_cards(self, cards: Iterable[tuple[Card, Sequence[Keyset]]]) -> int:
        """Add cards and key sets not yet known (idempotent: known rows, CNTRs included, stay)."""
        card_rows = []
        key_rows = []
        for card, keysets in cards:
            card_rows.append((card.iccid, card.imsi, card.msisdn, json.dumps(list(card.tags)), card.index))
            for ks in keysets:
                key_rows.append(
                    (card.iccid, ks.kvn, ks.kic_algorithm.value, ks.kid_algorithm.value, ks.kic, ks.kid)
                )
        with self._transaction():
            before = self._db.execute("SELECT COUNT(*) FROM cards").fetchone()[0]
            self._db.executemany(
                "INSERT INTO cards (iccid, imsi, msisdn, tags, fleet_index) VALUES (?,?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                card_rows,
            )
            added = self._db.execute("SELECT COUNT(*) FROM cards").fetchone()[0] - before
            self._db.executemany(
                "INSERT INTO keysets (iccid, kvn, kic_algorithm, kid_algorithm, kic, kid) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                key_rows,
            )
        return added

    def upsert_inventory(self, cards: Sequence[tuple[Card, Sequence[Keyset]]]) -> tuple[int, int]:
        """``cards import``: add or update cards and key sets in ONE transaction (all or nothing).

        A known card gets the file's IMSI, MSISDN and tags; a known key set the file's algorithms
        and keys, and keeps its CNTR (TS 102 225 §5.1.1: a CNTR value is never used twice).
        Returns (cards added, cards updated)."""
        known = {r[0] for r in self._db.execute("SELECT iccid FROM cards")}
        added = sum(1 for card, _ in cards if card.iccid not in known)
        with self._transaction():
            self._db.executemany(
                "INSERT INTO cards (iccid, imsi, msisdn, tags, fleet_index) VALUES (?,?,?,?,NULL) "
                "ON CONFLICT(iccid) DO UPDATE SET imsi = excluded.imsi, msisdn = excluded.msisdn, "
                "tags = excluded.tags",
                [(c.iccid, c.imsi, c.msisdn, json.dumps(list(c.tags))) for c, _ in cards],
            )
            self._db.executemany(
                "INSERT INTO keysets (iccid, kvn, kic_algorithm, kid_algorithm, kic, kid) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(iccid, kvn) DO UPDATE SET "
                "kic_algorithm = excluded.kic_algorithm, "
                "kid_algorithm = excluded.kid_algorithm, kic = excluded.kic, kid = excluded.kid",
                [
                    (c.iccid, k.kvn, k.kic_algorithm.value, k.kid_algorithm.value, k.kic, k.kid)
                    for c, keysets in cards
                    for k in keysets
                ],
            )
        return added, len(cards) - added

    def msisdn_owners(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT msisdn, iccid FROM cards").fetchall())

    # ------------------------------------------------------------------ campaigns (lifecycle)

    def campaign(self, name: str) -> CampaignRow | None:
        row = self._db.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?",
            (name,),
        ).fetchone()
        return CampaignRow(*row) if row else None

    def campaigns(self) -> list[CampaignRow]:
        return [
            CampaignRow(*r)
            for r in self._db.execute(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns ORDER BY started_at")
        ]

    def set_campaign_state(
        self, name: str, state: str, *, at: float, source: str | None = None, runner_pid: int | None = -1
    ) -> None:
        """Create or update the row; ``runner_pid=-1`` leaves the runner column as it is."""
        if state not in CAMPAIGN_STATES:
            raise StoreError(f"campaign {name}: unknown state {state!r}")
        with self._transaction():
            self._db.execute(
                "INSERT INTO campaigns (name, state, source, started_at, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                (name, state, source or "", at, at),
            )
            if source is not None:
                self._db.execute("UPDATE campaigns SET source = ? WHERE name = ?", (source, name))
            if runner_pid != -1:
                self._db.execute(
                    "UPDATE campaigns SET runner_pid = ?, heartbeat_at = ? WHERE name = ?",
                    (runner_pid, at if runner_pid is not None else None, name),
                )

    def live_workers(self, name: str) -> list[str]:
        """The campaign's workers whose lease is live (docs/campaigns.md §6.7), described."""
        db = self._db
        return [
            f"pid {pid} on host {host}, lease {left:.1f} s left"
            for pid, host, left in db.execute(
                f"SELECT pid, host, expires_at - {db.now_sql} FROM workers "
                f"WHERE campaign = ? AND expires_at > {db.now_sql} ORDER BY started_at",
                (name,),
            )
        ]

    def heartbeat(self, name: str, *, at: float) -> str | None:
        """The runner's poll: note it is alive, return the state the operator asked for."""
        self._db.execute("UPDATE campaigns SET heartbeat_at = ? WHERE name = ?", (at, name))
        row = self._db.execute("SELECT state FROM campaigns WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def job_counts(self, name: str) -> dict[str, int]:
        """Jobs of the campaign by stored state (new, sending, waiting, backoff, done, partial, ...)."""
        return dict(
            self._db.execute("SELECT state, COUNT(*) FROM jobs WHERE campaign = ? GROUP BY state", (name,))
        )

    # The dashboard's and ``campaign status``'s figures as aggregates (docs/http-api.md): what
    # ota_server/campaign_report.py turns into the report's summary and failure tables without
    # reading every job row into Python. ``build_report`` computes the same from the rows.

    def job_groups(self, name: str, *, ended: str = "done") -> list[JobGroup]:
        """The campaign's jobs grouped by what the report's failure tables read: stored state, PoR
        statuses, last SW, the reason when it may name an SW and no last SW is stored, and whether a
        script CNTR is in flight. Jobs in state ``ended`` (confirmed: never a failure) form one
        group per state, their JSON unread."""
        db = self._db
        last_sw = db.json_int("extra", "last_sw")
        script_cntr = db.json_int("extra", "script_cntr")
        rows = db.execute(
            "SELECT state, statuses, last_sw, sw_reason, in_flight, COUNT(*), SUM(resent_actions) FROM ("
            f"SELECT state, resent_actions, CASE WHEN state = ? THEN '[]' ELSE statuses END AS statuses, "
            f"CASE WHEN state = ? THEN NULL ELSE {last_sw} END AS last_sw, "
            "CASE WHEN state = ? THEN '' WHEN reason LIKE '%SW %' "
            f"AND {last_sw} IS NULL THEN reason ELSE '' END AS sw_reason, "
            f"CASE WHEN state = ? OR {script_cntr} IS NULL THEN 0 ELSE 1 END AS in_flight "
            "FROM jobs WHERE campaign = ?) AS alike GROUP BY state, statuses, last_sw, sw_reason, in_flight",
            (ended, ended, ended, ended, name),
        )
        return [
            JobGroup(state, json.loads(statuses), sw, reason, bool(in_flight), int(n), int(resent))
            for state, statuses, sw, reason, in_flight, n, resent in rows
        ]

    def card_firsts(self, name: str, *, ended: str = "done") -> tuple[int, dict[str, int]]:
        """(cards with jobs in the campaign, {stored state: cards}) where each card counts under the
        state of its first job (by step, then TAR) not in state ``ended``; a card whose every job is
        ``ended`` counts in the first figure only."""
        cards = self._db.execute(
            "SELECT COUNT(DISTINCT iccid) FROM jobs WHERE campaign = ?", (name,)
        ).fetchone()[0]
        firsts = self._db.execute(
            "SELECT state, COUNT(*) FROM (SELECT state, ROW_NUMBER() OVER "
            "(PARTITION BY iccid ORDER BY step, tar) AS k FROM jobs WHERE campaign = ? AND state <> ?) "
            "AS open_jobs WHERE k = 1 GROUP BY state",
            (name, ended),
        )
        return int(cards), {state: int(n) for state, n in firsts}

    def history_counts(self, name: str) -> dict[tuple[str, str, str], int]:
        """The campaign's history rows by (direction, kind, status); no status counts as ""."""
        return {
            (direction, kind, status): int(n)
            for direction, kind, status, n in self._db.execute(
                "SELECT direction, kind, COALESCE(status, ''), COUNT(*) FROM history WHERE campaign = ? "
                "GROUP BY direction, kind, COALESCE(status, '')",
                (name,),
            )
        }

    def campaign_history(self, name: str) -> list[HistoryRow]:
        return [
            HistoryRow(*r)
            for r in self._db.execute(
                "SELECT at, campaign, iccid, direction, kind, cntr, status, detail FROM history "
                "WHERE campaign = ? ORDER BY id",
                (name,),
            )
        ]

    def cards(self) -> list[Card]:
        rows = self._db.execute(
            "SELECT iccid, imsi, msisdn, tags, fleet_index FROM cards ORDER BY fleet_index, iccid"
        )
        return [
            Card(iccid=r[0], imsi=r[1], msisdn=r[2], tags=tuple(json.loads(r[3])), index=r[4]) for r in rows
        ]

    def keysets(self) -> dict[str, dict[int, Keyset]]:
        out: dict[str, dict[int, Keyset]] = {}
        for iccid, kvn, kic_alg, kid_alg, kic, kid in self._db.execute(
            "SELECT iccid, kvn, kic_algorithm, kid_algorithm, kic, kid FROM keysets"
        ):
            out.setdefault(iccid, {})[kvn] = Keyset(
                kvn=kvn,
                kic_algorithm=CipherAlgorithm(kic_alg),
                kid_algorithm=IntegrityAlgorithm(kid_alg),
                kic=bytes(kic),
                kid=bytes(kid),
            )
        return out

    # ------------------------------------------------------------------ counters

    def cntrs(self) -> dict[tuple[str, int], int]:
        """(ICCID, KVN) -> the last CNTR reserved (sent or burnt)."""
        return {(i, int(k)): int(c) for i, k, c in self._db.execute("SELECT iccid, kvn, cntr FROM keysets")}

    def describes_cards(self) -> bool:
        """Whether an earlier run left card state here: jobs, or counters confirmed by cards."""
        for table in ("jobs", "action_counters"):
            if self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                return True
        return False

    def confirmed_counters(self, tar: str) -> dict[str, int]:
        return dict(
            self._db.execute("SELECT iccid, confirmed FROM action_counters WHERE tar = ?", (tar,)).fetchall()
        )

    def mo_counters(self) -> dict[tuple[str, str], int]:
        """(ICCID, TAR hex) -> the last MO CNTR accepted from that application."""
        return {
            (iccid, tar): int(cntr)
            for iccid, tar, cntr in self._db.execute("SELECT iccid, tar, cntr FROM mo_counters")
        }

    def load_jobs(self, campaign: str) -> dict[tuple[str, str], JobRow]:
        """The first step's jobs by (ICCID, TAR)."""
        return {(k[0], k[1]): row for k, row in self.load_step_jobs(campaign).items() if k[2] == 0}

    def load_step_jobs(
        self, campaign: str, iccids: Sequence[str] | None = None
    ) -> dict[tuple[str, str, int], JobRow]:
        """Every job of the campaign by (ICCID, TAR, step) (of those cards only, given ``iccids``)."""
        out = {}
        where, args = "campaign = ?", [campaign]
        if iccids is not None:
            member, arg = self._db.member("iccid", iccids)
            where += f" AND {member}"
            args.append(arg)
        for r in self._db.execute(
            "SELECT campaign, iccid, tar, state, pending, n, applied, base, start_counter, attempts, "
            "queries, resent_actions, outstanding, result, reason, counter_path, statuses, updated_at, "
            f"extra, step FROM jobs WHERE {where}",
            args,
        ):
            row = JobRow(
                r[0],
                r[1],
                r[2],
                r[3],
                json.loads(r[4]),
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                json.loads(r[12]),
                r[13],
                r[14],
                r[15],
                json.loads(r[16]),
                r[17],
                json.loads(r[18] or "{}"),
                r[19],
            )
            out[(row.iccid, row.tar, row.step)] = row
        return out

    # ------------------------------------------------------------------ group commit

    def snapshot(self, campaign: str, tars: set[str], iccids: Sequence[str] | None = None) -> StoreSnapshot:
        """What the engine reads at start (:class:`~ota_server.engine.records.StoreSnapshot`); with
        ``iccids``, only what concerns those cards (a worker's claimed batch)."""
        if iccids is not None:
            return self._cards_snapshot(campaign, tars, iccids)
        confirmed: dict[tuple[str, str], int] = {}
        for tar in tars:
            confirmed.update(((iccid, tar), value) for iccid, value in self.confirmed_counters(tar).items())
        return StoreSnapshot(
            cntrs=self.cntrs(),
            confirmed=confirmed,
            mo_cntrs=self.mo_counters(),
            jobs=self.load_step_jobs(campaign),
            campaign=self.campaign(campaign),
        )

    def _cards_snapshot(self, campaign: str, tars: set[str], iccids: Sequence[str]) -> StoreSnapshot:
        member, arg = self._db.member("iccid", iccids)
        cntrs = {
            (i, int(k)): int(c)
            for i, k, c in self._db.execute(f"SELECT iccid, kvn, cntr FROM keysets WHERE {member}", (arg,))
        }
        confirmed = {
            (i, t): int(v)
            for i, t, v in self._db.execute(
                f"SELECT iccid, tar, confirmed FROM action_counters WHERE {member}", (arg,)
            )
            if t in tars
        }
        mo = {
            (i, t): int(c)
            for i, t, c in self._db.execute(
                f"SELECT iccid, tar, cntr FROM mo_counters WHERE {member}", (arg,)
            )
        }
        jobs = self.load_step_jobs(campaign, iccids)
        return StoreSnapshot(
            cntrs=cntrs, confirmed=confirmed, mo_cntrs=mo, jobs=jobs, campaign=self.campaign(campaign)
        )

    def commit(self, commit: Commit, *, fence: Callable[[Commit], None] | None = None) -> None:
        """One transaction: the reserved CNTRs (and those messages as sent), jobs, confirmed
        counters, accepted MO CNTRs, history and forwarded deliver_sm. On return it is durable, so
        the caller may send: a crash from here on burns these CNTR values, never reuses them
        (house-style §2). ``fence`` runs first in the same transaction and raises to refuse it (a
        worker that no longer holds its lease or its cards: docs/campaigns.md §6.7)."""
        self.commit_all((commit,), fence=fence)

    def commit_all(self, commits: Sequence[Commit], *, fence: Callable[[Commit], None] | None = None) -> None:
        """Several Commits, in order, in ONE transaction (group commit): the rows as the same
        Commits one after another would leave them (a later job row or counter wins, CNTRs and MO
        CNTRs never go down, history in order), with one wait for the disk. ``fence`` runs for
        each Commit inside that transaction, before anything is written."""
        commits = [c for c in commits if c]
        if not commits:
            return
        history_rows: list[tuple[object, ...]] = []
        jobs: dict[tuple[str, str, str, int], Any] = {}  # the last record of each job wins
        counter_rows: list[tuple[str, str, int, float]] = []
        mo_rows: list[tuple[str, str, int, float]] = []
        forwarded_rows: list[tuple[object, ...]] = []
        highest: dict[tuple[str, int], int] = {}
        dumps = _to_json
        for commit in commits:
            at = commit.at
            for r in commit.reservations:
                history_rows.append((at, r.campaign, r.iccid, "mt", r.kind, r.cntr, "reserved", r.detail))
                key = (r.iccid, r.kvn)
                highest[key] = max(highest.get(key, 0), r.cntr)
            history_rows.extend(
                (h.at, h.campaign, h.iccid, h.direction, h.kind, h.cntr, h.status, h.detail)
                for h in commit.history
            )
            for record in commit.jobs:
                jobs[(record.campaign, *record.key)] = record
            counter_rows.extend((iccid, tar, value, at) for iccid, tar, value in commit.counters)
            mo_rows.extend((iccid, tar, value, at) for iccid, tar, value in commit.mo_counters)
            forwarded_rows.extend(
                (self.forward_to, f.msisdn, f.esm_class, f.user_data, f.receipted_message_id,
                 f.message_state, at)
                for f in commit.forwarded
            )  # fmt: skip
        job_rows = [
            (
                j.campaign,
                j.iccid,
                j.tar,
                j.state,
                dumps(j.pending),
                j.n,
                j.applied,
                j.base,
                j.start_counter,
                j.attempts,
                j.queries,
                j.resent_actions,
                dumps(j.outstanding),
                j.result,
                j.reason,
                j.counter_path,
                dumps(j.statuses),
                j.updated_at,
                dumps(j.extra),
                j.step,
            )
            for j in (record.row() for record in jobs.values())
        ]
        with self._db.batched(), self._transaction():
            if fence is not None:
                for commit in commits:
                    fence(commit)
            if forwarded_rows:
                self._db.executemany(
                    "INSERT INTO inbox (campaign, msisdn, esm_class, user_data, receipted_message_id, "
                    "message_state, at) VALUES (?,?,?,?,?,?,?)",
                    forwarded_rows,
                )
            if highest:
                # TS 102 225 §5.1.1: never lower a CNTR (a value is used once, burnt or not).
                self._db.executemany(
                    "UPDATE keysets SET cntr = ? WHERE iccid = ? AND kvn = ? AND cntr < ?",
                    [(v, iccid, kvn, v) for (iccid, kvn), v in highest.items()],
                )
            if history_rows:
                self._db.executemany(
                    "INSERT INTO history (at, campaign, iccid, direction, kind, cntr, status, detail) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    history_rows,
                )
            if job_rows:
                self._db.executemany(
                    _UPSERT_JOB,
                    job_rows,
                )
            if counter_rows:
                self._db.executemany(
                    "INSERT INTO action_counters (iccid, tar, confirmed, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(iccid, tar) DO UPDATE SET confirmed = excluded.confirmed, "
                    "updated_at = excluded.updated_at",
                    counter_rows,
                )
            if mo_rows:
                # Never lower: the replay rule needs the highest MO CNTR ever accepted.
                self._db.executemany(
                    "INSERT INTO mo_counters (iccid, tar, cntr, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(iccid, tar) DO UPDATE SET "
                    f"cntr = {self._db.greatest}(mo_counters.cntr, excluded.cntr), "
                    "updated_at = excluded.updated_at",
                    mo_rows,
                )

    # ------------------------------------------------------------------ the lease (one runner)

    def acquire_lease(
        self, name: str, *, token: str, pid: int, host: str, at: float, source: str, alive: object
    ) -> LeaseDecision:
        """docs/campaigns.md §6.4: read and take the lease in ONE transaction (BEGIN IMMEDIATE), so
        two runners starting together cannot both win. ``alive(pid) -> bool`` checks a holder on
        this host. On success the campaign is ``running`` unless it was cancelled."""
        with self._transaction():
            self._db.lock(f"campaign {name}")
            row = self.campaign(name)
            holder_alive = None
            if row is not None and row.runner_pid is not None and row.runner_host == host:
                holder_alive = bool(alive(row.runner_pid))  # type: ignore[operator]
            decision = decide_lease(row, token=token, host=host, now=at, holder_alive=holder_alive)
            if not decision.granted:
                return decision
            workers = self._db.execute(
                f"SELECT COUNT(*) FROM workers WHERE campaign = ? AND expires_at > {self._db.now_sql}",
                (name,),
            ).fetchone()[0]
            if (
                workers
            ):  # docs/campaigns.md §6.7: workers hold it; a single runner would run their cards twice
                return LeaseDecision(False, holder=f"{workers} live worker(s)")
            # ``run`` (re)starts the campaign: a paused or interrupted one continues; a cancelled one
            # stays cancelled (its open jobs are closed without sending).
            state = "cancelled" if row is not None and row.state == "cancelled" else "running"
            self._db.execute(
                "INSERT INTO campaigns (name, state, source, started_at, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, "
                "source = excluded.source",
                (name, state, source, at, at),
            )
            self._db.execute(
                "UPDATE campaigns SET runner_pid = ?, runner_host = ?, runner_token = ?, heartbeat_at = ? "
                "WHERE name = ?",
                (pid, host, token, at, name),
            )
        return decision

    def renew_lease(self, name: str, *, token: str, at: float) -> str:
        """The runner's poll: renew the heartbeat while the lease is ours; return the state the
        operator asked for. Raises :class:`LeaseLost` when another runner took it over."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE campaigns SET heartbeat_at = ? WHERE name = ? AND runner_token = ?", (at, name, token)
            )
            if cursor.rowcount != 1:
                row = self.campaign(name)
                holder = f"pid {row.runner_pid} on host {row.runner_host}" if row else "nobody"
                raise LeaseLost(f"campaign {name}: lease taken over by {holder}; stopping")
            found = self._db.execute("SELECT state FROM campaigns WHERE name = ?", (name,)).fetchone()
        return str(found[0])

    def release_lease(self, name: str, *, token: str, state: str, at: float) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE campaigns SET state = CASE WHEN state = 'cancelled' THEN state ELSE ? END, "
                "runner_pid = NULL, runner_host = NULL, runner_token = NULL, heartbeat_at = NULL, "
                "updated_at = ? WHERE name = ? AND runner_token = ?",
                (state, at, name, token),
            )

    def history(self, iccid: str | None = None) -> list[HistoryRow]:
        query = "SELECT at, campaign, iccid, direction, kind, cntr, status, detail FROM history"
        args: tuple[str, ...] = ()
        if iccid is not None:
            query += " WHERE iccid = ?"
            args = (iccid,)
        return [HistoryRow(*r) for r in self._db.execute(query + " ORDER BY id", args)]

    def _transaction(self) -> Any:
        return self._db.transaction()
