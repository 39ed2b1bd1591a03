"""The card store on both backends (SQLite file, PostgreSQL database): CNTR reservations are durable
before sending and never reused; the lease; old SQLite files migrate to the current schema version."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from ota_protocols.errors import StoreError
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.card_store import CardStore, HistoryRow, JobRow, LeaseLost
from ota_server.engine.records import Commit, Reservation
from ota_server.model import Card, Keyset
from ota_server.store.schema import SCHEMA_VERSION

CARD = Card(iccid="8988211000000000003", imsi="001010000000000", msisdn="491700000000", index=0)
KEYSET = Keyset(
    kvn=1,
    kic_algorithm=CipherAlgorithm.AES_CBC,
    kid_algorithm=IntegrityAlgorithm.AES_CMAC,
    kic=bytes(range(16)),
    kid=bytes(range(16, 32)),
)


def _store(path: Path | str) -> CardStore:
    store = CardStore(path)
    store.import_cards([(CARD, [KEYSET])])
    return store


def _reserve(*cntrs: int, kind: str = "script") -> Commit:
    return Commit(reservations=tuple(Reservation(CARD.iccid, 1, c, "c", kind) for c in cntrs), at=1.0)


def test_import_is_idempotent_and_keeps_counters(db_url: str) -> None:
    store = _store(db_url)
    store.commit(_reserve(1))
    assert store.import_cards([(CARD, [KEYSET])]) == 0
    assert store.cards() == [CARD]
    assert store.keysets()[CARD.iccid][1] == KEYSET
    assert store.cntrs()[(CARD.iccid, 1)] == 1


def test_reservation_is_committed_before_sending(db_url: str) -> None:
    path = db_url
    store = _store(path)
    store.commit(_reserve(1, 2, 3))
    # Another connection (a crash right after the commit, before any send) sees them.
    other = CardStore(path)
    assert other.cntrs()[(CARD.iccid, 1)] == 3
    sent = [h for h in other.history(CARD.iccid) if h.direction == "mt"]
    assert [h.cntr for h in sent] == [1, 2, 3] and {h.status for h in sent} == {"reserved"}


def test_a_cntr_never_goes_down(db_url: str) -> None:
    path = db_url
    store = _store(path)
    store.commit(_reserve(5))
    store.commit(_reserve(2))  # a stale engine's reservation cannot lower it (TS 102 225 §5.1.1)
    store.close()
    assert CardStore(path).cntrs()[(CARD.iccid, 1)] == 5


def test_an_unwritable_database_is_one_store_error(db_url: str) -> None:
    path = db_url
    store = _store(path)
    # The disk refuses writes from here on.
    read_only = (
        "PRAGMA query_only = ON"
        if store._db.dialect == "sqlite"
        else "SET default_transaction_read_only = on"
    )
    store._db.execute(read_only)
    with pytest.raises(StoreError, match=re.escape(store.path)):
        store.commit(_reserve(1))


def test_the_lease_admits_one_runner_and_a_dead_ones_is_taken_over(db_url: str) -> None:
    path = db_url
    first, second = CardStore(path), CardStore(path)
    alive, dead = (lambda pid: True), (lambda pid: False)
    taken = first.acquire_lease("c", token="a", pid=10, host="h", at=100.0, source="f", alive=alive)
    assert taken.granted
    refused = second.acquire_lease("c", token="b", pid=11, host="h", at=101.0, source="f", alive=alive)
    assert not refused.granted and "pid 10 on host h" in refused.refusal
    assert first.renew_lease("c", token="a", at=102.0) == "running"
    over = second.acquire_lease("c", token="b", pid=11, host="h", at=103.0, source="f", alive=dead)
    assert over.granted and over.takeover
    with pytest.raises(LeaseLost):
        first.renew_lease("c", token="a", at=104.0)  # the slow first runner learns it and stops


def test_jobs_counters_and_history_round_trip(db_url: str) -> None:
    path = db_url
    store = _store(path)
    row = JobRow(
        campaign="demo", iccid=CARD.iccid, tar="b00010", state="waiting", pending=[["00a4000c023f00"]],
        n=4, applied=3, base=3, start_counter=0, attempts=2, queries=1, resent_actions=1, outstanding=[7],
    )  # fmt: skip
    store.commit(
        Commit(
            jobs=(row,),
            counters=((CARD.iccid, "b00010", 3),),
            history=(HistoryRow(1.0, "demo", CARD.iccid, "mo", "por", 7, "00", "PoR OK"),),
            at=1.0,
        )
    )
    other = CardStore(path)
    assert other.load_jobs("demo")[(CARD.iccid, "b00010")].outstanding == [7]
    assert other.confirmed_counters("b00010") == {CARD.iccid: 3}
    assert other.history(CARD.iccid)[0].kind == "por"


def test_a_mo_cntr_never_goes_down_and_a_job_row_is_replaced(db_url: str) -> None:
    store = _store(db_url)
    store.commit(Commit(mo_counters=((CARD.iccid, "b00010", 9),), at=1.0))
    store.commit(Commit(mo_counters=((CARD.iccid, "b00010", 4),), at=2.0))
    assert store.mo_counters() == {(CARD.iccid, "b00010"): 9}
    row = JobRow(
        campaign="demo", iccid=CARD.iccid, tar="b00010", state="waiting", pending=[], n=1, applied=0,
        base=0, start_counter=0, attempts=1, queries=0, resent_actions=0,
    )  # fmt: skip
    store.commit(Commit(jobs=(row,), at=1.0))
    row.state, row.applied = "done", 1
    store.commit(Commit(jobs=(row,), at=2.0))
    assert [(r.state, r.applied) for r in store.load_step_jobs("demo").values()] == [("done", 1)]


def test_a_file_written_before_schema_versions_opens_migrated(tmp_path: Path) -> None:
    # The tables as the first releases wrote them: no lease columns, no jobs.extra, no jobs.step.
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(
            """
            CREATE TABLE cards (iccid TEXT PRIMARY KEY, imsi TEXT NOT NULL, msisdn TEXT NOT NULL UNIQUE,
                tags TEXT NOT NULL DEFAULT '[]', fleet_index INTEGER);
            CREATE TABLE campaigns (name TEXT PRIMARY KEY, state TEXT NOT NULL, source TEXT NOT NULL
                DEFAULT '', started_at REAL, updated_at REAL NOT NULL, runner_pid INTEGER, heartbeat_at REAL);
            CREATE TABLE jobs (campaign TEXT NOT NULL, iccid TEXT NOT NULL, tar TEXT NOT NULL,
                state TEXT NOT NULL, pending TEXT NOT NULL, n INTEGER NOT NULL, applied INTEGER NOT NULL,
                base INTEGER, start_counter INTEGER, attempts INTEGER NOT NULL, queries INTEGER NOT NULL,
                resent_actions INTEGER NOT NULL, outstanding TEXT NOT NULL DEFAULT '[]',
                result TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '', counter_path TEXT,
                statuses TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL,
                PRIMARY KEY (campaign, iccid, tar));
            INSERT INTO cards VALUES ('8988211000000000003', '001010000000000', '491700000000', '[]', 0);
            INSERT INTO jobs VALUES ('demo', '8988211000000000003', 'b00010', 'done', '[]', 1, 1, 1, 0,
                1, 0, 0, '[]', 'confirmed', '', 'por', '[]', 1.0);
            """
        )
    old.close()
    store = CardStore(path)
    assert store.cards() == [CARD]
    assert list(store.load_step_jobs("demo")) == [(CARD.iccid, "b00010", 0)]
    assert store._db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    store.acquire_lease("demo", token="t", pid=1, host="h", at=1.0, source="f", alive=lambda pid: True)
    assert store.campaign("demo").runner_token == "t"  # type: ignore[union-attr]
    store.close()
    again = CardStore(path)  # a second open changes nothing
    assert again._db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_job_rows_json_columns_are_what_json_dumps_writes(tmp_path: Path) -> None:
    import json

    row = JobRow(
        campaign="demo", iccid=CARD.iccid, tar="b00010", state="waiting", pending=[["00a4000c023f00", "é"]],
        n=4, applied=3, base=3, start_counter=0, attempts=2, queries=1, resent_actions=1, outstanding=[7, 8],
        statuses=["9000"], extra={"finished_at": None, "replies": [], "ratio": 0.5, "sent": True},
    )  # fmt: skip
    store = _store(str(tmp_path / "store.sqlite"))
    try:
        store.commit(Commit(jobs=(row,), at=1.0))
        stored = store._db.execute("SELECT pending, outstanding, statuses, extra FROM jobs").fetchone()
        assert tuple(stored) == tuple(
            json.dumps(v) for v in (row.pending, row.outstanding, row.statuses, row.extra)
        )
    finally:
        store.close()
