"""Live progress of a running campaign and its final summary table (rich on a terminal, log lines
otherwise). Reads the engine; decides nothing.

Progress counts jobs (a card's steps each count), so a two-step campaign reaches 100 % when every
step of every card ended, not 50 %.

On a terminal the display is two lines. The first keeps what an operator watches at any width down
to 80 columns: the campaign's name (cut to fit), the bar, jobs done / jobs, elapsed time, ETA and
the SMS rate of the last few seconds. The second holds the counters (sent, PoRs, outcomes, resends,
throttling, submit errors) and wraps when the terminal is narrow; until anything has happened it
names what the run waits for instead (``starting the embedded network…``, ``binding to the
SMSC…``), so a start-up is never a blank screen.

The runner drives it with :meth:`Ticker.start`, :meth:`Ticker.set_phase` and :meth:`Ticker.stop`;
the ticker refreshes itself from an event-loop timer (no thread, no sleep).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ota_server.engine.campaign import CampaignEngine

__all__ = ["BINDING", "STARTING_NETWORK", "Ticker", "make_progress", "print_summary"]

progress_log = logging.getLogger("ota_server.progress")  # the CLI shows it at INFO unless --log-level ERROR

STARTING_NETWORK = "starting the embedded network…"
BINDING = "binding to the SMSC…"
NAME_WIDTH = 20  # the campaign's name is cut (…) beyond this, so the bar and the times keep their room
RATE_WINDOW_S = 3.0  # the first line's rate: SMS accepted over about the last 3 s


def make_progress(*, console: Any = None, get_time: Callable[[], float] | None = None) -> Any:
    """The rich ``Progress`` of a campaign: one task, fields ``rate`` (first line) and ``stats``
    (second line). ``console`` and ``get_time`` are for tests (a fixed width, a clock they step)."""
    from rich.console import Group
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class CampaignProgress(Progress):
        def get_renderables(self) -> Any:
            table = self.make_tasks_table(self.tasks)
            stats = " ".join(str(t.fields.get("stats", "")) for t in self.tasks if t.visible).strip()
            yield Group(table, Text(stats, overflow="fold")) if stats else table

    kwargs: dict[str, Any] = {} if get_time is None else {"get_time": get_time}
    return CampaignProgress(
        TextColumn(
            "[bold]{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH),
        ),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10)),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(),
        TextColumn("ETA", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}", table_column=Column(no_wrap=True, justify="right")),
        expand=True,
        auto_refresh=False,  # the ticker's timer refreshes it: no rich thread beside the event loop
        console=console,
        **kwargs,
    )


class Ticker:
    """A rich display on a TTY, else an INFO line every few seconds (a timer, not a sleep).

    Wiring (service.py): build it once the engine exists and :meth:`start` it before the slow part
    begins; :meth:`set_phase` says what the run waits for until the first message leaves. Calling
    :meth:`start` again is harmless, so a runner that starts it early and again later shows one
    display."""

    def __init__(
        self,
        engine: CampaignEngine,
        loop: asyncio.AbstractEventLoop,
        *,
        progress: bool,
        console: Any = None,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.use_rich = progress
        self.console = console
        self.handle: asyncio.TimerHandle | None = None
        self.progress: Any = None
        self.task: Any = None
        self.first_at: float | None = None  # when the ticker first saw a message (or an ended job)
        self.phase = BINDING
        self.running = False
        self.samples: deque[tuple[float, int]] = deque()  # (now, SMS accepted) over RATE_WINDOW_S
        self.rate = 0.0

    # ------------------------------------------------------------------ what the runner calls

    def start(self, phase: str | None = None) -> None:
        """Show the display now (with ``phase`` until something happens); refreshes itself after."""
        if phase is not None:
            self.set_phase(phase)
        if self.running:
            return
        self.running = True
        if self.use_rich:
            self.progress = make_progress(console=self.console)
            self.task = self.progress.add_task(
                self.engine.name, total=len(self.engine.slots), start=False, rate="", stats=self.phase
            )
            self.progress.start()
        elif phase is None:
            progress_log.info("campaign %s: %s", self.engine.name, self.phase)
        self._tick()

    def set_phase(self, text: str) -> None:
        """What the run waits for (``STARTING_NETWORK``, ``BINDING``), shown until the first SMS is
        handed to the SMSC or a job ends."""
        self.phase = text
        if self.running and self._idle():
            self._show()
        if not self.use_rich:
            progress_log.info("campaign %s: %s", self.engine.name, text)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if not self.running:
            return
        self.running = False
        done, line = self._show()
        if self.progress is not None:
            self.progress.stop()
        else:
            progress_log.info("progress: %d/%d jobs done; %s", done, len(self.engine.slots), line)

    # ------------------------------------------------------------------ the display

    def _idle(self) -> bool:
        """Nothing happened yet: no SMS handed to the SMSC and no job ended (a resumed campaign whose
        jobs all ended is not idle)."""
        return self.engine.stats.messages_sent == 0 and self.engine.jobs_done() == 0

    def _rate(self, now: float) -> float:
        accepted = self.engine.stats.submit_accepted
        self.samples.append((now, accepted))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_S:
            self.samples.popleft()
        first_at, first = self.samples[0]
        if now > first_at:
            self.rate = (accepted - first) / (now - first_at)
        return self.rate

    def _line(self, now: float) -> str:
        engine = self.engine
        stats = engine.stats
        c = engine.counts()
        # Since the engine started (the links start with it), else since the first message seen.
        since = engine.started_at if engine.started_at is not None else self.first_at
        elapsed = now - since if since is not None else 0.0
        average = stats.submit_accepted / elapsed if elapsed > 0 else 0.0
        return (
            f"sent {stats.submit_accepted} (avg {average:.0f}/s) PoR {stats.por_received} "
            f"ok {c['confirmed']} partial {c['partial']} failed {c['failed']} pending {c['pending']} "
            f"resent {engine.resent_actions} throttled {stats.throttled} submit errors {stats.submit_failed}"
        )

    def _show(self) -> tuple[int, str]:
        now = self.loop.time()
        rate = self._rate(now)
        done = self.engine.jobs_done()
        idle = self._idle()
        if not idle and self.first_at is None:
            self.first_at = now  # elapsed, ETA and the average count from the first message
        if idle and self.engine.state == "running":
            line = self.phase
        else:
            line = self._line(now) + ("" if self.engine.state == "running" else f" [{self.engine.state}]")
        if self.progress is not None:
            if not idle and not self.progress.tasks[0].started:
                self.progress.start_task(self.task)
            rate_text = "" if idle else f"{rate:.0f} SMS/s"
            self.progress.update(self.task, completed=done, rate=rate_text, stats=line)
            self.progress.refresh()
        return done, line

    def _tick(self) -> None:
        done, line = self._show()
        if self.progress is not None:
            interval = 0.2
        else:
            if not self._idle():
                progress_log.info("progress: %d/%d jobs done; %s", done, len(self.engine.slots), line)
            interval = 5.0
        self.handle = self.loop.call_later(interval, self._tick)


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
