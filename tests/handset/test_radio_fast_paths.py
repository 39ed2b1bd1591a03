"""RadioLink.transmit's fixed-delay shortcut (no jitter, late or reorder: nothing to draw) gives
the same deliveries and leaves the generator in the same state as drawing through _delay; the
burst-model case keeps going through _lost, the others take _lost's own first draw."""

from __future__ import annotations

import random

import pytest

from handset.radio_link import Direction, DirectionFaults, RadioConfig, RadioLink


def _general(radio: RadioLink) -> RadioLink:
    """The same link with the shortcuts off: every delay drawn through _delay."""
    radio._fixed_delay = dict.fromkeys(radio._fixed_delay)  # type: ignore[assignment]
    return radio


@pytest.mark.parametrize(
    "faults",
    [
        DirectionFaults(loss_probability=0.3, duplicate_probability=0.2, delay_s=2.0),
        DirectionFaults(loss_probability=0.3, corrupt_probability=0.1, delay_s=0.5),
        DirectionFaults(loss_probability=0.2, p_good_to_bad=0.1, p_bad_to_good=0.5, loss_in_bad=0.9),
        DirectionFaults(duplicate_probability=0.3, jitter_s=1.0, jitter="uniform", late_probability=0.1),
    ],
)
def test_shortcuts_draw_and_deliver_as_the_general_model(faults: DirectionFaults) -> None:
    fast, slow = RadioLink(RadioConfig(mt=faults)), _general(RadioLink(RadioConfig(mt=faults)))
    rng_fast, rng_slow = random.Random(7), random.Random(7)
    for i in range(2000):
        payload = bytes((0x44, i & 0xFF, 0x7F, 0xF6, 3, 1, 2, 3))
        got = fast.transmit(Direction.MT, "4912345", payload, float(i), rng_fast)
        want = slow.transmit(Direction.MT, "4912345", payload, float(i), rng_slow)
        assert got == want
    assert rng_fast.getstate() == rng_slow.getstate()
    assert (fast.lost, fast.duplicated, fast.corrupted) == (slow.lost, slow.duplicated, slow.corrupted)
