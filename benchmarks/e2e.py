"""End-to-end benchmark: OTA transactions per second over loopback SMPP, against the bare SMPP ceiling.

    python -m benchmarks.e2e [--cards 1000 10000] [--spi 1619] [--actions 1] [--window 256]
                             [--ceiling-messages 20000] [--profile] [--profile-handset FILE]

One transaction = a secured command packet built and reserved in SQLite ->
submit_sm -> SMSC -> SMS-DELIVER -> ENVELOPE -> the SIM verifies, runs and signs
its PoR -> DELIVER-REPORT (or SMS-SUBMIT) -> deliver_sm -> the server verifies the
PoR and reconciles the action counter in the database. The OTA server runs in
this process and the network (handset SMSC, phones, SIMs) in its own child
process, as in `ota-server campaign run` with the embedded network; so the two
sides get a core each on a 2-core machine.

The ceiling (issue #14) is measured in the same run, before and after each fleet size, by
:mod:`benchmarks.smpp_ceiling`: a bare smpplib ESME against an asyncio responder on smpplib's
codec, two processes, no crypto, no card, no database, the same window. The machine is shared,
so wall figures are noisy: compare the OTA figure with the ceiling of the same run (the better
of its two ceiling runs, the stricter comparison), and read the CPU per transaction, which other
load disturbs far less.

Printed per fleet size: wall time of the campaign, script transactions/s, all secured packets/s
(status queries included) and SMS/s over that wall time, and the verification against the cards'
own journals (lost/duplicated/mismatched actions must all be 0; the exit status is 1 otherwise).
Then the flow, from the first submit_sm to the last PoR (read from /proc every 20 ms, Linux only;
the wall time also holds the first group commit and the network's shutdown, which writes its
report): its transactions/s (the OTA figure), CPU-µs per transaction and busy share of the
server process (all threads but the sampler's own), of its ESME thread alone, and of the
network process; the submit_sm -> submit_sm_resp round-trip times seen by the ESME; how long the
server held each deliver_sm before its deliver_sm_resp was written (read by the ESME thread -> PoR
checked and committed on the loop -> acknowledged: the SMSC's MO window, 256 deliver_sm by
default, caps the flow at window / hold time); and the OTA figure as a fraction of the ceiling
(goal: at least 0.5).

``--profile`` adds the server process's hottest functions (cProfile).
``--profile-handset FILE`` starts the network itself under cProfile (``handset serve``,
stopped with SIGINT so the profile is written to FILE, one run per fleet size with
the size appended to the name) and runs the campaign against it as with
``ota-server campaign run --smsc``; there is then no verification.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import smpp_ceiling
from ota_server.commit_writer import THREAD_NAME as COMMIT_WRITER_THREAD
from ota_server.config import load_campaign
from ota_server.service import CampaignRunner
from ota_server.smpp_link import THREAD_NAME as SMPP_LINK_THREAD

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


def _start_profiled_network(handset: Path, tmp: Path, out: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = tmp / "handset-ready"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cProfile", "-o", str(out), "-m", "handset.cli", "serve"),
            *("--config", str(handset), "--port", "0", "--ready-file", str(ready)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60.0
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the profiled network did not start")
        time.sleep(0.05)
    return proc, int(ready.read_text())


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(stat_path: str) -> float:
    """utime + stime of a process or thread, from its /proc stat line (0.0 once it is gone)."""
    try:
        with open(stat_path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _stat(pid: int, thread: threading.Thread) -> str:
    return f"/proc/{pid}/task/{thread.native_id}/stat"


class _CpuSampler:
    """Samples (time, server CPU, ESME thread CPU, network CPU, sent, PoRs, commit writer CPU)
    every 20 ms.

    The server figure is this process's CPU less the sampler thread's own: the sampler is the
    benchmark's, not the server's. Each tick reads a handful of ``/proc`` files: the ESME threads,
    once found, are kept; the network is a child of the main thread (the event loop's, which
    starts it), read from that thread's ``children`` list."""

    def __init__(self, runner: CampaignRunner) -> None:
        self.runner = runner
        self.samples: list[tuple[float, float, float, float, int, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> _CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pid = os.getpid()
        own = f"/proc/{pid}/task/{threading.get_native_id()}/stat"
        children = f"/proc/{pid}/task/{pid}/children"
        esme_stats: list[str] = []
        writer_stats: list[str] = []
        while not self._stop.wait(0.02):
            if not esme_stats or not writer_stats:
                # A thread just started may not have its native id yet: found again next tick.
                threads = [t for t in threading.enumerate() if t.native_id is not None]
                esme_stats = [_stat(pid, t) for t in threads if t.name == SMPP_LINK_THREAD]
                writer_stats = [_stat(pid, t) for t in threads if t.name == COMMIT_WRITER_THREAD]
            try:
                with open(children) as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            esme = sum(_cpu_s(path) for path in esme_stats)
            writer = sum(_cpu_s(path) for path in writer_stats)
            child = sum(_cpu_s(f"/proc/{kid}/stat") for kid in kids)
            stats = self.runner.stats
            server = _cpu_s(f"/proc/{pid}/stat") - _cpu_s(own)
            if self.samples:  # a thread or process that ended keeps the time it used
                _, server0, esme0, child0, _, _, writer0 = self.samples[-1]
                server, esme, child = max(server, server0), max(esme, esme0), max(child, child0)
                writer = max(writer, writer0)
            self.samples.append(
                (time.monotonic(), server, esme, child, stats.messages_sent, stats.por_received, writer)
            )

    def summary(self) -> dict[str, float] | None:
        rows = self.samples
        if not rows or rows[-1][5] == 0:
            return None
        last_por = rows[-1][5]
        start = next(r for r in rows if r[4] > 0)
        end = next(r for r in rows if r[5] >= last_por)
        wall = end[0] - start[0]
        if wall <= 0:
            return None
        transactions = end[5] - start[5] or last_por
        out: dict[str, float] = {"window_s": wall, "transactions": transactions}
        for i, name in ((1, "server"), (2, "esme"), (3, "network"), (6, "writer")):
            used = end[i] - start[i]
            out[f"{name}_busy"] = used / wall
            out[f"{name}_us"] = used / transactions * 1e6
        return out


def run_once(
    cards: int,
    spi: str,
    actions: int,
    window: int,
    profile: bool,
    query_first: bool = False,
    profile_handset: Path | None = None,
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
        network: subprocess.Popen[bytes] | None = None
        smsc: tuple[str, int] | None = None
        if profile_handset is not None:
            network, port = _start_profiled_network(handset, tmp, profile_handset)
            smsc = ("127.0.0.1", port)
        runner = CampaignRunner(
            load_campaign(campaign), db_path=tmp / "bench.sqlite", progress=False, smsc=smsc
        )
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        try:
            with _CpuSampler(runner) as sampler:
                report = asyncio.run(runner.run())
            report["cpu"] = sampler.summary()
            report["round_trips"] = runner.round_trips()
            report["ack_times"] = runner.ack_times()
        finally:
            if network is not None:
                os.kill(network.pid, signal.SIGINT)
                network.wait(30.0)
        if profiler is not None:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            report["profile"] = out.getvalue()
        return report


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _print_ceiling(when: str, c: smpp_ceiling.Ceiling) -> None:
    print(
        f"  bare smpplib ceiling ({when}): {c.per_s:,.0f} round trips/s; CPU us/round trip: "
        f"ESME {c.esme_us:.0f}, responder {c.responder_us:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="OTA transactions per second, end to end over loopback SMPP, against the bare ceiling."
    )
    parser.add_argument("--cards", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--spi", default="1619", help="1619: PoR by DELIVER-REPORT (default); 1639: by SMS-SUBMIT"
    )
    parser.add_argument("--actions", type=int, default=1, help="actions per script (default 1)")
    parser.add_argument("--window", type=int, default=256, help="outstanding submit_sm (default 256)")
    parser.add_argument(
        "--ceiling-messages",
        type=int,
        default=20000,
        help="round trips of each bare smpplib ceiling run, before and after each fleet size (default 20000)",
    )
    parser.add_argument("--profile", action="store_true", help="print the server's hottest functions")
    parser.add_argument(
        "--profile-handset",
        type=Path,
        metavar="FILE",
        help="run the network under cProfile, profile written to FILE.<cards> (no verification)",
    )
    parser.add_argument(
        "--query-first",
        action="store_true",
        help="the server does not know the issued counters: a status query precedes each script",
    )
    args = parser.parse_args()
    if min(args.cards) < 1 or args.window < 1 or args.ceiling_messages < 1:
        parser.error("--cards, --window and --ceiling-messages must be at least 1")
    failed = False
    for cards in args.cards:
        handset_profile = (
            None
            if args.profile_handset is None
            else args.profile_handset.with_name(f"{args.profile_handset.name}.{cards}")
        )
        before = smpp_ceiling.measure(args.ceiling_messages, args.window)
        report = run_once(
            cards,
            args.spi,
            args.actions,
            args.window,
            args.profile,
            args.query_first,
            handset_profile,
        )
        after = smpp_ceiling.measure(args.ceiling_messages, args.window)
        summary = report["summary"]
        wall = summary["duration_s"]
        check = report.get("verification", {})
        print(
            f"{'cards':>7} {'wall s':>8} {'scripts/s':>10} {'packets/s':>10} {'SMS/s':>8} "
            f"{'confirmed':>9}  verification (lost/dup/mismatch)"
        )
        print(
            f"{cards:>7} {wall:>8.2f} {summary['scripts_sent'] / wall:>10.0f} "
            f"{summary['packets_sent'] / wall:>10.0f} {summary['messages_sent'] / wall:>8.0f} "
            f"{summary['confirmed']:>9}  {check.get('lost_actions')}/{check.get('duplicated_actions')}/"
            f"{check.get('counter_mismatches')}"
        )
        if summary["confirmed"] != cards:
            failed = True
            print(
                f"  FAILED: only {summary['confirmed']} of {cards} cards confirmed; first reason: "
                f"{next((c['reason'] for c in report['cards'] if c['state'] != 'confirmed'), '')}"
            )
        if handset_profile is None and (
            not check
            or check.get("lost_actions") != 0
            or check.get("duplicated_actions") != 0
            or check.get("counter_mismatches") != 0
        ):
            failed = True
            print(f"  FAILED: exactly-once verification: {check or 'no network report'}")
        _print_ceiling("before", before)
        _print_ceiling("after", after)
        c = report.get("cpu")
        rtt = report["round_trips"]
        held = report["ack_times"]
        if c:
            ota = c["transactions"] / c["window_s"]
            print(
                f"  OTA flow {c['window_s']:.2f} s: {ota:,.0f} tx/s; CPU us/tx: server {c['server_us']:.0f} "
                f"({c['server_busy']:.0%} busy; ESME thread {c['esme_us']:.0f}, {c['esme_busy']:.0%}; "
                f"commit writer {c['writer_us']:.0f}), "
                f"network {c['network_us']:.0f} ({c['network_busy']:.0%} busy)"
            )
            print(
                f"  submit_sm -> submit_sm_resp ms: p50 {_ms(rtt.percentile(0.5))} "
                f"p90 {_ms(rtt.percentile(0.9))} p99 {_ms(rtt.percentile(0.99))} ({rtt.count} answers)"
            )
            print(
                f"  deliver_sm read -> deliver_sm_resp written ms: p50 {_ms(held.percentile(0.5))} "
                f"p90 {_ms(held.percentile(0.9))} p99 {_ms(held.percentile(0.99))} "
                f"({held.count} acknowledged)"
            )
            ceiling = max(before.per_s, after.per_s)
            ratio = ota / ceiling
            print(
                f"  OTA / ceiling: {ota:,.0f} / {ceiling:,.0f} = {ratio:.2f} "
                f"(goal >= 0.5: {'met' if ratio >= 0.5 else 'not met'})"
            )
        if "profile" in report:
            print(report["profile"])
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
