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
snapshot, its job closed): the differences divided by the fleet size. RSS never shrinks (CPython
keeps freed arenas and pymalloc pools), so ``--live`` also traces the Python heap (``tracemalloc``)
and reports the live bytes per card once every card is asleep: what the fleet really holds. Tracing
slows the run about threefold, so its tx/s are not comparable with an untraced run.
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


def one(
    cards: int,
    rate: float,
    idle_only: bool,
    profile: bool,
    shard: int = 0,
    shards: int = 1,
    live: bool = False,
) -> dict[str, object]:
    """One fleet size (one shard of it), in this process."""
    import tracemalloc

    from ota_lab.config import load_lab
    from ota_lab.virtual import build_run

    if live:
        tracemalloc.start()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        path.write_text(LAB.format(cards=cards, root=ROOT.as_posix(), rate=rate))
        lab = load_lab(path)
        import gc

        gc.collect()
        base = _rss()
        base_live = tracemalloc.get_traced_memory()[0] if live else 0
        started = time.perf_counter()
        run = build_run(lab, 1, Path(tmp), shard=shard, shards=shards)
        mine = run.pool.spec.count
        build_s = time.perf_counter() - started
        idle = _rss()
        out: dict[str, object] = {
            "cards": cards,
            "build_s": round(build_s, 2),
            "shard_cards": mine,
            "idle_bytes": idle - base,
            "idle_bytes_per_card": round((idle - base) / max(1, mine), 1),
        }
        if idle_only:
            return out
        started = time.perf_counter()
        cpu_started = time.process_time()
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(run.run)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        else:
            run.run()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        after = _rss()
        assert run.server is not None
        started = time.perf_counter()
        result = run.result(1, rows=False)
        check_s = time.perf_counter() - started
        s = result.summary
        invariants = result.invariants
        outcome, ok = result.outcome(), result.ok
        del result
        run.network.sleep_all()  # every card idle (asleep) now: the memory of an idle fleet after a campaign
        gc.collect()
        asleep = _rss()
        if live:
            traced = tracemalloc.get_traced_memory()[0] - base_live
            out["live_bytes_per_card"] = round(traced / max(1, mine), 1)
        packets = int(s["packets_sent"])
        out |= {
            "campaign_wall_s": round(wall, 1),
            "campaign_cpu_s": round(cpu, 2),
            "check_wall_s": round(check_s, 1),
            "simulated_s": s["duration_s"],
            "packets": packets,
            "sms": s["messages_sent"],
            "tx_per_s": round(packets / wall),
            "events": run.clock.events_run,
            "after_bytes": after - base,
            "after_bytes_per_card": round((after - base) / max(1, mine), 1),
            "asleep_bytes": asleep - base,
            "asleep_bytes_per_card": round((asleep - base) / max(1, mine), 1),
            "lost": invariants.lost,
            "duplicated": invariants.duplicated,
            "mismatches": invariants.mismatches,
            "snapshot_bytes_per_card": round(run.pool.snapshot_bytes() / max(1, run.pool.touched()), 1),
            "outcome": outcome,
            "ok": ok,
        }
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rate", type=float, default=40.0, help="ESME pacing, SMS per second")
    parser.add_argument("--idle-only", action="store_true", help="memory of the idle fleet only")
    parser.add_argument("--profile", action="store_true", help="cProfile the campaign (in-process)")
    parser.add_argument("--live", action="store_true", help="trace the heap: live bytes per idle card")
    parser.add_argument("--shards", type=int, default=2, help="worker processes per fleet (default 2)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one or args.profile:
        shards = args.shards if args.one else 1
        for cards in args.cards:
            r = one(cards, args.rate, args.idle_only, args.profile, args.shard, shards, args.live)
            print(json.dumps(r), flush=True)
        return 0
    print("tx/s: packets / the slowest shard's campaign wall time (K shards in parallel); CPU µs/tx: the"
          " shards' CPU time (process_time) / packets, what the campaign costs whatever else runs")
    print(
        f"{'cards':>9} {'K':>2} {'idle B/card':>11} {'wall s':>8} {'sim s':>8} {'packets':>9} "
        f"{'tx/s':>6} {'CPU µs/tx':>9} {'B/card after':>12} {'B/card asleep':>13} {'live B/card':>11} "
        f"{'snapshot B':>10}  invariants"
    )
    for cards in args.cards:
        started = time.perf_counter()
        procs = []
        for shard in range(args.shards):
            command = [sys.executable, "-m", "benchmarks.lab", "--one", "--rate", str(args.rate)]
            command += ["--cards", str(cards), "--shard", str(shard), "--shards", str(args.shards)]
            if args.idle_only:
                command.append("--idle-only")
            if args.live:
                command.append("--live")
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT))
        parts = []
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                print(err.decode()[-2000:], file=sys.stderr)
                return 1
            parts.append(json.loads(out.decode().strip().splitlines()[-1]))
        wall = time.perf_counter() - started

        def total(key: str, parts: list[dict[str, object]] = parts) -> float:
            return sum(float(p.get(key, 0)) for p in parts)  # type: ignore[arg-type]

        idle = round(total("idle_bytes") / cards, 1)
        if args.idle_only:
            print(f"{cards:>9} {args.shards:>2} {idle:>11}", flush=True)
            continue
        packets = int(total("packets"))
        campaign = max(float(p["campaign_wall_s"]) for p in parts)  # type: ignore[arg-type]
        snap = round(sum(float(p["snapshot_bytes_per_card"]) for p in parts) / len(parts), 1)  # type: ignore[arg-type]
        live: object = "-"
        if args.live:
            traced = sum(float(p["live_bytes_per_card"]) * float(p["shard_cards"]) for p in parts)  # type: ignore[arg-type]
            live = round(traced / cards, 1)
        inv = f"lost {int(total('lost'))} dup {int(total('duplicated'))} mismatch {int(total('mismatches'))}"
        print(
            f"{cards:>9} {args.shards:>2} {idle:>11} {campaign:>8} "
            f"{max(float(p['simulated_s']) for p in parts):>8} {packets:>9} "  # type: ignore[arg-type]
            f"{round(packets / campaign):>6} {round(total('campaign_cpu_s') / packets * 1e6):>9} "
            f"{round(total('after_bytes') / cards, 1):>12} "
            f"{round(total('asleep_bytes') / cards, 1):>13} {live!s:>11} {snap:>10}  "
            f"{inv} (total wall {wall:.1f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
