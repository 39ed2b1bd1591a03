"""The campaign progress display: at 80 columns it keeps its bar, count, times and rate; before
anything happens it says what the run waits for (issue #11)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from ota_server.progress import BINDING, STARTING_NETWORK, Ticker, make_progress
from ota_server.report import Stats

LONG_STATS = (
    "sent 5000 (avg 1000/s) PoR 4990 ok 4900 partial 50 failed 40 pending 5010 resent 3 throttled 12 "
    "submit errors 1"
)


def console(width: int = 80) -> Console:
    return Console(width=width, file=StringIO(), force_terminal=True, color_system=None)


def rendered(progress: Any, width: int = 80) -> list[str]:
    out = console(width)
    out.print(progress.get_renderable())
    text = out.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


@pytest.mark.parametrize("name", ["demo", "rfm-10k-with-a-name-longer-than-the-column"])
def test_at_80_columns_the_line_keeps_bar_count_elapsed_eta_and_rate(name: str) -> None:
    clock = [100.0]
    progress = make_progress(console=console(), get_time=lambda: clock[0])
    task = progress.add_task(name, total=10_000, start=False, rate="", stats="")
    progress.start_task(task)
    for second in range(1, 6):  # 1000 jobs a second, so rich's ETA is 5 s
        clock[0] = 100.0 + second
        progress.update(task, completed=1000 * second, rate="1000 SMS/s", stats=LONG_STATS)
    first, *rest = rendered(progress)
    assert len(first) <= 80 and all(len(line) <= 80 for line in rest)
    assert re.search(r"━{3,}", first), first  # the bar, at least a few cells wide
    assert "5000/10000" in first
    assert "0:00:05 ETA 0:00:05" in first  # elapsed, then the time left
    assert first.endswith("1000 SMS/s")
    assert first.startswith(name if len(name) <= 20 else name[:19] + "…")
    # The counters wrap below the line instead of squeezing it: every word of them is there.
    assert " ".join(rest).split() == LONG_STATS.split()


def test_before_the_first_message_elapsed_and_eta_wait_and_the_phase_shows() -> None:
    progress = make_progress(console=console(), get_time=lambda: 0.0)
    progress.add_task("demo", total=240, start=False, rate="", stats=STARTING_NETWORK)
    first, second = rendered(progress)
    assert "0/240 -:--:-- ETA -:--:--" in first
    assert second == STARTING_NETWORK


class FakeLoop:
    """``time`` and ``call_later`` only: the test steps the clock and runs the timer itself."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        self.timers.append((self.now + delay, callback))
        loop = self

        class Handle:
            def cancel(self) -> None:
                loop.timers = [t for t in loop.timers if t[1] is not callback]

        return Handle()

    def run_due(self, now: float) -> None:
        self.now = now
        due = [t for t in self.timers if t[0] <= now]
        self.timers = [t for t in self.timers if t[0] > now]
        for _, callback in due:
            callback()


class FakeEngine:
    """What the ticker reads of a CampaignEngine."""

    name = "demo"

    def __init__(self) -> None:
        self.slots = [object()] * 240
        self.stats = Stats()
        self.state = "running"
        self.done = 0
        self.resent_actions = 0
        self.started_at: float | None = None

    def counts(self) -> Counter[str]:
        return Counter(confirmed=self.done)

    def jobs_done(self) -> int:
        return self.done


def test_ticker_names_the_phase_until_the_first_message_then_counts() -> None:
    loop, engine = FakeLoop(), FakeEngine()
    ticker = Ticker(engine, loop, progress=True, console=console())  # type: ignore[arg-type]
    ticker.start(STARTING_NETWORK)  # what the runner can call before the network starts
    try:
        task = ticker.progress.tasks[0]
        assert task.fields["stats"] == STARTING_NETWORK and not task.started
        ticker.start()  # _drive starts it again once the network is up: still one display
        ticker.set_phase(BINDING)
        engine.started_at = 0.0
        assert ticker.progress.tasks[0].fields["stats"] == BINDING
        loop.run_due(1.0)
        idle = ticker.progress.tasks[0].fields
        assert (idle["stats"], idle["rate"]) == (BINDING, "")  # bound to nothing yet: no zeros
        for second in range(2, 11):  # 100 SMS/s from 5 s on
            engine.stats.messages_sent = engine.stats.submit_accepted = max(0, second - 5) * 100
            engine.done = engine.stats.submit_accepted // 2
            loop.run_due(float(second))
        task = ticker.progress.tasks[0]
        assert task.started and task.completed == 250
        # The average counts from the engine's start (the runner starts it with the links).
        assert task.fields["stats"].startswith("sent 500 (avg 50/s) ") and "ok 250" in task.fields["stats"]
        assert task.fields["rate"] == "100 SMS/s"  # the last 3 s, not the average since the start
    finally:
        ticker.stop()
    assert loop.timers == []  # stop() leaves no timer behind


def test_without_a_terminal_the_phase_and_the_progress_are_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, engine = FakeLoop(), FakeEngine()
    ticker = Ticker(engine, loop, progress=False)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="ota_server.progress"):
        ticker.start()
        loop.run_due(5.0)  # nothing happened: no "0/240" line, the phase was said once
        engine.stats.messages_sent = engine.stats.submit_accepted = 10
        engine.done = 4
        loop.run_due(10.0)
        ticker.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"campaign demo: {BINDING}"
    # Then the tick at 10 s and the last line at stop(); none at 5 s.
    assert len(messages) == 3 and all(
        m.startswith("progress: 4/240 jobs done; sent 10 ") for m in messages[1:]
    )
