"""``ota-server`` as a subprocess: --help, broken files and arguments (exit 2, one line), and the
command-line items of issue #11: campaign status from the lease, --json, --fail-on, campaign check,
outputs checked before the work, subcommand usage, --version / --log-level anywhere, the packet
tool's input and help."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ota_server.cli import build_parser
from ota_server.engine.lease import LEASE_TTL_S


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
    assert (
        result.stderr.strip().splitlines()[-1].startswith("ota-server: SMSC 127.0.0.1:1: connection refused")
    )
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- issue #11: the edges

ROOT = Path(__file__).resolve().parents[2]
UPDATE_ACTION = '[[actions]]\ntype = "update_binary"\npath = "3F00/7F20/6F46"\ndata = "00"\n'


def campaign_files(tmp_path: Path, *, fleet: str = "count = 3", targets: str = "fleet = true") -> Path:
    (tmp_path / "h.toml").write_text(f'[fleet]\nseed = "s"\n{fleet}\n')
    path = tmp_path / "c.toml"
    path.write_text(
        '[campaign]\nname = "x"\n[network]\nhandset_config = "h.toml"\n'
        f'[smsc]\nsystem_id = "ota"\npassword = "pw"\n[targets]\n{targets}\n{UPDATE_ACTION}'
    )
    return path


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def test_fleet_count_as_a_string_names_the_key_through_campaign_run(tmp_path: Path) -> None:
    path = campaign_files(tmp_path, fleet='count = "120"')
    line = one_line(run("campaign", "run", str(path), "--db", str(tmp_path / "d")))
    assert line == f"ota-server: {tmp_path / 'h.toml'}: fleet.count: expected an integer, got '120'"
    assert not (tmp_path / "d").exists()


def test_fleet_key_set_templates_are_type_checked(tmp_path: Path) -> None:
    path = campaign_files(tmp_path, fleet='count = 3\n[[fleet.keysets]]\nkvn = "1"')
    line = one_line(run("campaign", "check", str(path)))
    assert line.endswith("h.toml: fleet.keysets[0].kvn: expected an integer, got '1'")


@pytest.mark.parametrize(
    ("campaign", "line"),
    [
        ("configs/campaigns/demo.toml", "ok: campaign demo, 1 step, 120 target cards"),
        ("configs/campaigns/purse-reload.toml", "ok: campaign purse-reload, 2 steps, 120 target cards"),
    ],
)
def test_campaign_check_of_the_examples(campaign: str, line: str) -> None:
    result = run("campaign", "check", campaign, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [line] and result.stderr == ""


def test_campaign_check_refuses_without_running(tmp_path: Path) -> None:
    broken = campaign_files(tmp_path, targets='fleet = true\ntags = ["pilot"]')  # a fleet has no tags
    assert one_line(run("campaign", "check", str(broken))) == (
        f"ota-server: {broken}: targets: no card of the inventory matches"
    )
    (tmp_path / "h.toml").write_text('[fleet]\nseed = "s"\ncount = 3\nmsisdn_prefix = 4917\n')
    line = one_line(run("campaign", "check", str(broken)))
    assert line.endswith("h.toml: fleet.msisdn_prefix: expected a string, got 4917")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "h.toml"]  # nothing written


def test_campaign_check_counts_store_targets_with_db(tmp_path: Path) -> None:
    from ota_protocols.fleet import FleetSpec
    from ota_server.card_store import CardStore
    from ota_server.inventory import fleet_cards

    path = campaign_files(tmp_path, targets="fleet = false\nall = true")
    result = run("campaign", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "ok: campaign x, 1 step, target cards from the card store (give --db PATH to count them)"
    )
    store = CardStore(tmp_path / "d")
    store.import_cards(fleet_cards(FleetSpec(seed="other", count=5)))
    store.close()
    result = run("campaign", "check", str(path), "--db", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: campaign x, 1 step, 5 target cards"


@pytest.mark.parametrize("option", ["--report", "--pcap"])
def test_run_outputs_are_checked_before_the_campaign_runs(tmp_path: Path, option: str) -> None:
    path = campaign_files(tmp_path)
    missing = tmp_path / "missing" / "out"
    line = one_line(run("campaign", "run", str(path), "--db", str(tmp_path / "d"), option, str(missing)))
    assert line == f"ota-server: {option}: {missing}: no such directory '{missing.parent}'"
    line = one_line(run("campaign", "run", str(path), "--db", str(tmp_path / "d"), option, str(tmp_path)))
    assert line == f"ota-server: {option}: {tmp_path} is a directory: give a file name"
    assert not (tmp_path / "d").exists()  # the store was never opened: nothing ran


@pytest.mark.integration
def test_fail_on_exits_1_after_the_summary_and_the_report(tmp_path: Path) -> None:
    """The demo ends with 12 partial cards and no failed one (README)."""
    report = tmp_path / "r.json"
    base = ("campaign", "run", "configs/campaigns/demo.toml", "--report", str(report))
    result = run(*base, "--fail-on", "failed", "--fail-on", "partial", cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert "campaign demo (TAR b00010)" in result.stdout  # the summary table came first
    assert json.loads(report.read_text())["summary"]["partial"] == 12
    assert (
        result.stderr.strip().splitlines()[-1]
        == "ota-server: --fail-on failed,partial: 12 partial of 120 cards"
    )
    report.unlink()
    result = run(*base, "--fail-on", "failed", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert report.exists()


def test_fail_on_takes_only_card_end_states() -> None:
    result = run("campaign", "run", "x.toml", "--fail-on", "partial,confirmed")
    assert result.returncode == 2
    assert "argument --fail-on: expected failed or partial" in result.stderr.splitlines()[-1]
    args = build_parser().parse_args(["campaign", "run", "x.toml", "--fail-on", "Failed, partial"])
    assert args.fail_on == ["failed", "partial"]


@pytest.mark.parametrize(
    ("argv", "choices"),
    [
        ((), "{packet,campaign,cards,report,serve}"),
        (("campaign",), "{run,check,pause,resume,cancel,status}"),
        (("cards",), "{import,export}"),
        (("packet",), "{encode-command,decode-command,encode-response,decode-response}"),
    ],
)
def test_a_missing_subcommand_names_the_choices(argv: tuple[str, ...], choices: str) -> None:
    result = run(*argv)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: ota-server")
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f"error: the following arguments are required: {choices}")
    )
    assert "_command" not in result.stderr


def leaf_commands() -> list[list[str]]:
    """Every ota-server command with its positional arguments filled in."""
    positional = {"name": "n", "campaign": "c.toml", "file": "f.csv"}
    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            names = [a.dest for a in parser._actions if not a.option_strings and a.dest != "help"]
            out.append(prefix + [positional.get(n, "report-name") for n in names])
            return
        for name, child in subs[0].choices.items():
            walk(child, [*prefix, name])

    walk(build_parser(), [])
    return out


def test_log_level_before_or_after_every_subcommand() -> None:
    commands = leaf_commands()
    assert len(commands) == 14  # 4 packet, 6 campaign, 2 cards, report, serve
    for argv in commands:
        parser = build_parser()
        assert parser.parse_args(argv).log_level == "WARNING", argv
        assert parser.parse_args(["--log-level", "debug", *argv]).log_level == "DEBUG", argv
        assert parser.parse_args([*argv, "--log-level", "INFO"]).log_level == "INFO", argv
        assert parser.parse_args(["--log-level", "ERROR", *argv, "--log-level", "INFO"]).log_level == "INFO"


@pytest.mark.parametrize(
    "argv",
    [
        ("--version",),
        ("campaign", "run", "--version"),
        ("packet", "decode-response", "--version"),
        ("report", "--version"),
    ],
)
def test_version_before_or_after_the_subcommand(argv: tuple[str, ...]) -> None:
    result = run(*argv)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"ota-server \S+\n", result.stdout)


def test_packet_tool_deep_nesting_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ota_server.cli", "packet", "decode-command"],
        input="[" * 100_000,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_line(done)
    assert (
        line == "ota-server packet decode-command: stdin: JSON nested too deeply (expected one flat object)"
    )


def test_packet_subcommand_help_lists_its_json_keys() -> None:
    from ota_server.packet_tool import KEYS

    for command, keys in KEYS.items():
        result = run("packet", command, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())  # argparse wraps the description
        for key in (*keys.accepted, *keys.output):
            assert re.search(rf"\b{key}\b", text), (command, key)
        assert "Output keys:" in text


def store_with_campaign(tmp_path: Path, **lease: Any) -> Path:
    """A database holding campaign ``x`` whose lease is held as ``lease`` says (pid, host, at)."""
    from ota_server.card_store import CardStore

    db = tmp_path / "db"
    store = CardStore(db)
    try:
        store.acquire_lease(
            "x", token="t", pid=lease["pid"], host=lease["host"], at=lease["at"], source="camp.toml",
            alive=lambda pid: False,
        )  # fmt: skip
    finally:
        store.close()
    return db


def dead_pid() -> int:
    """A pid no process can have on this host (above the kernel's pid_max)."""
    pid_max = Path("/proc/sys/kernel/pid_max")
    return int(pid_max.read_text()) + 1 if pid_max.exists() else 2**31 - 1


def test_status_of_a_killed_runner_says_interrupted_and_how_to_continue(tmp_path: Path) -> None:
    pid = dead_pid()
    db = store_with_campaign(tmp_path, pid=pid, host=socket.gethostname(), at=time.time() - 42)
    result = run("campaign", "status", "x", "--db", str(db))
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert re.fullmatch(
        rf"campaign x: interrupted: runner pid {pid} gone \(heartbeat 4\d\.\d s ago\); "
        rf"continue with: ota-server campaign run camp\.toml --db {re.escape(str(db))} --smsc HOST:PORT",
        first,
    ), first
    assert second.startswith("  cards 0: confirmed 0,")
    status = json.loads(run("campaign", "status", "x", "--db", str(db), "--json").stdout)
    assert status["state"] == "running" and status["status"] == "interrupted"
    assert status["runner"]["pid"] == pid and status["runner"]["alive"] is False
    assert status["runner"]["why"] == "gone" and 42 <= status["runner"]["heartbeat_age_s"] < 100
    assert status["continue_with"] == f"ota-server campaign run camp.toml --db {db} --smsc HOST:PORT"
    assert status["lease_ttl_s"] == LEASE_TTL_S and status["cards"]["cards"] == 0
    # resume uses the same rule: no live runner, so it says how to continue.
    result = run("campaign", "resume", "x", "--db", str(db))
    assert result.stdout.splitlines()[0].startswith(f"campaign x: running (runner pid {pid} gone (heartbeat")
    assert result.stdout.splitlines()[1] == f"continue it with: {status['continue_with']}"


def test_status_of_a_live_runner_says_running_with_its_heartbeat(tmp_path: Path) -> None:
    host = socket.gethostname()
    db = store_with_campaign(tmp_path, pid=os.getpid(), host=host, at=time.time())  # this test runs
    result = run("campaign", "status", "x", "--db", str(db))
    assert re.fullmatch(
        rf"campaign x: running \(pid {os.getpid()} on host {re.escape(host)}, heartbeat \d+\.\d s ago\)",
        result.stdout.splitlines()[0],
    ), result.stdout
    status = json.loads(run("campaign", "status", "x", "--db", str(db), "--json").stdout)
    assert status["status"] == "running" and status["runner"]["alive"] is True
    assert status["continue_with"] is None
    result = run("campaign", "pause", "x", "--db", str(db))
    runner = rf"runner pid {os.getpid()} on host {re.escape(host)}, heartbeat \d+\.\d s ago"
    # One line: the live runner picks the pause up, nothing to continue.
    assert re.fullmatch(rf"campaign x: paused \({runner}\)\n", result.stdout), result.stdout


def test_status_of_a_runner_on_another_host_goes_by_its_heartbeat(tmp_path: Path) -> None:
    db = store_with_campaign(tmp_path, pid=os.getpid(), host="elsewhere.invalid", at=time.time() - 42)
    line = run("campaign", "status", "x", "--db", str(db)).stdout.splitlines()[0]
    assert line.startswith(
        f"campaign x: interrupted: runner pid {os.getpid()} on host elsewhere.invalid silent (heartbeat 4"
    )
    assert f"its lease lapses after {LEASE_TTL_S:g} s); continue with: " in line


def report_db(tmp_path: Path) -> Path:
    from ota_server.card_store import CardStore

    db = tmp_path / "db"
    store = CardStore(db)
    store.set_campaign_state("x", "finished", at=time.time(), source="camp.toml")
    store.close()
    return db


@pytest.mark.parametrize(
    ("option", "name", "expected"),
    [
        ("--plot", "out.txt", "--plot: {path}: cannot draw a '.txt' file"),
        ("--plot", "missing/p.png", "--plot: {path}: no such directory"),
        ("--json", "missing/r.json", "--json: {path}: no such directory"),
        ("--csv", ".", "--csv: {path} is a directory"),
    ],
)
def test_report_checks_its_outputs_before_printing(
    tmp_path: Path, option: str, name: str, expected: str
) -> None:
    db = report_db(tmp_path)
    path = tmp_path / name
    result = run("report", "x", "--db", str(db), option, str(path))
    assert one_line(result).startswith("ota-server: " + expected.format(path=path))
    assert result.stdout == ""  # no report before the error


def test_report_prints_when_its_outputs_are_fine(tmp_path: Path) -> None:
    db = report_db(tmp_path)
    result = run("report", "x", "--db", str(db), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    assert "campaign x (finished)" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["campaign"] == "x"
