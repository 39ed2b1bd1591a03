"""Our encodings read back by pycrate's independent TS 31.115 and TS 23.040 structures.

pycrate (pycrate-org/pycrate) was written without our code; where its decode of
our bytes agrees field by field, the layout is not merely self-consistent. Its
TS 102 225 ``PacketCmd`` misreads the checksum length, so the SMS-PP variants of
TS31115 are used (issue #6 note). pycrate is in the ``test`` extra: skipped without it, failed in CI.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.secured_packet.command_packet import CommandPacket, encode_command_packet
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import ResponsePacket, encode_response_packet
from ota_protocols.secured_packet.security_parameters import Spi
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsDeliver, SmsDeliverReport, SmsSubmit, scts_from_datetime
from tests.support.components import require

pytestmark = pytest.mark.interop


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


TS31115: Any = _optional("pycrate_mobile.TS31115")
TS23040: Any = _optional("pycrate_mobile.TS23040_SMS")


@pytest.fixture(autouse=True, scope="module")
def _pycrate() -> None:
    require(
        "pycrate",
        TS31115 is not None and TS23040 is not None,
        "pip install -e '.[test]' (pycrate_mobile.TS31115 and TS23040_SMS)",
    )


KEYS = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))


@settings(max_examples=60)
@given(
    spi2=st.integers(0, 0x3F),
    integrity=st.sampled_from([0, 1, 2]),
    counter=st.integers(0, 3),
    tar=st.binary(min_size=3, max_size=3),
    cntr=st.integers(0, (1 << 40) - 1),
    data=st.binary(max_size=100),
)
def test_unciphered_command_packets_read_the_same_in_pycrate(
    spi2: int, integrity: int, counter: int, tar: bytes, cntr: int, data: bytes
) -> None:
    kid = {0: 0x12, 1: 0x15, 2: 0x12}[integrity]  # RC: CRC-32; CC: AES-CMAC
    spi = Spi(integrity | (counter << 3), spi2)
    packet = encode_command_packet(CommandPacket(spi, 0x12, kid, tar, cntr, data), KEYS)
    theirs = TS31115.PacketCmdSMSPP()
    theirs.from_bytes(packet)
    assert theirs["CmdPacketLen"].get_val() == len(packet) - 2
    assert theirs["CmdHeaderLen"].get_val() == packet[2]
    assert theirs["SPI"]["IntegrityType"].get_val() == integrity
    assert theirs["SPI"]["CounterType"].get_val() == counter
    assert theirs["SPI"]["PoRExpect"].get_val() == spi2 & 0x03
    assert theirs["SPI"]["SMSPoR"].get_val() == (spi2 >> 5) & 1
    assert theirs["TAR"].get_val() == int.from_bytes(tar, "big")
    assert theirs["CNTR"].get_val() == cntr
    assert theirs["PCNTR"].get_val() == 0
    assert theirs["Data"].get_val() == data


@settings(max_examples=60)
@given(
    status=st.integers(0, 0x0C),
    cntr=st.integers(0, (1 << 40) - 1),
    data=st.binary(max_size=80),
    por_cc=st.booleans(),
)
def test_pors_read_the_same_in_pycrate(status: int, cntr: int, data: bytes, por_cc: bool) -> None:
    spi = Spi(0x12, 0x01 | (0x08 if por_cc else 0))
    user_data = encode_response_packet(
        ResponsePacket(b"\xb0\x00\x10", cntr, status, data), spi, 0x12, 0x12, KEYS
    )
    theirs = TS31115.PacketRespSMSPP()
    theirs.from_bytes(user_data[3:])  # pycrate's SMS-PP PoR starts at RPL
    assert theirs["RespPacketLen"].get_val() == len(user_data) - 5
    assert theirs["RespHeaderLen"].get_val() == user_data[5]
    assert theirs["TAR"].get_val() == 0xB00010
    assert theirs["CNTR"].get_val() == cntr
    assert theirs["Status"].get_val() == status
    assert len(theirs["IntegrityCheck"].get_val()) == (8 if por_cc else 0)
    assert theirs["Data"].get_val() == data


def _udh_ieis(tp_ud: object) -> list[int]:
    return [ie["T"].get_val() for ie in tp_ud["UDH"]["UDH"]]  # type: ignore[index]


@pytest.mark.parametrize("ton", [Ton.UNKNOWN, Ton.INTERNATIONAL, Ton.NATIONAL])
def test_sms_deliver_reads_the_same_in_pycrate(ton: Ton) -> None:
    ud = bytes.fromhex("027000") + bytes(range(40))
    ours = SmsDeliver(
        tp_oa=Address("4915112345678", ton, Npi.ISDN),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_scts=scts_from_datetime(datetime(2026, 11, 21, 5, 50, 31, tzinfo=UTC)),
        tp_ud=ud,
        tp_udhi=True,
    )
    theirs = TS23040.SMS_DELIVER()
    theirs.from_bytes(ours.encode())
    assert theirs["TP_MTI"].get_val() == 0
    assert theirs["TP_UDHI"].get_val() == 1
    assert theirs["TP_OA"]["Num"].decode() == "4915112345678"
    assert theirs["TP_OA"]["Type"].get_val() == int(ton)
    assert theirs["TP_PID"]["Protocol"].get_val() == 0x3F and theirs["TP_PID"]["Format"].get_val() == 1
    assert theirs["TP_DCS"]["Group"].get_val() == 0x0F
    assert theirs["TP_DCS"]["Charset"].get_val() == 1 and theirs["TP_DCS"]["Class"].get_val() == 2
    assert theirs["TP_UD"]["UDL"].get_val() == len(ud)
    assert _udh_ieis(theirs["TP_UD"]) == [0x70]
    assert theirs["TP_UD"]["UD"].get_val() == ud[3:]


def test_sms_submit_por_reads_the_same_in_pycrate() -> None:
    ud = bytes.fromhex("027100") + bytes(range(20))
    ours = SmsSubmit(
        tp_mr=7, tp_da=Address("12345", Ton.INTERNATIONAL), tp_pid=0x7F, tp_dcs=0xF6, tp_ud=ud, tp_udhi=True
    )
    theirs = TS23040.SMS_SUBMIT()
    theirs.from_bytes(ours.encode())
    assert theirs["TP_MTI"].get_val() == 1 and theirs["TP_UDHI"].get_val() == 1
    assert theirs["TP_MR"].get_val() == 7
    assert theirs["TP_DA"]["Num"].decode() == "12345"
    assert theirs["TP_VPF"].get_val() == 0
    assert theirs["TP_UD"]["UDL"].get_val() == len(ud)
    assert _udh_ieis(theirs["TP_UD"]) == [0x71]


def test_deliver_report_por_reads_the_same_in_pycrate() -> None:
    ud = bytes.fromhex("027100") + bytes(range(12))
    ours = SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=ud)
    raw = ours.encode()
    assert raw[:4].hex() == "40077ff6"  # protocols.md §9.3: a PoR RP-ACK TPDU
    theirs = TS23040.SMS_DELIVER_REPORT_RP_ACK()
    theirs.from_bytes(raw)
    assert theirs["TP_PI"]["TP_UDL"].get_val() == 1 and theirs["TP_PI"]["TP_PID"].get_val() == 1
    assert theirs["TP_UD"]["UDL"].get_val() == len(ud)
    assert _udh_ieis(theirs["TP_UD"]) == [0x71]
