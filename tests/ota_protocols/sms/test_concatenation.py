from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.errors import DecodeError, EncodeError, LocalProtocolViolation
from ota_protocols.sms.concatenation import Reassembler, SegmentsExpired, split_user_data
from ota_protocols.sms.user_data_header import (
    CPI,
    RPI,
    InformationElement,
    UserDataHeader,
    concat_8bit,
    parse_concatenation,
    split_udh,
)
from tests.ota_protocols.sms.strategies import SETTINGS, section

SMSC = "12345678"


def _payload(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def _expected_whole(payload: bytes, first_ies: tuple[InformationElement, ...]) -> bytes:
    return UserDataHeader(first_ies).encode() + payload


# --- vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", section("spec_concatenation")["cases"], ids=lambda c: c["id"])
def test_spec_concatenation_layout(case: dict[str, Any]) -> None:
    payload = _payload(case["payload_length"])
    first_ies = tuple(InformationElement(iei, bytes.fromhex(data)) for iei, data in case["first_ies"])
    segments = split_user_data(payload, first_ies=first_ies, reference=case["reference"], ref16=case["ref16"])
    headers = case["segment_headers"]
    lengths = case["segment_payload_lengths"]
    assert len(segments) == len(headers)
    offset = 0
    for segment, header_hex, length in zip(segments, headers, lengths, strict=True):
        header = bytes.fromhex(header_hex)
        assert segment[: len(header)] == header
        assert segment[len(header) :] == payload[offset : offset + length]
        assert len(segment) <= 140
        offset += length
    assert offset == len(payload)


# --- splitting -------------------------------------------------------------------------------


def test_single_segment_without_ies_has_no_udh() -> None:
    assert split_user_data(b"abc", first_ies=(), reference=0) == [b"abc"]


def test_capacity_matches_protocols_doc() -> None:
    # protocols.md §14.1: first segment 132 packet octets, later 134 (131 / 133 with 16-bit ref).
    for ref16, first, later in ((False, 132, 134), (True, 131, 133)):
        segments = split_user_data(_payload(1000), first_ies=(CPI,), reference=7, ref16=ref16)
        parts = [split_udh(s)[1] for s in segments]
        assert len(parts[0]) == first
        assert all(len(p) == later for p in parts[1:-1])


def test_at_most_255_segments() -> None:
    fits = 132 + 254 * 134
    assert len(split_user_data(_payload(fits), first_ies=(CPI,), reference=1)) == 255
    with pytest.raises(EncodeError, match="255"):
        split_user_data(_payload(fits + 1), first_ies=(CPI,), reference=1)


@pytest.mark.parametrize(
    ("first_ies", "reference", "ref16", "max_ud"),
    [
        ((concat_8bit(1, 2, 1),), 1, False, 140),
        ((CPI,), 256, False, 140),
        ((CPI,), 65536, True, 140),
        ((CPI,), -1, False, 140),
        ((CPI,), 1, False, 8),
    ],
)
def test_split_rejects_what_does_not_fit(
    first_ies: tuple[InformationElement, ...], reference: int, ref16: bool, max_ud: int
) -> None:
    with pytest.raises(EncodeError):
        split_user_data(_payload(300), first_ies=first_ies, reference=reference, ref16=ref16, max_ud=max_ud)


# --- reassembly: examples ---------------------------------------------------------------------


def test_reassembly_in_order_returns_single_sms_form() -> None:
    payload = _payload(300)
    segments = split_user_data(payload, first_ies=(CPI,), reference=9)
    r = Reassembler(timeout_s=30)
    assert r.add(SMSC, segments[0], 0.0) is None
    assert r.add(SMSC, segments[1], 1.0) is None
    assert r.add(SMSC, segments[2], 2.0) == bytes.fromhex("027000") + payload
    assert r.pending_count == 0
    assert r.next_deadline() is None


def test_unconcatenated_ud_is_returned_at_once() -> None:
    r = Reassembler(timeout_s=30)
    ud = bytes.fromhex("027000") + b"packet"
    assert r.add(SMSC, ud, 0.0) == ud
    assert r.add(SMSC, b"\x05no udh", 0.0, udhi=False) == b"\x05no udh"
    assert r.next_deadline() is None


def test_single_part_concatenation_completes_immediately() -> None:
    r = Reassembler(timeout_s=30)
    ud = UserDataHeader((concat_8bit(3, 1, 1), RPI)).encode() + b"por"
    assert r.add(SMSC, ud, 0.0) == bytes.fromhex("027100") + b"por"


def test_concatenation_without_other_ies_keeps_an_empty_udh() -> None:
    payload = _payload(200)
    segments = split_user_data(payload, first_ies=(), reference=1)
    r = Reassembler(timeout_s=30)
    results = [r.add(SMSC, s, 0.0) for s in segments]
    assert results[-1] == b"\x00" + payload


def test_duplicate_before_completion_is_ignored() -> None:
    segments = split_user_data(_payload(300), first_ies=(CPI,), reference=9)
    r = Reassembler(timeout_s=30)
    assert r.add(SMSC, segments[1], 0.0) is None
    assert r.add(SMSC, segments[1], 0.5) is None
    assert r.add(SMSC, segments[0], 1.0) is None
    assert r.add(SMSC, segments[2], 2.0) == bytes.fromhex("027000") + _payload(300)


def test_sets_are_separated_by_originator_and_reference() -> None:
    a = split_user_data(b"A" * 200, first_ies=(CPI,), reference=1)
    b = split_user_data(b"B" * 200, first_ies=(CPI,), reference=1)
    c = split_user_data(b"C" * 200, first_ies=(CPI,), reference=2)
    r = Reassembler(timeout_s=30)
    assert r.add("111", a[0], 0.0) is None
    assert r.add("222", b[0], 0.0) is None
    assert r.add("111", c[1], 0.0) is None
    assert r.add("222", b[1], 0.0) == b"\x02\x70\x00" + b"B" * 200
    assert r.add("111", a[1], 0.0) == b"\x02\x70\x00" + b"A" * 200
    assert r.add("111", c[0], 0.0) == b"\x02\x70\x00" + b"C" * 200


def test_conflicting_total_raises_and_keeps_the_recorded_set() -> None:
    r = Reassembler(timeout_s=30)
    assert r.add(SMSC, UserDataHeader((concat_8bit(5, 3, 1),)).encode() + b"x", 0.0) is None
    with pytest.raises(DecodeError, match="total"):
        r.add(SMSC, UserDataHeader((concat_8bit(5, 2, 2),)).encode() + b"y", 1.0)
    assert r.pending_count == 1


@pytest.mark.parametrize(
    "udh_hex", ["050003050300", "050003050304", "050003050000", "0400020503", "05000305"]
)
def test_bad_concatenation_raises_decode_error(udh_hex: str) -> None:
    with pytest.raises(DecodeError):
        Reassembler(timeout_s=30).add(SMSC, bytes.fromhex(udh_hex), 0.0)


def test_missing_segment_expires_at_deadline_and_is_reported() -> None:
    segments = split_user_data(_payload(400), first_ies=(CPI,), reference=77)
    assert len(segments) == 3
    r = Reassembler(timeout_s=30)
    assert r.add(SMSC, segments[0], 10.0) is None
    assert r.add(SMSC, segments[2], 15.0) is None
    assert r.next_deadline() == 45.0
    assert r.expire(44.9) == []
    assert r.expire(45.0) == [SegmentsExpired(SMSC, 77, 3, (1, 3))]
    assert r.next_deadline() is None
    assert r.expire(100.0) == []


def test_oldest_set_is_evicted_beyond_max_pending() -> None:
    r = Reassembler(timeout_s=30, max_pending=2)
    for ref, now in ((1, 0.0), (2, 1.0), (3, 2.0)):
        assert r.add(SMSC, UserDataHeader((concat_8bit(ref, 2, 1),)).encode(), now) is None
    assert r.pending_count == 2
    assert r.next_deadline() == 2.0
    assert r.expire(2.0) == [SegmentsExpired(SMSC, 1, 2, (1,), evicted=True)]
    assert r.next_deadline() == 31.0


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(LocalProtocolViolation):
        Reassembler(timeout_s=0)
    with pytest.raises(LocalProtocolViolation):
        Reassembler(timeout_s=1, max_pending=0)


# --- reassembly: properties -------------------------------------------------------------------

first_ies_choices = st.sampled_from([(), (CPI,), (RPI,), (InformationElement(0x24, b"\x01\x02"), CPI)])


@st.composite
def segmented_feeds(
    draw: st.DrawFn,
) -> tuple[bytes, tuple[InformationElement, ...], list[bytes], list[bytes]]:
    """``(payload, first_ies, segments, feed)``: a payload cut by split_user_data (8- or 16-bit
    reference) and its segments fed in a random order, some repeated."""
    payload = draw(st.binary(max_size=700))
    first_ies = draw(first_ies_choices)
    reference, ref16 = draw(st.integers(0, 255)), draw(st.booleans())
    segments = split_user_data(payload, first_ies=first_ies, reference=reference, ref16=ref16)
    duplicates = draw(st.lists(st.integers(0, 10), max_size=6))
    feed = list(segments) + [segments[i % len(segments)] for i in duplicates]
    random.Random(draw(st.integers(0, 2**32 - 1))).shuffle(feed)
    return payload, first_ies, segments, feed


@settings(**SETTINGS)
@given(segmented_feeds())
def test_split_then_reassemble_is_identity_under_reordering_and_duplication(
    case: tuple[bytes, tuple[InformationElement, ...], list[bytes], list[bytes]],
) -> None:
    payload, first_ies, segments, feed = case
    assert all(len(s) <= 140 for s in segments)
    expected = segments[0] if len(segments) == 1 else _expected_whole(payload, first_ies)
    # split_user_data's contract: only a lone segment without first_ies goes out with TP-UDHI = 0.
    udhi = not (len(segments) == 1 and not first_ies)
    r = Reassembler(timeout_s=60)
    results = [out for i, s in enumerate(feed) if (out := r.add(SMSC, s, float(i), udhi=udhi)) is not None]
    assert results
    assert all(out == expected for out in results)


@settings(**SETTINGS)
@given(
    payload=st.binary(min_size=140, max_size=700),
    reference=st.integers(0, 255),
    data=st.data(),
)
def test_missing_segment_is_reported_at_its_deadline(
    payload: bytes, reference: int, data: st.DataObject
) -> None:
    segments = split_user_data(payload, first_ies=(CPI,), reference=reference)
    missing = data.draw(st.integers(0, len(segments) - 1))
    order = data.draw(st.permutations([i for i in range(len(segments)) if i != missing]))
    r = Reassembler(timeout_s=20)
    now = 0.0
    for i in order:
        now += 1.0
        assert r.add(SMSC, segments[i], now) is None
    assert r.next_deadline() == now + 20
    assert r.expire(now + 19.5) == []
    (event,) = r.expire(now + 20)
    assert event == SegmentsExpired(SMSC, reference, len(segments), tuple(sorted(i + 1 for i in order)))
    assert r.next_deadline() is None


@settings(**SETTINGS)
@given(
    segmented_feeds(),
    st.integers(0, 255),
    st.lists(st.binary(max_size=12), max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_add_parsed_matches_add(
    case: tuple[bytes, tuple[InformationElement, ...], list[bytes], list[bytes]],
    noise_reference: int,
    noise: list[bytes],
    seed: int,
) -> None:
    """The card's entry point (already split and read) gives add()'s octets, errors and state."""
    segments, feed = case[2], list(case[3])
    # Same originator and 8-bit reference as the set when it has one (UDHL 00 03 ref ...): a total clash.
    clash = segments[0][3] if len(segments) > 1 and segments[0][1] == 0 else noise_reference
    feed += [UserDataHeader((concat_8bit(clash, 2, 1),)).encode() + n for n in noise]
    feed += [b"\x05\x00\x03" + n for n in noise]  # malformed concatenation IEs
    random.Random(seed).shuffle(feed)
    general, parsed = Reassembler(timeout_s=60, max_pending=2), Reassembler(timeout_s=60, max_pending=2)
    for i, ud in enumerate(feed):
        try:
            expected: object = general.add(SMSC, ud, float(i))
        except DecodeError as exc:
            expected = ("error", str(exc))
        try:
            header, rest = split_udh(ud)
            info = parse_concatenation(header)
            if info is None:
                got: object = ud
            else:
                whole = parsed.add_parsed(SMSC, header, rest, info, float(i))
                got = None if whole is None else whole[0].encode() + whole[1]
        except DecodeError as exc:
            got = ("error", str(exc))
        assert got == expected
        assert parsed.pending_count == general.pending_count
    assert parsed.expire(1e9) == general.expire(1e9)


@settings(**SETTINGS)
@given(st.lists(st.binary(max_size=30), max_size=8), st.booleans())
def test_reassembler_add_is_total(uds: list[bytes], udhi: bool) -> None:
    r = Reassembler(timeout_s=5, max_pending=3)
    for i, ud in enumerate(uds):
        with contextlib.suppress(DecodeError):
            r.add(SMSC, ud, float(i), udhi=udhi)
    assert r.pending_count <= 3
    r.expire(1e9)
    assert r.next_deadline() is None


def test_each_segment_parses_back_to_its_position() -> None:
    segments = split_user_data(_payload(600), first_ies=(CPI,), reference=200)
    for seq, segment in enumerate(segments, start=1):
        header, _ = split_udh(segment)
        info = parse_concatenation(header)
        assert info is not None and (info.reference, info.total, info.seq) == (200, len(segments), seq)
        assert header.has(0x70) is (seq == 1)
