"""Our emulated SIM as a card in a PC/SC reader (``sim-emulator pcsc`` -> vsmartcard vpcd -> pcscd),
seen by third-party card tools: opensc-tool, pcsc_scan and a pyscard script SELECT and READ it; its
T=0 behaviour (61 XX / GET RESPONSE, 6C XX) and its persistence are the emulator's; two cards sit in
two readers. The handset's PC/SC errors (no reader, no card) are one line each.

pcscd, the vpcd driver and the tools come from .ci/apt-packages, pyscard from the [test] extra:
missing under CI=true they fail these tests, elsewhere they skip them (tests/pcsc_daemon.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim_emulator.api import load_card
from tests.pcsc_daemon import ROOT, Pcscd, inserted_cards, reader_state, require

pytestmark = pytest.mark.interop

EXAMPLE_CARD = ROOT / "configs" / "cards" / "example-card.toml"
ICCID = "8988211000000000011"
# EF.ICCID (TS 102 221 §13.2): swapped BCD of 8988211000000000011, F-padded.
EF_ICCID = bytes.fromhex("988812010000000010f1")
ATR = bytes.fromhex("3b024f54")  # sim_emulator.uicc.ATR
SELECT_MF = "00a40004023f00"
SELECT_ICCID = "00a40004022fe2"
READ_ICCID = "00b000000a"
# opensc-tool -s first lets every OpenSC card driver probe the card (4 s of APDUs a SIM refuses);
# the default driver sends the APDUs as given.
DEFAULT_DRIVER = ("-c", "default")


def card_copy(tmp: Path, name: str = "card", *, iccid: str = ICCID, msisdn: str = "491700000001") -> Path:
    """The example card's profile (TEST keys), with its own identity, beside a fresh state."""
    text = EXAMPLE_CARD.read_text()
    text = text.replace(f'iccid = "{ICCID}"', f'iccid = "{iccid}"').replace(
        'msisdn = "491700000001"', f'msisdn = "{msisdn}"'
    )
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def state_of(profile: Path) -> Path:
    return profile.with_suffix(".state.json")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        require(f"{name} is not installed (.ci/apt-packages)")
    assert path is not None
    return path


def opensc(*args: str) -> str:
    done = subprocess.run(
        [tool("opensc-tool"), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def opensc_reader_index(reader: str) -> str:
    """opensc-tool -r takes a number: the reader's line in ``opensc-tool -l``."""
    for line in opensc("-l").splitlines():
        fields = line.split(None, 1)
        if fields and fields[0].isdigit() and line.rstrip().endswith(reader):
            return fields[0]
    raise AssertionError(f"opensc-tool -l does not list {reader!r}")


def test_opensc_tool_selects_and_reads_ef_iccid_through_vpcd(pcscd: Pcscd, tmp_path: Path) -> None:
    profile = card_copy(tmp_path)
    with inserted_cards(pcscd, [(profile, state_of(profile))]):
        index = opensc_reader_index(pcscd.readers[0])
        assert opensc("-r", index, "-a").strip() == ATR.hex(":")
        out = opensc("-r", index, *DEFAULT_DRIVER, "-s", SELECT_MF, "-s", SELECT_ICCID, "-s", READ_ICCID)
    # opensc-tool prints each exchange: "Sending: ..." then "Received (SW1=0x90, SW2=0x00)[: data]".
    received = [line for line in out.splitlines() if line.startswith("Received")]
    assert received[:2] == ["Received (SW1=0x90, SW2=0x00)"] * 2, out
    assert received[2] == "Received (SW1=0x90, SW2=0x00):", out
    assert EF_ICCID.hex(" ").upper() in out


def test_pcsc_scan_shows_the_card_and_its_atr(pcscd: Pcscd, tmp_path: Path) -> None:
    profile = card_copy(tmp_path)
    with inserted_cards(pcscd, [(profile, state_of(profile))]):
        # -n: no ATR analysis (it would try to download the ATR list); -t 1: quit after a second.
        done = subprocess.run(
            [tool("pcsc_scan"), "-n", "-t", "1"], capture_output=True, text=True, timeout=60, check=False
        )
    lines = [line.strip() for line in done.stdout.splitlines()]
    at = lines.index(f"Reader 0: {pcscd.readers[0]}") if f"Reader 0: {pcscd.readers[0]}" in lines else -1
    assert at >= 0, done.stdout
    assert "Card state: Card inserted," in lines[at : at + 4], done.stdout
    assert f"ATR: {ATR.hex(' ').upper()}" in lines[at : at + 5], done.stdout


def pyscard_script(reader: str) -> list[tuple[str, str, str]]:
    """What a lab's pyscard script does: connect (T=0), SELECT, GET RESPONSE, READ; (apdu, data, sw)."""
    from smartcard.CardConnection import CardConnection
    from smartcard.System import readers

    target = next(r for r in readers() if str(r) == reader)
    connection = target.createConnection()
    connection.connect(CardConnection.T0_protocol)
    try:
        log = []
        for apdu in (SELECT_MF, "00c0000020", "00c000000d", SELECT_ICCID, "00c0000000", READ_ICCID):
            data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
            log.append((apdu, bytes(data).hex(), f"{sw1:02x}{sw2:02x}"))
        return log
    finally:
        connection.disconnect()


def test_a_pyscard_script_sees_t0_get_response_6cxx_and_reads_ef_iccid(pcscd: Pcscd, tmp_path: Path) -> None:
    profile = card_copy(tmp_path)
    with inserted_cards(pcscd, [(profile, state_of(profile))]):
        present, atr = reader_state(pcscd.readers[0])
        log = pyscard_script(pcscd.readers[0])
    assert present and atr == ATR
    (select, sw_select), (wrong_le, sw_wrong), (get, sw_get) = [(d, sw) for _, d, sw in log[:3]]
    # ISO/IEC 7816-3 §10.3.3: SELECT with FCP answers 61 XX; a GET RESPONSE asking too much gets
    # 6C XX with the right length (the emulator's rule), and that length gets the FCP (tag 62).
    assert (select, sw_select[:2]) == ("", "61")
    assert (wrong_le, sw_wrong) == ("", "6c" + sw_select[2:])
    assert sw_get == "9000" and get.startswith("62") and len(get) == 2 * int(sw_select[2:], 16)
    assert log[3][2][:2] == "61" and log[4][2] == "9000"
    assert log[5][1:] == (EF_ICCID.hex(), "9000")


def test_an_update_over_pcsc_persists_in_the_emulator_state(pcscd: Pcscd, tmp_path: Path) -> None:
    """EF.SPN written through PC/SC is in the card's state file once the card leaves the reader."""
    from smartcard.CardConnection import CardConnection
    from smartcard.System import readers

    profile = card_copy(tmp_path)
    spn = bytes.fromhex("01") + b"PC/SC lab".ljust(16, b"\xff")
    with inserted_cards(pcscd, [(profile, state_of(profile))]):
        connection = next(r for r in readers() if str(r) == pcscd.readers[0]).createConnection()
        connection.connect(CardConnection.T0_protocol)
        sws = []
        for apdu in ("00a40004023f00", "00a40004027f20", "00a40004026f46", "00d6000011" + spn.hex()):
            _, sw1, _sw2 = connection.transmit(list(bytes.fromhex(apdu)))
            sws.append(f"{sw1:02x}")
        connection.disconnect()
    assert sws == ["61", "61", "61", "90"]
    card = load_card(profile, state_of(profile))
    card.reset()
    for apdu in ("00a40004023f00", "00a40004027f20", "00a40004026f46"):
        card.exchange(bytes.fromhex(apdu))
    assert card.exchange(bytes.fromhex("00b0000011")) == spn + b"\x90\x00"


def test_two_cards_sit_in_two_readers(pcscd: Pcscd, tmp_path: Path) -> None:
    first = card_copy(tmp_path, "first")
    second = card_copy(tmp_path, "second", iccid="8988211000000000029", msisdn="491700000002")
    with inserted_cards(pcscd, [(first, state_of(first)), (second, state_of(second))]):
        dumps = []
        for reader in pcscd.readers:
            index = opensc_reader_index(reader)
            out = opensc("-r", index, *DEFAULT_DRIVER, "-s", SELECT_MF, "-s", SELECT_ICCID, "-s", READ_ICCID)
            dumps.append(out.splitlines()[-1][: len(EF_ICCID) * 3 - 1])  # the hex of the data line
    # 8988211000000000011 and 8988211000000000029 in swapped BCD (TS 102 221 §13.2).
    assert dumps == ["98 88 12 01 00 00 00 00 10 F1", "98 88 12 01 00 00 00 00 20 F9"]


def handset_serve(tmp: Path, sim: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "handset.toml"
    config.write_text(
        f'[smsc]\nhost = "127.0.0.1"\nport = 0\n\n[[cards]]\nsim = "{sim}"\nmsisdn = "491700000001"\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "handset.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_phone_naming_a_missing_reader_stops_with_one_line(pcscd: Pcscd, tmp_path: Path) -> None:
    done = handset_serve(tmp_path, "pcsc:No Such Reader")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        "handset: CardUnavailable: cards[0].sim: reader 'No Such Reader': no such reader: readers: "
    )
    assert all(repr(reader) in done.stderr for reader in pcscd.readers)


def test_a_phone_whose_reader_is_empty_stops_with_one_line(pcscd: Pcscd, tmp_path: Path) -> None:
    done = handset_serve(tmp_path, f"pcsc:{pcscd.readers[1]}")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cards[0].sim: reader '{pcscd.readers[1]}': no card: " in done.stderr
