"""hex_text: one reading of hex text for every edge, with a reason that never repeats the text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.hex_text import hex_problem, parse_hex


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("00a", "odd number of hex digits (3): each octet takes two"),
        ("0g", "character 2 ('g') is not a hex digit"),
        ("00 11 zz", "character 7 ('z') is not a hex digit"),
        ("0\x00", "character 2 (U+0000) is not a hex digit"),
        ("*", "character 1 ('*') is not a hex digit"),  # a masked key of `cards export`
    ],
)
def test_the_reason_names_the_place_not_the_value(text: str, problem: str) -> None:
    assert hex_problem(text) == problem
    with pytest.raises(ValueError, match="^" + re.escape(problem) + "$"):
        parse_hex(text)


def test_spaces_between_digits_are_ignored() -> None:
    assert parse_hex("00 a1\tFF") == b"\x00\xa1\xff"
    assert parse_hex("0 1") == b"\x01"
    assert parse_hex("") == b""


@given(st.binary(max_size=64))
def test_round_trip(data: bytes) -> None:
    assert parse_hex(data.hex()) == data and parse_hex(data.hex().upper()) == data


@given(st.text(max_size=40))
def test_any_text_is_bytes_or_one_reason(text: str) -> None:
    try:
        parse_hex(text)
    except ValueError as exc:
        assert str(exc) == hex_problem(text)
    else:
        assert hex_problem(text) is None
