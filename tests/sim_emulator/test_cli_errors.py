"""sim-emulator's command line on bad input (issue #11): one short line naming the stdin line and the
problem, never the input itself, never a traceback; ``sim-emulator:`` and no exception class name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim_emulator.ota_kit import EXAMPLE_CARD


def exchange(tmp_path: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "card.toml"
    shutil.copy(EXAMPLE_CARD, profile)
    return subprocess.run(
        [sys.executable, "-m", "sim_emulator.cli", "exchange", "--card", str(profile), *extra],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_an_odd_number_of_hex_digits_is_named(tmp_path: Path) -> None:
    line = one_line(exchange(tmp_path, "00A4000C023F00\n00A4000C023F0\n"))
    assert line == "sim-emulator: stdin line 2: not hex: odd number of hex digits (13): each octet takes two"


def test_a_huge_garbage_line_is_not_echoed(tmp_path: Path) -> None:
    line = one_line(exchange(tmp_path, "x" * 4_000_000 + "\n"))
    assert line.startswith("sim-emulator: stdin line 1: ") and len(line) < 200, line[:300]


def test_a_huge_hex_line_is_longer_than_any_apdu(tmp_path: Path) -> None:
    line = one_line(exchange(tmp_path, "00" * 2_000_000 + "\n"))
    assert "4,000,000 characters: longer than the longest command APDU (65,544 octets" in line


@pytest.mark.parametrize("level", [("--log-level", "debug"), ("-v",)])
def test_log_level_after_the_subcommand_and_the_old_v(tmp_path: Path, level: tuple[str, ...]) -> None:
    where = list(level) if level == ("-v",) else []
    profile = tmp_path / "card.toml"
    shutil.copy(EXAMPLE_CARD, profile)
    args = [*where, "exchange", "--card", str(profile), *([] if where else level)]
    done = subprocess.run(
        [sys.executable, "-m", "sim_emulator.cli", *args],
        input="00A4000C023F00\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.split() == ["9000"]
    assert "DEBUG" in done.stderr  # one line per APDU


def test_a_broken_profile_names_file_and_key_without_the_class_name(tmp_path: Path) -> None:
    broken = tmp_path / "card.toml"
    broken.write_text(EXAMPLE_CARD.read_text().replace('kic_algorithm = "aes"', 'kic_algorithm = "rot13"', 1))
    done = subprocess.run(
        [sys.executable, "-m", "sim_emulator.cli", "exchange", "--card", str(broken)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_line(done)
    assert (
        line.startswith(f"sim-emulator: {broken}: keysets[0].kic_algorithm: ") and "ConfigError" not in line
    )
