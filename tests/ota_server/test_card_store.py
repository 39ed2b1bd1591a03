"""The card store: CNTR reservations are durable before sending and never reused."""

from __future__ import annotations

from pathlib import Path

from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.card_store import CardStore, HistoryRow, JobRow, Reservation
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


def test_import_is_idempotent_and_keeps_counters(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    store.reserve([Reservation(CARD.iccid, 1, "c", "script")], at=1.0)
    store.commit(at=1.0)
    assert store.import_cards([(CARD, [KEYSET])]) == 0
    assert store.cards() == [CARD]
    assert store.keysets()[CARD.iccid][1] == KEYSET
    assert store.last_cntr(CARD.iccid, 1) == 1


def test_reservation_is_committed_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    cntrs = store.reserve([Reservation(CARD.iccid, 1, "c", "script")] * 3, at=1.0)
    assert cntrs == [1, 2, 3]
    store.commit(at=1.0)
    # Another connection (a crash right after the commit, before any send) sees them.
    other = CardStore(path)
    assert other.last_cntr(CARD.iccid, 1) == 3
    sent = [h for h in other.history(CARD.iccid) if h.direction == "mt"]
    assert [h.cntr for h in sent] == [1, 2, 3] and {h.status for h in sent} == {"reserved"}


def test_crash_before_commit_reuses_nothing_sent_and_reopen_keeps_counters(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    store.reserve([Reservation(CARD.iccid, 1, "c", "script")], at=1.0)
    store.commit(at=1.0)  # CNTR 1 may have left
    store.reserve([Reservation(CARD.iccid, 1, "c", "script")], at=2.0)  # CNTR 2 never committed, never sent
    store.close()  # crash
    reopened = CardStore(path)
    (again,) = reopened.reserve([Reservation(CARD.iccid, 1, "c", "query")], at=3.0)
    assert again == 2  # above everything that could have been sent; 1 is never reused
    reopened.commit(at=3.0)
    reopened.close()
    assert CardStore(path).last_cntr(CARD.iccid, 1) == 2


def test_jobs_counters_and_history_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _store(path)
    row = JobRow(
        campaign="demo", iccid=CARD.iccid, tar="b00010", state="waiting", pending=[["00a4000c023f00"]],
        n=4, applied=3, base=3, start_counter=0, attempts=2, queries=1, resent_actions=1, outstanding=[7],
    )  # fmt: skip
    store.commit(
        jobs=[row],
        counters=[(CARD.iccid, "b00010", 3)],
        history=[HistoryRow(1.0, "demo", CARD.iccid, "mo", "por", 7, "00", "PoR OK")],
        at=1.0,
    )
    other = CardStore(path)
    assert other.load_jobs("demo")[(CARD.iccid, "b00010")].outstanding == [7]
    assert other.confirmed_counters("b00010") == {CARD.iccid: 3}
    assert other.history(CARD.iccid)[0].kind == "por"
