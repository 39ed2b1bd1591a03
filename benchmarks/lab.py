"""The virtual-time lab (ota_lab.virtual): OTA transactions per wall-clock second, resident memory per
idle card, and campaign wall time as the fleet grows.

    python3 -m benchmarks.lab                                # 10^4 and 10^5 cards, 20 % loss each way
    python3 -m benchmarks.lab --cards 10000 100000 1000000   # the 10^6-card, 24-hour campaign too
    python3 -m benchmarks.lab --cards 10000 --profile        # cProfile of the hot path (top 25)
    python3 -m benchmarks.lab --idle-only --cards 1000000    # memory of an idle fleet only

Each size runs in its own process (clean RSS). The campaign: the demo's four RFM actions (two SMS
each) on every card, 20 % loss MT and MO, 2 s radio latency, SMSC store-and-forward (rp timeout
30 s, retries 10-300 s, validity 1 h), server PoR timeout 120 s, at most 8 attempts, the ESME paced at
``--rate`` SMS/s (default 40/s: a 10^6-card campaign then spans about a simulated day), deadline
24 h. "OTA transactions" = secured command packets the server sent (scripts + status queries), each
one an SMS-PP download the card processes when it arrives.

Memory: RSS (``/proc/self/statm``) after the imports, after building the lab (every card idle and
never touched: a list slot), and after the campaign (every card touched, asleep as a compressed
snapshot, its job closed): the differences divided by the fleet size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAB = """
[lab]
name = "bench-{cards}"
fleet_size = {cards}
[network]
handset_config = "{root}/configs/handset.toml"
[network.smsc]
throttle_per_s = 0.0
max_queued_mt = 10000000
[network.radio.mt]
delay_s = 2.0
[network.radio.mo]
delay_s = 2.0
[campaign]
path = "{root}/configs/campaigns/demo.toml"
[campaign.smsc]
max_messages_per_second = {rate}
[campaign.campaign]
concurrency = 1000
[faults]
mt_loss = 0.2
mo_loss = 0.2
[timing]
por_timeout_s = 120.0
deadline_s = 86400.0
max_attempts = 8
backoff_s = 30.0
max_backoff_s = 600.0
rp_timeout_s = 30.0
retry_min_s = 10.0
retry_max_s = 300.0
validity_s = 3600.0
"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(cards: int, rate: float, idle_only: bool, profile: bool) -> dict[str, object]:
    """One fleet size, in this process."""
    from ota_lab.config import load_lab
    from ota_lab.virtual import build_run

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        path.write_text(LAB.format(cards=cards, root=ROOT.as_posix(), rate=rate))
        lab = load_lab(path)
        base = _rss()
        started = time.perf_counter()
        run = build_run(lab, 1, Path(tmp))
        build_s = time.perf_counter() - started
        idle = _rss()
        out: dict[str, object] = {
            "cards": cards,
            "build_s": round(build_s, 2),
            "idle_bytes_per_card": round((idle - base) / cards, 1),
        }
        if idle_only:
            return out
        started = time.perf_counter()
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(run.run)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        else:
            run.run()
        wall = time.perf_counter() - started
        after = _rss()
        assert run.server is not None
        started = time.perf_counter()
        result = run.result(1)
        check_s = time.perf_counter() - started
        s = result.summary
        packets = int(s["packets_sent"])
        out |= {
            "campaign_wall_s": round(wall, 1),
            "check_wall_s": round(check_s, 1),
            "simulated_s": s["duration_s"],
            "packets": packets,
            "sms": s["messages_sent"],
            "tx_per_s": round(packets / wall),
            "events": run.clock.events_run,
            "after_bytes_per_card": round((after - base) / cards, 1),
            "snapshot_bytes_per_card": round(run.pool.snapshot_bytes() / max(1, run.pool.touched()), 1),
            "outcome": result.outcome(),
            "ok": result.ok,
        }
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rate", type=float, default=40.0, help="ESME pacing, SMS per second")
    parser.add_argument("--idle-only", action="store_true", help="memory of the idle fleet only")
    parser.add_argument("--profile", action="store_true", help="cProfile the campaign (in-process)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one or args.profile:
        for cards in args.cards:
            print(json.dumps(one(cards, args.rate, args.idle_only, args.profile)), flush=True)
        return 0
    print(
        f"{'cards':>9} {'build s':>8} {'idle B/card':>11} {'wall s':>8} {'sim s':>8} {'packets':>9} "
        f"{'tx/s':>6} {'B/card after':>12} {'snapshot B':>10}  outcome"
    )
    for cards in args.cards:
        command = [sys.executable, "-m", "benchmarks.lab", "--one", "--rate", str(args.rate)]
        command += ["--cards", str(cards)]
        if args.idle_only:
            command.append("--idle-only")
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['cards']:>9} {r['build_s']:>8} {r['idle_bytes_per_card']:>11} "
            f"{r.get('campaign_wall_s', '-'):>8} {r.get('simulated_s', '-'):>8} {r.get('packets', '-'):>9} "
            f"{r.get('tx_per_s', '-'):>6} {r.get('after_bytes_per_card', '-'):>12} "
            f"{r.get('snapshot_bytes_per_card', '-'):>10}  {r.get('outcome', '')}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
