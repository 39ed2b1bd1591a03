"""Profiles and templates (TOML), the sim-emulator CLI, and keys never reaching the log."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.errors import ConfigError
from ota_protocols.fleet import derive_card
from ota_protocols.secured_packet.command_packet import command_user_data
from sim_emulator.api import load_card, load_card_template
from sim_emulator.config import load_card_profile
from tests.sim_emulator.ota_kit import (
    EXAMPLE_CARD,
    SPEC,
    TEMPLATE_PATH,
    apdu,
    command_packet,
    envelope,
    new_card,
    send_script,
    transmit,
)

GOOD_KEYSET = """
[[keysets]]
kvn = 1
kic_algorithm = "aes"
kic = "000102030405060708090a0b0c0d0e0f"
kid_algorithm = "aes-cmac"
kid = "000102030405060708090a0b0c0d0e0f"
"""
IDENTITY = 'iccid = "898821100000000001"\nimsi = "001010000000001"\nmsisdn = "4917001"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def test_shipped_configs_load() -> None:
    template, identity = load_card_profile(EXAMPLE_CARD)
    assert [a.tar.hex() for a in template.app_profiles] == ["b00010", "000000", "bfff01"]
    assert "kic" not in repr(identity.keysets[0]) or "0001020304" not in repr(identity.keysets[0])
    fleet = load_card_template(TEMPLATE_PATH)
    assert {a.msl for a in fleet.app_profiles} == {0x16}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            IDENTITY + GOOD_KEYSET.replace('0e0f"\nkid_alg', '0e"\nkid_alg'),
            "x.toml: keysets[0].kic: expected 16, 24 or 32 bytes of hex, got 15",
        ),
        ("colour = 1\n" + IDENTITY + GOOD_KEYSET, "x.toml: colour: unknown key"),
        (IDENTITY + GOOD_KEYSET + "colour = 1\n", "x.toml: keysets[0].colour: unknown key"),
        (
            IDENTITY + '[[applications]]\ntar = "b00010"\nkind = "rfn"\n',
            "applications[0].kind: expected one of",
        ),
        (
            IDENTITY + '[[applications]]\ntar = "b000"\nkind = "rfm"\n',
            "applications[0].tar: expected 3 bytes",
        ),
        (
            IDENTITY + '[[applications]]\ntar = "b00010"\nkind = "rfm"\n[[applications]]\ntar = "b00010"\n'
            'kind = "ram"\n',
            "applications[1].tar: TAR b00010 already used",
        ),
        (
            IDENTITY + '[[files]]\npath = "3F00/7F99/6F01"\nstructure = "transparent"\nsize = 2\n',
            "files[0]: 3F00/7F99/6F01: parent 3F00/7F99 is not a DF",
        ),
        (IDENTITY + '[options]\nerror_por_style = "loud"\n', "options.error_por_style"),
        (
            IDENTITY + '[options]\nt0_get_response = "yes"\n',
            "options.t0_get_response: expected true or false",
        ),
        ('imsi = "001"\n', "iccid: missing"),
        ("iccid = [", "not valid TOML"),
    ],
)
def test_config_errors_name_file_and_key_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_card_profile(_write(tmp_path, text))
    assert message in str(info.value)


def test_template_rejects_identity(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="iccid: unknown key"):
        load_card_template(_write(tmp_path, IDENTITY))


def test_fleet_template_optional_ef_absent_on_index_7_only() -> None:
    script = apdu("00A4080C047F206F50 00D6000001 42")
    for index, sw in ((6, 0x9000), (7, 0x6A82), (17, 0x6A82), (8, 0x9000)):
        from ota_protocols.action_counter import split_counter_report
        from ota_protocols.apdu.remote_commands import CompactResponse
        from tests.sim_emulator.ota_kit import decode_por

        card = new_card(index)
        por = decode_por(send_script(card, script, 1, index=index).data, index=index)
        assert CompactResponse.decode(split_counter_report(por.data)[0]).sw == sw


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim_emulator.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_help() -> None:
    result = _cli("--help")
    assert result.returncode == 0 and "exchange" in result.stdout
    assert _cli("exchange", "--help").returncode == 0


def test_cli_select_and_read_binary_with_state(tmp_path: Path) -> None:
    profile = tmp_path / "card.toml"
    shutil.copy(EXAMPLE_CARD, profile)
    stdin = (
        "# select EF.ICCID and read it\n00A4000C022FE2\n\n00B000000A\n00A4080C047F206F46\n00D6000002 5859\n"
    )
    result = _cli("exchange", "--card", str(profile), stdin=stdin)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "9000" and lines[1].startswith("98881201") and lines[1].endswith("9000")
    assert lines[2:] == ["9000", "9000"]
    assert (tmp_path / "card.state.json").exists()
    again = _cli("exchange", "--card", str(profile), stdin="00A4080C047F206F46\n00B0000002\n")
    assert again.stdout.split() == ["9000", "58599000"]


def test_cli_bad_hex_line_exits_2_with_line_number(tmp_path: Path) -> None:
    result = _cli(
        "exchange",
        "--card",
        str(EXAMPLE_CARD),
        "--state",
        str(tmp_path / "s.json"),
        stdin="00A4000C023F00\nzz\n",
    )
    assert result.returncode == 2 and "line 2" in result.stderr and "Traceback" not in result.stderr


def test_cli_broken_profile_exits_2(tmp_path: Path) -> None:
    broken = _write(tmp_path, IDENTITY + GOOD_KEYSET.replace('"aes"', '"rot13"'))
    result = _cli("exchange", "--card", str(broken), stdin="")
    assert result.returncode == 2
    assert "x.toml: keysets[0].kic_algorithm" in result.stderr and "Traceback" not in result.stderr


def test_debug_log_never_shows_key_hex(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    card = new_card(0)
    send_script(card, apdu("00A4000C023F00"), 1)
    send_script(card, apdu("00A4000C023F00"), 1)  # replay: error path too
    profile_card = load_card(EXAMPLE_CARD, tmp_path / "s.json")
    transmit(profile_card, envelope(command_user_data(command_packet(apdu("00A4000C023F00"), 1))))
    logging.getLogger("sim_emulator").debug("%r %r", card, profile_card)
    text = caplog.text
    assert "c=" in text  # the per-APDU DEBUG lines are there
    keys = [k for ks in derive_card(SPEC, 0).keysets for k in (ks.kic, ks.kid, ks.kik)]
    _, identity = load_card_profile(EXAMPLE_CARD)
    keys += [k for ks in identity.keysets for k in (ks.kic, ks.kid, ks.kik) if k]
    for key in keys:
        assert key.hex() not in text.lower() and key.hex().upper() not in text


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=130))
def test_arbitrary_command_packets_always_get_an_answer(body: bytes) -> None:
    card = new_card(0)
    r = card.exchange(envelope(b"\x02\x70\x00" + body))
    assert len(r) >= 2 and r[-2] in (0x90, 0x61, 0x91, 0x6A)
