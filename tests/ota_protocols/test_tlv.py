"""BER-TLV and COMPREHENSION-TLV codecs (TS 101 220 §7)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError, TruncatedData
from ota_protocols.tlv import (
    ComprehensionTlv,
    ComprehensionTlvIndex,
    Tlv,
    decode_ber,
    decode_ber_all,
    decode_ber_any_length,
    decode_comprehension,
    decode_comprehension_all,
    encode_ber,
    encode_ber_indefinite,
    encode_comprehension,
    encode_length,
    unwrap_ber,
)
from tests.ota_protocols.apdu.strategies import (
    ber_tags,
    ber_tlvs,
    comprehension_tlvs,
    mutated,
    nested_headers,
)

FAST = settings(max_examples=150, deadline=None)


# --------------------------------------------------------------------------- lengths


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"), (0x100, "820100"), (0xFFFF, "82ffff")],
)
def test_length_uses_shortest_form(n: int, encoded: str) -> None:
    assert encode_length(n) == bytes.fromhex(encoded)


@pytest.mark.parametrize("n", [-1, 0x10000])
def test_length_outside_three_octets_is_refused(n: int) -> None:
    with pytest.raises(EncodeError):
        encode_length(n)


def test_comprehension_value_above_255_octets_is_refused() -> None:
    with pytest.raises(EncodeError, match=r"0\.\.255"):
        encode_comprehension(0x0B, bytes(256))


def test_ber_value_above_65535_octets_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_ber(0xD1, bytes(0x10000))


@pytest.mark.parametrize("raw", ["01 81 05 00 00 00 00 00", "01 82 00 80" + " 00" * 0x80])
def test_non_minimal_ber_length_is_refused(raw: str) -> None:
    with pytest.raises(DecodeError, match="TS 101 220"):
        decode_ber(ByteReader(bytes.fromhex(raw)))


def test_comprehension_refuses_three_octet_length() -> None:
    with pytest.raises(DecodeError, match="82"):
        decode_comprehension(ByteReader(bytes.fromhex("0B 82 01 00") + bytes(256)))


# --------------------------------------------------------------------------- BER tags


@pytest.mark.parametrize(
    ("raw", "tag"),
    [("D1 00", 0xD1), ("9F 70 01 AA", 0x9F70), ("5F 81 01 00", 0x5F8101), ("22 00", 0x22)],
)
def test_ber_tags_of_one_to_three_octets(raw: str, tag: int) -> None:
    tlv = decode_ber(ByteReader(bytes.fromhex(raw)))
    assert tlv.tag == tag
    assert tlv.encode() == bytes.fromhex(raw)


@pytest.mark.parametrize("raw", ["00 00", "FF 00", "1F 81 81 01 00"])
def test_invalid_ber_tags_are_refused(raw: str) -> None:
    with pytest.raises(DecodeError, match="tag"):
        decode_ber(ByteReader(bytes.fromhex(raw)))


@pytest.mark.parametrize("tag", [0, 0xFF, 0x1F, 0x1F80, 0x0141, 0x1F8181])
def test_encoder_refuses_malformed_ber_tags(tag: int) -> None:
    with pytest.raises(EncodeError):
        encode_ber(tag, b"")


# --------------------------------------------------------------------------- indefinite form


def test_indefinite_template_reads_to_end_of_contents() -> None:
    raw = bytes.fromhex("AE 80 22 02 01 02 81 01 05 00 00 99")
    reader = ByteReader(raw)
    tlv, indefinite = decode_ber_any_length(reader)
    assert indefinite
    assert tlv == Tlv(0xAE, bytes.fromhex("22 02 01 02 81 01 05"))
    assert reader.remaining == 1
    assert encode_ber_indefinite(0xAE, tlv.value) == raw[:-1]


def test_definite_reader_refuses_indefinite_length() -> None:
    with pytest.raises(DecodeError, match="indefinite"):
        decode_ber(ByteReader(bytes.fromhex("AE 80 00 00")))


def test_nested_indefinite_is_refused_without_recursion() -> None:
    raw = b"\xae\x80" * 10_000 + b"\x00\x00" * 10_000
    with pytest.raises(DecodeError, match="indefinite"):
        decode_ber_any_length(ByteReader(raw))


def test_indefinite_needs_a_constructed_tag() -> None:
    with pytest.raises(DecodeError, match="primitive"):
        decode_ber_any_length(ByteReader(bytes.fromhex("81 80 00 00")))
    with pytest.raises(EncodeError):
        encode_ber_indefinite(0x81, b"")


def test_broken_end_of_contents_is_refused() -> None:
    with pytest.raises(DecodeError, match="end-of-contents"):
        decode_ber_any_length(ByteReader(bytes.fromhex("AE 80 00 01")))


def test_indefinite_encoder_refuses_contents_that_are_not_tlvs() -> None:
    with pytest.raises(EncodeError):
        encode_ber_indefinite(0xAE, b"\x22\x05\x01")


# --------------------------------------------------------------------------- COMPREHENSION-TLV


@pytest.mark.parametrize(
    ("raw", "tag", "cr"),
    [
        ("82 02 83 81", 0x02, True),
        ("02 02 83 81", 0x02, False),
        ("7F 80 80 00", 0x80, True),
        ("7F 12 34 00", 0x1234, False),
    ],
)
def test_comprehension_tag_forms(raw: str, tag: int, cr: bool) -> None:
    tlv = decode_comprehension(ByteReader(bytes.fromhex(raw)))
    assert (tlv.tag, tlv.comprehension_required) == (tag, cr)
    assert tlv.encode() == bytes.fromhex(raw)


def test_cr_bit_is_ignored_when_matching() -> None:
    with_cr, without_cr = decode_comprehension_all(bytes.fromhex("8B 01 AA 0B 01 AA"))
    assert with_cr.matches(0x8B) and with_cr.matches(0x0B)
    assert without_cr.matches(0x8B)
    assert with_cr.value == without_cr.value


def test_long_form_of_a_short_tag_is_read_and_normalised() -> None:
    tlv = decode_comprehension(ByteReader(bytes.fromhex("7F 80 0B 01 AA")))
    assert tlv == ComprehensionTlv(0x0B, b"\xaa", True)
    assert tlv.encode() == bytes.fromhex("8B 01 AA")


@pytest.mark.parametrize("raw", ["00 00", "80 00", "FF 00", "7F 00 00 00", "7F 80 00 00"])
def test_reserved_comprehension_tags_are_refused(raw: str) -> None:
    with pytest.raises(DecodeError, match="tag"):
        decode_comprehension(ByteReader(bytes.fromhex(raw)))


def test_index_refuses_duplicates_and_names_missing_objects() -> None:
    with pytest.raises(DecodeError, match="again"):
        ComprehensionTlvIndex(bytes.fromhex("82 02 83 81 02 02 83 81"), 0, [0x02], "x")
    index = ComprehensionTlvIndex(bytes.fromhex("82 02 83 81 1E 01 00"), 7, [0x02, 0x0B], "x")
    assert index.offset(0x02) == 7
    assert [tlv.tag for tlv in index.other] == [0x1E]
    with pytest.raises(DecodeError, match="sms_tpdu") as excinfo:
        index.require(0x0B, "sms_tpdu", "TS 31.111 §7.1.1")
    assert excinfo.value.offset == 14


def test_unwrap_ber_checks_tag_and_trailing_data() -> None:
    assert unwrap_ber(bytes.fromhex("D1 01 AA"), 0xD1, 10, "e", "c") == (b"\xaa", 12)
    with pytest.raises(DecodeError, match="expected D1"):
        unwrap_ber(bytes.fromhex("D0 01 AA"), 0xD1, 0, "e", "c")
    with pytest.raises(DecodeError, match="trailing"):
        unwrap_ber(bytes.fromhex("D1 01 AA 00"), 0xD1, 0, "e", "c")


def test_errors_carry_absolute_offsets() -> None:
    with pytest.raises(TruncatedData) as excinfo:
        decode_ber_all(bytes.fromhex("22 01 00 23 05 00"), base_offset=100)
    assert excinfo.value.offset == 105
    assert excinfo.value.field == "ber.value"


# --------------------------------------------------------------------------- properties


@FAST
@given(st.lists(ber_tlvs(), max_size=5), st.binary(max_size=8))
def test_ber_round_trip_and_trailing_data_is_left(tlvs: list[Tlv], trailing: bytes) -> None:
    raw = b"".join(tlv.encode() for tlv in tlvs)
    assert decode_ber_all(raw) == tlvs
    if tlvs:
        reader = ByteReader(raw + trailing)
        assert decode_ber(reader) == tlvs[0]
        assert reader.remaining == len(raw) - len(tlvs[0].encode()) + len(trailing)


@FAST
@given(st.lists(comprehension_tlvs(), max_size=5))
def test_comprehension_round_trip(tlvs: list[ComprehensionTlv]) -> None:
    raw = b"".join(tlv.encode() for tlv in tlvs)
    assert decode_comprehension_all(raw) == tlvs


@FAST
@given(
    ber_tags().filter(lambda t: (t >> (8 * ((t.bit_length() - 1) // 8))) & 0x20),
    st.lists(ber_tlvs(40), max_size=4),
)
def test_indefinite_round_trip(tag: int, inner: list[Tlv]) -> None:
    contents = b"".join(tlv.encode() for tlv in inner)
    raw = encode_ber_indefinite(tag, contents)
    reader = ByteReader(raw)
    assert decode_ber_any_length(reader) == (Tlv(tag, contents), True)
    assert reader.at_end()


@FAST
@given(ber_tlvs(200))
def test_every_proper_prefix_is_truncated_data(tlv: Tlv) -> None:
    raw = tlv.encode()
    for cut in range(len(raw)):
        with pytest.raises(TruncatedData):
            decode_ber(ByteReader(raw[:cut]))


@FAST
@given(comprehension_tlvs(200))
def test_every_proper_comprehension_prefix_is_truncated_data(tlv: ComprehensionTlv) -> None:
    raw = tlv.encode()
    for cut in range(len(raw)):
        with pytest.raises(TruncatedData):
            decode_comprehension(ByteReader(raw[:cut]))


def _total(decode: object, data: bytes) -> None:
    assert callable(decode)
    with contextlib.suppress(DecodeError):
        decode(data)


def _any_length(data: bytes) -> object:
    reader = ByteReader(data)
    while not reader.at_end():
        decode_ber_any_length(reader)
    return None


DECODERS = [decode_ber_all, decode_comprehension_all, _any_length]


@FAST
@given(
    st.binary(max_size=300)
    | nested_headers
    | mutated(st.lists(ber_tlvs(40), max_size=3).map(lambda tlvs: b"".join(t.encode() for t in tlvs)))
)
def test_decoders_are_total(data: bytes) -> None:
    for decode in DECODERS:
        _total(decode, data)
