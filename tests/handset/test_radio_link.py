"""The seeded fault model: rates within tolerance, burstiness, duplicates, reordering, determinism."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from handset.radio_link import Delivery, Direction, DirectionFaults, OfflineModel, RadioConfig, RadioLink
from handset.smsc_router import build_sms_deliver
from ota_protocols.errors import ConfigError
from ota_protocols.smpp.pdu_codec import SubmitSm
from ota_protocols.sms.tpdu import SmsDeliver

N = 20_000
TPDU = build_sms_deliver(
    SubmitSm(
        source_addr="12345",
        source_addr_ton=1,
        source_addr_npi=1,
        destination_addr="491700000001",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=bytes.fromhex("027000") + bytes(40),
    ),
    scts=datetime(2024, 1, 1, tzinfo=UTC),
)


def link(**mt: object) -> RadioLink:
    return RadioLink(RadioConfig(mt=DirectionFaults(**mt)))  # type: ignore[arg-type]


def run(radio: RadioLink, seed: int = 7, n: int = N) -> list[list[Delivery]]:
    rng = random.Random(seed)
    return [radio.transmit(Direction.MT, "p", TPDU, float(i), rng) for i in range(n)]


def test_default_config_is_perfect_and_draws_nothing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    radio = RadioLink(RadioConfig())
    assert radio.transmit(Direction.MO, "p", b"x", 5.0, rng) == [Delivery(5.0, b"x")]
    assert not radio.is_offline("p", 5.0, rng) and not radio.inject_busy(rng)
    assert rng.getstate() == state


def test_loss_rate_within_tolerance() -> None:
    out = run(link(loss_probability=0.1))
    lost = sum(1 for d in out if not d)
    # binomial sd = sqrt(N p q) ~ 42; allow 5 sd
    assert abs(lost - 0.1 * N) < 5 * (N * 0.1 * 0.9) ** 0.5


def test_mo_direction_is_independent() -> None:
    radio = RadioLink(RadioConfig(mo=DirectionFaults(loss_probability=1.0)))
    rng = random.Random(1)
    assert radio.transmit(Direction.MT, "p", b"x", 0.0, rng) == [Delivery(0.0, b"x")]
    assert radio.transmit(Direction.MO, "p", b"x", 0.0, rng) == []


def _runs(lost: list[bool]) -> list[int]:
    runs, current = [], 0
    for x in lost:
        if x:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_gilbert_elliott_losses_come_in_bursts() -> None:
    # Stationary P(bad) = 0.02 / (0.02 + 0.2) ~ 0.091; mean burst length 1 / 0.2 = 5.
    out = run(link(p_good_to_bad=0.02, p_bad_to_good=0.2, loss_in_good=0.0, loss_in_bad=1.0))
    lost = [not d for d in out]
    rate = sum(lost) / N
    assert 0.07 < rate < 0.11
    runs = _runs(lost)
    assert 4.0 < sum(runs) / len(runs) < 6.0
    # Independent loss at the same rate has mean run length ~ 1 / (1 - p) ~ 1.1.
    independent = _runs([not d for d in run(link(loss_probability=rate))])
    assert sum(independent) / len(independent) < 1.3


def test_duplicates_within_tolerance() -> None:
    out = run(link(duplicate_probability=0.05))
    dups = sum(1 for d in out if len(d) == 2)
    assert abs(dups - 0.05 * N) < 5 * (N * 0.05 * 0.95) ** 0.5
    assert all(d[0].payload == d[1].payload for d in out if len(d) == 2)


def test_reordering_lets_later_messages_overtake() -> None:
    out = run(link(reorder_probability=0.1, reorder_extra_s=5.0), n=2000)
    arrivals = [d[0].at for d in out]
    overtaken = sum(1 for i in range(len(arrivals) - 1) if arrivals[i] > arrivals[i + 1])
    assert 100 < overtaken < 300
    assert all(d[0].at >= i for i, d in enumerate(out))


def test_delay_distributions() -> None:
    out = run(link(delay_s=1.0, jitter="exponential", jitter_s=0.5), n=5000)
    delays = [d[0].at - i for i, d in enumerate(out)]
    assert min(delays) >= 1.0 and 1.45 < sum(delays) / len(delays) < 1.55
    out = run(link(jitter="uniform", jitter_s=2.0), n=5000)
    delays = [d[0].at - i for i, d in enumerate(out)]
    assert min(delays) >= 0 and max(delays) <= 2.0 and 0.95 < sum(delays) / len(delays) < 1.05
    out = run(link(late_probability=0.01, late_min_s=3600, late_max_s=7200))
    late = sum(1 for i, d in enumerate(out) if d[0].at - i >= 3600)
    assert 120 < late < 280


def test_corruption_flips_one_bit_after_the_udh() -> None:
    out = run(link(corrupt_probability=1.0), n=500)
    original = SmsDeliver.decode(TPDU)
    for [delivery] in out:
        corrupted = SmsDeliver.decode(delivery.payload)
        assert corrupted.tp_ud[:3] == original.tp_ud[:3]  # UDH intact
        diff = [a ^ b for a, b in zip(corrupted.tp_ud, original.tp_ud, strict=True)]
        assert sum(bin(x).count("1") for x in diff) == 1


def test_same_seed_same_decisions() -> None:
    faults = dict(
        loss_probability=0.1,
        p_good_to_bad=0.05,
        p_bad_to_good=0.3,
        duplicate_probability=0.1,
        reorder_probability=0.1,
        jitter="exponential",
        jitter_s=1.0,
        corrupt_probability=0.05,
    )
    assert run(link(**faults), seed=42, n=3000) == run(link(**faults), seed=42, n=3000)
    assert run(link(**faults), seed=42, n=3000) != run(link(**faults), seed=43, n=3000)


def test_offline_fraction_and_determinism() -> None:
    radio = RadioLink(RadioConfig(offline=OfflineModel(offline_probability=0.2, mean_offline_s=30.0)))
    rng = random.Random(3)
    samples = [radio.is_offline("p", t * 1.0, rng) for t in range(200_000)]
    assert 0.17 < sum(samples) / len(samples) < 0.23
    again = RadioLink(RadioConfig(offline=OfflineModel(offline_probability=0.2, mean_offline_s=30.0)))
    rng = random.Random(3)
    assert [again.is_offline("p", t * 1.0, rng) for t in range(200_000)] == samples


def test_busy_injection_rate() -> None:
    radio = RadioLink(RadioConfig(sim_busy_probability=0.25))
    rng = random.Random(9)
    hits = sum(radio.inject_busy(rng) for _ in range(N))
    assert abs(hits - 0.25 * N) < 5 * (N * 0.25 * 0.75) ** 0.5


@pytest.mark.parametrize(
    "bad",
    [
        dict(loss_probability=1.5),
        dict(jitter="gauss"),
        dict(delay_s=-1.0),
        dict(late_min_s=10.0, late_max_s=5.0),
    ],
)
def test_invalid_settings_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DirectionFaults(**bad)  # type: ignore[arg-type]
