# ruff: noqa: E501  (parametrized cases read best one per line)
"""Bad campaign files, target CSVs and card inventories: exit status 2 and ONE line naming the file,
the line or key, and the problem; an inventory with a bad row imports nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ota_server.card_store import CardStore

HEAD = '[campaign]\nname = "x"\n[network]\nhandset_config = "h.toml"\n'
STEP = (
    '[[steps]]\n[steps.security]\ntar = "bfff01"\n'
    '[[steps.actions]]\ntype = "purse_reload"\namount = "{csv.amount}"\n'
)
INVENTORY_HEADER = "iccid,imsi,msisdn,kvn,kic_algorithm,kic,kid_algorithm,kid,tags\n"
GOOD_ROW = (
    "8988211000000000003,001010000000001,491700000001,1,aes,"
    + "11" * 16
    + ",aes-cmac,"
    + "22" * 16
    + ",pilot\n"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ota_server.cli", *args], capture_output=True, text=True, timeout=60
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("body", "csv", "expected"),
    [
        (HEAD + "[pacing]\nbinds = 0\n" + STEP, None, "c.toml: pacing.binds: 0 outside 1..64"),
        (HEAD + "[targets]\niccid_ranges = [['1', '22']]\n" + STEP, None, "targets.iccid_ranges[0]: 1 and 22 differ"),
        (HEAD + "[campaign.x]\n", None, "campaign.x: unknown key"),
        (HEAD + "[[steps]]\n[steps.security]\npor_mode = 'sms'\n", None, "steps[0].security.por_mode: expected one of"),
        (HEAD + "[targets]\ncsv = 't.csv'\n" + STEP, "iccid,amount\n8988211000000000003,12x\n", "t.csv:2:amount: expected an integer"),
        (HEAD + "[targets]\ncsv = 't.csv'\n" + STEP, "iccid,amount\n8988211000000000003\n", "t.csv:2: expected 2 columns, got 1"),
        (HEAD + "[targets]\ncsv = 't.csv'\n" + STEP.replace("csv.amount", "csv.sum"), "iccid,amount\n1,2\n", "steps[0].actions[0].amount: column 'sum' not in"),
        (HEAD + STEP, None, "steps[0].actions[0].amount: uses {csv.amount} but [targets] has no csv file"),
        (HEAD + "[campaign.deadline]\n", None, "campaign.deadline: expected a TOML date-time"),
    ],
)  # fmt: skip
def test_bad_campaign_file_or_csv_exits_2_with_one_line(
    tmp_path: Path, body: str, csv: str | None, expected: str
) -> None:
    (tmp_path / "h.toml").write_text('[fleet]\nseed = "s"\ncount = 2\n')
    if csv is not None:
        (tmp_path / "t.csv").write_text(csv)
    (tmp_path / "c.toml").write_text(body)
    if "[campaign.x]" in body:
        (tmp_path / "c.toml").write_text(HEAD.replace('name = "x"', 'name = "x"\nx = 1') + STEP)
    if "[campaign.deadline]" in body:
        (tmp_path / "c.toml").write_text(
            HEAD.replace('name = "x"', 'name = "x"\ndeadline = "tomorrow"') + STEP
        )
    line = one_line(run("campaign", "run", str(tmp_path / "c.toml"), "--db", str(tmp_path / "db")))
    assert line.startswith("ota-server: ") and expected in line, line


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (GOOD_ROW.replace("8988211000000000003", "89882x"), "cards.csv:3:iccid: expected 10..20 digits"),
        (GOOD_ROW.replace(",aes,", ",rot13,"), "cards.csv:3:kic_algorithm: unknown 'rot13'"),
        (GOOD_ROW.replace("11" * 16, "11" * 15), "cards.csv:3:kic: aes needs 16 or 24 or 32 octets, got 15"),
        (GOOD_ROW.replace(",1,aes", ",16,aes"), "cards.csv:3:kvn: expected a key version 1..15"),
        (
            GOOD_ROW.replace("8988211000000000003", "8988211000000000011"),
            "cards.csv:3:msisdn: 491700000001 already",
        ),
    ],
)
def test_bad_inventory_row_exits_2_and_imports_nothing(tmp_path: Path, row: str, expected: str) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(INVENTORY_HEADER + GOOD_ROW + row)
    db = tmp_path / "db"
    line = one_line(run("cards", "import", str(path), "--db", str(db)))
    assert expected in line and str(path) in line, line
    assert "11" * 16 not in line
    if db.exists():
        store = CardStore(db)
        assert store.cards() == []
        store.close()


def test_inventory_round_trip_masks_keys_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    second = GOOD_ROW.replace(",1,aes,", ",2,aes,")
    path.write_text(INVENTORY_HEADER + GOOD_ROW + second)
    db = str(tmp_path / "db")
    assert run("cards", "import", str(path), "--db", db).returncode == 0
    masked = run("cards", "export", "--db", db).stdout
    assert "11" * 16 not in masked and masked.count("8988211000000000003") == 2 and ",*," in masked
    full = run("cards", "export", "--db", db, "--with-keys").stdout
    assert full == path.read_text()
