"""ota-lab's command line: arguments and output files checked before a seed runs (issue #11),
--version and --log-level as every ota-sim command spells them, a sweep's progress on a terminal."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ota_lab import cli
from ota_lab.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "labs" / "smoke.toml")


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that starts is a failure of these tests: the check must come first."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lab ran before its arguments were checked")

    monkeypatch.setattr(cli, "run_lab", refuse)
    monkeypatch.setattr(cli, "_results", refuse)


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.usefixtures("no_run")
def test_a_negative_seed_is_refused_as_sweep_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SMOKE, "--seed", "-1"]) == 2
    assert one_error(capsys) == "ota-lab: --seed: -1 is not a seed >= 0"
    assert main(["sweep", SMOKE, "--seeds", "-1"]) == 2
    assert "--seeds" in one_error(capsys)


@pytest.mark.usefixtures("no_run")
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out.txt", "cannot draw a '.txt' file"),
        ("missing/p.png", "no such directory"),
        (".", "is a directory"),
    ],
)
def test_a_bad_plot_path_is_one_line_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    target = tmp_path / name
    assert main(["run", SMOKE, "--seed", "1", "--plot", str(target)]) == 2
    line = one_error(capsys)
    assert line.startswith("ota-lab: --plot: ") and expected in line, line


@pytest.mark.usefixtures("no_run")
def test_missing_matplotlib_is_reported_before_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    assert main(["run", SMOKE, "--seed", "1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in one_error(capsys)


@pytest.mark.usefixtures("no_run")
@pytest.mark.parametrize("command", [["run", SMOKE, "--seed", "1"], ["sweep", SMOKE, "--seeds", "1-2"]])
def test_a_report_into_a_missing_directory_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main([*command, "--report", str(tmp_path / "missing" / "r.json")]) == 2
    assert "--report" in one_error(capsys)


def test_a_plot_without_suffix_is_a_png_of_exactly_that_name(tmp_path: Path) -> None:
    target = tmp_path / "plot"
    assert main(["run", SMOKE, "--seed", "3", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot"]


def test_an_svg_plot_is_an_svg(tmp_path: Path) -> None:
    target = tmp_path / "p.svg"
    assert main(["run", SMOKE, "--seed", "3", "--plot", str(target)]) == 0
    text = target.read_text()
    assert "<svg" in text and "SMS sent per 0.1 s" in text  # the y axis names its bin width


@pytest.mark.usefixtures("no_run")
def test_log_level_goes_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "info", "run", SMOKE, "--seed", "-1"]) == 2
    assert main(["run", SMOKE, "--seed", "-1", "--log-level", "WARNING"]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["run", SMOKE, "--seed", "1", "--log-level", "LOUD"])
    assert info.value.code == 2
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


def test_a_sweep_on_a_terminal_shows_its_progress() -> None:
    buffer = io.StringIO()
    out = cli._Output(console=Console(file=buffer, force_terminal=True, width=100, highlight=False))
    args = cli._parser().parse_args(["sweep", SMOKE, "--seeds", "1-3"])
    assert cli._cmd_sweep(args, out) == 0
    text = buffer.getvalue()
    assert "3/3" in text and "seeds/s" in text and text.count("seed ") >= 3


@pytest.mark.parametrize("module", ["ota_lab.cli", "handset.cli", "sim_emulator.cli"])
def test_version(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    prog = {"ota_lab.cli": "ota-lab", "handset.cli": "handset", "sim_emulator.cli": "sim-emulator"}[module]
    assert done.returncode == 0 and done.stdout.startswith(f"{prog} "), done.stderr
    assert done.stdout.split()[1][0].isdigit() or done.stdout.split()[1] == "unknown"
