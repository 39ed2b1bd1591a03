"""The card store's ONE schema definition: tables with logical column types, rendered per dialect, and
the versioned migrations both backends apply (docs/campaigns.md §6.5).

Glossary: CNTR 03.48 replay counter (per key set); KVN key version number; TAR toolkit application
reference; CA confirmed action counter; MO mobile originated.

Logical types: ``text``, ``int`` (64-bit: a CNTR has five octets, TS 102 225 §5.1.1), ``real``
(wall-clock seconds), ``blob`` (key material), ``serial`` (an ever-growing row id, the history's
order). A column is ``(name, type, constraints)``; a table ends with its table constraints.

Versions. 1 is the schema every SQLite file written before versioning has (such a file is brought to
it by :mod:`ota_server.store.backends` before its version is recorded); 2 adds the tables of many
workers on one campaign (docs/campaigns.md §6.7): ``workers`` (one row per live worker, its lease),
``campaign_cards`` (the campaign's cards in order, who claims each, whether it is done),
``bind_slots`` (the campaign's ``[pacing] binds``, each held by at most one worker) and ``inbox``
(deliver_sm a worker received for a card another worker owns); 3 indexes the history by campaign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "Table", "render_table"]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str, str], ...]
    constraints: tuple[str, ...] = ()
    indexes: tuple[tuple[str, str], ...] = ()  # (index name, "column, column")


TABLES_V1: tuple[Table, ...] = (
    Table(
        "cards",
        (
            ("iccid", "text", "PRIMARY KEY"),
            ("imsi", "text", "NOT NULL"),
            ("msisdn", "text", "NOT NULL UNIQUE"),
            ("tags", "text", "NOT NULL DEFAULT '[]'"),
            ("fleet_index", "int", ""),
        ),
    ),
    Table(
        "keysets",
        (
            ("iccid", "text", "NOT NULL REFERENCES cards(iccid)"),
            ("kvn", "int", "NOT NULL"),
            ("kic_algorithm", "text", "NOT NULL"),
            ("kid_algorithm", "text", "NOT NULL"),
            ("kic", "blob", "NOT NULL"),
            ("kid", "blob", "NOT NULL"),
            ("cntr", "int", "NOT NULL DEFAULT 0"),  # last CNTR reserved (sent or burnt)
        ),
        ("PRIMARY KEY (iccid, kvn)",),
    ),
    Table(
        "action_counters",
        (
            ("iccid", "text", "NOT NULL"),
            ("tar", "text", "NOT NULL"),
            ("confirmed", "int", "NOT NULL"),  # CA: last action counter the card proved
            ("updated_at", "real", "NOT NULL"),
        ),
        ("PRIMARY KEY (iccid, tar)",),
    ),
    Table(
        "mo_counters",
        (
            ("iccid", "text", "NOT NULL"),
            ("tar", "text", "NOT NULL"),
            ("cntr", "int", "NOT NULL"),  # last MO CNTR accepted from the card (replay rule)
            ("updated_at", "real", "NOT NULL"),
        ),
        ("PRIMARY KEY (iccid, tar)",),
    ),
    Table(
        "jobs",
        (
            ("campaign", "text", "NOT NULL"),
            ("iccid", "text", "NOT NULL"),
            ("tar", "text", "NOT NULL"),
            ("state", "text", "NOT NULL"),
            ("pending", "text", "NOT NULL"),  # JSON: the actions not yet confirmed, hex APDUs
            ("n", "int", "NOT NULL"),
            ("applied", "int", "NOT NULL"),
            ("base", "int", ""),  # CA the unresolved script was sent against
            ("start_counter", "int", ""),
            ("attempts", "int", "NOT NULL"),
            ("queries", "int", "NOT NULL"),
            ("resent_actions", "int", "NOT NULL"),
            ("outstanding", "text", "NOT NULL DEFAULT '[]'"),  # JSON: CNTRs of unresolved messages
            ("result", "text", "NOT NULL DEFAULT ''"),
            ("reason", "text", "NOT NULL DEFAULT ''"),
            ("counter_path", "text", ""),
            ("statuses", "text", "NOT NULL DEFAULT '[]'"),
            ("updated_at", "real", "NOT NULL"),
            ("extra", "text", "NOT NULL DEFAULT '{}'"),  # JSON: script_cntr, replies owed, reports, ...
            ("step", "int", "NOT NULL DEFAULT 0"),  # the campaign's [[steps]] index
        ),
        ("PRIMARY KEY (campaign, iccid, tar, step)",),
    ),
    Table(
        "campaigns",
        (
            ("name", "text", "PRIMARY KEY"),
            ("state", "text", "NOT NULL"),  # running, paused, cancelled, finished
            ("source", "text", "NOT NULL DEFAULT ''"),  # the campaign file
            ("started_at", "real", ""),
            ("updated_at", "real", "NOT NULL"),
            ("runner_pid", "int", ""),  # the one-runner lease: the process running it, NULL when none
            ("heartbeat_at", "real", ""),
            ("runner_host", "text", ""),
            ("runner_token", "text", ""),  # changes on every take-over
        ),
    ),
    Table(
        "history",
        (
            ("id", "serial", ""),
            ("at", "real", "NOT NULL"),
            ("campaign", "text", ""),
            ("iccid", "text", ""),
            ("direction", "text", "NOT NULL"),  # 'mt', 'mo', 'note'
            ("kind", "text", "NOT NULL"),  # script, query, por, receipt, submit_resp, ...
            ("cntr", "int", ""),
            ("status", "text", ""),
            ("detail", "text", ""),
        ),
    ),
)

TABLES_V2: tuple[Table, ...] = (
    Table(
        "workers",
        (
            ("id", "text", "PRIMARY KEY"),  # random, never reused
            ("campaign", "text", "NOT NULL"),
            ("host", "text", "NOT NULL"),
            ("pid", "int", "NOT NULL"),
            ("started_at", "real", "NOT NULL"),
            ("expires_at", "real", "NOT NULL"),  # the lease, in the database's clock; renewed by heartbeat
        ),
        indexes=(("workers_campaign", "campaign"),),
    ),
    Table(
        "campaign_cards",
        (
            ("campaign", "text", "NOT NULL"),
            ("iccid", "text", "NOT NULL"),
            ("seq", "int", "NOT NULL"),  # the campaign's card order
            ("worker", "text", ""),  # the claim: valid while that worker's row (lease) lives
            ("done", "int", "NOT NULL DEFAULT 0"),  # every job of the card ended and is durable
        ),
        ("PRIMARY KEY (campaign, iccid)",),
        (("campaign_cards_open", "campaign, done, seq"), ("campaign_cards_worker", "worker")),
    ),
    Table(
        "bind_slots",
        (
            ("campaign", "text", "NOT NULL"),
            ("slot", "int", "NOT NULL"),  # 0 .. [pacing] binds - 1
            ("worker", "text", ""),
        ),
        ("PRIMARY KEY (campaign, slot)",),
    ),
    Table(
        "inbox",
        (
            ("id", "serial", ""),
            ("campaign", "text", "NOT NULL"),
            ("msisdn", "text", "NOT NULL"),
            ("esm_class", "int", "NOT NULL"),
            ("user_data", "blob", "NOT NULL"),
            ("receipted_message_id", "text", ""),
            ("message_state", "int", ""),
            ("at", "real", "NOT NULL"),
        ),
        indexes=(("inbox_msisdn", "campaign, msisdn"),),
    ),
)

TABLES = TABLES_V1 + TABLES_V2
SCHEMA_VERSION = 3

# Version 3: the history's rows of one campaign by (direction, kind, status), read from the index
# alone: the status routes' and the dashboard's counts of messages (CardStore.history_counts) are
# one GROUP BY over the campaign's index entries instead of a scan of every campaign's history.
INDEXES_V3 = ("CREATE INDEX IF NOT EXISTS history_campaign ON history (campaign, direction, kind, status)",)

_TYPES = {
    "sqlite": {
        "text": "TEXT",
        "int": "INTEGER",
        "real": "REAL",
        "blob": "BLOB",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgresql": {
        "text": "TEXT",
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    },
}


def render_table(table: Table, dialect: str) -> list[str]:
    """CREATE TABLE (and its indexes) IF NOT EXISTS in ``dialect`` ("sqlite" or "postgresql")."""
    types = _TYPES[dialect]
    parts = [" ".join(p for p in (name, types[kind], extra) if p) for name, kind, extra in table.columns]
    parts += list(table.constraints)
    out = [f"CREATE TABLE IF NOT EXISTS {table.name} (\n    " + ",\n    ".join(parts) + "\n)"]
    out += [f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({cols})" for name, cols in table.indexes]
    return out


def _statements(tables: Sequence[Table], dialect: str) -> list[str]:
    return [sql for table in tables for sql in render_table(table, dialect)]


# version -> the statements that bring version - 1 to it, per dialect
MIGRATIONS: dict[int, dict[str, list[str]]] = {
    1: {d: _statements(TABLES_V1, d) for d in _TYPES},
    2: {d: _statements(TABLES_V2, d) for d in _TYPES},
    3: {d: list(INDEXES_V3) for d in _TYPES},
}
