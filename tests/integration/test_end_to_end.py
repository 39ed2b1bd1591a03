"""End to end over loopback SMPP: OTA server (ESME) -> handset SMSC -> phone -> SIM -> PoR -> server.

Each test runs a real network (the handset service on 127.0.0.1 port 0 with emulated SIMs of the fleet
template) and a real campaign (the OTA server's runner with its smpplib ESME and SQLite store), and
checks the outcome both in the server's report and in the cards' own state.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.network import (
    RFM_SELECT_SPN,
    ROOT,
    campaign_toml,
    card_application,
    handset_toml,
    run_campaign,
    running_network,
)

pytestmark = pytest.mark.integration

FIVE_ACTIONS_THIRD_FAILS: list[dict[str, Any]] = [
    RFM_SELECT_SPN,
    {"type": "update_record", "path": "3F00/7F10/6F3A", "record": 1, "data": "41" * 30},
    {"type": "update_binary", "path": "3F00/7F20/6FFE", "offset": 0, "data": "01"},  # no such EF: 6A82
    {"type": "update_binary", "path": "3F00/7F20/6F31", "offset": 0, "data": "02"},
    {"type": "update_record", "path": "3F00/7F10/6F3A", "record": 2, "data": "42" * 30},
]


def test_the_readme_demo_campaign_proves_itself(tmp_path: Path) -> None:
    """The README's main job, as a user runs it: the embedded network, verification all zero."""
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota_server.cli",
            "campaign",
            "run",
            "configs/campaigns/demo.toml",
            "--report",
            str(report_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    summary = report["summary"]
    assert summary["confirmed"] + summary["partial"] == 120 >= 100
    assert summary["partial"] == 12  # index % 10 == 7: EF.CBMI absent, action 3 of 4 fails
    assert report["verification"]["lost_actions"] == 0
    assert report["verification"]["duplicated_actions"] == 0
    assert report["verification"]["counter_mismatches"] == 0
    partial = [c for c in report["cards"] if c["state"] == "partial"]
    assert all("last 2 not executed" in c["reason"] and "6A82" in c["reason"] for c in partial)


@pytest.mark.asyncio
async def test_failing_third_action_of_five_leaves_counter_at_base_plus_two(tmp_path: Path) -> None:
    async with running_network(tmp_path, handset_toml(count=3)) as network:
        report = await run_campaign(
            network, tmp_path, campaign_toml(network.config_path, actions=FIVE_ACTIONS_THIRD_FAILS)
        )
        for index, card in enumerate(report["cards"]):
            assert card["state"] == "partial"
            assert card["executed"] == 2
            assert card["confirmed_counter"] == card["start_counter"] + 2
            assert "last 3 not executed" in card["reason"]
            application = card_application(network.card(index), "b00010")
            assert application["action_counter"] == card["start_counter"] + 2
            assert len(application["journal"]) == 2
        assert report["verification"] == report["verification"] | {
            "lost_actions": 0,
            "duplicated_actions": 0,
            "counter_mismatches": 0,
        }


@pytest.mark.asyncio
@pytest.mark.parametrize("spi", ["1639", "1619"], ids=["por-by-sms-submit", "por-by-deliver-report"])
async def test_both_por_paths_confirm_every_card(tmp_path: Path, spi: str) -> None:
    async with running_network(tmp_path, handset_toml(count=6)) as network:
        report = await run_campaign(
            network, tmp_path, campaign_toml(network.config_path, spi=spi, actions=[RFM_SELECT_SPN] * 2)
        )
        assert report["summary"]["confirmed"] == 6
        statuses = {status for card in report["cards"] for status in card["statuses"]}
        if spi == "1639":
            assert any(s.startswith("0B") for s in statuses)  # short PoR first, the real one by SMS-SUBMIT
        else:
            assert not any(s.startswith("0B") for s in statuses)
        assert report["verification"]["lost_actions"] == report["verification"]["duplicated_actions"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("security", "status"),
    [({"tar": "b0ffff"}, "09"), ({"spi": "1239"}, "0A")],  # SPI1 12: CC + counter, no cipher: below MSL 16
    ids=["unknown-tar-09", "below-msl-0a"],
)
async def test_security_refusals_end_failed_with_the_standard_status(
    tmp_path: Path, security: dict[str, str], status: str
) -> None:
    async with running_network(tmp_path, handset_toml(count=2)) as network:
        report = await run_campaign(
            network,
            tmp_path,
            campaign_toml(network.config_path, actions=[RFM_SELECT_SPN], max_attempts=2, **security),
        )
        for index, card in enumerate(report["cards"]):
            assert card["state"] == "failed"
            assert any(s.startswith(status) for s in card["statuses"]), card
            assert card_application(network.card(index), "b00010")["journal"] == []


@pytest.mark.asyncio
async def test_wrong_keys_give_status_01_and_nothing_runs(tmp_path: Path) -> None:
    async with running_network(tmp_path, handset_toml(count=2)) as network:
        # The server's inventory comes from the same fleet under another seed: same MSISDNs, other keys.
        wrong = tmp_path / "wrong-keys.toml"
        wrong.write_text(handset_toml(count=2, seed="not-the-cards-seed"))
        report = await run_campaign(
            network, tmp_path, campaign_toml(wrong, actions=[RFM_SELECT_SPN], max_attempts=2)
        )
        for index, card in enumerate(report["cards"]):
            assert card["state"] == "failed"
            assert any(s.startswith("01") for s in card["statuses"]), card
            assert card_application(network.card(index), "b00010")["journal"] == []


@pytest.mark.asyncio
async def test_duplicated_mt_is_refused_as_a_replay_and_runs_once(tmp_path: Path) -> None:
    radio = "[radio.mt]\nduplicate_probability = 1.0\n"
    async with running_network(tmp_path, handset_toml(count=4, radio=radio)) as network:
        report = await run_campaign(
            network, tmp_path, campaign_toml(network.config_path, spi="1619", actions=[RFM_SELECT_SPN] * 3)
        )
        assert report["summary"]["confirmed"] == 4
        # Every MT reached its card twice (the SMSC drops the copy's report as a real MSC would, so the
        # card's CNTR-low answer to the copy never reaches the server): the counter rule kept it out.
        assert network.service.report()["smsc"]["radio_duplicated"]["mt"] >= report["summary"]["packets_sent"]
        assert report["verification"]["duplicated_actions"] == 0
        assert report["verification"]["lost_actions"] == 0
        assert report["verification"]["counter_mismatches"] == 0


def test_wrong_smpp_password_is_refused_with_one_line(tmp_path: Path) -> None:
    async def scenario() -> subprocess.CompletedProcess[str]:
        async with running_network(tmp_path, handset_toml(count=1)) as network:
            campaign = tmp_path / "campaign.toml"
            campaign.write_text(
                campaign_toml(network.config_path, actions=[RFM_SELECT_SPN], password="wrong")
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ota_server.cli",
                "campaign",
                "run",
                str(campaign),
                "--smsc",
                f"127.0.0.1:{network.port}",
                "--db",
                str(tmp_path / "db.sqlite"),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(120):
                out, err = await process.communicate()
            return subprocess.CompletedProcess([], process.returncode or 0, out.decode(), err.decode())

    result = asyncio.run(scenario())
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any("bind" in line.lower() or "password" in line.lower() for line in lines), result.stderr


@pytest.mark.asyncio
async def test_malformed_pdus_get_generic_nack_and_the_smsc_keeps_serving(tmp_path: Path) -> None:
    async with running_network(tmp_path, handset_toml(count=3)) as network:
        reader, writer = await asyncio.open_connection("127.0.0.1", network.port)
        # An unknown command id (0x00000099) with sequence 42: generic_nack ESME_RINVCMDID (SMPP 3.4 §4.3).
        writer.write(struct.pack(">IIII", 16, 0x99, 0, 42))
        await writer.drain()
        async with asyncio.timeout(10):
            header = await reader.readexactly(16)
        _length, command_id, status, sequence = struct.unpack(">IIII", header)
        assert (command_id, status, sequence) == (0x80000000, 0x03, 42)
        # A command_length below 16 breaks the framing: generic_nack, then the SMSC closes that connection.
        writer.write(struct.pack(">IIII", 8, 0x04, 0, 43))
        await writer.drain()
        async with asyncio.timeout(10):
            nack = await reader.readexactly(16)
            assert struct.unpack(">IIII", nack)[1] == 0x80000000
            assert await reader.read() == b""
        writer.close()
        # Meanwhile other ESMEs are served: a whole campaign goes through.
        report = await run_campaign(
            network, tmp_path, campaign_toml(network.config_path, actions=[RFM_SELECT_SPN])
        )
        assert report["summary"]["confirmed"] == 3


def test_a_free_port_is_really_free() -> None:
    # Guard for the fixtures: port 0 binding gives a usable loopback port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] > 0


@pytest.mark.asyncio
async def test_a_replayed_packet_gets_por_status_02_at_the_esme(tmp_path: Path) -> None:
    """The same secured packet submitted twice by a raw ESME: PoR 00 then PoR 02 (CNTR low), action once."""
    import tomllib

    from ota_protocols.fleet import FleetSpec, derive_card
    from ota_protocols.smpp.pdu_codec import (
        Bind,
        BindKind,
        DeliverSm,
        DeliverSmResp,
        SubmitSm,
        decode_pdu,
        encode_pdu,
    )
    from ota_server import packet_tool

    async with running_network(tmp_path, handset_toml(count=1)) as network:
        fleet = tomllib.loads(network.config_path.read_text())["fleet"]
        card = derive_card(FleetSpec(seed=fleet["seed"], count=fleet["count"]), 0)
        aes = next(k for k in card.keysets if k.kvn == 1)
        security = {
            "spi": "1609",
            "kic": "12",
            "kid": "12",
            "kic_key": aes.kic.hex(),
            "kid_key": aes.kid.hex(),
        }
        script = "00a4000c023f0000a4000c027f2000a4000c026f4600d6000003414243"
        packet = packet_tool.encode_command(
            security | {"tar": "b00010", "cntr": "0000000005", "data": script}
        )

        reader, writer = await asyncio.open_connection("127.0.0.1", network.port)

        async def read_pdu() -> Any:
            header = await reader.readexactly(4)
            return decode_pdu(header + await reader.readexactly(int.from_bytes(header, "big") - 4))

        writer.write(
            encode_pdu(
                Bind(kind=BindKind.TRANSCEIVER, sequence_number=1, system_id="other", password="other")
            )
        )
        por_statuses = []
        async with asyncio.timeout(30):
            assert (await read_pdu()).command_status == 0
            for sequence in (2, 3):
                writer.write(
                    encode_pdu(
                        SubmitSm(
                            sequence_number=sequence,
                            source_addr="12345",
                            destination_addr=card.msisdn,
                            esm_class=0x40,
                            protocol_id=0x7F,
                            data_coding=0xF6,
                            short_message=bytes.fromhex(packet["user_data"]),
                        )
                    )
                )
                while True:
                    pdu = await read_pdu()
                    if isinstance(pdu, DeliverSm):
                        writer.write(
                            encode_pdu(DeliverSmResp(sequence_number=pdu.sequence_number, command_status=0))
                        )
                        if pdu.short_message.startswith(b"\x02\x71\x00"):
                            por_statuses.append(
                                packet_tool.decode_response(security | {"user_data": pdu.short_message.hex()})
                            )
                            break
        writer.close()
        assert [p["status"] for p in por_statuses] == [0x00, 0x02]
        assert por_statuses[0]["checksum_valid"] is True
        journal = card_application(network.card(0), "b00010")["journal"]
        assert len(journal) == 1  # the UPDATE BINARY ran once


def test_rerunning_on_a_used_db_with_the_embedded_network_is_refused(tmp_path: Path) -> None:
    """The embedded network starts fresh cards each run: a database describing earlier cards is refused
    (exit 2, one line) instead of 'resuming' against new cards and reporting every action as lost."""
    command = [
        sys.executable,
        "-m",
        "ota_server.cli",
        "campaign",
        "run",
        "configs/campaigns/demo.toml",
        "--db",
        str(tmp_path / "used.sqlite"),
    ]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "--db" in lines[0] and "fresh cards" in lines[0], again.stderr
