"""``ota-server packet`` as a user runs it: JSON in, JSON out, exit 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PYSIM_3DES = {
    "spi": "0619",
    "kic": "35",
    "kid": "35",
    "tar": "B00011",
    "cntr": "0000000000",
    "data": "00A40004023F00",
    "kic_key": "300102030405060708090A0B0C0D0E0F",
    "kid_key": "301102030405060708090A0B0C0D0E0F",
}
EXPECTED_PACKET = "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"


def run(command: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", "packet", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_encode_then_decode_through_the_console_script() -> None:
    encoded = run("encode-command", json.dumps(PYSIM_3DES))
    assert encoded.returncode == 0, encoded.stderr
    out = json.loads(encoded.stdout)
    assert out["packet"] == EXPECTED_PACKET
    decoded = run(
        "decode-command",
        json.dumps(
            {
                "user_data": out["user_data"],
                "kic_key": PYSIM_3DES["kic_key"],
                "kid_key": PYSIM_3DES["kid_key"],
            }
        ),
    )
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["data"] == "00a40004023f00"
    assert json.loads(decoded.stdout)["checksum_valid"] is True


@pytest.mark.parametrize(
    ("command", "stdin", "names"),
    [
        ("encode-command", "{not json", "stdin"),
        ("encode-command", json.dumps(PYSIM_3DES | {"kic_key": "30010203"}), "kic_key"),
        ("encode-command", json.dumps(PYSIM_3DES | {"tar": "b000"}), "tar"),
        ("encode-command", json.dumps(PYSIM_3DES | {"cntr": "zz"}), "cntr"),
        ("encode-command", json.dumps(PYSIM_3DES | {"colour": "red"}), "colour"),
        ("encode-command", json.dumps({k: v for k, v in PYSIM_3DES.items() if k != "kid_key"}), "kid_key"),
        ("encode-command", json.dumps(PYSIM_3DES | {"kic_implicit": "rot13", "kic": "30"}), "kic_implicit"),
        ("decode-command", json.dumps({"packet": "0020"}), "packet"),
        (
            "decode-response",
            json.dumps({"user_data": "027100", "spi": "0619", "kic": "35", "kid": "35"}),
            "user_data",
        ),
        ("encode-response", json.dumps(PYSIM_3DES | {"status": 300}), "status"),
        ("encode-command", "[]", "JSON object"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_key(command: str, stdin: str, names: str) -> None:
    result = run(command, stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr


def test_keys_never_appear_in_error_messages() -> None:
    result = run("encode-command", json.dumps(PYSIM_3DES | {"spi": "0619", "kic": "31", "kid": "31"}))
    # KIc 31 asks for single DES with a 16-octet key: refused, without echoing the key.
    assert result.returncode == 2
    assert PYSIM_3DES["kic_key"].lower() not in result.stderr.lower()


def test_oversized_data_is_a_usage_error_naming_data() -> None:
    result = run("encode-command", json.dumps(PYSIM_3DES | {"data": "00" * 70000}))
    assert result.returncode == 2
    assert "data" in result.stderr and "Traceback" not in result.stderr
