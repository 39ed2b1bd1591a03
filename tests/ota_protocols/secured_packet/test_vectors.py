"""Published vectors through the secured-packet codecs and through the packet tool, both ways.

Sources are named in tests/vectors/secured_packet_vectors.json: pySim's unit
tests (card-recorded), onomondo-uicc's CC tests, opentelecoms gsm0348's data
set, RFC 4493 and the CRC catalogue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ota_protocols.errors import DecodeError
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    decode_command_packet,
    encode_command_packet,
)
from ota_protocols.secured_packet.crypto import ChecksumKey
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    decode_response_packet,
    encode_response_packet,
)
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm, Spi
from ota_server import packet_tool

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "secured_packet_vectors.json").read_text())


def flip_bit(hex_string: str, octet: int, bit: int = 0) -> str:
    data = bytearray(bytes.fromhex(hex_string))
    data[octet] ^= 1 << bit
    return data.hex()


# --- pySim card-recorded cases (3DES and AES, ciphered/unciphered, with PoRs) -------------------

PYSIM_CASES = VECTORS["pysim_sms_ota_cases"]["cases"]


def pysim_tool_input(case: dict[str, Any]) -> dict[str, Any]:
    keyset = case["keyset"]
    family = 0x05 if keyset["algo_crypt"].startswith("triple_des") else 0x02
    kic = f"{(keyset['kic_idx'] << 4) | family:02x}"
    return {
        "spi": case["spi_hex"],
        "kic": kic,
        "kid": kic,
        "kic_key": keyset["kic"],
        "kid_key": keyset["kid"],
    }


@pytest.mark.parametrize("case", PYSIM_CASES, ids=lambda c: c["name"])
def test_pysim_command_vector_encodes_and_decodes(case: dict[str, Any]) -> None:
    sec = pysim_tool_input(case)
    out = packet_tool.encode_command(sec | {"tar": case["tar"], "cntr": case["cntr"], "data": case["apdu"]})
    assert out["packet"] == case["encoded_cmd"]
    assert out["user_data"] == "027000" + case["encoded_cmd"]

    decoded = packet_tool.decode_command({"user_data": out["user_data"].upper()} | _keys_only(sec))
    assert decoded["spi"] == case["spi_hex"]
    assert (decoded["tar"], decoded["cntr"], decoded["data"]) == (case["tar"], case["cntr"], case["apdu"])
    assert decoded["checksum_valid"] is True


@pytest.mark.parametrize("case", PYSIM_CASES, ids=lambda c: c["name"])
def test_pysim_command_vector_with_flipped_bit_fails_its_checksum(case: dict[str, Any]) -> None:
    sec = pysim_tool_input(case)
    # Octet 9 is the last TAR octet (in clear), octet 20 lies in the ciphered part: both under the CC.
    for octet in (9, 20):
        decoded = packet_tool.decode_command(
            {"packet": flip_bit(case["encoded_cmd"], octet)} | _keys_only(sec)
        )
        assert decoded["checksum_valid"] is False


@pytest.mark.parametrize("case", PYSIM_CASES, ids=lambda c: c["name"])
def test_pysim_por_vector_decodes_and_reencodes(case: dict[str, Any]) -> None:
    sec = pysim_tool_input(case)
    response = case["response"]
    derived = response["derived"]
    decoded = packet_tool.decode_response({"user_data": response["encoded_resp"]} | sec)
    assert decoded == {
        "tar": derived["tar"],
        "cntr": derived["cntr"],
        "pcntr": derived["pcntr"],
        "status": 0,
        "checksum": derived["por_cc"],
        "checksum_valid": True if derived["por_cc"] else None,
        "data": derived["plain_additional_data"],
    }
    encoded = packet_tool.encode_response(
        sec
        | {
            "tar": derived["tar"],
            "cntr": derived["cntr"],
            "status": 0,
            "data": derived["plain_additional_data"],
        }
    )
    assert encoded["user_data"] == response["encoded_resp"]
    # The same PoR given from RPL on: the tool puts 02 71 00 back under the checksum.
    from_packet = packet_tool.decode_response({"packet": response["encoded_resp"][6:]} | sec)
    assert from_packet == decoded


@pytest.mark.parametrize(
    "case", [c for c in PYSIM_CASES if c["response"]["derived"]["por_cc"]], ids=lambda c: c["name"]
)
def test_pysim_por_with_flipped_bit_is_reported_invalid(case: dict[str, Any]) -> None:
    sec = pysim_tool_input(case)
    # Octet 1 is the RPI IEI inside the UDH: covered by the PoR checksum only (TS 31.115 §4.3).
    tampered = flip_bit(case["response"]["encoded_resp"], 1)
    with pytest.raises(packet_tool.ConfigError):
        packet_tool.decode_response({"user_data": tampered} | sec)  # no longer an RPI UDH
    decoded = packet_tool.decode_response({"user_data": flip_bit(case["response"]["encoded_resp"], 7)} | sec)
    assert decoded["checksum_valid"] is False


def _keys_only(sec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sec.items() if k.endswith("_key")}


# --- pySim older tests: the conformant forms with CPL, and the PoRs ------------------------------

OLD = VECTORS["pysim_old_style"]
OLD_SEC = {"kic": "35", "kid": "35", "kic_key": OLD["keyset"]["kic"], "kid_key": OLD["keyset"]["kid"]}


@pytest.mark.parametrize("case", OLD["commands"], ids=lambda c: c["test"])
def test_pysim_old_style_command(case: dict[str, Any]) -> None:
    expected = case.get("encoded") or case["spec_conformant_with_cpl"]
    out = packet_tool.encode_command(
        OLD_SEC | {"spi": case["spi_hex"], "tar": case["tar"], "cntr": case["cntr"], "data": case["apdu"]}
    )
    assert out["packet"] == expected
    decoded = packet_tool.decode_command({"packet": expected} | _keys_only(OLD_SEC))
    assert decoded["data"] == case["apdu"]
    spi = Spi.from_bytes(bytes.fromhex(case["spi_hex"]))
    assert decoded["checksum_valid"] is (True if spi.integrity else None)


@pytest.mark.parametrize("case", OLD["responses"], ids=lambda c: c["test"])
def test_pysim_old_style_response(case: dict[str, Any]) -> None:
    spi = "06" + f"{0x01 | (0x08 if case['por_cc'] else 0) | (0x10 if case['por_ciphered'] else 0):02x}"
    decoded = packet_tool.decode_response(OLD_SEC | {"spi": spi, "user_data": case["encoded_resp"]})
    want = case["decoded"]
    assert decoded["status"] == want["sts"]
    assert decoded["pcntr"] == want["pcntr"]
    assert decoded["checksum"] == want["cc"]
    assert decoded["checksum_valid"] is want["cc_valid"]
    assert decoded["data"] == want["additional_data"]


def test_pysim_aes_old_style_matches_new_case() -> None:
    aes = OLD["aes128_old_style"]
    sec = {
        "spi": aes["spi_hex"],
        "kic": "22",
        "kid": "22",
        "kic_key": aes["keyset"]["kic"],
        "kid_key": aes["keyset"]["kid"],
    }
    out = packet_tool.encode_command(sec | {"tar": aes["tar"], "cntr": "0000000000", "data": aes["apdu"]})
    assert out["packet"] == aes["encoded_cmd"]
    resp = packet_tool.decode_response(sec | {"user_data": aes["encoded_resp"]})
    assert (resp["data"], resp["checksum_valid"]) == ("016132", True)


# --- onomondo CC primitives -----------------------------------------------------------------------

ONO = VECTORS["onomondo_cc_and_padding"]["cc"]


@pytest.mark.parametrize("case", ONO["cases"], ids=lambda c: c["data2"][-4:])
def test_onomondo_checksums(case: dict[str, Any]) -> None:
    key = bytes.fromhex(ONO["key"])
    data = bytes.fromhex(ONO["data1"] + case["data2"])
    assert ChecksumKey(IntegrityAlgorithm.TDES2_MAC, key).compute(data).hex() == case["tdes_cbc_mac"]
    assert ChecksumKey(IntegrityAlgorithm.AES_CMAC, key).compute(data).hex() == case["aes_cmac8"]


@pytest.mark.parametrize("case", VECTORS["rfc4493_aes_cmac"]["cases"], ids=lambda c: str(len(c["msg"]) // 2))
def test_rfc4493_aes_cmac(case: dict[str, str]) -> None:
    key = ChecksumKey(IntegrityAlgorithm.AES_CMAC, bytes.fromhex(VECTORS["rfc4493_aes_cmac"]["key"]))
    # ChecksumKey truncates to 8 octets (TS 102 225 §5.1.3): compare the leftmost 8.
    assert key.compute(bytes.fromhex(case["msg"])).hex() == case["mac"][:16]
    assert (
        ChecksumKey(IntegrityAlgorithm.AES_CMAC, bytes.fromhex(VECTORS["rfc4493_aes_cmac"]["key"]), 4)
        .compute(bytes.fromhex(case["msg"]))
        .hex()
        == case["mac"][:8]
    )


def test_crc_check_values() -> None:
    crc = VECTORS["crc_check_values"]
    data = bytes.fromhex(crc["input"])
    assert ChecksumKey(IntegrityAlgorithm.CRC32).compute(data).hex() == crc["crc32"]
    assert ChecksumKey(IntegrityAlgorithm.CRC16).compute(data).hex() == crc["crc16_x25"]


# --- opentelecoms data set: every cipher, RC, CC and implicit coding ------------------------------

OT_CASES = [c for c in VECTORS["opentelecoms_dataset0348"]["cases"] if "expected_command_packet" in c]
OT_IMPLICIT_SIG = {"XOR4": "xor4", "CRC32": "crc32"}


def ot_tool_input(case: dict[str, Any]) -> dict[str, Any]:
    expected = bytes.fromhex(case["expected_command_packet"])
    sec: dict[str, Any] = {
        "spi": expected[3:5].hex(),
        "kic": f"{expected[5]:02x}",
        "kid": f"{expected[6]:02x}",
        "kic_key": case["kic_key"],
        "kid_key": case["kid_key"],
    }
    if case.get("ciphering_algorithm") == "DESede/ECB/NoPadding":
        sec["kic_implicit"] = "3des2-ecb" if len(case["kic_key"]) == 32 else "3des3-ecb"
    if case.get("signature_algorithm") in OT_IMPLICIT_SIG:
        sec["kid_implicit"] = OT_IMPLICIT_SIG[case["signature_algorithm"]]
    return sec


@pytest.mark.parametrize("case", OT_CASES, ids=lambda c: c["name"])
def test_opentelecoms_command_vector(case: dict[str, Any]) -> None:
    sec = ot_tool_input(case)
    out = packet_tool.encode_command(
        sec | {"tar": case["tar"], "cntr": case["counter"], "data": case["data"]}
    )
    assert out["packet"] == case["expected_command_packet"].lower()
    decoded = packet_tool.decode_command(
        {k: v for k, v in sec.items() if k not in ("spi", "kic", "kid")}
        | {"packet": case["expected_command_packet"]}
    )
    assert decoded["data"] == case["data"].lower()
    assert decoded["cntr"] == case["counter"].lower()
    spi = Spi.from_bytes(bytes.fromhex(sec["spi"]))
    if spi.integrity:
        assert decoded["checksum_valid"] is True
        flipped = flip_bit(case["expected_command_packet"], 9)  # a TAR octet, under the checksum
        tampered = packet_tool.decode_command(
            {k: v for k, v in sec.items() if k not in ("spi", "kic", "kid")} | {"packet": flipped}
        )
        assert tampered["checksum_valid"] is False


def test_opentelecoms_response_vector() -> None:
    case = next(c for c in VECTORS["opentelecoms_dataset0348"]["cases"] if c["name"] == "test-response-001")
    out = packet_tool.decode_response(
        {"packet": case["response_packet_without_udh"], "spi": "0001", "kic": "00", "kid": "00"}
    )
    assert out == {
        "tar": "b00010",
        "cntr": "0000000001",
        "pcntr": 0,
        "status": 0,
        "checksum": "",
        "checksum_valid": None,
        "data": "016e00",
    }


# --- codec-level checks the tool does not show -----------------------------------------------------


def test_aes_cmac_length_is_taken_from_chl_on_decode() -> None:
    keys = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
    command = CommandPacket(Spi(0x16, 0x19), 0x12, 0x12, b"\xb0\x00\x10", 7, bytes.fromhex("00a40004023f00"))
    packet = encode_command_packet(command, keys, checksum_length=4)
    assert packet[2] == 0x11  # CHL = 13 + 4
    opened = decode_command_packet(packet, keys)
    assert (opened.checksum_valid, len(opened.checksum), opened.data) == (True, 4, command.data)


def test_shadysim_full_block_of_padding_is_tolerated() -> None:
    # protocols.md §2.3: PCNTR = 8 on aligned data is accepted, only PCNTR <= len(data) matters.
    keys = PacketKeys(kic_key=bytes(range(1, 17)), kid_key=bytes(range(17, 33)))
    spi = Spi(0x06, 0x00)
    from ota_protocols.secured_packet.crypto import CipherKey

    cipher = CipherKey(CipherAlgorithm.TDES2_CBC, keys.kic_key or b"")
    mac = ChecksumKey(IntegrityAlgorithm.TDES2_MAC, keys.kid_key or b"")
    data = bytes(10)  # 6 + 8 + 10 = 24: aligned, a conformant sender would send PCNTR 0
    padded = data + bytes(8)
    header = (1 + 21 + len(padded)).to_bytes(2, "big") + b"\x15" + spi.to_bytes() + b"\x15\x15\xb0\x00\x10"
    counter = bytes(5) + b"\x08"
    cc = mac.compute(header + counter + padded)
    packet = header + cipher.encrypt(counter + cc + padded)
    opened = decode_command_packet(packet, keys)
    assert (opened.pcntr, opened.data, opened.checksum_valid) == (8, data, True)


def test_response_round_trip_with_every_status() -> None:
    keys = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
    spi = Spi(0x16, 0x39)
    for status in range(0x0D):
        user_data = encode_response_packet(
            ResponsePacket(b"\xb0\x00\x10", 5, status, b"\x01\x90\x00"), spi, 0x12, 0x12, keys
        )
        decoded = decode_response_packet(user_data, spi, 0x12, 0x12, keys)
        assert (decoded.status, decoded.checksum_valid, decoded.data) == (status, True, b"\x01\x90\x00")


def test_unsecured_error_por_is_read_although_spi2_asked_for_security() -> None:
    # sysmoISIM-SJA2 trace shape (protocols.md §6.4): RHL 0A, CNTR zero, status 06, no cipher, no CC.
    keys = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
    por = bytes.fromhex("027100000b0ab00010000000000000" + "06")
    decoded = decode_response_packet(por, Spi(0x16, 0x39), 0x12, 0x12, keys)
    assert (decoded.status, decoded.checksum_valid, decoded.ciphered) == (6, None, False)


def test_truncated_response_is_a_decode_error() -> None:
    keys = PacketKeys()
    with pytest.raises(DecodeError):
        decode_response_packet(bytes.fromhex("0271000005"), Spi(0, 1), 0, 0, keys)


def test_block_aligned_unsecured_por_is_read_in_clear_when_that_reading_verifies() -> None:
    # SPI2 asks for a ciphered PoR with CC, but the card sent it in clear with a CC (e.g. an error
    # PoR policy) and its length happens to be a multiple of the AES block: the clear reading verifies.
    keys = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
    asked = Spi(0x16, 0x39)
    clear_spi = Spi(0x16, 0x29)  # same, without PoR ciphering
    data = bytes(range(17))  # 7 + 8 + 17 = 32 octets after TAR: two AES blocks
    user_data = encode_response_packet(
        ResponsePacket(b"\xb0\x00\x10", 3, 0, data), clear_spi, 0x12, 0x12, keys
    )
    assert (len(user_data) - 9) % 16 == 0
    decoded = decode_response_packet(user_data, asked, 0x12, 0x12, keys)
    assert (decoded.ciphered, decoded.checksum_valid, decoded.data) == (False, True, data)
