"""Live progress of a running campaign and its final summary table (rich on a terminal, log lines
otherwise). Reads the engine; decides nothing.

Progress counts jobs (a card's steps each count), so a two-step campaign reaches 100 % when every
step of every card ended, not 50 %.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from typing import Any

from ota_server.engine.campaign import CampaignEngine

__all__ = ["Ticker", "print_summary"]

progress_log = logging.getLogger("ota_server.progress")  # the CLI shows it at INFO unless --log-level ERROR


class Ticker:
    """A rich bar on a TTY, else an INFO line every few seconds (a timer, not a sleep)."""

    def __init__(self, engine: CampaignEngine, loop: asyncio.AbstractEventLoop, *, progress: bool) -> None:
        self.engine = engine
        self.loop = loop
        self.use_rich = progress
        self.handle: asyncio.TimerHandle | None = None
        self.progress: Any = None
        self.task: Any = None
        self.started = loop.time()
        self.last_sent = 0
        self.last_at = self.started
        self.rate = 0.0

    def start(self) -> None:
        if self.use_rich:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # Narrow terminals keep the bar, the count and the times; the counters wrap below.
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=None),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                expand=False,
            )
            self.task = self.progress.add_task(self.engine.name, total=len(self.engine.slots), stats="")
            self.progress.start()
        self._tick()

    def _line(self) -> tuple[int, str]:
        engine = self.engine
        stats = engine.stats
        c = engine.counts()
        now = self.loop.time()
        elapsed = now - self.last_at
        if elapsed > 0:
            self.rate = (stats.submit_accepted - self.last_sent) / elapsed
        self.last_sent, self.last_at = stats.submit_accepted, now
        average = stats.submit_accepted / max(now - self.started, 1e-9)
        text = (
            f"sent {stats.submit_accepted} ({self.rate:.0f}/s, avg {average:.0f}/s) PoR {stats.por_received} "
            f"ok {c['confirmed']} partial {c['partial']} failed {c['failed']} pending {c['pending']} "
            f"resent {engine.resent_actions} throttled {stats.throttled} submit errors {stats.submit_failed}"
        )
        return engine.jobs_done(), text

    def _tick(self) -> None:
        done, text = self._line()
        if self.progress is not None:
            self.progress.update(self.task, completed=done, stats=text)
            interval = 0.2
        else:
            progress_log.info("progress: %d/%d jobs done; %s", done, len(self.engine.slots), text)
            interval = 5.0
        self.handle = self.loop.call_later(interval, self._tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        done, text = self._line()
        if self.progress is not None:
            self.progress.update(self.task, completed=done, stats=text)
            self.progress.stop()
        else:
            progress_log.info("progress: %d/%d jobs done; %s", done, len(self.engine.slots), text)


def print_summary(report: dict[str, Any], file: Any = None) -> None:
    """The final summary table (rich; plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    summary = report["summary"]
    table = Table(title=f"campaign {report['campaign']} (TAR {report['tar']})")
    table.add_column("result")
    table.add_column("count", justify="right")
    for key in (
        "cards",
        "confirmed",
        "partial",
        "failed",
        "pending",
        "messages_sent",
        "queries_sent",
        "por_received",
        "resent_actions",
        "duration_s",
    ):
        table.add_row(key, str(summary[key]))
    if "verification" in report:
        v = report["verification"]
        for key in ("lost_actions", "duplicated_actions", "counter_mismatches"):
            table.add_row(f"verification.{key}", str(v[key]))
    console.print(table)
    reasons = Counter(c["reason"] for c in report["cards"] if c["reason"])
    for reason, count in reasons.most_common(5):
        console.print(f"  {count} x {reason}")
