"""The commit writer: group commit off the event loop, sends only after their Commits (house-style §2)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from ota_protocols.errors import StoreError
from ota_server.card_store import CardStore
from ota_server.commit_writer import CommitWriter
from ota_server.engine.records import Commit, HistoryRow

WAIT_S = 10.0


def _commit(n: int) -> Commit:
    return Commit(history=(HistoryRow(float(n), "c", None, "note", "test", n, "ok", ""),), at=float(n))


class _GatedStore:
    """Records every transaction; the first one waits until the test opens the gate."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.log: list[object] = []
        self.transactions: list[list[float]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.fail_on = fail_on

    def commit_all(self, commits: Sequence[Commit]) -> None:
        self.started.set()
        assert self.gate.wait(WAIT_S)
        ats = [c.at for c in commits]
        if self.fail_on is not None and self.fail_on in ats:
            raise StoreError("disk full")
        self.transactions.append(ats)
        self.log.extend(f"durable {at:g}" for at in ats)


@pytest.mark.asyncio
async def test_sends_wait_for_the_commits_queued_before_them_and_keep_their_order() -> None:
    loop = asyncio.get_running_loop()
    store = _GatedStore()
    failures: list[str] = []
    writer = CommitWriter(store, loop, failures.append)
    try:
        writer.send(lambda: store.log.append("send 0"))  # nothing pending: at once
        assert store.log == ["send 0"]
        writer.commit(_commit(1))
        assert store.started.wait(WAIT_S)  # the writer is inside the first transaction
        writer.send(lambda: store.log.append("send 1"))
        writer.commit(_commit(2))
        writer.commit(_commit(3))
        writer.send(lambda: store.log.append("send 3"))
        store.gate.set()
    finally:
        writer.close()
    # send 1 waited for Commit 1 only: out before the next transaction; send 3 after Commit 3.
    assert store.log == ["send 0", "durable 1", "send 1", "durable 2", "durable 3", "send 3"]
    # The two Commits queued while the first was written went down as one transaction.
    assert store.transactions == [[1.0], [2.0, 3.0]]
    assert failures == []


@pytest.mark.asyncio
async def test_a_failed_commit_sends_nothing_after_it_and_reports_once() -> None:
    loop = asyncio.get_running_loop()
    store = _GatedStore(fail_on=2)
    reported = asyncio.Event()
    failures: list[str] = []

    def on_failure(reason: str) -> None:
        failures.append(reason)
        reported.set()

    writer = CommitWriter(store, loop, on_failure)
    try:
        writer.commit(_commit(1))
        assert store.started.wait(WAIT_S)
        writer.send(lambda: store.log.append("send 1"))
        writer.commit(_commit(2))
        writer.send(lambda: store.log.append("send 2"))
        store.gate.set()
        async with asyncio.timeout(WAIT_S):
            await reported.wait()
        writer.commit(_commit(4))  # after the failure: ignored
        writer.send(lambda: store.log.append("send 4"))
    finally:
        writer.close()
    assert store.log == ["durable 1", "send 1"]
    assert failures == ["database: disk full"]
    assert writer.failed == "database: disk full"


def test_commit_all_leaves_what_the_same_commits_one_by_one_leave(tmp_path: object) -> None:
    from pathlib import Path

    from ota_server.engine.records import JobRow

    def job(state: str, at: float) -> JobRow:
        return JobRow(
            campaign="c", iccid="8988", tar="b00010", state=state, pending=[], n=1, applied=0,
            base=0, start_counter=0, attempts=1, queries=0, resent_actions=0, outstanding=[],
            result="", reason="", counter_path=None, statuses=[], updated_at=at, extra={}, step=0,
        )  # fmt: skip

    commits = [
        Commit(jobs=(job(state, at),), counters=(("8988", "b00010", n),), history=_commit(n).history, at=at)
        for n, (state, at) in enumerate((("sending", 1.0), ("confirmed", 2.0)), 1)
    ]
    folder = Path(str(tmp_path))
    one, group = CardStore(folder / "one.sqlite"), CardStore(folder / "group.sqlite")
    try:
        for commit in commits:
            one.commit(commit)
        group.commit_all(commits)
        for store in (one, group):
            assert store.load_step_jobs("c")[("8988", "b00010", 0)].state == "confirmed"
        assert one.snapshot("c", {"b00010"}).confirmed == group.snapshot("c", {"b00010"}).confirmed
        assert [tuple(r) for r in one._db.execute("SELECT at, cntr FROM history ORDER BY id")] == [
            tuple(r) for r in group._db.execute("SELECT at, cntr FROM history ORDER BY id")
        ]
    finally:
        one.close()
        group.close()
