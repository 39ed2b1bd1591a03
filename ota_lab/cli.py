"""``ota-lab``: run one seed of a lab, or sweep many, and prove each run from the cards' journals.

    ota-lab run LAB.toml --seed N [--report r.json] [--plot p.png] [--log-level LEVEL]
    ota-lab sweep LAB.toml --seeds 1-500 [--jobs K] [--report sweep.json] [--log-level LEVEL]
    ota-lab --version

Labs run on the virtual clock by default (``ota_lab.virtual``: one process, no sockets, the seed
decides everything, so the same seed writes a byte-identical report); a lab with
``transport = "smpp"`` runs over loopback SMPP instead, and ``--transport`` overrides the file.

One line per seed (seed, fault mix, confirmed/partial/failed/pending, messages, lost/duplicated/
mismatches/stuck), then totals. Exit status: 0 every seed proved itself, 1 a seed lost or duplicated an
action, had a counter mismatch or failed to run (the seeds are named with the command that replays
one), 2 bad arguments or lab file (one line naming file and key). Arguments, output files
(``--report``, ``--plot``: their directory must exist, the plot's format must be known) and the
optional matplotlib are checked before a seed runs. A rich table on a terminal (and, for a sweep,
a progress bar with the rate and the time left), plain lines otherwise. ``--log-level
DEBUG|INFO|WARNING|ERROR`` (default ERROR) goes before or after the subcommand. docs/labs.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ota_lab.config import LabConfig, Transport, load_lab
from ota_lab.result import LabResult
from ota_lab.runner import run_lab
from ota_protocols.cli_options import add_log_level
from ota_protocols.errors import ConfigError

__all__ = ["main", "parse_seeds"]

PROG = "ota-lab"
MAX_SEEDS = 1_000_000
DEFAULT_LOG_LEVEL = "ERROR"


class UsageError(Exception):
    pass


def parse_seeds(text: str) -> list[int]:
    """``7``, ``1-500``, ``1,5,9-12`` -> the seeds in order, each once."""
    seeds: list[int] = []
    seen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low_text, high_text = part.split("-", 1)
                low, high = int(low_text), int(high_text)
            else:
                low = high = int(part)
        except ValueError:
            raise UsageError(f"--seeds: {part!r} is not N or N-M") from None
        if low < 0 or high < low:
            raise UsageError(f"--seeds: {part!r} is not an increasing range of seeds >= 0")
        if high - low + len(seeds) >= MAX_SEEDS:
            raise UsageError(f"--seeds: more than {MAX_SEEDS} seeds")
        for seed in range(low, high + 1):
            if seed not in seen:
                seen.add(seed)
                seeds.append(seed)
    return seeds


def _version() -> str:
    try:
        return metadata.version("ota-sim")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _log_level_option(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    add_log_level(parser, default=default, shown_default=DEFAULT_LOG_LEVEL)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fault-injection labs: an OTA campaign against a faulty network, proved by the cards.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _log_level_option(parser, default=DEFAULT_LOG_LEVEL)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run one seed of a lab")
    run.add_argument("lab", help="lab file (configs/labs/*.toml)")
    run.add_argument("--seed", type=int, required=True, help="the seed that draws the whole run (>= 0)")
    run.add_argument("--report", help="write the JSON report of the run here (sorted keys, no timings)")
    run.add_argument(
        "--plot",
        help="draw messages and closed jobs over time into this image (virtual only; .png, .svg, .pdf, ...; "
        "no suffix: PNG; needs matplotlib)",
    )
    run.add_argument("--workdir", help="keep the generated handset/campaign files and the SQLite store here")
    run.add_argument(
        "--db",
        metavar="URL",
        help="SMPP only: the OTA server's store is this empty PostgreSQL database (postgresql://...), "
        "its faults (write lock held past the lock timeout) included",
    )
    transports = [t.value for t in Transport]
    run.add_argument("--transport", choices=transports, help="override the lab's [lab] transport")
    run.add_argument(
        "--shards",
        type=int,
        default=1,
        help="virtual only: split the fleet over K worker processes (K is part of the run's identity)",
    )
    _log_level_option(run, default=None)
    sweep = sub.add_parser("sweep", help="run many seeds; exit 1 if any lost/duplicated/mismatched")
    sweep.add_argument("lab", help="lab file (configs/labs/*.toml)")
    sweep.add_argument("--seeds", required=True, help="N, N-M or a comma list of them (1-500)")
    sweep.add_argument("--jobs", type=int, default=1, help="seeds run in parallel worker processes")
    sweep.add_argument("--report", help="write every seed's result and the totals as JSON here")
    sweep.add_argument("--transport", choices=transports, help="override the lab's [lab] transport")
    _log_level_option(sweep, default=None)
    return parser


class _Output:
    """Plain lines, or rich on a terminal."""

    def __init__(self, console: Any = None) -> None:
        self.console: Any = console
        if console is None and sys.stdout.isatty():
            try:
                from rich.console import Console

                self.console = Console(highlight=False)
            except ImportError:  # pragma: no cover - rich is a dependency
                self.console = None

    def seed_line(self, result: LabResult) -> None:
        if self.console is None:
            print(result.line(), flush=True)
        else:
            style = "green" if result.ok else "bold red"
            self.console.print(result.line(), style=style, markup=False)

    def run_table(self, result: LabResult) -> None:
        if self.console is None:
            self.seed_line(result)
            return
        from rich.table import Table

        table = Table(title=f"{result.lab} seed {result.seed}", show_header=False)
        table.add_row("fault mix", result.mix.summary())
        s, inv = result.summary, result.invariants
        table.add_row(
            "cards",
            " ".join(f"{k} {s.get(k, 0)}" for k in ("cards", "confirmed", "partial", "failed", "pending")),
        )
        table.add_row(
            "messages", f"{s.get('messages_sent', 0)} ({s.get('resent_actions', 0)} actions resent)"
        )
        table.add_row("network", json.dumps(result.network))
        if result.events:
            table.add_row("events", ", ".join(result.events))
        verdict = "[green]ok[/]" if result.ok else "[bold red]FAILED[/]"
        table.add_row(
            "invariants",
            f"lost {inv.lost} dup {inv.duplicated} mismatch {inv.mismatches} stuck {inv.stuck}  {verdict}",
        )
        if result.error:
            table.add_row("error", result.error)
        table.add_row("wall", f"{result.wall_s:.2f} s")
        self.console.print(table)

    @contextlib.contextmanager
    def sweep_progress(self, total: int) -> Iterator[Callable[[], None]]:
        """On a terminal a progress bar under the seed lines (done/total, failed, seeds/s, time
        left), gone when the sweep ends; plain output gets nothing (it stays line per seed)."""
        if self.console is None:
            yield lambda: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("seeds"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        started = time.monotonic()
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("sweep", total=total, rate="")

            def advance() -> None:
                done = progress.tasks[0].completed + 1
                rate = done / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.1f} seeds/s")

            yield advance

    def totals(self, rows: list[tuple[str, str]]) -> None:
        if self.console is None:
            for key, value in rows:
                print(f"{key}: {value}")
            return
        from rich.table import Table

        table = Table(title="sweep totals", show_header=False)
        for key, value in rows:
            table.add_row(key, value)
        self.console.print(table)


def _worker(lab: LabConfig, seed: int) -> LabResult:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    return run_lab(lab, seed)


def _results(lab: LabConfig, seeds: Sequence[int], jobs: int) -> Iterator[LabResult]:
    if jobs <= 1 or len(seeds) == 1:
        for seed in seeds:
            yield run_lab(lab, seed)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # Seeds in order; chunks keep the per-seed IPC small next to a virtual seed's few ms.
        chunk = 1 if lab.transport is Transport.SMPP else max(1, min(32, len(seeds) // (8 * jobs)))
        yield from pool.map(_worker, [lab] * len(seeds), seeds, chunksize=chunk)


def _replay(lab_path: str, seed: int) -> str:
    return f"{PROG} run {lab_path} --seed {seed}"


def _load(args: argparse.Namespace) -> LabConfig:
    lab = load_lab(args.lab)
    if getattr(args, "transport", None):
        lab = replace(lab, transport=Transport(args.transport))
    return lab


def report_text(data: Any) -> str:
    """Reports: sorted keys, fixed indentation; with the timings left out, byte-identical per seed."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _check_output(option: str, path: str) -> None:
    """An output file is checked before the work: a run is not lost to a mistyped directory."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option}: {path} is a directory: give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"{option}: {path}: no such directory {str(target.parent)!r}")


def _cmd_run(args: argparse.Namespace, out: _Output) -> int:
    if args.seed < 0:
        raise UsageError(f"--seed: {args.seed} is not a seed >= 0")  # as --seeds of a sweep
    if args.report:
        _check_output("--report", args.report)
    lab = _load(args)
    if args.plot and lab.transport is not Transport.VIRTUAL:
        raise UsageError("--plot: needs the virtual transport")
    if args.plot:
        from ota_lab.plot import check_plot

        check_plot(args.plot)  # format, directory and matplotlib, before the lab runs
    if args.shards < 1:
        raise UsageError("--shards: at least 1")
    if args.shards > 1 and (lab.transport is not Transport.VIRTUAL or args.workdir or args.plot):
        raise UsageError("--shards: needs the virtual transport, without --workdir and --plot")
    if args.db is not None and (
        lab.transport is Transport.VIRTUAL or not args.db.startswith("postgresql://")
    ):
        raise UsageError("--db: a postgresql:// URL, with the smpp transport")
    workdir = Path(args.workdir) if args.workdir else None
    result = run_lab(lab, args.seed, workdir=workdir, shards=args.shards, db=args.db)
    out.run_table(result)
    if args.report:
        Path(args.report).write_text(report_text(result.to_dict(timings=False)))
    if args.plot and result.timeline is not None:
        from ota_lab.plot import plot_run

        plot_run(result, args.plot)
    if not result.ok:
        why = result.error or "lost/duplicated actions or counter mismatches"
        print(f"{PROG}: seed {args.seed} FAILED: {why}", file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace, out: _Output) -> int:
    seeds = parse_seeds(args.seeds)
    if args.jobs < 1:
        raise UsageError("--jobs: at least 1")
    if args.report:
        _check_output("--report", args.report)
    lab = _load(args)
    started = time.monotonic()
    totals = {k: 0 for k in ("cards", "confirmed", "partial", "failed", "pending", "messages_sent")}
    lost = duplicated = mismatches = stuck = 0
    settled: dict[str, int] = {}
    card_messages = 0
    faults: dict[str, int] = {}
    bad: list[int] = []
    results: list[dict[str, Any]] = []
    with out.sweep_progress(len(seeds)) as advance:
        for result in _results(lab, seeds, args.jobs):
            out.seed_line(result)
            advance()
            for key in totals:
                totals[key] += int(result.summary.get(key, 0))
            for path, count in dict(result.summary.get("settled_by", {})).items():
                settled[path] = settled.get(path, 0) + int(count)
            card_messages += int(result.summary.get("card_messages", 0))
            for event in result.mix.infra:
                kind = str(getattr(event.kind, "value", event.kind))
                faults[kind] = faults.get(kind, 0) + 1
            inv = result.invariants
            lost, duplicated = lost + inv.lost, duplicated + inv.duplicated
            mismatches, stuck = mismatches + inv.mismatches, stuck + inv.stuck
            if not result.ok:
                bad.append(result.seed)
            if args.report:
                results.append(result.to_dict(timings=False) | {"cards": []})
    wall = time.monotonic() - started
    rows = [
        ("seeds", f"{len(seeds)} ({len(seeds) - len(bad)} ok, {len(bad)} failed) in {wall:.1f} s"),
        ("cards", " ".join(f"{k} {v}" for k, v in totals.items() if k != "messages_sent")),
        ("messages", f"{totals['messages_sent']} (card messages {card_messages})"),
        ("settled by", " ".join(f"{k} {v}" for k, v in settled.items()) or "-"),
        ("infra faults", " ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none drawn"),
        ("invariants", f"lost {lost} duplicated {duplicated} mismatches {mismatches} stuck {stuck}"),
    ]
    out.totals(rows)
    if args.report:
        Path(args.report).write_text(
            report_text(
                {
                    "lab": args.lab,
                    "transport": lab.transport.value,
                    "seeds": len(seeds),
                    "failed_seeds": bad,
                    "totals": totals
                    | {"lost": lost, "duplicated": duplicated, "mismatches": mismatches, "stuck": stuck},
                    "results": results,
                    "timing": {"wall_s": round(wall, 1)},  # the one part that differs between runs
                }
            )
        )
    if bad:
        shown = ", ".join(str(s) for s in bad[:20]) + (" …" if len(bad) > 20 else "")
        print(f"{PROG}: {len(bad)} seed(s) FAILED: {shown}; replay one: {_replay(args.lab, bad[0])}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr)
    out = _Output()
    try:
        if args.command == "run":
            return _cmd_run(args, out)
        return _cmd_sweep(args, out)
    except (ConfigError, UsageError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
