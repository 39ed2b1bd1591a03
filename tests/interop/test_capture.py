"""``--pcap`` on real traffic: a small campaign on the embedded network, read back by tshark.

``ota-server campaign run --pcap`` makes the embedded ``handset serve`` record every SMPP
exchange (TCP/IPv4) and every SIM APDU exchange (GSMTAP-SIM, UDP 4729). tshark's own
dissectors (smpp, gsm_sms, gsm_sim, etsi_cat) must then find, with no malformed frame:
submit_sm / deliver_sm with PID 0x7F, DCS 0xF6, UDHI and IEI 0x70 / 0x71 (TS 31.115 §4),
the ENVELOPE (SMS-PP download, tag D1, TS 31.111 §7.1.1) holding the SMS-DELIVER with
PID 127 / DCS 246 / IEI 0x70, and the proactive SEND SHORT MESSAGE (TS 102 223 §6.4.10)
holding the SMS-SUBMIT PoR (IEI 0x71), in the order of the path. One tshark run.
Skipped when tshark is missing, failed in CI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.interop.support import ota_server, tshark_fields, write_campaign, write_network
from tests.support.components import on_path, require

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, scope="module")
def _tshark() -> None:
    require("tshark", on_path("tshark"), "apt-get install tshark (.ci/apt-packages installs it for CI)")


FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "_ws.malformed",
    "tcp.flags.syn",
    "smpp.command_id",
    "smpp.esm.submit.features",
    "smpp.protocol_id",
    "smpp.data_coding",
    "gsm_sim.apdu.ins",
    "gsm_sim.cat.ber_tlv_tag",
    "etsi_cat.comp_tlv.cmd_type",
    "gsm_sms.tp-mti",
    "gsm_sms.tp-pid",
    "gsm_sms.tp-dcs",
    "gsm_sms.ie_identifier",
]
SUBMIT_SM, DELIVER_SM = "0x00000004", "0x00000005"


def values(cell: str) -> list[str]:
    return [v for v in cell.split(",") if v]


def test_campaign_capture_shows_the_whole_path_in_tshark(tmp_path: Path) -> None:
    cards = 3
    campaign = write_campaign(tmp_path, write_network(tmp_path, count=cards), spi="1639")
    pcap = tmp_path / "campaign.pcap"
    started = time.time()
    run = ota_server(
        "campaign", "run", str(campaign), "--pcap", str(pcap), "--report", str(tmp_path / "r.json")
    )
    ended = time.time()
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["confirmed"] == cards

    rows = [dict(zip(FIELDS, row, strict=True)) for row in tshark_fields(pcap, FIELDS)]
    assert rows, "empty capture"
    assert not [r["frame.number"] for r in rows if r["_ws.malformed"]]
    # Wall-clock times (loop clock mapped to epoch seconds), in file order.
    stamps = [float(r["frame.time_epoch"]) for r in rows]
    assert started - 1 <= stamps[0] and stamps[-1] <= ended + 1
    assert stamps == sorted(stamps)

    # SMPP: every submit_sm / deliver_sm of every frame (several PDUs may share a segment).
    assert any(r["tcp.flags.syn"] in ("1", "True") for r in rows)  # the ESME's connection, from its SYN
    short_messages = 0
    first: dict[str, int] = {}
    for r in rows:
        commands = values(r["smpp.command_id"])
        sms = [c for c in commands if c in (SUBMIT_SM, DELIVER_SM)]
        if not sms:
            continue
        short_messages += len(sms)
        assert values(r["smpp.protocol_id"]) == ["0x7f"] * len(sms)
        assert values(r["smpp.data_coding"]) == ["0xf6"] * len(sms)
        assert values(r["smpp.esm.submit.features"]) == ["0x01"] * len(sms)  # UDHI
        expected_iei = "0x70" if sms[0] == SUBMIT_SM else "0x71"
        assert set(sms) == {sms[0]} and values(r["gsm_sms.ie_identifier"]) == [expected_iei] * len(sms)
        first.setdefault(sms[0], int(r["frame.number"]))
    assert short_messages >= 2 * cards

    # SIM side: one GSMTAP record per APDU exchange.
    sim = [r for r in rows if r["gsm_sim.apdu.ins"]]
    by_ins: dict[str, list[dict[str, str]]] = {}
    for r in sim:
        by_ins.setdefault(r["gsm_sim.apdu.ins"], []).append(r)
    assert len(by_ins.get("0x10", [])) == cards  # TERMINAL PROFILE at power-on
    envelopes = by_ins["0xc2"]
    assert len(envelopes) >= cards
    for r in envelopes:  # ENVELOPE (SMS-PP download) with the SMS-DELIVER inside
        assert r["gsm_sim.cat.ber_tlv_tag"] == "0xd1"
        assert (r["gsm_sms.tp-mti"], r["gsm_sms.tp-pid"], r["gsm_sms.tp-dcs"]) == ("0", "127", "246")
        assert values(r["gsm_sms.ie_identifier"]) == ["0x70"]
    fetches = by_ins["0x12"]
    assert len(fetches) >= cards
    for r in fetches:  # FETCH -> SEND SHORT MESSAGE with the SMS-SUBMIT PoR
        assert r["etsi_cat.comp_tlv.cmd_type"] == "0x13"
        assert (r["gsm_sms.tp-mti"], r["gsm_sms.tp-pid"], r["gsm_sms.tp-dcs"]) == ("1", "127", "246")
        assert values(r["gsm_sms.ie_identifier"]) == ["0x71"]
    assert len(by_ins["0x14"]) == len(fetches)  # TERMINAL RESPONSE after each SMS was sent

    # The path in order: submit_sm, ENVELOPE, FETCH (SEND SHORT MESSAGE), deliver_sm with the PoR.
    assert (
        first[SUBMIT_SM]
        < int(envelopes[0]["frame.number"])
        < int(fetches[0]["frame.number"])
        < first[DELIVER_SM]
    )
