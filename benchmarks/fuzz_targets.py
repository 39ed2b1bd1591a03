"""Decoders of the protocol modules other than the secured packets, with valid seeds to mutate.

Each entry is (name, decode, seeds, fixup or None); see benchmarks/fuzz.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ota_protocols.action_counter import CounterReport, append_counter_report, split_counter_report
from ota_protocols.apdu.apdu import CommandApdu, ResponseApdu
from ota_protocols.apdu.envelope import SmsPpDownload, decode_envelope
from ota_protocols.apdu.proactive import (
    CommandDetails,
    SendShortMessage,
    TerminalResponse,
    decode_proactive,
)
from ota_protocols.apdu.remote_commands import (
    CompactResponse,
    ExpandedCommandScript,
    ExpandedResponse,
    decode_compact_commands,
    encode_compact_commands,
)
from ota_protocols.byte_reader import ByteReader
from ota_protocols.smpp.framing import PduFramer
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm, decode_pdu, encode_pdu
from ota_protocols.sms.address import Address, Ton
from ota_protocols.sms.tpdu import (
    SmsDeliver,
    SmsDeliverReport,
    SmsSubmit,
    decode_mo_tpdu,
    decode_mt_tpdu,
    scts_from_datetime,
)
from ota_protocols.sms.user_data_header import split_udh
from ota_protocols.tlv import decode_ber_all, decode_comprehension_all

Entry = tuple[str, Callable[[bytes], object], tuple[bytes, ...], Callable[[bytes], bytes] | None]

APDUS = [
    CommandApdu(0x00, 0xA4, 0x00, 0x0C, b"\x3f\x00"),
    CommandApdu(0x00, 0xB0, 0, 0, b"", 10),
    CommandApdu(0x00, 0xD6, 0, 0, b"\x01\x02\x03"),
]
OTA_UD = bytes.fromhex("02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f")


def _smpp_length_fix(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw[4:] if len(raw) >= 16 else raw


def _frame(raw: bytes) -> object:
    framer = PduFramer()
    return [decode_pdu(pdu) for pdu in framer.feed(raw)]


def targets() -> list[Entry]:
    deliver = SmsDeliver(
        tp_oa=Address("12345", Ton.INTERNATIONAL),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_scts=scts_from_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        tp_ud=OTA_UD,
        tp_udhi=True,
    )
    submit = SmsSubmit(
        tp_mr=1, tp_da=Address("12345"), tp_pid=0x7F, tp_dcs=0xF6, tp_ud=b"\x02\x71\x00\x00\x01", tp_udhi=True
    )
    report = SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=b"\x02\x71\x00\x00\x01")
    envelope = SmsPpDownload(deliver.encode(), b"\x91\x21\x43").encode()
    ssm = SendShortMessage(submit.encode()).encode()
    terminal_response = TerminalResponse(CommandDetails(1, 0x13, 0), 0).encode()
    compact = encode_compact_commands(APDUS)
    expanded = ExpandedCommandScript(tuple(APDUS)).encode()
    expanded_response = ExpandedResponse(
        2, (ResponseApdu(b"", 0x9000), ResponseApdu(b"\x01", 0x6A82))
    ).encode()
    submit_sm = encode_pdu(
        SubmitSm(
            sequence_number=7,
            source_addr="12345",
            destination_addr="491700000001",
            esm_class=0x43,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=OTA_UD,
        )
    )
    deliver_sm = encode_pdu(
        DeliverSm(
            sequence_number=9,
            source_addr="491700000001",
            destination_addr="12345",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=OTA_UD,
        )
    )
    return [
        ("sms_mt_tpdu", decode_mt_tpdu, (deliver.encode(),), None),
        ("sms_mo_tpdu", decode_mo_tpdu, (submit.encode(), report.encode()), None),
        (
            "sms_deliver_report_error",
            lambda raw: SmsDeliverReport.decode(raw, rp_error=True),
            (SmsDeliverReport(tp_fcs=0xD5).encode(),),
            None,
        ),
        ("sms_udh", split_udh, (OTA_UD, bytes.fromhex("0700030a0201700000")), None),
        ("sms_address", lambda raw: Address.decode(ByteReader(raw)), (Address("4917000001").encode(),), None),
        ("ber_tlv", decode_ber_all, (envelope, expanded), None),
        ("comprehension_tlv", decode_comprehension_all, (envelope[2:], ssm[2:]), None),
        ("envelope", decode_envelope, (envelope,), None),
        ("sms_pp_download", SmsPpDownload.decode, (envelope,), None),
        ("proactive_command", decode_proactive, (ssm,), None),
        ("send_short_message", SendShortMessage.decode, (ssm,), None),
        ("terminal_response", TerminalResponse.decode, (terminal_response,), None),
        ("compact_commands", decode_compact_commands, (compact,), None),
        ("compact_response", CompactResponse.decode, (bytes.fromhex("03900000112233"),), None),
        ("expanded_script", ExpandedCommandScript.decode, (expanded,), None),
        ("expanded_response", ExpandedResponse.decode, (expanded_response,), None),
        ("command_apdu", CommandApdu.decode, tuple(a.encode() for a in APDUS), None),
        ("smpp_pdu", decode_pdu, (submit_sm, deliver_sm), _smpp_length_fix),
        ("smpp_framing", _frame, (submit_sm + deliver_sm,), None),
        (
            "action_counter_block",
            split_counter_report,
            (append_counter_report(b"\x01\x90\x00", CounterReport(3, 4)),),
            None,
        ),
    ]
