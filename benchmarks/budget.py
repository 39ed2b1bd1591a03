"""The cost budget of one OTA transaction, layer by layer, in the virtual-time lab.

    python3 -m benchmarks.budget                             # 10^4 cards, this tree
    python3 -m benchmarks.budget --cards 2000                # quicker
    python3 -m benchmarks.budget --baseline-rev main         # the same run on another commit, first

The run: the seeded campaign of :mod:`benchmarks.lab` (its ``LAB``: the demo's RFM actions on every
card, 20 % loss each way, SMSC store-and-forward), one process, one shard. "Transaction" = one
secured command packet the server sent (``packets_sent``), as in :mod:`benchmarks.lab`.

Method, and what it costs:

1. the campaign runs once under a statistical sampler: a timer on the process's CPU time
   (``setitimer(ITIMER_PROF)``, 1 ms asked; the kernel delivers at its tick, 4 ms on a 250 Hz
   kernel) interrupts it, and the signal handler charges the sample to the layer of the innermost
   project frame of the interrupted stack (code outside the project - builtins, the standard
   library, pycryptodome - counts for the project function that called it; a signal is handled
   between bytecodes, so time inside a C call lands on its Python caller). The samples are few
   (hundreds a second) and cost the same wherever they land, so they do not favour any layer;
   ``time.process_time()`` around ``run()`` gives the CPU-µs per transaction (the headline; the
   sampler's own cost, a few µs per sample, is inside it: well under 1 %). The sampling error
   of a share, sqrt(share x (1 - share) / samples), is printed;
2. the same seeded campaign runs again under ``cProfile`` for the list of hottest functions
   (own time). cProfile adds a roughly constant cost per Python call (the run is 2-3x slower),
   so its shares over-weight code made of many small calls; they are only used for that list,
   and for the exact count of Python function calls per transaction.

Beside the layers, the samples whose innermost frame is pycryptodome's own code (its wrappers
around the C ciphers, whose time lands on them) are counted once more, whatever layer called it:
the part of the budget that belongs to the one crypto library, which no change to our own Python
makes cheaper per call (only fewer calls do).

``--baseline-rev REV`` checks out REV in a temporary git worktree and runs this same script (this
file, its own layer map) against that tree's code first, so the before and after tables come from
the same minutes on the same machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Layers by module path (the longest matching prefix wins). The order of the table is this order.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("server engine", ("ota_server/engine/", "ota_server/", "ota_lab/virtual/server.py")),
    ("store", ("ota_server/card_store.py", "ota_server/inventory.py")),  # + MemoryStore, below
    ("SMPP codec", ("ota_protocols/smpp/",)),
    ("SMSC/network core", ("handset/network_core.py", "handset/smsc_", "handset/radio_link.py",
                           "ota_lab/virtual/network.py", "handset/")),
    ("ME", ("handset/mobile_equipment.py",)),
    ("TPDU/ENVELOPE codecs", ("ota_protocols/sms/", "ota_protocols/apdu/", "ota_protocols/tlv.py",
                              "ota_protocols/byte_reader.py", "ota_protocols/errors.py",
                              "ota_protocols/hex_text.py")),
    ("03.48 packet codec+crypto", ("ota_protocols/secured_packet/", "ota_protocols/action_counter.py")),
    ("card OTA layer", ("sim_emulator/uicc.py", "sim_emulator/ota_security.py",
                        "sim_emulator/remote_apdu_executor.py", "sim_emulator/api.py")),
    ("card file system+applets", ("sim_emulator/",)),
    ("lab clock+pool+invariants", ("ota_lab/", "ota_protocols/fleet.py", "ota_protocols/")),
]
# Classes that are another layer than their module (qualified-name prefix): the lab's store lives
# in the virtual server's module.
CLASS_LAYERS: dict[tuple[str, str], str] = {("ota_lab/virtual/server.py", "MemoryStore."): "store"}
_SPECIFIC_FIRST = sorted(
    ((prefix, name) for name, prefixes in LAYERS for prefix in prefixes), key=lambda p: -len(p[0])
)
OTHER = "other (unattributed)"


def layer_of(filename: str, root: str, qualname: str = "") -> str | None:
    """The layer of a project file, None for code outside the project (attributed to its caller)."""
    path = filename.replace(os.sep, "/")
    if not path.startswith(root):
        return None
    rel = path[len(root):].lstrip("/")
    for (module, prefix), layer in CLASS_LAYERS.items():
        if rel == module and qualname.startswith(prefix):
            return layer
    for prefix, name in _SPECIFIC_FIRST:  # longest prefix first: handset/mobile_equipment before handset/
        if rel.startswith(prefix):
            return name
    return None


def attribute(stats: pstats.Stats, root: str) -> dict[str, float]:
    """Seconds of own time per layer; foreign functions' own time goes up to project callers."""
    raw = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}

    def give(func: tuple[str, int, str], seconds: float, depth: int) -> None:
        layer = layer_of(func[0], root)
        if layer is not None:
            totals[layer] = totals.get(layer, 0.0) + seconds
            return
        callers = raw.get(func, (0, 0, 0.0, 0.0, {}))[4]
        weights = {c: edge[2] + 1e-12 for c, edge in callers.items()}  # edge tottime
        total = sum(weights.values())
        if depth > 30 or not callers or total <= 0:
            totals[OTHER] = totals.get(OTHER, 0.0) + seconds
            return
        for caller, weight in weights.items():
            give(caller, seconds * weight / total, depth + 1)

    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        if tt:
            give(func, tt, 0)
    return totals


def _is_pycryptodome(filename: str) -> bool:
    """Whether a frame runs pycryptodome's own code (its Python wrappers around the C ciphers)."""
    parts = filename.replace(os.sep, "/").split("/")
    return "Crypto" in parts and ("site-packages" in parts or "dist-packages" in parts)


class _Sampler:
    """SIGPROF every ``interval`` s of CPU: one sample for the layer of the innermost project frame."""

    def __init__(self, root: str, interval: float = 0.001) -> None:
        self.root = root
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.crypto = 0  # samples whose innermost frame is pycryptodome's (inside whichever layer)
        self._layers: dict[tuple[str, str], str | None] = {}  # (file, qualname) -> layer; None: foreign
        self._crypto_files: dict[str, bool] = {}

    def _on_signal(self, _signum: int, frame: object) -> None:
        layers = self._layers
        f = frame
        if f is not None:
            filename = f.f_code.co_filename  # type: ignore[attr-defined]
            inside = self._crypto_files.get(filename)
            if inside is None:
                inside = self._crypto_files[filename] = _is_pycryptodome(filename)
            self.crypto += inside
        while f is not None:
            code = f.f_code  # type: ignore[attr-defined]
            key = (code.co_filename, code.co_qualname)
            layer = layers.get(key, "?")
            if layer == "?":
                layer = layers[key] = layer_of(code.co_filename, self.root, code.co_qualname)
            if layer is not None:
                break
            f = f.f_back  # type: ignore[attr-defined]
        name = OTHER if f is None else layer
        self.counts[name] = self.counts.get(name, 0) + 1  # type: ignore[index]

    def run(self, call: object) -> None:
        import signal

        previous = signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        try:
            call()  # type: ignore[operator]
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, previous)


def one(cards: int, rate: float, top: int) -> dict[str, object]:
    """Run the lab twice in this process (sampled, then profiled) and return the figures."""
    import gc

    from benchmarks.lab import LAB
    from ota_lab.config import load_lab
    from ota_lab.virtual import build_run

    root = str(Path(__import__("ota_lab").__file__).resolve().parents[1]).replace(os.sep, "/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        path.write_text(LAB.format(cards=cards, root=root, rate=rate))
        lab = load_lab(path)

        def build():  # type: ignore[no-untyped-def]
            gc.collect()
            return build_run(lab, 1, Path(tmp))

        run = build()
        sampler = _Sampler(root)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        sampler.run(run.run)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        result = run.result(1, rows=False)
        packets, events = int(result.summary["packets_sent"]), run.clock.events_run
        outcome = result.outcome()
        del run, result
        run = build()
        prof = cProfile.Profile()
        cpu0 = time.process_time()
        prof.runcall(run.run)
        cpu_profiled = time.process_time() - cpu0
        stats = pstats.Stats(prof)
    samples = sum(sampler.counts.values())
    calls = sum(nc for (_cc, nc, _tt, _ct, _c) in stats.stats.values())  # type: ignore[attr-defined]
    measured = sum(attribute(stats, root).values())
    top_funcs = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    return {
        "root": root,
        "cards": cards,
        "packets": packets,
        "events": events,
        "outcome": outcome,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_profiled_s": cpu_profiled,
        "us_per_tx": cpu / packets * 1e6,
        "samples": samples,
        "shares": {k: v / max(1, samples) for k, v in sampler.counts.items()},
        "crypto_share": sampler.crypto / max(1, samples),
        "calls_per_tx": calls / packets,
        "top": [
            [f"{Path(f[0]).parent.name}/{Path(f[0]).name}:{f[1]}({f[2]})" if f[1] else f[2], tt / measured, nc]
            for f, (_cc, nc, tt, _ct, _c) in top_funcs
        ],
    }


def table(result: dict[str, object], title: str) -> str:
    us = float(result["us_per_tx"])  # type: ignore[arg-type]
    shares: dict[str, float] = result["shares"]  # type: ignore[assignment]
    samples = int(result["samples"])  # type: ignore[call-overload]
    lines = [
        f"{title}  ({result['cards']} cards, {result['packets']} transactions, {result['events']} events;"
        f" {result['outcome']})",
        f"  CPU {float(result['cpu_s']):.2f} s = {us:.0f} CPU-µs/tx"  # type: ignore[arg-type]
        f" (one process: {1e6 / us:,.0f} tx/s per core); {samples} CPU-time samples",
        f"  {'layer':<28} {'CPU-µs/tx':>10} {'share':>7} {'+/-':>6}",
    ]
    for name in [n for n, _ in LAYERS] + [OTHER]:
        share = shares.get(name, 0.0)
        error = (share * (1 - share) / max(1, samples)) ** 0.5
        lines.append(f"  {name:<28} {share * us:>10.1f} {share * 100:>6.1f}% {error * 100:>5.1f}%")
    lines.append(f"  {'total':<28} {us:>10.1f} {100.0:>6.1f}%")
    crypto = float(result["crypto_share"])  # type: ignore[arg-type]
    lines.append(
        f"  of which inside pycryptodome (key schedules, CBC/ECB calls): {crypto * us:.1f} CPU-µs/tx"
        f" ({crypto * 100:.1f}%); Python function calls: {float(result['calls_per_tx']):,.0f}/tx"  # type: ignore[arg-type]
    )
    lines.append(
        f"  hottest functions (cProfile run, {float(result['cpu_profiled_s']):.1f} s: own time share, calls):"  # type: ignore[arg-type]
    )
    for name, share, calls in result["top"]:  # type: ignore[attr-defined]
        lines.append(f"    {share * 100:5.1f}%  {calls:>9}  {name}")
    return "\n".join(lines)


def _child(tree: Path, cards: int, rate: float, top: int) -> dict[str, object]:
    """This script, run against the code of ``tree`` (PYTHONPATH), one JSON line back."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(Path(__file__).resolve()), "--one", "--cards", str(cards)]
    command += ["--rate", str(rate), "--top", str(top)]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"budget: the run on {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.budget", description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=40.0, help="ESME pacing, SMS per second")
    parser.add_argument("--top", type=int, default=15, help="hottest functions listed")
    parser.add_argument("--baseline-rev", help="git revision measured first, in a temporary worktree")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cards < 1 or args.top < 0:
        parser.error("--cards must be >= 1 and --top >= 0")
    if args.one:
        print(json.dumps(one(args.cards, args.rate, args.top)))
        return 0
    here = Path(__file__).resolve().parents[1]
    results: list[tuple[str, dict[str, object]]] = []
    if args.baseline_rev:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "baseline"
            add = ["git", "-C", str(here), "worktree", "add", "--detach", "--quiet", str(tree), args.baseline_rev]
            if subprocess.run(add, check=False).returncode != 0:
                parser.error(f"--baseline-rev: cannot check out {args.baseline_rev!r}")
            try:
                rev = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True, check=True).stdout.strip()
                results.append((f"BEFORE ({args.baseline_rev} = {rev})", _child(tree, args.cards, args.rate, args.top)))
            finally:
                subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force", str(tree)], check=False)
    rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    results.append((f"THIS TREE ({rev}{'+changes' if dirty else ''})", _child(here, args.cards, args.rate, args.top)))
    for title, result in results:
        print(table(result, title), flush=True)
        print()
    if len(results) == 2:
        before, after = (float(r["us_per_tx"]) for _, r in results)  # type: ignore[arg-type]
        same = results[0][1]["outcome"] == results[1][1]["outcome"] and results[0][1]["packets"] == results[1][1]["packets"]
        print(f"CPU-µs/tx {before:.0f} -> {after:.0f}: {before / after:.2f}x"
              f" (same campaign outcome and packets: {'yes' if same else 'NO'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
