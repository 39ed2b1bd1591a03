"""FleetSpec checks each value's type and names the key (a handset config is TOML other programs
write: ``count = "120"`` must be a config error, not a comparison failing later)."""

from __future__ import annotations

from typing import Any

import pytest

from ota_protocols.errors import ConfigError
from ota_protocols.fleet import FleetSpec


@pytest.mark.parametrize(
    ("fields", "key", "detail"),
    [
        ({"count": "120"}, "count", "expected an integer, got '120'"),
        ({"count": True}, "count", "expected an integer, got True"),  # a bool is not a count
        ({"count": 2.0}, "count", "expected an integer, got 2.0"),
        ({"first_index": "0"}, "first_index", "expected an integer, got '0'"),
        ({"msisdn_digits": None}, "msisdn_digits", "expected an integer, got None"),
        ({"seed": 7}, "seed", "expected a string, got 7"),
        ({"msisdn_prefix": 4917}, "msisdn_prefix", "expected a string, got 4917"),
        ({"issued_action_counter": "5"}, "issued_action_counter", "expected an integer, got '5'"),
        ({"keysets": [1]}, "keysets", "expected key set templates"),
        ({"seed": "x" * 100}, "", ""),  # a long value is fine when it has the right type
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_its_key(
    fields: dict[str, Any], key: str, detail: str
) -> None:
    values: dict[str, Any] = {"seed": "s", "count": 2} | fields
    if not key:
        assert FleetSpec(**values).count == 2
        return
    with pytest.raises(ConfigError) as info:
        FleetSpec(**values)
    assert (info.value.key_path, info.value.detail) == (key, detail)


def test_a_long_wrong_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        FleetSpec(seed="s", count="9" * 1000)  # type: ignore[arg-type]
    assert info.value.key_path == "count" and len(str(info.value)) < 80
