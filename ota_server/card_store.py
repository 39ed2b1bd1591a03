"""The platform's persistent state in SQLite: inventory, key sets with their CNTR, jobs, history.

Clauses: TS 102 225 §5.1.1 (CNTR must grow for counter modes 10/11: a value is never
used twice), house-style §2 (write-ahead: reserving a CNTR, i.e. incrementing it and
recording the message as sent with it, is committed before the SMS leaves; a crash can
burn a value, never reuse one), docs/action-counter.md (per (card, TAR) the confirmed
action counter CA).

Glossary: CNTR 03.48 replay counter (per key set), KVN key version number, TAR toolkit
application reference, CA confirmed action counter, WAL SQLite write-ahead log.

Durability: WAL with ``synchronous=FULL``: a committed transaction survives power loss, so the
commit that reserves a CNTR does too (docs/campaigns.md §6.5; ``NORMAL`` would only survive a
process crash). Group commit keeps that affordable: the engine gathers a loop iteration's worth of
reservations, job updates and history rows into one :class:`~ota_server.engine.records.Commit`,
written in one transaction (:meth:`CardStore.commit`) before any of its messages leaves. Key
material is stored but never logged or reported.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
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

__all__ = ["CAMPAIGN_STATES", "CampaignRow", "CardStore", "HistoryRow", "JobRow", "LeaseLost"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    iccid TEXT PRIMARY KEY,
    imsi TEXT NOT NULL,
    msisdn TEXT NOT NULL UNIQUE,
    tags TEXT NOT NULL DEFAULT '[]',
    fleet_index INTEGER
);
CREATE TABLE IF NOT EXISTS keysets (
    iccid TEXT NOT NULL REFERENCES cards(iccid),
    kvn INTEGER NOT NULL,
    kic_algorithm TEXT NOT NULL,
    kid_algorithm TEXT NOT NULL,
    kic BLOB NOT NULL,
    kid BLOB NOT NULL,
    cntr INTEGER NOT NULL DEFAULT 0,      -- last CNTR reserved (sent or burnt)
    PRIMARY KEY (iccid, kvn)
);
CREATE TABLE IF NOT EXISTS action_counters (
    iccid TEXT NOT NULL,
    tar TEXT NOT NULL,
    confirmed INTEGER NOT NULL,           -- CA: last action counter the card proved
    updated_at REAL NOT NULL,
    PRIMARY KEY (iccid, tar)
);
CREATE TABLE IF NOT EXISTS mo_counters (
    iccid TEXT NOT NULL,
    tar TEXT NOT NULL,
    cntr INTEGER NOT NULL,                -- last MO CNTR accepted from the card (replay rule)
    updated_at REAL NOT NULL,
    PRIMARY KEY (iccid, tar)
);
CREATE TABLE IF NOT EXISTS jobs (
    campaign TEXT NOT NULL,
    iccid TEXT NOT NULL,
    tar TEXT NOT NULL,
    state TEXT NOT NULL,
    pending TEXT NOT NULL,                -- JSON: the actions not yet confirmed, hex APDUs
    n INTEGER NOT NULL,
    applied INTEGER NOT NULL,
    base INTEGER,                         -- CA the unresolved script was sent against
    start_counter INTEGER,
    attempts INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    resent_actions INTEGER NOT NULL,
    outstanding TEXT NOT NULL DEFAULT '[]', -- JSON: CNTRs of unresolved messages
    result TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    counter_path TEXT,
    statuses TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',     -- JSON: script_cntr, replies owed, card reports, ...
    step INTEGER NOT NULL DEFAULT 0,      -- the campaign's [[steps]] index: one job per (card, step)
    PRIMARY KEY (campaign, iccid, tar, step)
);
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,                  -- running, paused, cancelled, finished
    source TEXT NOT NULL DEFAULT '',      -- the campaign file
    started_at REAL,                      -- wall clock of the first run
    updated_at REAL NOT NULL,
    runner_pid INTEGER,                   -- the lease: the process running it, NULL when none
    heartbeat_at REAL,                    -- the runner's last poll (it polls every 0.2 s)
    runner_host TEXT,                     -- the lease: the host of that process
    runner_token TEXT                     -- the lease: changes on every take-over
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    campaign TEXT,
    iccid TEXT,
    direction TEXT NOT NULL,              -- 'mt', 'mo', 'note'
    kind TEXT NOT NULL,                   -- script, query, por, receipt, submit_resp, ...
    cntr INTEGER,
    status TEXT,
    detail TEXT
);
"""


_ADD_STEP = (
    """
BEGIN IMMEDIATE;
ALTER TABLE jobs RENAME TO jobs_before_steps;
CREATE TABLE jobs ("""
    + SCHEMA.split("CREATE TABLE IF NOT EXISTS jobs (")[1].split(");")[0]
    + """);
INSERT INTO jobs SELECT *, 0 FROM jobs_before_steps;
DROP TABLE jobs_before_steps;
COMMIT;
"""
)


_CAMPAIGN_COLUMNS = (
    "name, state, source, started_at, updated_at, runner_pid, heartbeat_at, runner_host, runner_token"
)


class LeaseLost(StoreError):
    """Another runner took this campaign's lease over: stop before sending anything more."""


class CardStore:
    """One SQLite database; use from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            # One thread at a time, not always the same one: the campaign runner's commit writer
            # (ota_server.commit_writer) writes from its own thread under its lock.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")  # a CLI lifecycle command may hold a write
            self._db.executescript(SCHEMA)
            campaign_columns = {r[1] for r in self._db.execute("PRAGMA table_info(campaigns)")}
            for column in ("runner_host", "runner_token"):  # a store written before the lease
                if column not in campaign_columns:
                    self._db.execute(f"ALTER TABLE campaigns ADD COLUMN {column} TEXT")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "extra" not in columns:  # a store written before card messages existed
                self._db.execute("ALTER TABLE jobs ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'")
            if "step" not in columns:  # a store written before [[steps]]: the key gains the step
                self._db.executescript(_ADD_STEP)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the card store: {exc}") from exc

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
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO cards (iccid, imsi, msisdn, tags, fleet_index) VALUES (?,?,?,?,?)",
                card_rows,
            )
            added = self._db.total_changes - before
            self._db.executemany(
                "INSERT OR IGNORE INTO keysets (iccid, kvn, kic_algorithm, kid_algorithm, kic, kid) "
                "VALUES (?,?,?,?,?,?)",
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

    def load_step_jobs(self, campaign: str) -> dict[tuple[str, str, int], JobRow]:
        """Every job of the campaign by (ICCID, TAR, step)."""
        out = {}
        for r in self._db.execute(
            "SELECT campaign, iccid, tar, state, pending, n, applied, base, start_counter, attempts, "
            "queries, resent_actions, outstanding, result, reason, counter_path, statuses, updated_at, "
            "extra, step FROM jobs WHERE campaign = ?",
            (campaign,),
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

    def snapshot(self, campaign: str, tars: set[str]) -> StoreSnapshot:
        """What the engine reads at start (:class:`~ota_server.engine.records.StoreSnapshot`)."""
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

    def commit(self, commit: Commit) -> None:
        """One transaction: the reserved CNTRs (and those messages as sent), jobs, confirmed
        counters, accepted MO CNTRs and history. On return it is durable, so the caller may send:
        a crash from here on burns these CNTR values, never reuses them (house-style §2)."""
        self.commit_all((commit,))

    def commit_all(self, commits: Sequence[Commit]) -> None:
        """Several Commits, in order, in ONE transaction (group commit): the rows as the same
        Commits one after another would leave them (a later job row or counter wins, CNTRs and MO
        CNTRs never go down, history in order), with one wait for the disk."""
        history_rows: list[tuple[object, ...]] = []
        jobs: dict[tuple[str, str, str, int], Any] = {}  # the last record of each job wins
        counter_rows: list[tuple[str, str, int, float]] = []
        mo_rows: list[tuple[str, str, int, float]] = []
        highest: dict[tuple[str, int], int] = {}
        dumps = json.dumps
        for commit in commits:
            if not commit:
                continue
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
        if not (history_rows or job_rows or counter_rows or mo_rows or highest):
            return
        with self._transaction():
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
                    "INSERT OR REPLACE INTO jobs (campaign, iccid, tar, state, pending, n, applied, "
                    "base, start_counter, attempts, queries, resent_actions, outstanding, result, "
                    "reason, counter_path, statuses, updated_at, extra, step) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    "ON CONFLICT(iccid, tar) DO UPDATE SET cntr = MAX(cntr, excluded.cntr), "
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
            row = self.campaign(name)
            holder_alive = None
            if row is not None and row.runner_pid is not None and row.runner_host == host:
                holder_alive = bool(alive(row.runner_pid))  # type: ignore[operator]
            decision = decide_lease(row, token=token, host=host, now=at, holder_alive=holder_alive)
            if not decision.granted:
                return decision
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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; every sqlite3 error on the way becomes one :class:`StoreError`
    naming the database (docs/campaigns.md §6.5: the run stops on it, exit 1, nothing acknowledged)."""

    __slots__ = ("_db", "_path")

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StoreError(f"{self._path}: cannot start a transaction: {error}") from error

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                self._rollback()
                raise StoreError(f"{self._path}: commit failed: {error}") from error
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{self._path}: {exc}") from exc

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                log.debug("rollback failed on %s", self._path)
