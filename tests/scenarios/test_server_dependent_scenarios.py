"""Scenarios that need the OTA server's card-originated reports (WO 00/07153 claims 7-9) and its
kill/restart hardening: the counter reaching the server only in the card's next transaction request,
and the OTA server killed with SIGKILL mid-campaign and started again on the same store.

Both run over real SMPP on loopback and assert the lab invariants from the cards' journals.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from handset.config import load_config
from handset.service import HandsetService
from ota_lab.draw import draw_mix
from ota_lab.invariants import JobView, check_invariants
from ota_lab.seed_files import write_configs
from ota_server.config import load_campaign
from tests.scenarios.labs import ROOT, THREE_ACTIONS, assert_proved, run, scenario_lab

pytestmark = pytest.mark.integration

RELOADS = [{"type": "purse_reload", "amount": 500}, {"type": "purse_reload", "amount": 700}]


def test_por_via_next_transaction_only(tmp_path: Path) -> None:
    """Every PoR of the phone is lost on the air (MO with TP-UD 02 71 00: the 0B report and the PoR
    SMS-SUBMIT); the card's counter reaches the server only in its next transaction request
    (SMS-SUBMIT 02 70 00 from the purse, the user paying: [activity]). Patent figure 3 as the patent
    tells it: "lors de la nouvelle demande de transaction, la valeur courante du compteur ... est
    remontée". The server settles the job from that counter (claim 8) and each reload runs once."""
    lab = scenario_lab(
        tmp_path,
        actions=RELOADS,
        fleet=1,
        tar="bfff01",
        script=[{"direction": "mo", "action": "drop", "nth": 1, "count": 0, "ud_prefix": "027100"}],
        network={"activity": {"transactions_per_hour": 3600.0}},  # one payment a second on average
        timing={"validity_s": 0.5, "max_attempts": 60, "deadline_s": 20.0},
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=2)
    (card,) = result.cards
    assert card["counter_path"] in ("transaction", "information"), card
    assert result.network["transactions"] >= 1


def test_ota_server_sigkill_and_restart(tmp_path: Path) -> None:
    """``ota-server campaign run --smsc`` is killed with SIGKILL while scripts are in flight, then run
    again on the same --db: jobs pick up where the store says (an unresolved script starts with a
    status query, never a blind resend, docs/campaigns.md §1), and every action runs exactly once."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        fleet=6,
        radio={"mt": {"delay_s": 0.3}},  # scripts are on the air when the kill comes
        timing={"max_attempts": 10, "por_timeout_s": 1.0},
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    handset_path, campaign_path = write_configs(lab, draw_mix(lab, 1), workdir)
    db = workdir / "ota.sqlite"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        service = HandsetService(load_config(handset_path))
        port = await service.start(host="127.0.0.1", port=0)
        try:
            network = service.network
            assert network is not None
            accepted = asyncio.Event()
            submit = network.submit

            def counting_submit(message: Any) -> None:
                submit(message)
                if network.counters["mt_accepted"] >= 3:
                    accepted.set()

            network.submit = counting_submit  # type: ignore[method-assign]

            def command(report: str) -> list[str]:
                return [
                    sys.executable,
                    "-m",
                    "ota_server.cli",
                    "campaign",
                    "run",
                    str(campaign_path),
                    "--smsc",
                    f"127.0.0.1:{port}",
                    "--db",
                    str(db),
                    "--report",
                    str(workdir / report),
                    "--log-level",
                    "ERROR",
                ]

            first = await asyncio.create_subprocess_exec(*command("first.json"), cwd=ROOT)
            async with asyncio.timeout(60):
                await accepted.wait()
            first.send_signal(signal.SIGKILL)
            async with asyncio.timeout(30):
                await first.wait()
            killed_after = network.counters["mt_accepted"]
            second = await asyncio.create_subprocess_exec(*command("second.json"), cwd=ROOT)
            async with asyncio.timeout(120):
                assert await second.wait() == 0
            return json.loads((workdir / "second.json").read_text()), service.report(), killed_after
        finally:
            await service.stop()

    report, network_report, killed_after = asyncio.run(scenario())
    assert killed_after >= 3
    assert not (workdir / "first.json").exists()  # the first run never got to write its report
    campaign = load_campaign(campaign_path)
    invariants = check_invariants(
        [JobView.from_report(row) for row in report["cards"]],
        campaign.actions,
        campaign.security.tar.hex(),
        network_report,
    )
    assert (invariants.lost, invariants.duplicated, invariants.mismatches, invariants.stuck) == (
        0,
        0,
        0,
        0,
    ), invariants
    assert report["summary"]["confirmed"] == 6, report["summary"]
