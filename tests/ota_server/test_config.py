"""Campaign files: the shipped demo loads; every mistake names the file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ota_protocols.errors import ConfigError
from ota_server.config import load_campaign, load_network_inventory

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "campaigns" / "demo.toml"

MINIMAL = """
[campaign]
name = "x"
[network]
handset_config = "h.toml"
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
data = "00"
"""


def test_demo_campaign_loads_with_four_counted_actions() -> None:
    config = load_campaign(DEMO)
    assert config.campaign.name == "demo"
    assert len(config.actions) == 4
    assert [a.counted.ins for a in config.actions] == [0xD6, 0xDC, 0xD6, 0xD6]
    assert config.security.tar == bytes.fromhex("b00010") and config.security.kic == 0x12
    assert config.network.handset_config == DEMO.parent / "../handset.toml"


def test_demo_network_has_at_least_100_cards_and_the_credentials() -> None:
    config = load_campaign(DEMO)
    assert config.network.handset_config is not None
    inventory = load_network_inventory(config.network.handset_config)
    assert inventory.fleet.count >= 100
    assert (config.smsc.system_id, config.smsc.password) in inventory.esmes


@pytest.mark.parametrize(
    ("patch", "key", "message"),
    [
        (
            ('path = "3F00/7F20/6F46"', 'path = "3F00/6F4"'),
            "actions[0].path",
            "file identifier '6F4' is not 4 hex digits",
        ),
        (('data = "00"', 'data = "0g"'), "actions[0].data", "not hex: character 2 ('g') is not a hex digit"),
        (('type = "update_binary"', 'type = "format_card"'), "actions[0].type", "unknown action type"),
        (('name = "x"', 'name = "x"\ncolour = "red"'), "campaign.colour", "unknown key"),
        (("[network]", '[security]\nspi = "16"\n[network]'), "security.spi", "expected 2 octet(s)"),
        (("[network]", "[retry]\nmax_attempts = 0\n[network]"), "retry.max_attempts", "outside 1..1000"),
        (("[network]", '[smsc]\nwindow = "big"\n[network]'), "smsc.window", "expected an integer"),
        (('name = "x"', ""), "campaign.name", "required key missing"),
    ],
)
def test_mistakes_name_file_and_key_path(
    tmp_path: Path, patch: tuple[str, str], key: str, message: str
) -> None:
    path = tmp_path / "x.toml"
    path.write_text(MINIMAL.replace(*patch, 1))
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    assert str(info.value).startswith(f"{path}: {key}: "), str(info.value)
    assert message in str(info.value)


def test_ram_install_expands_into_one_action_per_counted_command(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        MINIMAL + '[[actions]]\ntype = "ram_install"\nload_file_aid = "a0000000871001"\n'
        'module_aid = "a000000087100101"\n'
        'application_aid = "a000000087100101"\nload_file = "' + "ab" * 100 + '"\n'
        '[[actions]]\ntype = "raw"\napdus = ["00a4000c023f00", "00d6000001ff"]\n'
    )
    config = load_campaign(path)
    kinds = [a.counted.ins for a in config.actions]
    assert kinds == [0xD6, 0xE6, 0xE8, 0xE8, 0xE6, 0xD6]  # INSTALL, 2 LOAD blocks, INSTALL, raw
    assert len(config.actions[-1].apdus) == 2
