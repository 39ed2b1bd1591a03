from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.sms.user_data_header import (
    CPI,
    RPI,
    ConcatenationInfo,
    InformationElement,
    UserDataHeader,
    concat_8bit,
    concat_16bit,
    parse_concatenation,
    split_udh,
)
from tests.ota_protocols.sms.strategies import SETTINGS, section, user_data_headers


def _udh_entries(kind: str) -> list[dict[str, Any]]:
    return [e for e in section("pysim_sms_codec")["udh"] if kind in e]


@pytest.mark.parametrize("entry", _udh_entries("inp"), ids=lambda e: e["inp"])
def test_pysim_udh_vector_splits(entry: dict[str, Any]) -> None:
    header, tail = split_udh(bytes.fromhex(str(entry["inp"])))
    ies = entry["ies"]
    assert isinstance(ies, list)
    assert header.elements == tuple(InformationElement(iei, bytes.fromhex(data)) for iei, data in ies)
    assert tail == bytes.fromhex(str(entry["tail"]))


@pytest.mark.parametrize("entry", _udh_entries("roundtrip"), ids=lambda e: e["roundtrip"])
def test_pysim_udh_vector_reencodes(entry: dict[str, str]) -> None:
    raw = bytes.fromhex(entry["roundtrip"])
    assert UserDataHeader.decode(ByteReader(raw)).encode() == raw


def test_cpi_and_rpi_are_empty_70_and_71() -> None:
    assert UserDataHeader((CPI,)).encode().hex() == "027000"
    assert UserDataHeader((RPI,)).encode().hex() == "027100"


def test_concatenation_ies_encode_per_spec() -> None:
    assert concat_8bit(0x2A, 3, 1).encode().hex() == "00032a0301"
    assert concat_16bit(0x1234, 3, 2).encode().hex() == "0804123403" + "02"


def test_concatenation_is_found_after_other_ies() -> None:
    header, _ = split_udh(bytes.fromhex("077000" + "00032a0302"))
    assert parse_concatenation(header) == ConcatenationInfo(0x2A, 3, 2, ref16=False)
    header16, _ = split_udh(bytes.fromhex("06" + "0804beef0201"))
    assert parse_concatenation(header16) == ConcatenationInfo(0xBEEF, 2, 1, ref16=True)
    assert parse_concatenation(UserDataHeader((CPI,))) is None


@pytest.mark.parametrize(
    "udh_hex",
    ["0400022a01", "050003000000", "0500032a0203", "050003000100", "0608042a0203" + "00"],
)
def test_malformed_concatenation_ie_raises(udh_hex: str) -> None:
    header, _ = split_udh(bytes.fromhex(udh_hex))
    with pytest.raises(DecodeError):
        parse_concatenation(header)


def test_unknown_ies_are_kept_verbatim() -> None:
    raw = bytes.fromhex("0a" + "2403aabbcc" + "7f00" + "2501ff")
    header, rest = split_udh(raw)
    assert [ie.iei for ie in header.elements] == [0x24, 0x7F, 0x25]
    assert header.encode() == raw
    assert rest == b""
    assert header.without(0x7F).encode().hex() == "08" + "2403aabbcc" + "2501ff"


@pytest.mark.parametrize("raw_hex", ["", "05", "057000", "0370", "037005aa", "0271"])
def test_truncated_udh_raises_decode_error(raw_hex: str) -> None:
    with pytest.raises(DecodeError):
        split_udh(bytes.fromhex(raw_hex))


def test_encode_rejects_oversized_ies() -> None:
    with pytest.raises(EncodeError):
        InformationElement(0x100).encode()
    with pytest.raises(EncodeError):
        InformationElement(0x70, bytes(256)).encode()
    with pytest.raises(EncodeError):
        UserDataHeader(tuple(InformationElement(0x24, bytes(100)) for _ in range(3))).encode()
    with pytest.raises(EncodeError):
        concat_8bit(256, 2, 1)
    with pytest.raises(EncodeError):
        concat_8bit(1, 2, 3)


@settings(**SETTINGS)
@given(user_data_headers, st.binary(max_size=20))
def test_udh_round_trips_and_leaves_the_rest(header: UserDataHeader, rest: bytes) -> None:
    raw = header.encode()
    assert len(raw) == header.encoded_length
    assert split_udh(raw + rest) == (header, rest)


@settings(**SETTINGS)
@given(st.binary(max_size=40))
def test_split_udh_is_total(data: bytes) -> None:
    try:
        header, _ = split_udh(data)
        parse_concatenation(header)
    except DecodeError:
        pass
