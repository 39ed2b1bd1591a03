"""The card store's two backends: what differs between SQLite and PostgreSQL, and nothing else.

Clauses: docs/campaigns.md §6.5 (durability: a committed transaction survives power loss; every
database error is one :class:`~ota_protocols.errors.StoreError` naming the database, never a
traceback), §6.7 (many workers: row locks, SKIP LOCKED).

The queries themselves are written once (ota_server/card_store.py, ota_server/store/workers.py) in
the SQL both engines speak (``INSERT ... ON CONFLICT ... DO UPDATE SET x = excluded.x``); a backend
supplies the rest: the parameter style (``?`` is rewritten to ``%s`` for psycopg), the name of the
two-argument maximum, an integer read out of a JSON column, the database clock, row locking
(``FOR UPDATE [SKIP LOCKED]`` on PostgreSQL; nothing on SQLite, whose ``BEGIN IMMEDIATE`` already
serialises every writer), a transaction-scoped named lock, and opening: pragmas, the migrations of
ota_server/store/schema.py under a lock, and for SQLite files written before versioning their
in-place upgrades to version 1.

Glossary: WAL SQLite write-ahead log; DSN a PostgreSQL connection string.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ota_protocols.errors import StoreError
from ota_server.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES_V1, render_table

__all__ = ["Backend", "PostgresBackend", "SqliteBackend", "is_url", "open_backend", "redact"]

log = logging.getLogger(__name__)

URL_PREFIXES = ("postgresql://", "postgres://")


def is_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(URL_PREFIXES)


def redact(url: str) -> str:
    """The URL without its password (house-style: secrets never in logs or messages)."""
    return re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", r"\1:***@", url)


class LeaseLost(StoreError):
    """Another runner took this campaign's lease over: stop before sending anything more."""


class Backend:
    """One connection to one database; use from one thread (the event loop's)."""

    dialect = ""
    greatest = ""  # the two-argument maximum
    now_sql = ""  # the database's wall clock, seconds since the epoch
    for_share = ""  # lock the rows a SELECT reads against writers until the transaction ends
    skip_locked = ""  # lock them for update, skipping the rows another transaction holds

    def __init__(self, name: str) -> None:
        self.name = name  # what messages call the database (a path, or a URL without password)

    # subclasses: _connect, _errors, _begin, in_transaction, _lock
    _errors: tuple[type[BaseException], ...] = ()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        try:
            return self._execute(sql, args)
        except self._errors as exc:
            raise self.error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        try:
            return self._executemany(sql, rows)
        except self._errors as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException, doing: str = "") -> StoreError:
        """The one StoreError for a driver error (``doing``: e.g. "commit failed: "). A worker whose
        session was ended (:meth:`end_sessions`: its lease had expired) lost its lease."""
        text = f"{self.name}: {doing}{_one_line(exc)}"
        if self.session_ended():
            return LeaseLost(f"{text} (this worker's database session was ended: its lease had expired)")
        return StoreError(text)

    def session_ended(self) -> bool:
        """A named session (:meth:`name_session`) whose connection the server closed."""
        return False

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def member(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """``column`` is one of ``values``: the SQL and its one parameter."""
        raise NotImplementedError

    def json_int(self, column: str, key: str) -> str:
        """SQL for the integer at top-level ``key`` of the JSON object in ``column`` (NULL when absent
        or null); ``key`` is a name from our code, never input."""
        raise NotImplementedError

    def lock(self, key: str) -> None:
        """Inside a transaction: hold a lock named ``key`` until it ends (serialises e.g. two runners
        reading and taking one campaign's lease)."""

    def batched(self) -> contextlib.AbstractContextManager[None]:
        """Statements sent without waiting for each answer, where the driver can (one round trip per
        group commit on PostgreSQL instead of one per statement); a no-op for SQLite (in-process)."""
        return contextlib.nullcontext()

    def name_session(self, tag: str) -> None:
        """Label this connection's database session ``tag`` (:meth:`end_sessions`); SQLite has none."""

    def end_sessions(self, tag: str) -> None:
        """End the other database sessions labelled ``tag``: their open transactions roll back and
        their row locks go. SQLite: nothing to do (a process's locks end with the process)."""

    def _execute(self, sql: str, args: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _migrate(self) -> None:
        """Bring the database to :data:`SCHEMA_VERSION` (one transaction, under a lock)."""
        with self.transaction():
            self.lock("schema")
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.name}: schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION}): upgrade ota-server"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target][self.dialect]:
                    self.execute(statement)
            if row is None:
                self.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                self.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


class _Transaction:
    """BEGIN ... COMMIT; every database error on the way becomes one :class:`StoreError` naming the
    database (docs/campaigns.md §6.5: the run stops on it, exit 1, nothing acknowledged)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def __enter__(self) -> None:
        backend = self._backend
        try:
            backend._begin()
        except backend._errors as error:
            raise backend.error(error, "cannot start a transaction: ") from error

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        backend = self._backend
        if exc_type is None:
            try:
                backend._execute("COMMIT", ())
                return
            except backend._errors as error:
                self._rollback()
                raise backend.error(error, "commit failed: ") from error
        self._rollback()
        if isinstance(exc, backend._errors):
            raise backend.error(exc) from exc  # type: ignore[arg-type]

    def _rollback(self) -> None:
        backend = self._backend
        try:
            if backend.in_transaction:
                backend._execute("ROLLBACK", ())
        except backend._errors:
            log.debug("rollback failed on %s", backend.name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SqliteBackend(Backend):
    dialect = "sqlite"
    greatest = "MAX"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    _errors = (sqlite3.Error,)

    def __init__(self, path: Path | str) -> None:
        super().__init__(str(path))
        try:
            # One thread at a time, not always the same one: the campaign runner's commit writer
            # (ota_server.commit_writer) writes from its own thread under its lock.
            self._db = sqlite3.connect(self.name, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")  # a CLI lifecycle command may hold a write
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "cards" in tables and "schema_version" not in tables:
                self._upgrade_unversioned()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.name}: cannot open the card store: {exc}") from exc
        try:
            self._migrate()
        except StoreError as exc:
            raise StoreError(f"cannot open the card store: {exc}") from exc

    def _upgrade_unversioned(self) -> None:
        """A file written before schema versions: bring it to version 1 in place (the columns and
        the jobs key each earlier release added), then :meth:`_migrate` records it."""
        for table in TABLES_V1:
            for statement in render_table(table, self.dialect):
                self._db.execute(statement)
        campaign_columns = {r[1] for r in self._db.execute("PRAGMA table_info(campaigns)")}
        for column in ("runner_host", "runner_token"):  # a store written before the lease
            if column not in campaign_columns:
                self._db.execute(f"ALTER TABLE campaigns ADD COLUMN {column} TEXT")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "extra" not in columns:  # a store written before card messages existed
            self._db.execute("ALTER TABLE jobs ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'")
        if "step" not in columns:  # a store written before [[steps]]: the key gains the step
            jobs = next(t for t in TABLES_V1 if t.name == "jobs")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ALTER TABLE jobs RENAME TO jobs_before_steps")
            self._db.execute(render_table(jobs, self.dialect)[0])
            self._db.execute("INSERT INTO jobs SELECT *, 0 FROM jobs_before_steps")
            self._db.execute("DROP TABLE jobs_before_steps")
            self._db.execute("COMMIT")

    def json_int(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def member(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    def _execute(self, sql: str, args: Sequence[Any]) -> Any:
        return self._db.execute(sql, args)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._db.executemany(sql, rows)

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def close(self) -> None:
        self._db.close()


class PostgresBackend(Backend):
    """psycopg 3, autocommit off by explicit BEGIN/COMMIT (READ COMMITTED). Durability is the
    server's: ``fsync`` and ``synchronous_commit`` on, as PostgreSQL ships (docs/campaigns.md §6.5)."""

    dialect = "postgresql"
    greatest = "GREATEST"
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
    for_share = "FOR SHARE"
    skip_locked = "FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        super().__init__(redact(url))
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                f"{self.name}: PostgreSQL needs the psycopg package (pip install 'psycopg[binary]')"
            ) from exc
        self._psycopg = psycopg
        self._errors = (psycopg.Error,)
        self._sql: dict[str, str] = {}
        self._named = False  # name_session: a worker's session, which the others may end
        try:
            # lock_timeout: as SQLite's busy timeout, a write lock held elsewhere for longer is an error.
            # idle_in_transaction_session_timeout: a process stopped inside a transaction (SIGSTOP, a
            # stall, a lost network) has the server end its session after 5 s, so its row locks (a
            # worker's lease row, its claims) cannot keep the others from reaping it and taking its
            # cards over (docs/campaigns.md §6.7); our transactions never wait on the client that long.
            self._db = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=10,
                options="-c lock_timeout=5000 -c idle_in_transaction_session_timeout=5000",
            )
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: cannot open the card store: {_one_line(exc)}") from exc
        self._migrate()

    def json_int(self, column: str, key: str) -> str:
        return f"(({column})::json ->> '{key}')::bigint"

    def member(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        return f"{column} = ANY(?)", list(values)

    def name_session(self, tag: str) -> None:
        self.execute("SELECT set_config('application_name', ?, false)", (tag,))
        self._named = True

    def session_ended(self) -> bool:
        return self._named and bool(self._db.broken)

    def end_sessions(self, tag: str) -> None:
        # A role may end its own sessions (PostgreSQL: pg_terminate_backend, "Server Signaling
        # Functions"); the session's transaction is rolled back and its locks released.
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = ? AND pid <> pg_backend_pid()",
            (tag,),
        )

    def _convert(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def _execute(self, sql: str, args: Sequence[Any]) -> Any:
        return self._db.execute(self._convert(sql), args or None)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self._db.cursor()
        cursor.executemany(self._convert(sql), list(rows))
        return cursor

    def _begin(self) -> None:
        self._db.execute("BEGIN")

    def lock(self, key: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(key.encode()),))

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """psycopg's pipeline mode: an error surfaces at the next result read or at the end, where it
        is the same one :class:`StoreError` (and the transaction is rolled back)."""
        try:
            with self._db.pipeline():
                yield
        except self._psycopg.Error as exc:
            with contextlib.suppress(self._psycopg.Error):
                if self.in_transaction:
                    self._db.execute("ROLLBACK")
            raise self.error(exc) from exc

    @property
    def in_transaction(self) -> bool:
        status = self._db.info.transaction_status
        return status != self._psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self._db.close()


def open_backend(db: str | Path) -> Backend:
    """``postgresql://...`` (or ``postgres://``): PostgreSQL; anything else: a SQLite file path."""
    if is_url(db):
        return PostgresBackend(str(db))
    return SqliteBackend(db)
