"""The packet tool's input edges (issue #11): stdin that is not JSON or is nested without end, odd hex,
and the per-command key lists the help is built from (the same tuples the commands check against)."""

from __future__ import annotations

import pytest

from ota_protocols.errors import ConfigError
from ota_server.packet_tool import COMMANDS, KEYS, command_help, read_json


def test_deeply_nested_json_is_one_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        read_json("[" * 100_000)
    assert str(info.value) == "stdin: JSON nested too deeply (expected one flat object)"


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        read_json('{"spi": "16",\n "kic": }')
    assert str(info.value).startswith("stdin: invalid JSON at line 2 column 9: ")
    assert read_json('{"spi": "1619"}') == {"spi": "1619"}


def test_odd_hex_says_so() -> None:
    with pytest.raises(ConfigError) as info:
        COMMANDS["encode-command"]({"spi": "161"})
    assert str(info.value) == "spi: not hex: odd number of hex digits (3): each octet takes two"


@pytest.mark.parametrize("command", sorted(KEYS))
def test_help_lists_exactly_the_keys_the_command_takes(command: str) -> None:
    text = command_help(command)
    keys = KEYS[command]
    for key in (*keys.accepted, *keys.output):
        assert key in text, key
    with pytest.raises(ConfigError) as info:
        COMMANDS[command]({"no_such_key": 1})
    assert str(info.value) == f"no_such_key: unknown key (allowed: {', '.join(keys.accepted)})"


@pytest.mark.parametrize(
    ("command", "key"),
    [
        ("encode-command", "spi"),
        ("encode-response", "spi"),
        ("decode-command", "user_data"),  # exactly one of user_data and packet
        ("decode-response", "user_data"),
    ],
)
def test_an_empty_object_names_the_first_missing_key(command: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        COMMANDS[command]({})
    assert info.value.key_path == key
