"""npm ``smpp`` (farhadi/node-smpp 0.5.1) as the SMSC of OUR ESME: the OTA server with ``--smsc``.

Kannel (test_kannel.py) is a third-party ESME driving our SMSC; here the roles turn:
``tests/interop/node/smsc.js`` is a node-smpp server that accepts the OTA server's
bind_transceiver, answers each submit_sm with submit_sm_resp and prints its UD. This
test plays the phones: each UD goes, as an SMS-DELIVER (TS 23.040 §9.2.2.1) inside an
ENVELOPE (SMS-PP download, TS 31.111 §7.1.1), to a real emulated SIM of the campaign's
fleet; the PoR the card returns (response data after GET RESPONSE, SPI 1619 = PoR in
the DELIVER-REPORT, TS 102 225 §5.1.2) goes back to node, which sends it as a
deliver_sm (esm_class 0x40, PID 0x7F, DCS 0xF6, UDH 02 71 00 in node-smpp's
``{udh, message}`` form). The campaign must confirm every card.

Skipped when node is missing or ``tests/interop/node/node_modules`` has no smpp; failed in CI, where
``.ci/run`` runs ``npm ci --prefix tests/interop/node`` and stops if it fails.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

import sim_emulator.api as sim
from handset.config import load_config
from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.apdu.proactive import get_response_apdu
from ota_protocols.sms.address import Address, Npi, Ton, encode_cat_address
from ota_protocols.sms.tpdu import SmsDeliver, scts_from_datetime
from tests.interop.support import ROOT, write_campaign, write_network
from tests.support.components import require

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, scope="module")
def _node_smpp() -> None:
    require("node", NODE is not None, "node v20 on PATH (the CI machine kind comes with it)")
    require(
        "npm smpp",
        (NODE_DIR / "node_modules" / "smpp" / "package.json").is_file(),
        "npm ci --prefix tests/interop/node (.ci/run does it)",
    )


SMSC_ADDRESS = encode_cat_address(Address("4917000000", Ton.INTERNATIONAL, Npi.ISDN))


def run_envelope(card: Any, source_addr: str, ud: bytes) -> bytes:
    """The phone's part: SMS-DELIVER in ENVELOPE (SMS-PP download), GET RESPONSE -> the PoR UD (TS 31.115)."""
    deliver = SmsDeliver(
        tp_oa=Address(source_addr, Ton.INTERNATIONAL),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_scts=scts_from_datetime(datetime.now(UTC)),
        tp_ud=ud,
        tp_udhi=True,
    )
    envelope = SmsPpDownload(deliver.encode(), SMSC_ADDRESS).to_apdu()
    response = card.exchange(envelope.encode_t0())
    data, sw = response[:-2], int.from_bytes(response[-2:], "big")
    while sw >> 8 in (0x61, 0x9F):
        cla = 0xA0 if envelope.cla == 0xA0 else 0x00  # GET RESPONSE 00 C0 (UICC) / A0 C0 (2G)
        response = card.exchange(get_response_apdu(sw & 0xFF or 256, cla).encode_t0())
        data, sw = data + response[:-2], int.from_bytes(response[-2:], "big")
    assert sw >> 8 in (0x90, 0x91), f"ENVELOPE ended with SW {sw:04X}"
    return data


def pump(stream: IO[bytes], sink: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        with contextlib.suppress(ValueError):
            sink.put(json.loads(line))


def test_ota_server_campaign_through_node_smpp_smsc(tmp_path: Path) -> None:
    count = 3
    network = write_network(tmp_path, count=count)
    campaign = write_campaign(tmp_path, network, spi="1619")
    fleet = load_config(network).fleet
    assert fleet is not None
    spec = fleet.spec()
    template = sim.load_card_template(fleet_template := load_config(network).resolve(fleet.card_template))
    assert fleet_template.exists()
    cards = {}
    for i in spec.indices:
        card = sim.card_from_fleet(spec, i, template)
        cards[str(card.msisdn).lstrip("+")] = card

    assert NODE is not None
    node = subprocess.Popen(
        [NODE, str(NODE_DIR / "smsc.js"), "ota", "secret"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=NODE_DIR,
    )
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    assert node.stdout is not None and node.stdin is not None
    threading.Thread(target=pump, args=(node.stdout, events), daemon=True).start()
    server: subprocess.Popen[bytes] | None = None
    try:
        first = events.get(timeout=30)
        assert first["event"] == "listening", first
        report = tmp_path / "report.json"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ota_server.cli",
                "campaign",
                "run",
                str(campaign),
                "--smsc",
                f"127.0.0.1:{first['port']}",
                "--db",
                str(tmp_path / "ota.sqlite"),
                "--report",
                str(report),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while server.poll() is None:
            assert time.monotonic() < deadline, "campaign did not finish within 90 s"
            try:
                event = events.get(timeout=0.2)  # bounded wait; the campaign's exit ends the loop
            except queue.Empty:
                continue
            seen.append(event)
            if event["event"] != "submit_sm":
                continue
            ud = bytes.fromhex(event["short_message"])
            assert ud[:3] == bytes.fromhex("027000"), event  # one SMS, command packet UDH (TS 31.115 §4.2)
            por = run_envelope(cards[event["destination_addr"]], event["source_addr"], ud)
            assert por[:3] == bytes.fromhex("027100"), por.hex()  # the card's UD: UDH, then the PoR
            node.stdin.write(f"{event['destination_addr']} {por[3:].hex()}\n".encode())
            node.stdin.flush()
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err.decode()
        summary = json.loads(report.read_text())["summary"]
        assert summary["confirmed"] == count, summary
        with contextlib.suppress(queue.Empty):
            while True:
                seen.append(events.get_nowait())
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        node.stdin.close()  # smsc.js exits at end of stdin
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()

    binds = [e for e in seen if e["event"] == "bind"]
    assert binds and all(e["status"] == 0 and e["system_id"] == "ota" for e in binds)
    submits = [e for e in seen if e["event"] == "submit_sm"]
    assert len(submits) >= count
    for e in submits:  # what node-smpp decoded of our submit_sm
        assert (e["protocol_id"], e["data_coding"]) == (0x7F, 0xF6)
        assert e["esm_class"] & 0x40  # UDHI
    responses = [e for e in seen if e["event"] == "deliver_sm_resp"]
    assert len(responses) >= count and all(e["command_status"] == 0 for e in responses)
