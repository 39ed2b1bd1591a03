"""The vpcd link (sim_emulator/vpcd_link.py): framing fed whole, byte by byte, with trailing data and
split anywhere; controls, power tracking, answers in order; frames vpcd never sends."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.errors import LocalProtocolViolation
from sim_emulator.vpcd_link import (
    CTRL_ATR,
    CTRL_OFF,
    CTRL_ON,
    CTRL_RESET,
    ApduReceived,
    AtrRequested,
    FrameIgnored,
    PowerOff,
    PowerOn,
    Reset,
    VpcdEvent,
    VpcdLink,
    frame,
)

SELECT_MF = bytes.fromhex("00a40004023f00")
# What pcscd's vpcd sends on SCardConnect and one APDU: power on, ATR request, the APDU.
SESSION = frame(bytes([CTRL_ON])) + frame(bytes([CTRL_ATR])) + frame(SELECT_MF)
SESSION_EVENTS: list[VpcdEvent] = [PowerOn(), AtrRequested(), ApduReceived(SELECT_MF)]


def feed(link: VpcdLink, chunks: list[bytes]) -> list[VpcdEvent]:
    events: list[VpcdEvent] = []
    for chunk in chunks:
        link.receive_data(chunk)
        events += link.events()
    return events


def test_frame_is_a_big_endian_16_bit_length_then_the_payload() -> None:
    assert frame(b"\x04") == b"\x00\x01\x04"
    assert frame(b"\x01" * 0x1234)[:2] == b"\x12\x34"
    with pytest.raises(LocalProtocolViolation, match="16-bit"):
        frame(b"\x00" * 0x10000)


def test_fed_whole() -> None:
    assert feed(VpcdLink(), [SESSION]) == SESSION_EVENTS


def test_fed_byte_by_byte() -> None:
    link = VpcdLink()
    assert feed(link, [SESSION[i : i + 1] for i in range(len(SESSION))]) == SESSION_EVENTS
    assert link.buffered == 0


def test_trailing_partial_frame_is_held_back() -> None:
    link = VpcdLink()
    tail = frame(SELECT_MF)[:4]
    assert feed(link, [SESSION + tail]) == SESSION_EVENTS
    assert link.buffered == 4
    assert feed(link, [frame(SELECT_MF)[4:]]) == [ApduReceived(SELECT_MF)]


@given(st.data())
def test_split_at_arbitrary_points(data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(SESSION)), max_size=8)))
    bounds = [0, *cuts, len(SESSION)]
    chunks = [SESSION[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed(VpcdLink(), chunks) == SESSION_EVENTS


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_arbitrary_bytes_only_ever_give_events(chunks: list[bytes]) -> None:
    """Totality: no input raises; every event is one of the six kinds."""
    events = feed(VpcdLink(), chunks)
    assert all(
        isinstance(e, PowerOff | PowerOn | Reset | AtrRequested | ApduReceived | FrameIgnored) for e in events
    )


def test_controls_track_power_and_the_atr_request_never_resets() -> None:
    link = VpcdLink()
    assert not link.powered
    controls = [CTRL_ATR, CTRL_ON, CTRL_ATR, CTRL_RESET, CTRL_OFF, CTRL_ATR]
    events = feed(link, [frame(bytes([c])) for c in controls])
    assert events == [AtrRequested(), PowerOn(), AtrRequested(), Reset(), PowerOff(), AtrRequested()]
    assert not link.powered


def test_an_apdu_to_a_card_that_is_off_meets_a_reset_card_first() -> None:
    """ISO/IEC 7816-3 §6.2: no exchange before activation."""
    link = VpcdLink()
    assert feed(link, [frame(bytes([CTRL_OFF])) + frame(SELECT_MF)]) == [
        PowerOff(),
        Reset(),
        ApduReceived(SELECT_MF),
    ]
    assert link.powered
    assert feed(link, [frame(SELECT_MF)]) == [ApduReceived(SELECT_MF)]


def test_two_and_three_octet_messages_are_apdus_for_the_card_to_refuse() -> None:
    events = feed(VpcdLink(), [frame(b"\x00\xa4") + frame(b"\x00\xa4\x00")])
    assert [e for e in events if isinstance(e, ApduReceived)] == [
        ApduReceived(b"\x00\xa4"),
        ApduReceived(b"\x00\xa4\x00"),
    ]


def test_frames_vpcd_never_sends_are_ignored_with_their_offset() -> None:
    events = feed(VpcdLink(), [frame(b"") + frame(b"\x03") + frame(bytes([CTRL_ATR]))])
    assert events == [
        FrameIgnored(0, "empty frame (vpcd sends none)"),
        FrameIgnored(2, "unknown control octet 0x03"),
        AtrRequested(),
    ]


def test_answers_are_framed_in_order_and_only_when_awaited() -> None:
    link = VpcdLink()
    feed(link, [SESSION])
    link.answer(bytes.fromhex("3b024f54"))
    link.answer(bytes.fromhex("610d"))
    assert link.data_to_send() == bytes.fromhex("0004" + "3b024f54" + "0002" + "610d")
    assert link.data_to_send() == b""
    with pytest.raises(LocalProtocolViolation, match="no ATR request or APDU"):
        link.answer(b"\x90\x00")
