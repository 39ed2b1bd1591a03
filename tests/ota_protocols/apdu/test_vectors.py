"""Every entry of tests/vectors/apdu_vectors.json, decoded and re-encoded byte for byte."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu
from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.apdu.proactive import (
    CommandDetails,
    SendShortMessage,
    TerminalResponse,
    decode_proactive,
    fetch_apdu,
    get_response_apdu,
    terminal_profile_apdu,
)
from ota_protocols.apdu.remote_commands import (
    CompactResponse,
    ExpandedCommandScript,
    ExpandedResponse,
    decode_compact_commands,
    encode_compact_commands,
)
from ota_protocols.tlv import Tlv

VECTORS_FILE = Path(__file__).parents[2] / "vectors" / "apdu_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def _b(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _hex(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])


def check_send_short_message(v: dict[str, Any]) -> None:
    expected = SendShortMessage(
        bytes.fromhex(v["tpdu"]), _b(v["address"]), _b(v["alpha"]), v["command_number"], v["qualifier"]
    )
    assert expected.encode() == _hex(v)
    assert SendShortMessage.decode(_hex(v)) == expected
    assert decode_proactive(_hex(v)).command_details == CommandDetails(
        v["command_number"], 0x13, v["qualifier"]
    )
    if "expected_prefix" in v:
        assert expected.encode().startswith(bytes.fromhex(v["expected_prefix"]))


def check_terminal_response_apdu(v: dict[str, Any]) -> None:
    expected = TerminalResponse(
        CommandDetails(*v["command_details"]), v["general_result"], bytes.fromhex(v["additional_info"])
    )
    assert expected.to_apdu().encode() == _hex(v)
    assert TerminalResponse.from_apdu(CommandApdu.decode(_hex(v))) == expected


def check_envelope_apdu(v: dict[str, Any]) -> None:
    expected = SmsPpDownload(bytes.fromhex(v["tpdu"]), _b(v["smsc_address"]))
    assert expected.to_apdu(v["cla"]).encode() == _hex(v)
    assert expected.to_apdu(v["cla"], with_le=v["with_le"]).encode() == _hex(v)
    assert SmsPpDownload.from_apdu(CommandApdu.decode(_hex(v))) == expected


def check_envelope_apdu_decode_only(v: dict[str, Any]) -> None:
    decoded = SmsPpDownload.from_apdu(CommandApdu.decode(_hex(v)))
    assert decoded == SmsPpDownload(bytes.fromhex(v["tpdu"]), _b(v["smsc_address"]))
    assert decoded.to_apdu().encode() == bytes.fromhex(v["canonical_hex"])


def check_compact_commands(v: dict[str, Any]) -> None:
    apdus = [CommandApdu.decode(bytes.fromhex(a)) for a in v["apdus"]]
    assert encode_compact_commands(apdus) == _hex(v)
    assert decode_compact_commands(_hex(v)) == apdus


def check_compact_response(v: dict[str, Any]) -> None:
    expected = CompactResponse(v["executed"], v["sw"], bytes.fromhex(v["data"]))
    assert expected.encode() == _hex(v)
    assert CompactResponse.decode(_hex(v)) == expected


def check_expanded_command(v: dict[str, Any]) -> None:
    expected = ExpandedCommandScript(
        tuple(CommandApdu.decode(bytes.fromhex(a)) for a in v["apdus"]),
        _b(v["immediate_action"]),
        _b(v["error_action"]),
        _b(v["script_chaining"]),
        v["indefinite"],
        tuple(Tlv(tag, bytes.fromhex(value)) for tag, value in v["unknown"]),
    )
    assert expected.encode() == _hex(v)
    assert ExpandedCommandScript.decode(_hex(v)) == expected


def check_expanded_response(v: dict[str, Any]) -> None:
    expected = ExpandedResponse(
        v["executed"],
        tuple(ResponseApdu.decode(bytes.fromhex(r)) for r in v["r_apdus"]),
        _b(v["immediate_action_response"]),
        _b(v["chaining_response"]),
        v["bad_format"],
        v["indefinite"],
    )
    assert expected.encode() == _hex(v)
    assert ExpandedResponse.decode(_hex(v)) == expected


def check_fetch_apdu(v: dict[str, Any]) -> None:
    apdu = fetch_apdu(v["length"], v["cla"])
    assert apdu.encode() == apdu.encode_t0() == _hex(v)


def check_get_response_apdu(v: dict[str, Any]) -> None:
    apdu = get_response_apdu(v["length"], v["cla"])
    assert apdu.encode() == apdu.encode_t0() == _hex(v)
    assert apdu.ins in CASE2_INSTRUCTIONS


def check_terminal_profile_apdu(v: dict[str, Any]) -> None:
    assert terminal_profile_apdu(bytes.fromhex(v["profile"]), v["cla"]).encode() == _hex(v)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "send_short_message": check_send_short_message,
    "terminal_response_apdu": check_terminal_response_apdu,
    "envelope_apdu": check_envelope_apdu,
    "envelope_apdu_decode_only": check_envelope_apdu_decode_only,
    "compact_commands": check_compact_commands,
    "compact_response": check_compact_response,
    "expanded_command": check_expanded_command,
    "expanded_response": check_expanded_response,
    "fetch_apdu": check_fetch_apdu,
    "get_response_apdu": check_get_response_apdu,
    "terminal_profile_apdu": check_terminal_profile_apdu,
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    assert vector["source"], "every vector names its source"
    CHECKS[vector["kind"]](vector)


def test_every_codec_has_a_vector() -> None:
    assert {v["kind"] for v in VECTORS} == set(CHECKS)
    assert len({v["id"] for v in VECTORS}) == len(VECTORS)
