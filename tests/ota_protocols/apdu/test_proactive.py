"""Proactive commands and TERMINAL RESPONSE (TS 102 223 §6.6, §6.8)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.proactive import (
    CommandDetails,
    CommandType,
    DeviceIdentities,
    GeneralResult,
    ProactiveCommand,
    SendShortMessage,
    TerminalResponse,
    decode_proactive,
    fetch_apdu,
    get_response_apdu,
    terminal_profile_apdu,
)
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.tlv import ComprehensionTlv
from tests.ota_protocols.apdu.strategies import comprehension_tlvs, mutated, nested_headers, octets

FAST = settings(max_examples=150, deadline=None)


def test_unknown_command_type_still_parses() -> None:
    # DISPLAY TEXT (21) with a text string and an icon: not modelled, still decoded.
    raw = bytes.fromhex("D0 12 81 03 05 21 80 82 02 81 02 8D 03 04 48 69 9E 02 00 01")
    command = decode_proactive(raw)
    assert command.command_details == CommandDetails(5, CommandType.DISPLAY_TEXT, 0x80)
    assert command.device_identities == DeviceIdentities(0x81, 0x02)
    assert [tlv.tag for tlv in command.tlvs] == [0x0D, 0x1E]
    assert command.find(0x8D) == ComprehensionTlv(0x0D, b"\x04Hi", True)
    assert command.encode() == raw


def test_send_short_message_without_cr_bits_decodes() -> None:
    raw = bytes.fromhex("D0 0D 01 03 01 13 00 02 02 81 83 0B 02 01 00")
    assert SendShortMessage.decode(raw) == SendShortMessage(b"\x01\x00")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("D0 09 81 03 01 21 00 82 02 81 83", "expected 13"),
        ("D0 0D 81 03 01 13 00 82 02 81 02 8B 02 01 00", "expected 81 -> 83"),
        ("D0 09 81 03 01 13 00 82 02 81 83", "8B"),
        ("D0 08 81 02 01 13 82 02 81 83", "expected 3"),
        ("D0 04 82 02 81 83", "command_details"),
        ("D0 05 81 03 01 13 00", "device_identities"),
        ("D0 0F 81 03 01 13 00 82 02 81 83 8B 01 00 0B 01 00", "twice"),
        ("D1 05 81 03 01 13 00", "expected D0"),
    ],
)
def test_malformed_send_short_message_is_refused(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        SendShortMessage.decode(bytes.fromhex(raw))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("81 03 01 13 00 82 02 81 82 83 01 00", "expected 82 -> 81"),
        ("81 03 01 13 00 82 02 82 81 83 00", "empty result"),
        ("81 03 01 13 00 82 02 82 81", "result"),
    ],
)
def test_malformed_terminal_response_is_refused(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        TerminalResponse.decode(bytes.fromhex(raw))


def test_terminal_response_result_becomes_the_enum_when_known() -> None:
    decoded = TerminalResponse.decode(bytes.fromhex("81 03 01 13 00 82 02 82 81 83 01 32"))
    assert decoded.general_result is GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD
    unknown = TerminalResponse.decode(bytes.fromhex("81 03 01 13 00 82 02 82 81 83 01 7A"))
    assert unknown.general_result == 0x7A


def test_terminal_response_from_apdu_checks_ins() -> None:
    with pytest.raises(DecodeError, match="14"):
        TerminalResponse.from_apdu(CommandApdu(0x80, 0x12, 0, 0, b"\x81\x03\x01\x13\x00"))


@pytest.mark.parametrize("length", [0, 257])
def test_housekeeping_lengths_are_checked(length: int) -> None:
    with pytest.raises(EncodeError):
        fetch_apdu(length)
    with pytest.raises(EncodeError):
        get_response_apdu(length)


def test_fetch_of_256_octets_writes_p3_00() -> None:
    assert fetch_apdu(256).encode_t0() == bytes.fromhex("80 12 00 00 00")
    with pytest.raises(EncodeError):
        terminal_profile_apdu(b"")


def test_oversized_values_are_refused() -> None:
    with pytest.raises(EncodeError):
        SendShortMessage(bytes(256))
    with pytest.raises(EncodeError):
        CommandDetails(256, 0x13, 0)
    with pytest.raises(EncodeError):
        TerminalResponse(CommandDetails(1, 0x13, 0), 0, bytes(255))


other_tlvs = st.lists(comprehension_tlvs(6).filter(lambda t: t.tag not in (1, 2, 5, 6, 0x0B)), max_size=2)

send_short_messages = st.builds(
    SendShortMessage,
    st.binary(min_size=0, max_size=160),
    st.none() | st.binary(min_size=1, max_size=12),
    st.none() | st.binary(max_size=20),
    octets,
    octets,
    other_tlvs.map(tuple),
)

proactive_commands = st.builds(
    ProactiveCommand,
    st.builds(CommandDetails, octets, octets, octets),
    st.builds(DeviceIdentities, octets, octets),
    st.lists(comprehension_tlvs(30).filter(lambda t: t.tag not in (1, 2)), max_size=4).map(tuple),
)

terminal_responses = st.builds(
    TerminalResponse,
    st.builds(CommandDetails, octets, octets, octets),
    octets,
    st.binary(max_size=20),
    st.lists(comprehension_tlvs(6).filter(lambda t: t.tag not in (1, 2, 3)), max_size=2).map(tuple),
)


@FAST
@given(send_short_messages)
def test_send_short_message_round_trip(message: SendShortMessage) -> None:
    assert SendShortMessage.decode(message.encode()) == message


@FAST
@given(proactive_commands)
def test_proactive_round_trip(command: ProactiveCommand) -> None:
    assert decode_proactive(command.encode()) == command


@FAST
@given(terminal_responses, st.sampled_from([0x80, 0xA0]))
def test_terminal_response_round_trip(response: TerminalResponse, cla: int) -> None:
    apdu = response.to_apdu(cla)
    assert TerminalResponse.from_apdu(CommandApdu.decode(apdu.encode())) == response


@FAST
@given(
    st.binary(max_size=300)
    | nested_headers
    | mutated(send_short_messages.map(lambda m: m.encode()))
    | mutated(terminal_responses.map(lambda r: r.encode()))
)
def test_decoders_are_total(data: bytes) -> None:
    for decode in (decode_proactive, SendShortMessage.decode, TerminalResponse.decode):
        with contextlib.suppress(DecodeError):
            decode(data)
