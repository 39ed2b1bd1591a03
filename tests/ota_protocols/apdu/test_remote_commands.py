"""Compact and expanded remote APDU formats (TS 102 226 §5)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu
from ota_protocols.apdu.remote_commands import (
    CompactResponse,
    ExpandedCommandScript,
    ExpandedResponse,
    decode_compact_commands,
    encode_compact_commands,
)
from ota_protocols.errors import DecodeError, EncodeError, TruncatedData
from ota_protocols.tlv import Tlv
from tests.ota_protocols.apdu.strategies import (
    ber_tlvs,
    compact_apdus,
    mutated,
    nested_headers,
    response_apdus,
    short_apdus,
)

FAST = settings(max_examples=150, deadline=None)
RAM_CASE2 = CASE2_INSTRUCTIONS - {0xF2}
SCRIPT_TAGS = {0x22, 0x81, 0x82, 0x83}
RESPONSE_TAGS = {0x80, 0x23, 0x81, 0x83, 0x90}


# --------------------------------------------------------------------------- compact


def test_instruction_case_decides_what_p3_means() -> None:
    # protocols.md §12.1: 80 F2 is STATUS (case 2) for RFM, GET STATUS (case 4) for RAM.
    raw = bytes.fromhex("80 F2 40 02 02 4F 00")
    with pytest.raises(DecodeError):
        decode_compact_commands(raw)
    assert decode_compact_commands(raw, RAM_CASE2) == [CommandApdu(0x80, 0xF2, 0x40, 0x02, b"\x4f\x00")]


def test_case4_le_is_dropped_in_t0_form() -> None:
    apdu = CommandApdu(0x80, 0xF2, 0x40, 0x02, b"\x4f\x00", 256)
    assert encode_compact_commands([apdu], RAM_CASE2) == bytes.fromhex("80 F2 40 02 02 4F 00")


def test_forms_the_decoder_would_misread_are_refused() -> None:
    with pytest.raises(EncodeError, match="case 2"):
        encode_compact_commands([CommandApdu(0x00, 0xB0, 0, 0, b"\x01")])
    with pytest.raises(EncodeError, match="Lc"):
        encode_compact_commands([CommandApdu(0x00, 0xA4, 0, 0, b"", 16)])


def test_truncated_compact_script_names_the_offset() -> None:
    with pytest.raises(TruncatedData) as excinfo:
        decode_compact_commands(bytes.fromhex("A0 A4 00 00 02 7F 20 A0 D6 00 00 04 01"), base_offset=16)
    assert excinfo.value.offset == 16 + 12
    assert excinfo.value.field == "c_apdu.data"


def test_empty_compact_script_has_no_commands() -> None:
    assert decode_compact_commands(b"") == []


@pytest.mark.parametrize("raw", ["", "01", "01 90"])
def test_compact_response_needs_nn_and_sw(raw: str) -> None:
    with pytest.raises(TruncatedData):
        CompactResponse.decode(bytes.fromhex(raw))


def test_compact_response_exposes_the_last_response() -> None:
    response = CompactResponse.decode(bytes.fromhex("02 90 00 AA BB"))
    assert response.last_response == ResponseApdu(b"\xaa\xbb", 0x9000)
    with pytest.raises(EncodeError):
        CompactResponse(256, 0x9000)
    with pytest.raises(EncodeError):
        CompactResponse(1, 0x10000)


# --------------------------------------------------------------------------- expanded


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("AA 80 22 04 00 A4 00 00 00 00", "expected AE"),
        ("AE 02 22 00", "expected AA"),
        ("AA 04 22 02 00 A4", "c_apdu"),
        ("AA 06 83 01 01 83 01 02", "twice"),
        ("AA 04 22 04 00 A4 00 00 00", "trailing"),
        ("AE 80 22 04 00 A4 00 00", "ber.eoc"),
        ("AE 80 A2 80 00 00 00 00", "indefinite"),
    ],
)
def test_malformed_command_scripts_are_refused(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        ExpandedCommandScript.decode(bytes.fromhex(raw))


def test_c_apdu_error_names_position_and_absolute_offset() -> None:
    raw = bytes.fromhex("AA 0B 22 04 00 A4 00 00 22 03 00 A4 00")
    with pytest.raises(DecodeError) as excinfo:
        ExpandedCommandScript.decode(raw, base_offset=20)
    assert excinfo.value.field == "command_script.c_apdu[1].c_apdu.header"
    assert excinfo.value.offset == 20 + 10


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("AB 04 23 02 90 00", "80 01 NN first"),
        ("AB 00", "empty template"),
        ("AB 04 80 02 01 01", "expected 1"),
        ("AB 06 80 01 01 23 01 90", "SW1 SW2"),
        ("AB 07 80 01 01 90 02 01 01", "expected 1"),
        ("AB 09 80 01 01 81 01 01 81 01 01", "twice"),
    ],
)
def test_malformed_responses_are_refused(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        ExpandedResponse.decode(bytes.fromhex(raw))


def test_lists_are_stored_as_tuples() -> None:
    script = ExpandedCommandScript([CommandApdu(0, 0xA4, 0, 0)], script_chaining=bytearray(b"\x01"))
    assert script.apdus == (CommandApdu(0, 0xA4, 0, 0),)
    assert isinstance(script.script_chaining, bytes)
    hash(script)


def test_definite_template_larger_than_65535_is_refused() -> None:
    apdus = [CommandApdu(0, 0xD6, 0, 0, bytes(255))] * 260
    with pytest.raises(EncodeError, match="indefinite"):
        ExpandedCommandScript(apdus).encode()
    big = ExpandedCommandScript(apdus, indefinite=True)
    assert ExpandedCommandScript.decode(big.encode()) == big


optional_values = st.none() | st.binary(max_size=6)

command_scripts = st.builds(
    ExpandedCommandScript,
    st.lists(short_apdus(), max_size=4).map(tuple),
    optional_values,
    optional_values,
    optional_values,
    st.booleans(),
    st.lists(ber_tlvs(8).filter(lambda t: t.tag not in SCRIPT_TAGS), max_size=2).map(tuple),
)

expanded_responses = st.builds(
    ExpandedResponse,
    st.integers(0, 255),
    st.lists(response_apdus(40), max_size=4).map(tuple),
    optional_values,
    optional_values,
    st.none() | st.integers(0, 255),
    st.booleans(),
    st.lists(ber_tlvs(8).filter(lambda t: t.tag not in RESPONSE_TAGS), max_size=2).map(tuple),
)


@FAST
@given(st.lists(compact_apdus(), max_size=5))
def test_compact_commands_round_trip(apdus: list[CommandApdu]) -> None:
    assert decode_compact_commands(encode_compact_commands(apdus)) == apdus


@FAST
@given(st.lists(compact_apdus(RAM_CASE2), max_size=5))
def test_compact_commands_round_trip_with_another_case2_set(apdus: list[CommandApdu]) -> None:
    assert decode_compact_commands(encode_compact_commands(apdus, RAM_CASE2), RAM_CASE2) == apdus


@FAST
@given(st.builds(CompactResponse, st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=255)))
def test_compact_response_round_trip(response: CompactResponse) -> None:
    assert CompactResponse.decode(response.encode()) == response


@FAST
@given(command_scripts)
def test_command_script_round_trip(script: ExpandedCommandScript) -> None:
    assert ExpandedCommandScript.decode(script.encode()) == script


@FAST
@given(expanded_responses)
def test_expanded_response_round_trip(response: ExpandedResponse) -> None:
    assert ExpandedResponse.decode(response.encode()) == response


@FAST
@given(command_scripts)
def test_every_proper_prefix_of_a_script_is_refused(script: ExpandedCommandScript) -> None:
    raw = script.encode()
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            ExpandedCommandScript.decode(raw[:cut])


def _total_on(data: bytes) -> None:
    for decode in (
        ExpandedCommandScript.decode,
        ExpandedResponse.decode,
        CompactResponse.decode,
        decode_compact_commands,
    ):
        with contextlib.suppress(DecodeError):
            decode(data)


@FAST
@given(
    st.binary(max_size=300)
    | nested_headers
    | mutated(command_scripts.map(lambda s: s.encode()))
    | mutated(expanded_responses.map(lambda r: r.encode()))
)
def test_decoders_are_total(data: bytes) -> None:
    _total_on(data)


def test_empty_indefinite_script_is_valid() -> None:
    assert ExpandedCommandScript.decode(bytes.fromhex("AE 80 00 00")) == ExpandedCommandScript(
        (), indefinite=True
    )


@pytest.mark.parametrize("depth", [2, 50, 5000])
def test_deep_indefinite_nesting_is_a_decode_error(depth: int) -> None:
    raw = b"\xae\x80" * depth + b"\x00\x00" * depth
    with pytest.raises(DecodeError):
        ExpandedCommandScript.decode(raw)
    with pytest.raises(DecodeError):
        ExpandedResponse.decode(b"\xaf\x80" * depth + b"\x00\x00" * depth)


def test_unknown_tags_survive_for_the_bad_format_answer() -> None:
    script = ExpandedCommandScript.decode(bytes.fromhex("AE 80 84 01 00 22 04 00 A4 00 00 00 00"))
    assert script.unknown == (Tlv(0x84, b"\x00"),)
    assert script.apdus == (CommandApdu(0, 0xA4, 0, 0),)
