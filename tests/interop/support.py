"""Helpers shared by the interop tests: a small fleet network, campaign files, tshark fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARD_TEMPLATE = ROOT / "configs" / "cards" / "fleet-template.toml"


def write_network(tmp: Path, *, count: int = 3) -> Path:
    """A handset config of ``count`` fleet cards (the demo's seed and template), SMSC on a free port."""
    path = tmp / "handset.toml"
    path.write_text(
        f"""
[smsc]
host = "127.0.0.1"
port = 0
system_id = "HANDSET"
smsc_address = "4917000000"

[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]

[fleet]
seed = "ota-sim-demo"
count = {count}
first_index = 0
iccid_prefix = "8988211"
imsi_prefix = "00101"
msisdn_prefix = "4917"
msisdn_digits = 12
card_template = "{CARD_TEMPLATE}"
issued_action_counter = 0

[radio]
seed = 1
"""
    )
    return path


def write_campaign(tmp: Path, network: Path, *, spi: str, name: str = "interop") -> Path:
    """One action (EF.SPN, 17 octets: one SMS), AES key set 1, RFM TAR b00010."""
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[campaign]
name = "{name}"

[network]
handset_config = "{network}"

[smsc]
system_id = "ota"
password = "secret"
source_addr = "12345"

[targets]
fleet = true

[security]
spi = "{spi}"
kic = "12"
kid = "12"
tar = "b00010"

[retry]
por_timeout_s = 5.0
max_attempts = 2
backoff_s = 0.5

[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "014f54412044656d6f204e6574776f726b"
"""
    )
    return path


def ota_server(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        check=False,
    )


def tshark_fields(pcap: Path, fields: list[str], *extra: str) -> list[list[str]]:
    """One tshark run: one row per frame, one column per field (multiple values joined by ',')."""
    command = ["tshark", "-r", str(pcap), *extra, "-T", "fields", "-E", "separator=|"]
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]
