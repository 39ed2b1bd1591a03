"""tshark (Wireshark) as an independent decoder of our SMPP PDUs, TPDUs and GSMTAP-SIM records.

Skipped when tshark is not installed, failed in CI (.ci/apt-packages installs it there).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.capture import TcpStream, gsmtap_sim, pcap_header, pcap_record, udp_packet
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm, encode_pdu
from ota_protocols.sms.address import Address, Ton
from ota_protocols.sms.tpdu import SmsDeliver
from tests.support.components import on_path, require

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, scope="module")
def _tshark() -> None:
    require("tshark", on_path("tshark"), "apt-get install tshark (.ci/apt-packages installs it for CI)")


COMMAND_UD = bytes.fromhex("02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")
POR_UD = bytes.fromhex("027100000e0ab0001100000000000000016132")


def tshark_fields(pcap: Path, fields: list[str], *extra: str) -> list[list[str]]:
    command = [
        "tshark",
        "-r",
        str(pcap),
        "-d",
        "tcp.port==2775,smpp",
        *extra,
        "-T",
        "fields",
        "-E",
        "separator=;",
    ]
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split(";") for line in out.splitlines() if line.strip()]


def test_tshark_reads_pid_dcs_udhi_and_iei_of_our_submit_and_deliver(tmp_path: Path) -> None:
    stream = TcpStream("127.0.0.1", 40000, "127.0.0.1", 2775)
    submit = encode_pdu(
        SubmitSm(
            sequence_number=7,
            source_addr="12345",
            destination_addr="491700000001",
            esm_class=0x43,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=COMMAND_UD,
        )
    )
    deliver = encode_pdu(
        DeliverSm(
            sequence_number=9,
            source_addr="491700000001",
            destination_addr="12345",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=POR_UD,
        )
    )
    records = stream.data(1.0, True, submit) + stream.data(1.5, False, deliver)
    pcap = tmp_path / "smpp.pcap"
    pcap.write_bytes(pcap_header() + b"".join(records))
    rows = tshark_fields(
        pcap,
        [
            "smpp.command_id",
            "smpp.esm.submit.features",
            "smpp.protocol_id",
            "smpp.data_coding",
            "gsm_sms.ie_identifier",
            "_ws.malformed",
        ],
        "-Y",
        "smpp",
    )
    assert rows == [
        ["0x00000004", "0x01", "0x7f", "0xf6", "0x70", ""],
        ["0x00000005", "0x01", "0x7f", "0xf6", "0x71", ""],
    ]


def test_tshark_reads_the_envelope_in_a_gsmtap_sim_record(tmp_path: Path) -> None:
    deliver = SmsDeliver(
        tp_oa=Address("12345", Ton.INTERNATIONAL),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_scts=bytes.fromhex("22705200000000"),
        tp_ud=COMMAND_UD,
        tp_udhi=True,
    )
    envelope = SmsPpDownload(deliver.encode(), bytes.fromhex("912143")).to_apdu().encode_t0()
    record = pcap_record(
        2.0, udp_packet("127.0.0.1", 4729, "127.0.0.1", 4729, gsmtap_sim(envelope + b"\x61\x1c"))
    )
    pcap = tmp_path / "sim.pcap"
    pcap.write_bytes(pcap_header() + record)
    rows = tshark_fields(
        pcap, ["gsm_sim.apdu.ins", "gsm_sms.tp-pid", "gsm_sms.tp-dcs", "gsm_sms.ie_identifier"]
    )
    assert len(rows) == 1
    ins, pid, dcs, iei = rows[0]
    assert ins == "0xc2"  # ENVELOPE
    assert (pid, dcs, iei) == ("127", "246", "0x70")
