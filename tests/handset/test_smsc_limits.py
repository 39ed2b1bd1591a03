"""smsc_limits: the pure decisions behind the SMSC's limits, stepped with an explicit ``now``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handset.config import SmscConfig
from handset.smsc_limits import Admission, BindThrottle, ConnectionLimits, WarningGate, admit, traffic_line
from ota_protocols.errors import ConfigError

LIMITS = ConnectionLimits(max_connections=10, max_connections_per_peer=3)


@pytest.mark.parametrize(
    ("total", "from_peer", "unbound", "verdict"),
    [
        (0, 0, 0, Admission.ADMIT),
        (9, 2, 0, Admission.ADMIT),
        (5, 3, 5, Admission.REFUSE_PEER_FULL),  # the peer's cap comes first, whatever else is free
        (10, 0, 4, Admission.EVICT_OLDEST_UNBOUND),
        (10, 2, 1, Admission.EVICT_OLDEST_UNBOUND),
        (10, 0, 0, Admission.REFUSE_FULL),
    ],
)
def test_admission_table(total: int, from_peer: int, unbound: int, verdict: Admission) -> None:
    assert admit(LIMITS, total=total, from_peer=from_peer, unbound=unbound) is verdict


@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
def test_admission_never_exceeds_the_total(total: int, from_peer: int, unbound: int) -> None:
    verdict = admit(LIMITS, total=min(total, 10), from_peer=from_peer, unbound=min(unbound, total))
    after = min(total, 10) + (verdict is Admission.ADMIT)
    assert after <= 10


def throttle(**kw: float) -> BindThrottle:
    args = {"free_failures": 3, "delay_min_s": 1.0, "delay_max_s": 8.0, "forget_after_s": 100.0} | kw
    return BindThrottle(**args)  # type: ignore[arg-type]


def test_free_failures_then_a_lock_out_that_doubles_up_to_the_maximum() -> None:
    t = throttle()
    now = 0.0
    assert [t.failed("10.0.0.1", now) for _ in range(3)] == [None, None, None]
    locks = []
    for _ in range(6):
        until = t.failed("10.0.0.1", now)
        assert until is not None
        locks.append(until - now)
        assert t.locked_until("10.0.0.1", now) == until
        now = until  # the next attempt is checked only once the lock-out is over
        assert t.locked_until("10.0.0.1", now) is None
    assert locks == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_password_checks_per_second_stay_below_one_after_ten_failures() -> None:
    # The benchmark's claim in pure form: a peer retrying as soon as it may.
    t = BindThrottle(free_failures=5, delay_min_s=1.0, delay_max_s=60.0, forget_after_s=600.0)
    now, checked_at = 0.0, []
    for _ in range(30):
        locked = t.locked_until("p", now)
        if locked is not None:
            now = locked
        checked_at.append(now)
        t.failed("p", now)
    after_ten = checked_at[10:]
    assert (len(after_ten) - 1) / (after_ten[-1] - after_ten[0]) <= 1.0


def test_success_clears_and_other_peers_are_unaffected() -> None:
    t = throttle(free_failures=0)
    assert t.failed("a", 0.0) == 1.0
    assert t.locked_until("b", 0.0) is None
    t.succeeded("a")
    assert t.locked_until("a", 0.0) is None and t.failures("a", 0.0) == 0


def test_failures_are_forgotten_after_a_quiet_while() -> None:
    t = throttle(free_failures=1)
    t.failed("a", 0.0)
    assert t.failed("a", 10.0) == 11.0
    assert t.failures("a", 109.9) == 2
    assert t.failures("a", 110.0) == 0 and len(t) == 0


def test_the_peer_table_is_bounded_and_drops_the_stalest() -> None:
    t = throttle(max_peers=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(t) == 100
    assert t.failures("10.0.3.231", 999.0) == 1  # the newest (i = 999) kept
    assert t.failures("10.0.0.0", 999.0) == 0  # the first dropped


def test_warning_gate_shows_a_burst_then_counts_what_it_held_back() -> None:
    gate = WarningGate(10.0, burst=3)
    shown = [gate.allow("bind", float(i) / 100) for i in range(50)]
    assert shown[:3] == [0, 0, 0] and set(shown[3:]) == {None}
    assert gate.allow("accept", 0.5) == 0  # kinds are separate
    assert gate.allow("bind", 10.0) == 47  # the next interval's first line reports the 47


def test_traffic_line() -> None:
    before = {"submits": 10, "submits_rejected": 1, "pors": 3}
    after = {"submits": 310, "submits_rejected": 11, "pors": 290, "mt_delivered": 280, "deliver_sm_sent": 291}
    line = traffic_line(before, after, 30.0, queued=7, bound=1, connections=2)
    assert line == (
        "traffic: 9.7 SMS/s (290 submit_sm accepted, 10 refused in 30 s); MT queued 7, delivered 280, "
        "PoRs 287, deliver_sm 291; 1 bound, 2 connection(s)"
    )
    assert traffic_line(after, after, 30.0, queued=0, bound=1, connections=1) is None  # idle: no line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_connections_per_peer", 0),
        ("session_init_timeout_s", -1.0),
        ("max_pdu_octets_before_bind", 97),
        ("max_pdu_octets_before_bind", 70_000),
        ("bind_throttle_max_s", 0.5),
        ("submit_times_per_bind", 0),
    ],
)
def test_limit_keys_are_checked(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        SmscConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.key_path == field
