"""The workers' tables on both backends (docs/campaigns.md §6.7): claims never overlap, an expired
worker's cards and bind slots are taken over, its commits are fenced off, the inbox reaches the
card's owner, and a single runner and workers exclude each other."""

from __future__ import annotations

import pytest

from ota_server.card_store import CardStore, JobRow, LeaseLost
from ota_server.engine.records import Commit, Forwarded, Reservation
from ota_server.model import Card
from ota_server.store.workers import WorkerStore
from tests.ota_server.test_card_store import KEYSET

CARDS = [
    Card(iccid=f"89882110000000{i:05d}", imsi=f"00101{i:010d}", msisdn=f"4917{i:08d}", index=i)
    for i in range(10)
]


def _open(db: str, worker: str, *, ttl_s: float = 30.0) -> WorkerStore:
    store = CardStore(db)
    store.import_cards([(c, [KEYSET]) for c in CARDS])
    ws = WorkerStore(store, "c", worker, ttl_s=ttl_s)
    ws.enroll([c.iccid for c in CARDS])
    assert ws.register(host="h", pid=1, source="c.toml") is None
    return ws


def _job(iccid: str) -> JobRow:
    return JobRow(
        campaign="c", iccid=iccid, tar="b00010", state="waiting", pending=[], n=1, applied=0, base=0,
        start_counter=0, attempts=1, queries=0, resent_actions=0,
    )  # fmt: skip


def test_claims_are_disjoint_in_card_order_and_bind_slots_bounded(db_url: str) -> None:
    a, b = _open(db_url, "a"), _open(db_url, "b")
    assert a.claim(4) == [c.iccid for c in CARDS[:4]]
    assert b.claim(4) == [c.iccid for c in CARDS[4:8]]
    assert a.claim(4) == [c.iccid for c in CARDS[8:]]
    assert b.claim(4) == []
    assert a.take_bind_slots(3, 2) == [0, 1]
    assert b.take_bind_slots(3, 2) == [2]  # three binds in all, whatever the workers want
    assert a.others_open() == 4 and b.others_open() == 6


def test_an_expired_worker_is_reaped_fenced_off_and_its_cards_taken_over(db_url: str) -> None:
    zombie, b = _open(db_url, "z"), _open(db_url, "b")
    first = CARDS[0].iccid
    assert zombie.claim(1) == [first] and zombie.take_bind_slots(1, 1) == [0]
    assert b.take_bind_slots(1, 1) == []  # standby: the one bind is the zombie's
    assert b.reap() == 0
    zombie.db.execute("UPDATE workers SET expires_at = 0 WHERE id = 'z'")  # it stalls past its lease
    with pytest.raises(LeaseLost):
        zombie.claim(1)
    assert b.reap() == 1
    assert b.take_bind_slots(1, 1) == [0]
    assert b.claim(1) == [first]
    with pytest.raises(LeaseLost):
        zombie.heartbeat()
    commit = Commit(reservations=(Reservation(first, 1, 9, "c", "script"),), jobs=(_job(first),), at=1.0)
    with pytest.raises(LeaseLost):
        zombie.store.commit(commit, fence=zombie.fence)
    assert b.store.cntrs()[(first, 1)] == 0  # nothing of the zombie's commit landed
    b.store.commit(commit, fence=b.fence)
    assert b.store.cntrs()[(first, 1)] == 9
    with pytest.raises(LeaseLost):  # a card b does not claim
        b.store.commit(Commit(jobs=(_job(CARDS[5].iccid),), at=1.0), fence=b.fence)


def test_the_inbox_reaches_the_cards_owner_and_the_last_worker_finishes_the_campaign(db_url: str) -> None:
    a, b = _open(db_url, "a"), _open(db_url, "b")
    a.claim(5)
    b.claim(5)
    por = Forwarded(CARDS[7].msisdn, 0x40, b"\x02\x71\x00por")
    a.store.commit(Commit(forwarded=(por,), at=1.0), fence=a.fence)  # a received b's card's PoR
    assert a.take_inbox() == []
    (item,) = b.take_inbox()
    assert (item.msisdn, item.esm_class, item.user_data) == (por.msisdn, 0x40, por.user_data)
    b.delete_inbox([item.id])
    assert b.take_inbox() == []
    a.leave([c.iccid for c in CARDS[:5]])
    assert a.store.campaign("c").state == "running"  # type: ignore[union-attr]
    b.leave([c.iccid for c in CARDS[5:]])
    assert b.store.campaign("c").state == "finished"  # type: ignore[union-attr]


def test_a_single_runner_and_workers_exclude_each_other(db_url: str) -> None:
    a = _open(db_url, "a")
    refused = a.store.acquire_lease(
        "c", token="t", pid=2, host="h", at=a.now(), source="f", alive=lambda p: True
    )
    assert not refused.granted and "1 live worker" in refused.refusal
    a.leave([])
    assert a.store.acquire_lease(
        "c", token="t", pid=2, host="h", at=a.now(), source="f", alive=lambda p: True
    ).granted
    late = WorkerStore(a.store, "c", "late")
    assert "single runner excludes workers" in (late.register(host="h", pid=3, source="f") or "")
