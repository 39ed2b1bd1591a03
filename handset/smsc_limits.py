"""What the SMSC allows a peer that has not (yet) proved who it is: pure decisions (house-style §2.3).

Concept: every listener bounds what an unauthenticated peer can hold.  The asyncio shell
(:mod:`handset.smsc_server`) asks these objects and does what they say; nothing here touches a
socket or a clock (``now`` comes in as an argument).

* :func:`admit`: a new TCP connection against ``max_connections`` (total) and
  ``max_connections_per_peer`` (per remote IP address).  A peer address at its cap is refused.
  When the total is reached, the oldest *unbound* connection is pushed out to make room, so
  connections that never bind cannot lock a legitimate ESME out (the newcomer is refused only
  when every connection is bound).  SMPP has no PDU to refuse a connection: it is closed.
* :class:`BindThrottle`: failed binds per peer address.  The first ``free_failures`` cost
  nothing; each one after locks the address out for a delay that doubles from ``delay_min_s``
  up to ``delay_max_s``.  A bind arriving during the lock-out is answered ESME_RBINDFAIL
  (SMPP 3.4 §5.1.3, "Bind Failed") without its password being looked at, so a peer gets at
  most one password checked per delay however fast it sends.  A successful bind, or
  ``forget_after_s`` without a failure, clears the address.  The table is bounded.
* :class:`WarningGate`: at most ``burst`` lines per kind of warning per interval, then one
  line counting what was held back, so a hostile peer (or fd exhaustion) cannot flood the log.
* :func:`traffic_line`: the periodic INFO line of ``handset serve`` from two counter snapshots.

Glossary: ESME external short message entity; SMSC short message service centre; MT/MO mobile
terminated/originated; PoR proof of receipt; fd file descriptor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = ["Admission", "BindThrottle", "ConnectionLimits", "WarningGate", "admit", "traffic_line"]


class Admission(Enum):
    ADMIT = "admit"
    EVICT_OLDEST_UNBOUND = "evict the oldest unbound connection, then admit"
    REFUSE_PEER_FULL = "refuse: this peer address is at max_connections_per_peer"
    REFUSE_FULL = "refuse: max_connections reached and every connection is bound"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    max_connections_per_peer: int


def admit(limits: ConnectionLimits, *, total: int, from_peer: int, unbound: int) -> Admission:
    """The verdict for one more connection, given the open ones: ``total``, ``from_peer`` (same
    remote address as the newcomer) and ``unbound`` (not bound yet, across all peers)."""
    if from_peer >= limits.max_connections_per_peer:
        return Admission.REFUSE_PEER_FULL
    if total < limits.max_connections:
        return Admission.ADMIT
    if unbound > 0:
        return Admission.EVICT_OLDEST_UNBOUND
    return Admission.REFUSE_FULL


class _Failures:
    __slots__ = ("count", "last_at", "locked_until")

    def __init__(self) -> None:
        self.count = 0
        self.last_at = 0.0
        self.locked_until = 0.0


class BindThrottle:
    """Failed binds per peer address, and the lock-out they earn.  See the module docstring."""

    __slots__ = ("_peers", "delay_max_s", "delay_min_s", "forget_after_s", "free_failures", "max_peers")

    def __init__(
        self,
        *,
        free_failures: int,
        delay_min_s: float,
        delay_max_s: float,
        forget_after_s: float,
        max_peers: int = 10_000,
    ) -> None:
        self.free_failures = free_failures
        self.delay_min_s = delay_min_s
        self.delay_max_s = delay_max_s
        self.forget_after_s = forget_after_s
        self.max_peers = max_peers
        # Ordered by the last failure (an updated entry is moved to the end): the first is the stalest.
        self._peers: dict[str, _Failures] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def _current(self, peer: str, now: float) -> _Failures | None:
        entry = self._peers.get(peer)
        if entry is not None and now - entry.last_at >= self.forget_after_s:
            del self._peers[peer]
            return None
        return entry

    def locked_until(self, peer: str, now: float) -> float | None:
        """When ``peer`` may have a password checked again; ``None`` when it may now."""
        entry = self._current(peer, now)
        if entry is None or entry.locked_until <= now:
            return None
        return entry.locked_until

    def failures(self, peer: str, now: float) -> int:
        entry = self._current(peer, now)
        return 0 if entry is None else entry.count

    def failed(self, peer: str, now: float) -> float | None:
        """Record a failed bind; returns the end of the lock-out it earns, ``None`` while free."""
        entry = self._current(peer, now)
        if entry is None:
            entry = _Failures()
        else:
            del self._peers[peer]  # re-inserted below: the dict stays ordered by last failure
        self._peers[peer] = entry
        entry.count += 1
        entry.last_at = now
        while len(self._peers) > self.max_peers:
            del self._peers[next(iter(self._peers))]
        beyond = entry.count - self.free_failures
        if beyond <= 0:
            return None
        delay = min(self.delay_max_s, self.delay_min_s * 2.0 ** min(beyond - 1, 64))
        entry.locked_until = now + delay
        return entry.locked_until

    def succeeded(self, peer: str) -> None:
        self._peers.pop(peer, None)


class _Window:
    __slots__ = ("held", "shown", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.shown = 1
        self.held = 0


class WarningGate:
    """At most ``burst`` lines per ``key`` per ``interval_s``; see :meth:`allow`."""

    __slots__ = ("_windows", "burst", "interval_s")

    def __init__(self, interval_s: float, *, burst: int = 5) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self._windows: dict[str, _Window] = {}

    def allow(self, key: str, now: float) -> int | None:
        """``None``: hold this line back.  Else log it, mentioning the returned number of lines
        held back in the previous interval when it is not zero.  Keys are a few fixed kinds."""
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval_s:
            held = 0 if window is None else window.held
            self._windows[key] = _Window(now)
            return held
        if window.shown < self.burst:
            window.shown += 1
            return 0
        window.held += 1
        return None


def traffic_line(
    before: Mapping[str, int],
    after: Mapping[str, int],
    elapsed_s: float,
    *,
    queued: int,
    bound: int,
    connections: int,
) -> str | None:
    """One line of traffic since ``before``; ``None`` when nothing moved and nothing waits."""

    def delta(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    accepted = delta("submits") - delta("submits_rejected")
    moved = any(delta(k) for k in ("submits", "mt_delivered", "pors", "deliver_sm_sent", "binds"))
    if not moved and not queued:
        return None
    rate = accepted / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"traffic: {rate:.1f} SMS/s ({accepted} submit_sm accepted, {delta('submits_rejected')} refused "
        f"in {elapsed_s:.0f} s); MT queued {queued}, delivered {delta('mt_delivered')}, "
        f"PoRs {delta('pors')}, deliver_sm {delta('deliver_sm_sent')}; "
        f"{bound} bound, {connections} connection(s)"
    )
