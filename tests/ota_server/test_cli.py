"""``ota-server campaign run`` as a subprocess: --help, a broken file (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_help() -> None:
    result = run("campaign", "run", "--help")
    assert result.returncode == 0
    for option in ("--smsc", "--report", "--db", "--seed", "--log-level"):
        assert option in result.stdout


def test_broken_campaign_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[campaign]\nname = "x"\n[network]\nhandset_config = "h.toml"\n'
        '[[actions]]\ntype = "update_binary"\npath = "3F00/7F20/6F46"\ndata = "00"\n'
        '[[actions]]\ntype = "update_binary"\npath = "3F00/7F20/6F46"\ndata = "00"\n'
        '[[actions]]\ntype = "update_binary"\npath = "3F00/7F20/6F4"\ndata = "00"\n'
    )
    result = run("campaign", "run", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"ota-server: {path}: actions[2].path: file identifier '6F4' is not 4 hex digits"]


def test_missing_file_and_bad_smsc_argument_exit_2(tmp_path: Path) -> None:
    result = run("campaign", "run", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read campaign file" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("campaign", "run", str(tmp_path / "nope.toml"), "--smsc", "localhost")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_unreachable_smsc_exits_1_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "h.toml").write_text('[fleet]\nseed = "s"\ncount = 2\n')
    (tmp_path / "c.toml").write_text(
        '[campaign]\nname = "x"\n[network]\nhandset_config = "h.toml"\n'
        '[smsc]\nsystem_id = "ota"\npassword = "pw"\nreconnect_window_s = 0.3\nreconnect_backoff_s = 0.01\n'
        '[[actions]]\ntype = "update_binary"\npath = "3F00/7F20/6F46"\ndata = "00"\n'
    )
    result = run(
        "campaign", "run", str(tmp_path / "c.toml"), "--smsc", "127.0.0.1:1", "--db", str(tmp_path / "d")
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ota-server: SMSC 127.0.0.1:1: connection refused")
    assert "Traceback" not in result.stderr
