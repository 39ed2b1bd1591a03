"""The campaign runner over loopback: fake SMSC + model cards (no handset), and keys never logged."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import pytest

from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.smpp.pdu_codec import SubmitSm
from ota_server.config import load_campaign
from ota_server.service import YOUNG_GC_THRESHOLD, CampaignRunner
from tests.ota_server.cardsim import CardSim
from tests.ota_server.fake_smsc import FakeSmsc

pytestmark = pytest.mark.integration

HANDSET = """
[fleet]
seed = "unit-test"
count = 6
card_template = "whatever.toml"

[[smsc.esmes]]
system_id = "ota"
password = "secret"
"""

CAMPAIGN = """
[campaign]
name = "loop"
[network]
handset_config = "handset.toml"
[smsc]
system_id = "ota"
password = "secret"
window = 8
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "b00010"
[retry]
por_timeout_s = 2.0
max_attempts = 3
backoff_s = 0.05
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
data = "00112233445566778899aabbccddeeff00"
[[actions]]
type = "update_record"
path = "3F00/7F10/6F3A"
record = 1
data = "486f746c696e65ffffffffffffffffff059194214365f7ffffffffffffff"
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F50"
data = "0032ffffffffffffffff"
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("lossy", [False, True])
async def test_campaign_runs_against_model_cards_and_never_logs_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lossy: bool
) -> None:
    (tmp_path / "handset.toml").write_text(HANDSET)
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace("por_timeout_s = 2.0", "por_timeout_s = 0.3"))
    spec = FleetSpec(seed="unit-test", count=6)
    cards = {}
    secrets = []
    for i in spec.indices:
        derived = derive_card(spec, i)
        ks = derived.keysets[0]
        secrets += [k.kic.hex() for k in derived.keysets] + [k.kid.hex() for k in derived.keysets]
        # Card 4 lacks the third file: permanent 6A82 there.
        fail = (
            (lambda apdu: 0x6A82 if apdu.ins == 0xA4 and apdu.data == b"\x6f\x50" else None)
            if i == 4
            else (lambda apdu: None)
        )
        cards[derived.msisdn] = CardSim(PacketKeys(kic_key=ks.kic, kid_key=ks.kid), fail=fail)

    smsc = FakeSmsc()
    pors: list[asyncio.Task[None]] = []

    msisdns = sorted(cards)
    submits: dict[str, int] = {}
    made: dict[str, int] = {}

    thresholds: set[int] = set()

    def on_submit(pdu: SubmitSm) -> None:
        thresholds.add(gc.get_threshold()[0])
        dst = pdu.destination_addr
        submits[dst] = submits.get(dst, 0) + 1
        if lossy and dst == msisdns[1] and submits[dst] == 2:
            return  # the first segment of card 1's script is lost: the script never arrives
        por = cards[dst].receive_segment(pdu.short_message)
        if por is None:
            return
        made[dst] = made.get(dst, 0) + 1
        if lossy and dst == msisdns[0] and made[dst] == 2:
            return  # card 0's script PoR is lost: the script ran
        pors.append(asyncio.create_task(smsc.deliver(dst, por)))

    smsc.on_submit = on_submit
    port = await smsc.start()
    caplog.set_level(logging.DEBUG)
    threshold = gc.get_threshold()
    try:
        runner = CampaignRunner(
            load_campaign(tmp_path / "c.toml"),
            smsc=("127.0.0.1", port),
            db_path=tmp_path / "db",
            progress=False,
        )
        async with asyncio.timeout(30):
            report = await runner.run()
    finally:
        await smsc.stop()
    # Young collections are rarer while the campaign runs; the threshold is given back after.
    assert thresholds == {max(threshold[0], YOUNG_GC_THRESHOLD)} and gc.get_threshold() == threshold
    summary = report["summary"]
    assert (summary["confirmed"], summary["partial"], summary["failed"], summary["pending"]) == (5, 1, 0, 0)
    partial = [c for c in report["cards"] if c["state"] == "partial"]
    assert partial[0]["executed"] == 2 and "last 1 not executed" in partial[0]["reason"]
    for card in report["cards"]:
        assert card["confirmed_counter"] == cards[card["msisdn"]].action_counter
    by_msisdn = {c["msisdn"]: c for c in report["cards"]}
    if lossy:
        assert by_msisdn[msisdns[0]]["counter_path"] == "query"
        assert by_msisdn[msisdns[0]]["resent_actions"] == 0
        assert by_msisdn[msisdns[1]]["resent_actions"] == 3
        assert summary["resent_actions"] == 3
    for sim in cards.values():
        journal = [apdu for _, apdu in sim.journal]
        assert len(journal) == len(set(journal))  # nothing ran twice
    text = caplog.text + json.dumps(report)
    assert "-> submit_sm" in caplog.text  # DEBUG was really on
    for secret in secrets:
        assert secret not in text and secret.upper() not in text
