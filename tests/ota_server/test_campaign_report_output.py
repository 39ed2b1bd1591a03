"""ota-server report: what counts as a failure by PoR status, and the plot's file, format and bins."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ota_protocols.errors import ConfigError
from ota_server.campaign_report import plot_format, por_failure, rate_bin_s

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("statuses", "row"),
    [
        ((), "no PoR"),
        (("00 PoR OK",), None),  # the PoR was fine: the failure is in the commands (status words)
        (("0B actual response by SMS-SUBMIT",), None),  # TS 31.115 §4.3: a pointer, not an error
        (("02 CNTR low",), "02 CNTR low"),
        (("01 RC/CC/DS failed", "00 PoR OK"), None),  # the last PoR decides
        (("00 PoR OK", "submit failed", "06 unidentified security error"), "06 unidentified security error"),
    ],
)
def test_failures_by_por_status_leave_out_por_ok_and_0b(statuses: tuple[str, ...], row: str | None) -> None:
    assert por_failure(statuses) == row


def test_plot_formats_and_places(tmp_path: Path) -> None:
    assert plot_format(tmp_path / "p.svg") == "svg"
    assert plot_format(tmp_path / "plot") == "png"  # no suffix: PNG, written to exactly that name
    for path, expected in (
        (tmp_path / "out.txt", "cannot draw a '.txt' file"),
        (tmp_path / "missing" / "p.png", "no such directory"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(ConfigError) as info:
            plot_format(path)
        assert info.value.key_path == "--plot" and expected in str(info.value)


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="needs matplotlib"):
        plot_format(tmp_path / "p.png")


@pytest.mark.parametrize(
    ("span_s", "messages", "width"),
    [
        (15.0, 10_000, 1.0),  # rfm-10k: about 20 bins
        (600.0, 100_000, 50.0),
        (0.085, 240, 0.02),  # the demo: at least 50 messages in an average bin
        (3.0, 5, 3.0),  # never wider than the run
        (0.0, 1, 1.0),
    ],
)
def test_rate_bins(span_s: float, messages: int, width: float) -> None:
    assert rate_bin_s(span_s, messages) == pytest.approx(width)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota_server.cli",
            "campaign",
            "run",
            "configs/campaigns/demo.toml",
            "--db",
            str(db),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return db


def report(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", "report", "demo", "--db", str(db), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_report_of_the_demo(demo_db: Path, tmp_path: Path) -> None:
    done = report(demo_db, "--plot", str(tmp_path / "plot"))
    assert done.returncode == 0, done.stderr
    # The demo's 12 partial cards had PoR OK (00, or 0B and the full PoR by SMS-SUBMIT): their
    # failure is the status word 6A82, not the PoR.
    assert "failures by PoR status" not in done.stdout and "partial: SW 6A82" in done.stdout
    assert (tmp_path / "plot").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "plot.png").exists()
    assert f"plot: {tmp_path / 'plot'}" in done.stdout


@pytest.mark.integration
def test_report_plot_to_a_text_file_is_one_line(demo_db: Path, tmp_path: Path) -> None:
    done = report(demo_db, "--plot", str(tmp_path / "out.txt"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ota-server: --plot: ") and "cannot draw a '.txt' file" in line
    assert not (tmp_path / "out.txt").exists()
