"""Read a campaign server's database from a test, whatever its backend (a SQLite path or a URL):
bounded polling of another process's progress, read-only, errors read as "nothing yet"."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rows(db: str | Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one read-only query; [] while the database or its tables do not exist yet."""
    if str(db).startswith("postgresql://"):
        import psycopg

        try:
            with psycopg.connect(str(db), autocommit=True, connect_timeout=5) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]  # type: ignore[arg-type]
        except psycopg.Error:
            return []
    path = Path(db)
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


async def until(predicate: Callable[[], object], timeout_s: float = 60.0) -> None:
    """Bounded polling of an outside process's state (its database), never a sleep as synchronisation."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def job_states(db: str | Path) -> dict[str, int]:
    """Jobs by stored state (new, sending, waiting, done, ...)."""
    return {
        str(state): int(count) for state, count in rows(db, "SELECT state, count(*) FROM jobs GROUP BY state")
    }
