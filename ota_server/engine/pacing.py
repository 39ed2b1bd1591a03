"""PURE: when the next submit_sm may leave on one bind: window, rate, throttling, link state.

Clauses: SMPP 3.4 §2.7 (windowing: submits outstanding without a response), §5.1.3 command_status
ESME_RTHROTTLED (0x58) and ESME_RMSGQFUL (0x14): the SMSC asks the ESME to slow down; the message
was not taken and goes again, first in line, after a pause that doubles while the SMSC keeps
refusing (smpp-and-peers.md §3). ``[pacing] messages_per_second`` is per bind; every segment counts.

Glossary: bind one transceiver session of the ESME; window submits in flight on a bind.

The pacer holds the bind's queue of (token, pdu) the engine has committed and releases them in
order: never while the link is down, never beyond the window, never faster than the rate. It
decides nothing about jobs; the engine asks it :meth:`BindPacer.release` and :meth:`next_time`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["THROTTLE_STATUSES", "BindPacer"]

THROTTLE_STATUSES = frozenset({0x14, 0x58})  # ESME_RMSGQFUL, ESME_RTHROTTLED
_THROTTLE_PAUSE_S = 0.05
_MAX_THROTTLE_PAUSE_S = 2.0
_CATCH_UP_S = 0.05

_T = TypeVar("_T")
_P = TypeVar("_P")


class BindPacer(Generic[_T, _P]):
    __slots__ = (
        "_next_slot",
        "_pause_s",
        "_paused_until",
        "down_since",
        "in_flight",
        "rate",
        "up",
        "waiting",
        "window",
    )

    def __init__(self, *, window: int, rate: float) -> None:
        self.window = max(1, window)
        self.rate = rate  # 0: unlimited
        self.up = False
        self.down_since: float | None = 0.0
        self.in_flight = 0
        self.waiting: deque[tuple[_T, _P]] = deque()  # committed, not yet released, in order
        self._next_slot = 0.0
        self._pause_s = _THROTTLE_PAUSE_S
        self._paused_until = 0.0

    def __len__(self) -> int:
        return len(self.waiting)

    def queue(self, items: Iterable[tuple[_T, _P]]) -> None:
        self.waiting.extend(items)

    def requeue_first(self, items: Iterable[tuple[_T, _P]]) -> None:
        """Messages that did not leave (unsent at a link drop, throttled): first in line again."""
        self.waiting.extendleft(reversed(list(items)))

    def link_up(self) -> None:
        self.up = True
        self.down_since = None
        self.in_flight = 0

    def link_down(self, now: float) -> None:
        if self.up or self.down_since is None:
            self.down_since = now
        self.up = False
        self.in_flight = 0

    def answered(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def accepted(self) -> None:
        self._pause_s = _THROTTLE_PAUSE_S

    def throttled(self, now: float) -> None:
        self._paused_until = now + self._pause_s
        self._pause_s = min(self._pause_s * 2, _MAX_THROTTLE_PAUSE_S)

    def release(self, now: float) -> list[tuple[_T, _P]]:
        """What may leave now, in order (the caller drops those whose job no longer wants them)."""
        out: list[tuple[_T, _P]] = []
        if not self.up or now < self._paused_until:
            return out
        queue = self.waiting
        rate = self.rate
        while queue and self.in_flight < self.window:
            if rate > 0:
                if self._next_slot > now:
                    break
                # Slots are due at 1/rate intervals; a release that comes late (a timer fires after
                # its time) catches up the slots it missed, up to _CATCH_UP_S: the long-run rate is
                # the configured one, and an idle bind never earns a burst beyond that.
                self._next_slot = max(self._next_slot, now - _CATCH_UP_S) + 1.0 / rate
            out.append(queue.popleft())
            self.in_flight += 1
        return out

    def next_time(self, now: float) -> float | None:
        """When :meth:`release` may give something again (None: on an answer or a link event)."""
        if not self.waiting or not self.up or self.in_flight >= self.window:
            return None
        at = max(self._paused_until, self._next_slot if self.rate > 0 else 0.0)
        return at if at > now else None
