"""The card store: CNTR reservations are durable before sending and never reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ota_protocols.errors import StoreError
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.card_store import CardStore, HistoryRow, JobRow, LeaseLost
from ota_server.engine.records import Commit, Reservation
from ota_server.model import Card, Keyset

CARD = Card(iccid="8988211000000000003", imsi="001010000000000", msisdn="491700000000", index=0)
KEYSET = Keyset(
    kvn=1,
    kic_algorithm=CipherAlgorithm.AES_CBC,
    kid_algorithm=IntegrityAlgorithm.AES_CMAC,
    kic=bytes(range(16)),
    kid=bytes(range(16, 32)),
)


def _store(path: Path) -> CardStore:
    store = CardStore(path)
    store.import_cards([(CARD, [KEYSET])])
    return store


def _reserve(*cntrs: int, kind: str = "script") -> Commit:
    return Commit(reservations=tuple(Reservation(CARD.iccid, 1, c, "c", kind) for c in cntrs), at=1.0)


def test_import_is_idempotent_and_keeps_counters(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    store.commit(_reserve(1))
    assert store.import_cards([(CARD, [KEYSET])]) == 0
    assert store.cards() == [CARD]
    assert store.keysets()[CARD.iccid][1] == KEYSET
    assert store.cntrs()[(CARD.iccid, 1)] == 1


def test_reservation_is_committed_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    store.commit(_reserve(1, 2, 3))
    # Another connection (a crash right after the commit, before any send) sees them.
    other = CardStore(path)
    assert other.cntrs()[(CARD.iccid, 1)] == 3
    sent = [h for h in other.history(CARD.iccid) if h.direction == "mt"]
    assert [h.cntr for h in sent] == [1, 2, 3] and {h.status for h in sent} == {"reserved"}


def test_a_cntr_never_goes_down(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    store.commit(_reserve(5))
    store.commit(_reserve(2))  # a stale engine's reservation cannot lower it (TS 102 225 §5.1.1)
    store.close()
    assert CardStore(path).cntrs()[(CARD.iccid, 1)] == 5


def test_an_unwritable_database_is_one_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    store._db.execute("PRAGMA query_only = ON")  # the disk refuses writes from here on
    with pytest.raises(StoreError, match=r"s\.db"):
        store.commit(_reserve(1))


def test_the_lease_admits_one_runner_and_a_dead_ones_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
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


def test_jobs_counters_and_history_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
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
