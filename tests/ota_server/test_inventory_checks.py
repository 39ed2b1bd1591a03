"""cards import: the ICCID's Luhn digit, a masked export fed back, odd-length key hex (issue #11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ota_protocols.errors import ConfigError
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.inventory import COLUMNS, export_rows, parse_inventory
from ota_server.model import Card, Keyset

HEADER = ",".join(COLUMNS) + "\n"
KIC, KID = "11" * 16, "22" * 16
ROW = f"8988211000000000003,001010000000001,491700000001,1,aes,{KIC},aes-cmac,{KID},pilot\n"


def problem(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cards.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_inventory(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2:") and KIC not in message and KID not in message
    return message.split(f"{path}:2:", 1)[1]


def test_an_iccid_whose_luhn_digit_is_wrong_is_refused(tmp_path: Path) -> None:
    bad = ROW.replace("8988211000000000003", "8988211000000000004")
    assert problem(tmp_path, HEADER + bad) == (
        "iccid: check digit 4 is wrong: the Luhn digit of the first 18 digits is 3 (ITU-T E.118)"
    )


def test_a_right_luhn_digit_imports(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(HEADER + ROW)
    ((card, keysets),) = parse_inventory(path)
    assert card.iccid == "8988211000000000003" and keysets[0].kic == bytes.fromhex(KIC)


def test_a_masked_export_fed_back_points_to_with_keys(tmp_path: Path) -> None:
    card = Card(iccid="8988211000000000003", imsi="001010000000001", msisdn="491700000001", tags=())
    keyset = Keyset(
        kvn=1,
        kic_algorithm=CipherAlgorithm.AES_CBC,
        kid_algorithm=IntegrityAlgorithm.AES_CMAC,
        kic=bytes.fromhex(KIC),
        kid=bytes.fromhex(KID),
    )
    masked = export_rows([card], {card.iccid: {1: keyset}}, with_keys=False)
    assert problem(tmp_path, masked) == (
        "kic: the key is masked ('*'): 'ota-server cards export' masks keys unless given --with-keys; "
        "export again with --with-keys to re-import them"
    )


def test_odd_length_key_hex_says_so(tmp_path: Path) -> None:
    assert problem(tmp_path, HEADER + ROW.replace(KIC, KIC[:-1])) == (
        "kic: not hex: odd number of hex digits (31): each octet takes two"
    )


def test_the_command_line_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(HEADER + ROW.replace(KIC, "*"))
    done = subprocess.run(
        [sys.executable, "-m", "ota_server.cli", "cards", "import", str(path), "--db", str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"ota-server: {path}:2:kic: the key is masked") and "--with-keys" in line
