"""The virtual clock: one heap of ``(time, sequence, callback, args)`` events (PURE, no wall clock).

Events run in (time, sequence) order; the sequence is the order in which they were scheduled, so two
events at the same virtual time run first-scheduled first and a run is a pure function of its inputs
(the seed tree and the configs). No sleeps, no sockets, no ``id()`` or dict-order decisions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["VirtualClock"]


class VirtualClock:
    """``heap`` and ``seq`` are public for one hot caller (the virtual network pushes its events
    exactly as :meth:`at` does, without a call per event); everyone else uses :meth:`at`."""

    __slots__ = ("events_run", "heap", "now", "seq")

    def __init__(self) -> None:
        self.now = 0.0
        self.heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self.seq = 0
        self.events_run = 0

    def at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``when`` (never before ``now``)."""
        self.seq += 1
        heapq.heappush(self.heap, (when if when > self.now else self.now, self.seq, callback, args))

    def soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.at(self.now, callback, *args)

    def __len__(self) -> int:
        return len(self.heap)

    def next_time(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def run(self, until: float, stop: Callable[[], bool]) -> None:
        """Run events up to and including time ``until`` or until ``stop()`` holds (checked after each
        event). The clock then stands at the last event's time (or ``until`` when it ran dry)."""
        heap = self.heap
        pop = heapq.heappop
        ran = 0
        stopped = False
        while heap and heap[0][0] <= until:
            when, _, callback, args = pop(heap)
            self.now = when
            callback(*args)
            ran += 1
            if stop():
                stopped = True
                break
        if not stopped:
            self.now = max(self.now, until)
        self.events_run += ran
