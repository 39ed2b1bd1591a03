"""The platform's persistent state in SQLite: inventory, key sets with their CNTR, jobs, history.

Clauses: TS 102 225 §5.1.1 (CNTR must grow for counter modes 10/11: a value is never
used twice), house-style §2 (write-ahead: reserving a CNTR, i.e. incrementing it and
recording the message as sent with it, is committed before the SMS leaves; a crash can
burn a value, never reuse one), docs/action-counter.md (per (card, TAR) the confirmed
action counter CA).

Glossary: CNTR 03.48 replay counter (per key set), KVN key version number, TAR toolkit
application reference, CA confirmed action counter, WAL SQLite write-ahead log.

Speed: WAL with ``synchronous=NORMAL`` and group commit. The shell gathers a loop
iteration's worth of reservations (:meth:`CardStore.reserve`), job updates and history
rows and writes them in one transaction (:meth:`CardStore.commit`), then sends that
batch. CNTR values are
served from an in-memory copy that is written back in the same transaction, so a
reservation costs no extra read. Key material is stored but never logged or reported.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ota_protocols.errors import StoreError
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.model import Card, Keyset

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
    runner_pid INTEGER,                   -- the process running it, NULL when none
    heartbeat_at REAL                     -- the runner's last poll (it polls every 0.2 s)
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


@dataclass(slots=True)
class JobRow:
    campaign: str
    iccid: str
    tar: str
    state: str
    pending: list[list[str]]
    n: int
    applied: int
    base: int | None
    start_counter: int | None
    attempts: int
    queries: int
    resent_actions: int
    outstanding: list[int] = field(default_factory=list)
    result: str = ""
    reason: str = ""
    counter_path: str | None = None
    statuses: list[str] = field(default_factory=list)
    updated_at: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    step: int = 0


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A campaign's lifecycle row: what ``campaign pause|resume|cancel`` write and the runner polls."""

    name: str
    state: str  # running, paused, cancelled, finished
    source: str
    started_at: float | None
    updated_at: float
    runner_pid: int | None
    heartbeat_at: float | None


CAMPAIGN_STATES = ("running", "paused", "cancelled", "finished")


@dataclass(frozen=True, slots=True)
class Reservation:
    """A CNTR the caller wants for one message of a job (history row written with it)."""

    iccid: str
    kvn: int
    campaign: str
    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: float
    campaign: str | None
    iccid: str | None
    direction: str
    kind: str
    cntr: int | None = None
    status: str | None = None
    detail: str | None = None


class CardStore:
    """One SQLite database; use from one thread (the event loop's)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "extra" not in columns:  # a store written before card messages existed
                self._db.execute("ALTER TABLE jobs ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'")
            if "step" not in columns:  # a store written before [[steps]]: the key gains the step
                self._db.executescript(_ADD_STEP)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the card store: {exc}") from exc
        self._cntr: dict[tuple[str, int], int] = {}
        self._touched: dict[tuple[str, int], int] = {}
        self._sent_rows: list[tuple[object, ...]] = []

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
        self._cntr.clear()
        return added, len(cards) - added

    def msisdn_owners(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT msisdn, iccid FROM cards").fetchall())

    # ------------------------------------------------------------------ campaigns (lifecycle)

    def campaign(self, name: str) -> CampaignRow | None:
        row = self._db.execute(
            "SELECT name, state, source, started_at, updated_at, runner_pid, heartbeat_at "
            "FROM campaigns WHERE name = ?",
            (name,),
        ).fetchone()
        return CampaignRow(*row) if row else None

    def campaigns(self) -> list[CampaignRow]:
        return [
            CampaignRow(*r)
            for r in self._db.execute(
                "SELECT name, state, source, started_at, updated_at, runner_pid, heartbeat_at "
                "FROM campaigns ORDER BY started_at"
            )
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

    def last_cntr(self, iccid: str, kvn: int) -> int:
        key = (iccid, kvn)
        if key not in self._cntr:
            row = self._db.execute(
                "SELECT cntr FROM keysets WHERE iccid = ? AND kvn = ?", (iccid, kvn)
            ).fetchone()
            if row is None:
                raise StoreError(f"card {iccid} has no key set {kvn}")
            self._cntr[key] = int(row[0])
        return self._cntr[key]

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

    def reserve(self, reservations: Sequence[Reservation], *, at: float) -> list[int]:
        """Next CNTR for each reservation, in order. Held in memory until :meth:`commit`, which
        writes them (and a history row per message) in its transaction: send only after that."""
        cntrs: list[int] = []
        for r in reservations:
            value = self.last_cntr(r.iccid, r.kvn) + 1
            if value >= 1 << 40:
                raise StoreError(f"card {r.iccid} key set {r.kvn}: CNTR exhausted (TS 102 225 §5.1.1)")
            self._cntr[(r.iccid, r.kvn)] = value
            self._touched[(r.iccid, r.kvn)] = value
            cntrs.append(value)
            self._sent_rows.append((at, r.campaign, r.iccid, "mt", r.kind, value, "reserved", r.detail))
        return cntrs

    def commit(
        self,
        *,
        jobs: Iterable[JobRow] = (),
        counters: Iterable[tuple[str, str, int]] = (),
        history: Iterable[HistoryRow] = (),
        mo_counters: Iterable[tuple[str, str, int]] = (),
        at: float = 0.0,
    ) -> None:
        """One transaction: the reserved CNTRs (and those messages as sent), jobs, confirmed
        counters, accepted MO CNTRs and history. On return the reservations are durable, so the
        caller may send: a crash from here on burns these values, never reuses them (house-style §2)."""
        touched, self._touched = self._touched, {}
        sent_rows, self._sent_rows = self._sent_rows, []
        job_rows = [
            (
                j.campaign,
                j.iccid,
                j.tar,
                j.state,
                json.dumps(j.pending),
                j.n,
                j.applied,
                j.base,
                j.start_counter,
                j.attempts,
                j.queries,
                j.resent_actions,
                json.dumps(j.outstanding),
                j.result,
                j.reason,
                j.counter_path,
                json.dumps(j.statuses),
                j.updated_at,
                json.dumps(j.extra),
                j.step,
            )
            for j in jobs
        ]
        history_rows = [
            (h.at, h.campaign, h.iccid, h.direction, h.kind, h.cntr, h.status, h.detail) for h in history
        ]
        counter_rows = [(iccid, tar, value, at) for iccid, tar, value in counters]
        mo_rows = [(iccid, tar, value, at) for iccid, tar, value in mo_counters]
        if not (touched or sent_rows or job_rows or history_rows or counter_rows or mo_rows):
            return
        try:
            with self._transaction():
                if touched:
                    self._db.executemany(
                        "UPDATE keysets SET cntr = ? WHERE iccid = ? AND kvn = ? AND cntr < ?",
                        [(v, iccid, kvn, v) for (iccid, kvn), v in touched.items()],
                    )
                if sent_rows or history_rows:
                    self._db.executemany(
                        "INSERT INTO history (at, campaign, iccid, direction, kind, cntr, status, detail) "
                        "VALUES (?,?,?,?,?,?,?,?)",
                        sent_rows + history_rows,
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
        except BaseException:
            # Nothing was committed: forget the in-memory increments (the next read reloads them).
            for key in touched:
                self._cntr.pop(key, None)
            raise

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
    __slots__ = ("_db", "_path")

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise StoreError(f"{self._path}: commit failed: {error}") from error
        else:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self._path}: {exc}") from exc
