from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.sms.address import Address, Npi, Ton, decode_cat_address, encode_cat_address
from tests.ota_protocols.sms.strategies import SETTINGS, addresses, bcd_addresses, section

TON_NAMES = {"unknown": Ton.UNKNOWN, "international": Ton.INTERNATIONAL}
NPI_NAMES = {"unknown": Npi.UNKNOWN, "isdn_e164": Npi.ISDN}


def _pysim_address_entries(kind: str) -> list[dict[str, Any]]:
    return [e for e in section("pysim_sms_codec")["address"] if kind in e]


@pytest.mark.parametrize("entry", _pysim_address_entries("inp"), ids=lambda e: e["inp"])
def test_pysim_address_decodes_and_leaves_trailer(entry: dict[str, str]) -> None:
    reader = ByteReader(bytes.fromhex(entry["inp"]))
    address = Address.decode(reader)
    assert address.digits == entry["digits"]
    if "ton" in entry:
        assert address.ton == TON_NAMES[entry["ton"]]
        assert address.npi == NPI_NAMES[entry["npi"]]
    assert reader.rest() == bytes.fromhex(entry["trailer"])


@pytest.mark.parametrize("entry", _pysim_address_entries("roundtrip"), ids=lambda e: e["roundtrip"])
def test_pysim_address_reencodes_identically(entry: dict[str, str]) -> None:
    raw = bytes.fromhex(entry["roundtrip"])
    assert Address.decode(ByteReader(raw)).encode() == raw


@pytest.mark.parametrize("entry", _pysim_address_entries("encode"), ids=lambda e: e["out"])
def test_pysim_address_encodes(entry: dict[str, Any]) -> None:
    spec = entry["encode"]
    assert isinstance(spec, dict)
    address = Address(spec["digits"], TON_NAMES[spec["ton"]], NPI_NAMES[spec["npi"]])
    assert address.encode().hex() == entry["out"]


@pytest.mark.parametrize("entry", section("spec_address")["tpdu_form"], ids=lambda e: e["hex"])
def test_spec_tpdu_address_vector(entry: dict[str, Any]) -> None:
    raw = bytes.fromhex(str(entry["hex"]))
    expected = Address(str(entry["digits"]), Ton(entry["ton"]), Npi(entry["npi"]))
    assert Address.decode(ByteReader(raw)) == expected
    assert expected.encode() == raw


@pytest.mark.parametrize("entry", section("spec_address")["cat_form"], ids=lambda e: e["value"])
def test_spec_cat_address_vector(entry: dict[str, Any]) -> None:
    raw = bytes.fromhex(str(entry["value"]))
    expected = Address(str(entry["digits"]), Ton(entry["ton"]), Npi(entry["npi"]))
    assert decode_cat_address(raw) == expected
    assert encode_cat_address(expected) == raw


def test_alphanumeric_address_length_counts_useful_semi_octets() -> None:
    # "ekit": 4 septets = 28 bits = 7 semi-octets in 4 octets (TS 23.040 §9.1.2.5).
    address = Address("ekit", Ton.ALPHANUMERIC, Npi.UNKNOWN)
    assert address.encode().hex() == "07d0e5759a0e"
    # A sender that counted whole octets (8) decodes to the same text.
    assert Address.decode(ByteReader(bytes.fromhex("08d0e5759a0e"))) == address


def test_filler_inside_digits_is_rejected_with_clause() -> None:
    with pytest.raises(DecodeError, match=r"§9\.1\.2\.3"):
        Address.decode(ByteReader(bytes.fromhex("0481f121")))


def test_overlong_address_length_is_rejected() -> None:
    with pytest.raises(DecodeError, match=r"address\.length"):
        Address.decode(ByteReader(bytes([21, 0x81]) + bytes(11)))


def test_ton_npi_bit8_clear_is_rejected() -> None:
    with pytest.raises(DecodeError, match="bit 8"):
        Address.decode(ByteReader(bytes.fromhex("02012143")))


@pytest.mark.parametrize(
    "address",
    [
        Address("1" * 21),
        Address("12-3"),
        Address("A" * 12, Ton.ALPHANUMERIC),
        Address("€", Ton.ALPHANUMERIC),
    ],
)
def test_unencodable_addresses_raise_encode_error(address: Address) -> None:
    with pytest.raises(EncodeError):
        address.encode()


def test_cat_address_rejects_alphanumeric() -> None:
    with pytest.raises(EncodeError):
        encode_cat_address(Address("abc", Ton.ALPHANUMERIC))
    with pytest.raises(DecodeError):
        decode_cat_address(bytes.fromhex("d02143"))
    with pytest.raises(DecodeError):
        decode_cat_address(b"")


def test_every_strict_prefix_of_an_address_is_truncated() -> None:
    raw = bytes.fromhex("0b911614261771f0")
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            Address.decode(ByteReader(raw[:cut]))


@settings(**SETTINGS)
@given(addresses)
def test_tpdu_address_round_trips(address: Address) -> None:
    reader = ByteReader(address.encode())
    assert Address.decode(reader) == address
    assert reader.at_end()


@settings(**SETTINGS)
@given(bcd_addresses)
def test_cat_address_round_trips(address: Address) -> None:
    assert decode_cat_address(encode_cat_address(address)) == address


@settings(**SETTINGS)
@given(st.binary(max_size=24))
def test_tpdu_address_decoder_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Address.decode(ByteReader(data))


@settings(**SETTINGS)
@given(st.binary(max_size=24))
def test_cat_address_decoder_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_cat_address(data)
