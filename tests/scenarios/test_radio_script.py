"""``[[radio.script]]`` (handset/radio_link.py ScriptedFault): deterministic faults, before the model."""

from __future__ import annotations

import random

import pytest

from handset.radio_link import Delivery, Direction, RadioConfig, RadioLink, ScriptedFault
from ota_protocols.errors import ConfigError

SUBMIT_POR = bytes.fromhex("41000481214300f6050271000102")  # SMS-SUBMIT, TP-UD 02 71 00 01 02
REPORT = bytes.fromhex("0007007ff6020000")  # DELIVER-REPORT (TP-MTI 00)


def link(*entries: ScriptedFault) -> RadioLink:
    return RadioLink(RadioConfig(script=entries))


def test_drop_the_second_mo_of_each_phone_only() -> None:
    radio, rng = link(ScriptedFault(direction="mo", action="drop", nth=2)), random.Random(1)
    got = [radio.transmit(Direction.MO, phone, b"x", 0.0, rng) for phone in ("a", "a", "b", "a", "b")]
    assert got == [[Delivery(0.0, b"x")], [], [Delivery(0.0, b"x")], [Delivery(0.0, b"x")], []]
    assert radio.transmit(Direction.MT, "a", b"x", 0.0, rng) == [Delivery(0.0, b"x")]
    assert radio.lost[Direction.MO] == 2 and radio.scripted_hits == 2


def test_filters_tpdu_type_and_user_data_prefix_and_count_zero() -> None:
    entry = ScriptedFault(
        direction="mo", action="delay", delay_s=2.0, count=0, tpdu="sms-submit", ud_prefix=b"\x02\x71\x00"
    )
    radio, rng = link(entry), random.Random(1)
    assert radio.transmit(Direction.MO, "a", REPORT, 1.0, rng) == [Delivery(1.0, REPORT)]
    assert radio.transmit(Direction.MO, "a", SUBMIT_POR, 1.0, rng) == [Delivery(3.0, SUBMIT_POR)]
    assert radio.transmit(Direction.MO, "a", SUBMIT_POR, 5.0, rng) == [Delivery(7.0, SUBMIT_POR)]


def test_duplicate_and_corrupt() -> None:
    radio, rng = (
        link(
            ScriptedFault(direction="mt", action="duplicate", delay_s=0.5, msisdn="a"),
            ScriptedFault(direction="mt", action="corrupt", nth=2, msisdn="a"),
        ),
        random.Random(1),
    )
    assert radio.transmit(Direction.MT, "a", b"xy", 0.0, rng) == [Delivery(0.0, b"xy"), Delivery(0.5, b"xy")]
    (corrupted,) = radio.transmit(Direction.MT, "a", b"xy", 0.0, rng)
    assert corrupted.payload != b"xy" and len(corrupted.payload) == 2
    assert radio.transmit(Direction.MT, "b", b"xy", 0.0, rng) == [Delivery(0.0, b"xy")]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"direction": "up", "action": "drop"}, "direction"),
        ({"direction": "mt", "action": "explode"}, "action"),
        ({"direction": "mt", "action": "drop", "nth": 0}, "nth"),
        ({"direction": "mt", "action": "drop", "tpdu": "sms"}, "tpdu"),
        ({"direction": "mt", "action": "delay", "delay_s": -1.0}, "delay_s"),
    ],
)
def test_bad_entries_name_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScriptedFault(**kwargs)  # type: ignore[arg-type]
    assert info.value.key_path == key
