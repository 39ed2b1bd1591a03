"""ota_lab itself: lab files (errors name file and key, exit 2), seed determinism, a short sweep of the
smoke lab over real SMPP, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ota_lab.cli import main, parse_seeds
from ota_lab.config import load_lab
from ota_lab.draw import draw_mix
from ota_lab.runner import run_lab

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "labs" / "smoke.toml"
LOSSY = ROOT / "configs" / "labs" / "lossy.toml"


@pytest.mark.parametrize("path", [SMOKE, LOSSY], ids=["smoke", "lossy"])
def test_shipped_labs_load(path: Path) -> None:
    lab = load_lab(path)
    assert lab.transport.value == "virtual" and lab.handset_config is not None


def test_lossy_lab_has_at_least_20_percent_loss_each_way_and_every_fault() -> None:
    lab = load_lab(LOSSY)
    assert lab.faults.get("mt_loss").low >= 0.2 and lab.faults.get("mo_loss").low >= 0.2
    for key in ("mt_burst", "mt_duplicate", "mt_reorder", "mt_late", "mt_corrupt", "offline", "busy", "tear"):
        assert lab.faults.get(key).high > 0, key
    assert lab.fleet_size is not None and (lab.fleet_size.low, lab.fleet_size.high) == (40, 100)


BASE = f'[network]\nhandset_config = "{(ROOT / "configs" / "handset.toml").as_posix()}"\n' + (
    '[campaign]\npath = "' + (ROOT / "configs" / "campaigns" / "demo.toml").as_posix() + '"\n'
)


@pytest.mark.parametrize(
    ("extra", "key_path"),
    [
        ("[faults]\nmt_loss = [0.4, 0.2]\n", "faults.mt_loss"),
        ("[faults]\nmt_loss = [0.2, 1.5]\n", "faults.mt_loss"),
        ("[faults]\nmt_los = 0.2\n", "faults.mt_los"),
        ("[lab]\ntransport = 'carrier-pigeon'\n", "lab.transport"),
        ("[lab]\nfleet_size = [0, 3]\n", "lab.fleet_size"),
        ("[timing]\npor_timeout_s = -1\n", "timing.por_timeout_s"),
        ("[events]\nsmsc_restart_at_s = 'soon'\n", "events.smsc_restart_at_s"),
        ("[surprise]\n", "surprise"),
    ],
)
def test_config_errors_name_file_and_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key_path: str
) -> None:
    path = tmp_path / "bad.toml"
    # Tables of BASE come first; the extra table must not repeat one of them.
    path.write_text(BASE + extra)
    assert main(["run", str(path), "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ota-lab: {path}: {key_path}:"), err


def test_missing_lab_file_and_bad_seeds_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml"), "--seed", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["sweep", str(SMOKE), "--seeds", "5-1"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_parse_seeds() -> None:
    assert parse_seeds("3") == [3]
    assert parse_seeds("1-3,7,2") == [1, 2, 3, 7]


def test_same_seed_same_fault_mix_other_seed_other_mix() -> None:
    lab = load_lab(LOSSY)
    assert draw_mix(lab, 17) == draw_mix(lab, 17)
    assert draw_mix(lab, 17).summary() == draw_mix(lab, 17).summary()
    assert draw_mix(lab, 17) != draw_mix(lab, 18)


@pytest.mark.integration
def test_same_seed_same_result_line(tmp_path: Path) -> None:
    """Over wall-clock SMPP the drawn mix replays exactly; the outcome line too when the faults cannot
    race the timers (duplicates only: the copy is refused CNTR low whenever it lands)."""
    path = SMOKE.parent / f"test-dup-{tmp_path.name}.toml"  # beside smoke.toml: same relative paths
    path.write_text(
        SMOKE.read_text().replace("[faults]\nmt_loss = [0.0, 0.15]\nmo_loss = [0.0, 0.15]\n", "[faults]\n")
    )
    try:
        lab = load_lab(path)
    finally:
        path.unlink()
    first, second = run_lab(lab, 5), run_lab(lab, 5)
    assert first.line() == second.line() and first.ok, first.line()
    assert first.mix.faults["mt_duplicate"] > 0


@pytest.mark.integration
def test_a_short_sweep_of_the_smoke_lab_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(SMOKE), "--seeds", "1-4"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("seed ")]
    assert len(lines) == 4 and all("lost 0 dup 0 mismatch 0 stuck 0" in line for line in lines), out
    assert "invariants: lost 0 duplicated 0 mismatches 0 stuck 0" in out


@pytest.mark.integration
def test_run_writes_a_report_without_keys(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    assert main(["run", str(SMOKE), "--seed", "2", "--report", str(report)]) == 0
    text = report.read_text()
    assert '"replay": "ota-lab run' in text and '"ok": true' in text
    assert "kic_key" not in text and "password" not in text


def test_cli_help() -> None:
    for argv in (["--help"], ["run", "--help"], ["sweep", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "ota_lab.cli", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert result.returncode == 0 and "usage: ota-lab" in result.stdout, result.stderr
