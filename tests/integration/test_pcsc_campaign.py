"""An OTA campaign through a real PC/SC stack, with the public CLIs as a user runs them:

    ota-server campaign run --smsc  ->  SMPP (loopback)  ->  handset serve (phone: [[cards]] sim =
    "pcsc:READER")  ->  pyscard -> pcscd -> vsmartcard vpcd  ->  sim-emulator pcsc (our SIM)  ->  PoR back

The same campaign also runs over the direct path (the phone holds the emulated card in-process,
``[[cards]] profile = ...``) and both must end alike: same report rows, same card state, and the
proof of the run computed from the card's own journal (lost = duplicated = counter mismatches = 0;
the OTA server computes it itself only for its embedded network, so it is computed here). The keys
come from the inventory (``ota-server cards import``), not from the phone's config. Both PoR paths
run: in the SMS-DELIVER-REPORT (SPI2 b6 = 0) and by SEND SHORT MESSAGE (FETCH / TERMINAL RESPONSE).

A card removed mid-transaction (the emulator's tearing hook, after 1 of 2 actions, drops the vpcd
connection before the PoR): the phone answers RP-ERROR (the server records the UNDELIV receipt),
the card goes back in the reader, and the job ends confirmed with nothing lost or repeated.

pcscd, vpcd and pyscard: tests/pcsc_daemon.py (fail under CI=true when missing, skip elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ota_protocols.errors import ConnectionLost
from ota_server.config import load_campaign
from ota_server.report import counted_hex
from sim_emulator.api import CardPoweredOff, SimCard, load_card
from sim_emulator.vpcd_client import VpcdCardClient
from tests.pcsc_daemon import ROOT, Pcscd, inserted_cards, wait_for_card

pytestmark = pytest.mark.integration

EXAMPLE_CARD = ROOT / "configs" / "cards" / "example-card.toml"
TAR = "b00010"
MSISDN = "491700000001"
ACTIONS = """
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "014f54412044656d6f204e6574776f726b"

[[actions]]
type = "update_binary"
path = "3F00/7F20/6F31"
offset = 0
data = "01"
"""
# SPI2 (TS 102 225 §5.1.1): 0x19 PoR with CC in the SMS-DELIVER-REPORT; 0x39 the same by SMS-SUBMIT.
POR_PATHS = {"deliver_report": "1619", "sms_submit": "1639"}


def fresh_card(tmp: Path) -> tuple[Path, Path]:
    profile = tmp / "card.toml"
    profile.write_text(EXAMPLE_CARD.read_text())
    return profile, tmp / "card.state.json"


def inventory(tmp: Path, profile: Path) -> Path:
    """The card's identity and TEST key sets as an ``ota-server cards import`` CSV."""
    card = tomllib.loads(profile.read_text())
    rows = ["iccid,imsi,msisdn,kvn,kic_algorithm,kic,kid_algorithm,kid,tags"]
    for ks in card["keysets"]:
        rows.append(
            f"{card['iccid']},{card['imsi']},{card['msisdn']},{ks['kvn']},{ks['kic_algorithm']},{ks['kic']},"
            f"{ks['kid_algorithm']},{ks['kid']},lab"
        )
    path = tmp / "cards.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def campaign(tmp: Path, spi: str, *, name: str = "pcsc", por_timeout_s: float = 3.0) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[campaign]
name = "{name}"

[smsc]
system_id = "ota"
password = "secret"
source_addr = "12345"
registered_delivery = true

[targets]
all = true

[security]
spi = "{spi}"
kic = "12"
kid = "12"
tar = "{TAR}"

[retry]
por_timeout_s = {por_timeout_s}
max_attempts = 6
backoff_s = 0.2
{ACTIONS}"""
    )
    return path


def handset_config(tmp: Path, card_entry: str) -> Path:
    path = tmp / "handset.toml"
    path.write_text(
        f"""
[smsc]
host = "127.0.0.1"
port = 0
rp_timeout_s = 2.0

[[smsc.esmes]]
system_id = "ota"
password = "secret"
addresses = ["12345"]

[[cards]]
{card_entry}
"""
    )
    return path


def cli(module: str, *args: str, timeout_s: float = 180.0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{module} {args}: {done.stdout}{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def handset_serve(config: Path, report: Path) -> Iterator[int]:
    """``handset serve`` on a free loopback port; yields the port; SIGTERM writes ``report``."""
    log = config.with_suffix(".log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "handset.cli", "serve", "--config", str(config), "--port", "0",
         "--report-file", str(report)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "handset: SMSC listening on 127.0.0.1:PORT (1 phones)", or EOF
        assert "SMSC listening on 127.0.0.1:" in line, f"{line!r} {config.with_suffix('.log').read_text()}"
        yield int(line.split("127.0.0.1:")[1].split()[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def run_campaign(tmp: Path, profile: Path, spi: str, port: int, *, name: str = "pcsc") -> dict[str, Any]:
    db = tmp / "ota.sqlite"
    cli("ota_server.cli", "cards", "import", str(inventory(tmp, profile)), "--db", str(db))
    report = tmp / f"{name}.json"
    path = campaign(tmp, spi, name=name)
    cli("ota_server.cli", "campaign", "run", str(path), "--smsc", f"127.0.0.1:{port}", "--db", str(db),
        "--report", str(report))  # fmt: skip
    return json.loads(report.read_text())


def card_application(profile: Path, state: Path) -> dict[str, Any]:
    report = load_card(profile, state).report()
    return next(app for app in report["applications"] if app["tar"] == TAR)


def verification(report: dict[str, Any], app: dict[str, Any], campaign_path: Path) -> dict[str, int]:
    """The server's proof (docs/campaigns.md §3) for one card: the counted APDUs it believes applied
    against the card's journal entries after the start counter, and its counter against the card's."""
    [row] = report["cards"]
    expected = Counter(counted_hex(load_campaign(campaign_path).actions)[: row["executed"]])
    journal = Counter(e["apdu"] for e in app["journal"] if e["counter"] > row["start_counter"])
    return {
        "lost_actions": sum((expected - journal).values()),
        "duplicated_actions": sum((journal - expected).values()),
        "counter_mismatches": int(app["action_counter"] != row["confirmed_counter"]),
    }


def outcome(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    keys = ("iccid", "state", "executed", "confirmed_counter", "resent_actions", "statuses")
    return [tuple(str(row[k]) for k in keys) for row in report["cards"]]


@pytest.mark.parametrize("por_path", sorted(POR_PATHS))
def test_a_campaign_through_pcsc_ends_as_over_the_direct_path(
    pcscd: Pcscd, tmp_path: Path, por_path: str
) -> None:
    spi = POR_PATHS[por_path]
    results = {}
    for path in ("direct", "pcsc"):
        tmp = tmp_path / path
        tmp.mkdir()
        profile, state = fresh_card(tmp)
        handset_report = tmp / "handset-report.json"
        if path == "direct":
            config = handset_config(tmp, f'profile = "{profile}"\nstate = "{state}"')
            with handset_serve(config, handset_report) as port:
                report = run_campaign(tmp, profile, spi, port)
        else:
            config = handset_config(tmp, f'sim = "pcsc:{pcscd.readers[0]}"\nmsisdn = "{MSISDN}"')
            with inserted_cards(pcscd, [(profile, state)]), handset_serve(config, handset_report) as port:
                report = run_campaign(tmp, profile, spi, port)
        app = card_application(profile, state)
        results[path] = (report, app, json.loads(handset_report.read_text()), tmp / "pcsc.toml")
    (direct, direct_app, _, direct_campaign), (pcsc, pcsc_app, pcsc_handset, pcsc_campaign) = (
        results["direct"],
        results["pcsc"],
    )
    assert outcome(pcsc) == outcome(direct)
    assert pcsc["cards"][0]["state"] == "confirmed" and pcsc["cards"][0]["confirmed_counter"] == 2
    assert pcsc_app == direct_app and pcsc_app["action_counter"] == 2
    zero = {"lost_actions": 0, "duplicated_actions": 0, "counter_mismatches": 0}
    assert (
        verification(pcsc, pcsc_app, pcsc_campaign)
        == verification(direct, direct_app, direct_campaign)
        == zero
    )
    # The PC/SC phone really went through the reader: its card report is the reader's, and the
    # SMS-SUBMIT path used FETCH / TERMINAL RESPONSE (mo_submits), the other one did not.
    [card] = pcsc_handset["cards"]
    assert card["reader"] == pcscd.readers[0] and card["iccid"] == "8988211000000000011" and card["apdus"] > 0
    me = pcsc_handset["smsc"]["me"]
    assert (me["mo_submits"] > 0) == (por_path == "sms_submit") and me["rp_error"] == 0


class TearsOnFirstScript:
    """The emulated card with its tearing hook (``SimCard.stop_after_actions``) armed before every
    ENVELOPE until it fires: a status query (no action) passes, the first script loses power after
    its CNTR and 1 counted action are saved. The vpcd client then drops its connection, which
    pcsc-lite reports to the phone as the card gone mid-APDU."""

    def __init__(self, card: SimCard) -> None:
        self.card = card
        self.torn = False

    @property
    def iccid(self) -> str:
        return self.card.iccid

    def reset(self) -> bytes:
        return self.card.reset()

    def exchange(self, c_apdu: bytes) -> bytes:
        if not self.torn and c_apdu[1] == 0xC2:  # ENVELOPE (TS 102 221 §10.1.2)
            self.card.stop_after_actions(1)
        try:
            return self.card.exchange(c_apdu)
        except CardPoweredOff:
            self.torn = True
            raise


@pytest.mark.asyncio
async def test_a_card_removed_mid_transaction_gives_rp_error_and_loses_nothing(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    profile, state = fresh_card(tmp_path)
    reader = pcscd.readers[0]
    card = TearsOnFirstScript(load_card(profile, state))
    first = asyncio.create_task(VpcdCardClient(card, "127.0.0.1", pcscd.port).run())  # type: ignore[arg-type]
    await asyncio.to_thread(wait_for_card, reader, present=True)
    config = handset_config(tmp_path, f'sim = "pcsc:{reader}"\nmsisdn = "{MSISDN}"')
    handset_report = tmp_path / "handset-report.json"
    handset_log = tmp_path / "handset.log"
    handset = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handset.cli", "serve", "--config", str(config), "--port", "0",
        "--report-file", str(handset_report), "--log-level", "DEBUG", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=handset_log.open("w"),
    )  # fmt: skip
    second: asyncio.Task[None] | None = None
    try:
        assert handset.stdout is not None
        async with asyncio.timeout(30):
            line = (await handset.stdout.readline()).decode()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        db = tmp_path / "ota.sqlite"
        await asyncio.to_thread(
            cli, "ota_server.cli", "cards", "import", str(inventory(tmp_path, profile)), "--db", str(db)
        )
        campaign_path = campaign(tmp_path, POR_PATHS["sms_submit"], name="removal")
        report_path = tmp_path / "removal.json"
        run = asyncio.create_task(
            asyncio.to_thread(
                cli, "ota_server.cli", "campaign", "run", str(campaign_path), "--smsc", f"127.0.0.1:{port}",
                "--db", str(db), "--report", str(report_path),
            )
        )  # fmt: skip
        async with asyncio.timeout(60):
            with pytest.raises(ConnectionLost, match="card left the reader"):
                await first  # the card tore during the first script and left the reader
            await asyncio.to_thread(wait_for_card, reader, present=False)
            second = asyncio.create_task(VpcdCardClient(card, "127.0.0.1", pcscd.port).run())  # type: ignore[arg-type]
        async with asyncio.timeout(180):
            await run
        audit = await asyncio.to_thread(
            cli, "ota_server.cli", "report", "removal", "--db", str(db), "--audit", card.iccid
        )
    finally:
        if second is not None:
            second.cancel()
        handset.send_signal(signal.SIGTERM)
        await handset.wait()
    report = json.loads(report_path.read_text())
    network = json.loads(handset_report.read_text())["smsc"]
    # The phone answered the torn MT with RP-ERROR (the SMSC's UNDELIV, recorded by the server).
    assert network["me"]["card_unavailable"] >= 1 and network["me"]["rp_error"] >= 1
    assert network["mt_failed"] >= 1 and network["me"]["card_torn"] == 0
    # The server's side of it: the torn script's MT got an UNDELIV receipt (message_state 5, SMPP 3.4
    # §5.2.28), every other MT a DELIVRD one (2). No CLI lists receipts per card: the server's own
    # history table holds them (ota_server/card_store.py).
    script_id = next(
        line.split("message_id=")[1].strip()
        for line in audit.splitlines()
        if " submit_resp " in line and "cntr=0000000002" in line
    )
    with contextlib.closing(sqlite3.connect(db)) as store:
        receipts = dict(store.execute("SELECT detail, status FROM history WHERE kind = 'receipt'").fetchall())
    assert receipts.pop(script_id) == "5" and set(receipts.values()) == {"2"}, (receipts, audit)
    # Nothing lost, nothing repeated: action 1 ran once before the tear, action 2 was resent once.
    [row] = report["cards"]
    assert (row["state"], row["executed"], row["confirmed_counter"], row["resent_actions"]) == (
        "confirmed",
        2,
        2,
        1,
    )
    app = card_application(profile, state)
    assert [e["counter"] for e in app["journal"]] == [1, 2]
    # One DEBUG line per APDU in the handset's log (house-style §9), and never a key.
    log = handset_log.read_text().lower()
    keys = [
        ks[k]
        for ks in tomllib.loads(profile.read_text())["keysets"]
        for k in ("kic", "kid", "kik")
        if k in ks
    ]
    assert "-> apdu phone=491700000001 80c2" in log and not [k for k in keys if k.lower() in log]
    assert verification(report, app, campaign_path) == {
        "lost_actions": 0,
        "duplicated_actions": 0,
        "counter_mismatches": 0,
    }


def test_the_shipped_pcsc_lab_files_load() -> None:
    """configs/pcsc/ (README "Real readers and card tools"): phone, inventory and campaign agree."""
    from handset.config import load_config
    from ota_server.inventory import parse_inventory

    handset = load_config(ROOT / "configs" / "pcsc" / "handset.toml")
    [entry] = handset.cards
    [(card, keysets)] = parse_inventory(ROOT / "configs" / "pcsc" / "cards.csv")
    config = load_campaign(ROOT / "configs" / "pcsc" / "campaign.toml")
    assert entry.reader == "Virtual PCD 00 00" and card.msisdn == entry.msisdn
    assert config.targets.all and tuple(config.targets.tags) == ("pcsc",) and len(config.actions) == 2
    example = tomllib.loads(EXAMPLE_CARD.read_text())
    assert (card.iccid, card.msisdn, len(keysets)) == (example["iccid"], example["msisdn"], 2)
