"""Group commit off the event loop: the engine's Commits written by one thread, in order, and the
sends that depend on them performed only once they are durable.

Clauses: house-style §2 (write-ahead: a Commit is durable before the submits and deliver_sm
acknowledgements after it), docs/campaigns.md §6 (a database error stops the run; nothing that
was not durable was sent or acknowledged).

Why. With ``synchronous=FULL`` every transaction waits for the disk; done on the event loop's
thread that wait stopped everything else (link events, packet building, PoR checks): in
``benchmarks.e2e`` the loop spent over a third of its time blocked in COMMIT. Here the loop
queues a Commit and goes on; the writer thread takes everything queued since its last
transaction and writes it as ONE transaction (the Commits in order, so a later row wins as it
would have one commit later), then performs the sends queued behind those Commits, in order.
While it waits for the disk the next turns' Commits gather: the slower the disk, the larger the
group, the fewer the waits.

Ordering. Everything goes through one FIFO: a send queued after a Commit is performed after that
Commit (and any later one written in the same transaction) is durable; sends never overtake each
other. Sends at the head of a batch, behind Commits already durable, go out before its
transaction. A send with nothing pending ahead of it is performed at once by the caller
(:meth:`CommitWriter.send`), which keeps the order too.

Failure. A failed transaction performs none of the sends behind it, drops everything queued
after, and reports the error once to ``on_failure`` on the event loop; later calls are ignored.

The store is used by two threads: the writer's transactions and the loop's own calls (the
lease renewal) take :attr:`CommitWriter.lock`, so one of them at a time uses the connection.

Glossary: group commit many logical commits in one durable transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from ota_protocols.errors import StoreError
from ota_server.engine.records import Commit

__all__ = ["CommitWriter", "GroupStore"]

log = logging.getLogger(__name__)

THREAD_NAME = "ota-commit-writer"


class GroupStore(Protocol):
    def commit_all(self, commits: Sequence[Commit]) -> None: ...


class CommitWriter:
    """One writer thread for one store; see the module docstring."""

    def __init__(
        self,
        store: GroupStore,
        loop: asyncio.AbstractEventLoop,
        on_failure: Callable[[str], None],
    ) -> None:
        self.store = store
        self.lock = threading.Lock()  # the store's connection: one thread at a time
        self._loop = loop
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._queue: list[Commit | Callable[[], None]] = []  # under _cond
        self._busy = False  # under _cond: a batch is being written or its sends performed
        self._closing = False  # under _cond
        self.failed: str | None = None
        self.transactions = 0  # written by the thread; read once it has stopped
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the loop's side

    def commit(self, commit: Commit) -> None:
        """Queue a Commit; the sends queued after it wait until it is durable."""
        if not commit:
            return
        with self._cond:
            if self.failed is not None or self._closing:
                return
            self._queue.append(commit)
            self._cond.notify()

    def send(self, perform: Callable[[], None]) -> None:
        """Perform ``perform`` (submits, acknowledgements) once everything queued before is durable:
        at once when nothing is pending, else by the writer thread after its transaction."""
        with self._cond:
            if self.failed is not None:
                return
            if self._queue or self._busy:
                self._queue.append(perform)
                self._cond.notify()
                return
        perform()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write and perform what is queued, then stop the thread (bounded wait)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # pragma: no cover - a disk that hangs for timeout_s
            log.warning("commit writer still busy after %g s; left behind", timeout_s)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                self._busy = True
            try:
                # Sends ahead of the batch's first Commit wait for nothing more: out at once.
                first = next((i for i, item in enumerate(batch) if isinstance(item, Commit)), len(batch))
                for item in batch[:first]:
                    item()  # type: ignore[operator]
                commits = [item for item in batch[first:] if isinstance(item, Commit)]
                if commits:
                    with self.lock:
                        self.store.commit_all(commits)
                    self.transactions += 1
                    self.commits += len(commits)
                for item in batch[first:]:
                    if not isinstance(item, Commit):
                        item()
            except StoreError as exc:
                self._fail(f"database: {exc}")
                return
            except Exception as exc:  # a bug: stop the run with one line, send nothing more
                log.debug("commit writer: internal error", exc_info=True)
                self._fail(f"internal error in the commit writer: {exc!r}")
                return
            with self._cond:
                self._busy = False

    def _fail(self, reason: str) -> None:
        with self._cond:
            self.failed = reason
            self._queue.clear()
            self._busy = False
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(self._on_failure, reason)
