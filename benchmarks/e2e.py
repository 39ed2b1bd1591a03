"""End-to-end benchmark: OTA transactions per second over loopback SMPP.

    python -m benchmarks.e2e [--cards 1000 10000] [--spi 1619] [--actions 1] [--profile]

One transaction = a secured command packet built and reserved in SQLite ->
submit_sm -> SMSC -> SMS-DELIVER -> ENVELOPE -> the SIM verifies, runs and signs
its PoR -> DELIVER-REPORT (or SMS-SUBMIT) -> deliver_sm -> the server verifies the
PoR and reconciles the action counter in the database. The OTA server runs in
this process and the network (handset SMSC, phones, SIMs) in its own child
process, as in `ota-server campaign run` with the embedded network; so the two
sides get a core each on a 2-core machine.

Printed per fleet size: wall time of the campaign, script transactions/s, all
secured packets/s (status queries included) and SMS/s, and the verification
result. ``--profile`` adds the server process's hottest functions (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
from pathlib import Path
from typing import Any

from ota_server.config import load_campaign
from ota_server.service import CampaignRunner

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "configs" / "cards" / "fleet-template.toml"

HANDSET = """
[smsc]
host = "127.0.0.1"
port = 0
system_id = "BENCH"
throttle_per_s = 1000000.0
throttle_burst = 1000000
max_queued_mt = 1000000
[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]
[fleet]
seed = "bench"
count = {count}
card_template = "{template}"
{issued}
[radio]
seed = 1
"""

CAMPAIGN = """
[campaign]
name = "bench"
deadline_s = 600
[network]
handset_config = "{handset}"
[smsc]
system_id = "ota"
password = "secret"
source_addr = "12345"
window = {window}
[targets]
fleet = true
[security]
spi = "{spi}"
kic = "12"
kid = "12"
tar = "b00010"
[retry]
por_timeout_s = 60.0
max_attempts = 3
backoff_s = 1.0
"""

ACTION = """
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "014f54412042656e63686d61726b202020"  # EF.SPN: 17 octets
"""


def run_once(
    cards: int, spi: str, actions: int, window: int, profile: bool, query_first: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ota-bench-") as tmp_name:
        tmp = Path(tmp_name)
        handset = tmp / "handset.toml"
        handset.write_text(
            HANDSET.format(
                count=cards,
                template=TEMPLATE.as_posix(),
                issued="" if query_first else "issued_action_counter = 0",
            )
        )
        campaign = tmp / "campaign.toml"
        campaign.write_text(
            CAMPAIGN.format(handset=handset.as_posix(), spi=spi, window=window) + ACTION * actions
        )
        runner = CampaignRunner(load_campaign(campaign), db_path=tmp / "bench.sqlite", progress=False)
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        report = asyncio.run(runner.run())
        if profiler is not None:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            report["profile"] = out.getvalue()
        return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description="OTA transactions per second, end to end over loopback SMPP."
    )
    parser.add_argument("--cards", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--spi", default="1619", help="1619: PoR by DELIVER-REPORT (default); 1639: by SMS-SUBMIT"
    )
    parser.add_argument("--actions", type=int, default=1, help="actions per script (default 1)")
    parser.add_argument("--window", type=int, default=256, help="outstanding submit_sm (default 256)")
    parser.add_argument("--profile", action="store_true", help="print the server's hottest functions")
    parser.add_argument(
        "--query-first",
        action="store_true",
        help="the server does not know the issued counters: a status query precedes each script",
    )
    args = parser.parse_args()
    print(
        f"{'cards':>7} {'wall s':>8} {'scripts/s':>10} {'packets/s':>10} {'SMS/s':>8} "
        f"{'confirmed':>9}  verification (lost/dup/mismatch)"
    )
    for cards in args.cards:
        report = run_once(cards, args.spi, args.actions, args.window, args.profile, args.query_first)
        summary = report["summary"]
        wall = summary["duration_s"]
        check = report.get("verification", {})
        print(
            f"{cards:>7} {wall:>8.2f} {summary['scripts_sent'] / wall:>10.0f} "
            f"{summary['packets_sent'] / wall:>10.0f} {summary['messages_sent'] / wall:>8.0f} "
            f"{summary['confirmed']:>9}  {check.get('lost_actions')}/{check.get('duplicated_actions')}/"
            f"{check.get('counter_mismatches')}"
        )
        if summary["confirmed"] != cards:
            print(
                f"  warning: only {summary['confirmed']} of {cards} cards confirmed; first reason: "
                f"{next((c['reason'] for c in report['cards'] if c['state'] != 'confirmed'), '')}"
            )
        if "profile" in report:
            print(report["profile"])


if __name__ == "__main__":
    main()
