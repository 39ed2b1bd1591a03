"""Loopback test networks: the handset (SMSC + phones + SIMs) in the test's event loop on port 0, and
OTA campaigns run against it over real SMPP by the OTA server's runner.

This module and ota_lab are the only places that wire the three applications together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handset.config import load_config
from handset.service import HandsetService
from ota_server.config import load_campaign
from ota_server.service import CampaignRunner, verification

ROOT = Path(__file__).resolve().parents[2]
FLEET_TEMPLATE = ROOT / "configs" / "cards" / "fleet-template.toml"

RFM_SELECT_SPN = {
    "type": "update_binary",
    "path": "3F00/7F20/6F46",
    "offset": 0,
    "data": "014f54412044656d6f204e6574776f726b",
}

# SPN, then EF.CBMI (absent on cards whose fleet index % 10 == 7: 6A82, the card ends partial), then
# EF.HPPLMN.
RFM_THREE_ACTIONS: list[dict[str, Any]] = [
    RFM_SELECT_SPN,
    {"type": "update_binary", "path": "3F00/7F20/6F50", "offset": 0, "data": "0032ffffffffffffffff"},
    {"type": "update_binary", "path": "3F00/7F20/6F31", "offset": 0, "data": "01"},
]


def handset_toml(*, count: int = 12, seed: str = "it-fleet", radio: str = "", extra: str = "") -> str:
    return f"""
[smsc]
host = "127.0.0.1"
port = 0
system_id = "HANDSET"
throttle_per_s = 100000.0
throttle_burst = 100000
rp_timeout_s = 1.0

[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]

[[smsc.esmes]]
system_id = "other"
password = "other"
addresses = []

[fleet]
seed = "{seed}"
count = {count}
card_template = "{FLEET_TEMPLATE.as_posix()}"

[radio]
seed = 7
{radio}
{extra}
"""


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def campaign_toml(
    handset: Path,
    *,
    actions: list[dict[str, Any]],
    spi: str = "1639",
    kic: str = "12",
    kid: str = "12",
    tar: str = "b00010",
    password: str = "secret",
    name: str = "it",
    por_timeout_s: float = 3.0,
    max_attempts: int = 4,
    deadline_s: float | None = None,
) -> str:
    lines = ["[campaign]", f'name = "{name}"']
    if deadline_s is not None:
        lines.append(f"deadline_s = {deadline_s}")
    lines += [
        "[network]",
        f'handset_config = "{handset.as_posix()}"',
        "[smsc]",
        'system_id = "ota"',
        f'password = "{password}"',
        'source_addr = "12345"',
        "window = 32",
        "[targets]",
        "fleet = true",
        "[security]",
        f'spi = "{spi}"',
        f'kic = "{kic}"',
        f'kid = "{kid}"',
        f'tar = "{tar}"',
        "[retry]",
        f"por_timeout_s = {por_timeout_s}",
        f"max_attempts = {max_attempts}",
        "backoff_s = 0.2",
    ]
    for action in actions:
        lines.append("[[actions]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in action.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Network:
    service: HandsetService
    port: int
    config_path: Path

    def card(self, index: int) -> dict[str, Any]:
        report = self.service.report()
        return report["cards"][index]


@contextlib.asynccontextmanager
async def running_network(tmp: Path, toml: str, name: str = "handset.toml") -> AsyncIterator[Network]:
    path = tmp / name
    path.write_text(toml)
    service = HandsetService(load_config(path))
    port = await service.start(host="127.0.0.1", port=0)
    try:
        yield Network(service, port, path)
    finally:
        await service.stop()


async def run_campaign(
    network: Network,
    tmp: Path,
    toml: str,
    *,
    inventory: Path | None = None,
    db: str = "ota.sqlite",
    seed: int = 1,
) -> dict[str, Any]:
    """Run a campaign over SMPP against ``network``; ``inventory`` is the handset config the server
    derives its cards and keys from (default: the network's own)."""
    path = tmp / "campaign.toml"
    path.write_text(toml)
    runner = CampaignRunner(
        load_campaign(path), smsc=("127.0.0.1", network.port), db_path=tmp / db, seed=seed, progress=False
    )
    report = await runner.run()
    report["verification"] = verification(
        runner.outcomes(), runner.actions, runner.tar_hex, network.service.report()
    )
    return report


def stop_after(network: Network, submits: int) -> asyncio.Event:
    """An event set when the SMSC has received ``submits`` submit_sm (a hook, not a sleep)."""
    server = network.service.server
    assert server is not None
    reached = asyncio.Event()
    original = server._on_submit

    def hooked(conn: Any, pdu: Any) -> None:
        original(conn, pdu)
        if server.counters["submits"] >= submits:
            reached.set()

    server._on_submit = hooked  # type: ignore[method-assign]
    return reached


def card_application(card_report: dict[str, Any], tar: str) -> dict[str, Any]:
    return next(app for app in card_report["applications"] if app["tar"] == tar)
