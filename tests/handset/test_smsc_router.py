"""submit_sm -> SMS-DELIVER and TPDU -> deliver_sm mappings (smpp-and-peers.md §1.3-§1.6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handset import smsc_router
from handset.smsc_router import RouterOptions, build_sms_deliver
from ota_protocols.errors import SmppViolation
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import DeliveryReceipt, SubmitSm, Tag
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsDeliver, SmsDeliverReport, SmsSubmit

SCTS = datetime(2022, 7, 25, tzinfo=UTC)
UD = bytes.fromhex("027000") + bytes(range(30))


def submit(**fields: object) -> SubmitSm:
    base: dict[str, object] = dict(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="12345",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="491700000001",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=UD,
    )
    base.update(fields)
    return SubmitSm(**base)  # type: ignore[arg-type]


def test_ota_submit_maps_to_sms_deliver_44() -> None:
    tpdu = build_sms_deliver(submit(), scts=SCTS)
    assert tpdu[0] == 0x44
    d = SmsDeliver.decode(tpdu)
    assert d.tp_oa == Address("12345", Ton.INTERNATIONAL, Npi.ISDN)
    assert (d.tp_pid, d.tp_dcs, d.tp_ud, d.tp_udhi) == (0x7F, 0xF6, UD, True)
    assert d.tp_scts == bytes.fromhex("22705200000000")
    # protocols.md §9.6: 05 91 21 43 F5 = "+12345"
    assert tpdu[1:6] == bytes.fromhex("059121 43f5".replace(" ", ""))


def test_kannel_esm_class_0x43_and_national_ton() -> None:
    tpdu = build_sms_deliver(submit(esm_class=0x43, source_addr_ton=2, source_addr_npi=1), scts=SCTS)
    d = SmsDeliver.decode(tpdu)
    assert d.tp_udhi and d.tp_oa.ton == Ton.NATIONAL and tpdu[2] == 0xA1


def test_no_udhi_and_reply_path() -> None:
    d = SmsDeliver.decode(build_sms_deliver(submit(esm_class=0x80 | 0x03), scts=SCTS))
    assert not d.tp_udhi and d.tp_rp


def test_alphanumeric_source() -> None:
    d = SmsDeliver.decode(
        build_sms_deliver(submit(source_addr="OTA", source_addr_ton=5, source_addr_npi=0), scts=SCTS)
    )
    assert d.tp_oa == Address("OTA", Ton.ALPHANUMERIC, Npi.UNKNOWN)


@pytest.mark.parametrize(
    ("data_coding", "tp_dcs"),
    [(0xF6, 0xF6), (0x16, 0x16), (0x04, 0x04), (0x02, 0x04), (0x08, 0x08), (0xF2, 0xF2)],
)
def test_dcs_mapped_faithfully(data_coding: int, tp_dcs: int) -> None:
    short = UD if data_coding != 0xF2 else b"\x02\x70\x00" + b"HELLO"
    assert (
        SmsDeliver.decode(
            build_sms_deliver(submit(data_coding=data_coding, short_message=short), scts=SCTS)
        ).tp_dcs
        == tp_dcs
    )


def test_pysim_force_f6_option() -> None:
    tpdu = build_sms_deliver(submit(data_coding=0x04), scts=SCTS, options=RouterOptions(force_dcs=0xF6))
    assert SmsDeliver.decode(tpdu).tp_dcs == 0xF6


def test_text_is_packed_as_gsm7_and_unpacked_back() -> None:
    d = SmsDeliver.decode(
        build_sms_deliver(submit(esm_class=0, data_coding=0, short_message=b"hello@"), scts=SCTS)
    )
    assert d.tp_dcs == 0 and d.tp_udl == 6 and d.tp_ud == bytes.fromhex("e8329bfd0600")
    mo = SmsSubmit(tp_mr=1, tp_da=Address("12345"), tp_dcs=0, tp_ud=d.tp_ud, tp_udl=6)
    pdu = smsc_router.sms_submit_to_deliver_sm(mo, msisdn="491700000001")
    assert pdu is not None and pdu.short_message == b"hello@" and pdu.data_coding == 0


@pytest.mark.parametrize(
    ("fields", "options", "status"),
    [
        (dict(protocol_id=0x00), RouterOptions(require_pid_7f=True), CommandStatus.ESME_RINVDCS),
        (dict(data_coding=0x08), RouterOptions(require_8bit_dcs=True), CommandStatus.ESME_RINVDCS),
        (dict(data_coding=0x05), RouterOptions(), CommandStatus.ESME_RINVDCS),
        (dict(short_message=bytes(141)), RouterOptions(), CommandStatus.ESME_RINVMSGLEN),
        (dict(source_addr="12x45"), RouterOptions(), CommandStatus.ESME_RINVSRCADR),
    ],
)
def test_refusals_carry_smpp_status(fields: dict[str, object], options: RouterOptions, status: int) -> None:
    with pytest.raises(SmppViolation) as info:
        build_sms_deliver(submit(**fields), scts=SCTS, options=options)
    assert info.value.command_status == status


def test_checks_are_off_by_default() -> None:
    build_sms_deliver(submit(protocol_id=0, data_coding=0x08, esm_class=0, short_message=b"\x00A"), scts=SCTS)


def test_message_payload_is_used_when_short_message_is_empty() -> None:
    pdu = submit(short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, UD),))
    assert SmsDeliver.decode(build_sms_deliver(pdu, scts=SCTS)).tp_ud == UD


def test_more_messages_bit() -> None:
    tpdu = build_sms_deliver(submit(), scts=SCTS)
    assert smsc_router.set_more_messages(tpdu, True)[0] == 0x40
    assert smsc_router.set_more_messages(smsc_router.set_more_messages(tpdu, True), False) == tpdu


def test_deliver_report_por_becomes_deliver_sm_to_the_submitter() -> None:
    por = bytes.fromhex("027100000e0ab00010000000000100000190")
    report = SmsDeliverReport.decode(
        SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por).encode()
    )
    pdu = smsc_router.deliver_report_to_deliver_sm(
        report, msisdn="491700000001", original=submit(source_addr_ton=2)
    )
    assert pdu is not None
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("491700000001", 1, 1)
    assert (pdu.destination_addr, pdu.dest_addr_ton) == ("12345", 2)
    assert pdu.esm_class == 0x40 and pdu.esm_class & 0x3C == 0
    assert (pdu.protocol_id, pdu.data_coding, pdu.short_message) == (0x7F, 0xF6, por)


def test_report_without_user_data_gives_no_deliver_sm() -> None:
    assert smsc_router.deliver_report_to_deliver_sm(SmsDeliverReport(), msisdn="1", original=submit()) is None


def test_sms_submit_goes_to_tp_da() -> None:
    por = bytes.fromhex("027100000e0ab00010000000000100000190")
    mo = SmsSubmit(
        tp_mr=3,
        tp_da=Address("12345", Ton.INTERNATIONAL, Npi.ISDN),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_ud=por,
        tp_udhi=True,
    )
    pdu = smsc_router.sms_submit_to_deliver_sm(SmsSubmit.decode(mo.encode()), msisdn="491700000001")
    assert pdu is not None and pdu.destination_addr == "12345" and pdu.dest_addr_ton == 1
    assert pdu.esm_class == 0x40 and pdu.short_message == por


def test_receipts() -> None:
    original = submit(registered_delivery=1)
    pdu = smsc_router.delivery_receipt(
        original,
        message_id="00000000A1",
        submit_date=SCTS,
        done_date=SCTS + timedelta(minutes=1),
        stat="UNDELIV",
        err=0xD5,
    )
    assert pdu.esm_class & 0x3C == 0x04
    assert pdu.source_addr == "491700000001" and pdu.destination_addr == "12345"
    receipt = DeliveryReceipt.parse(pdu.short_message)
    assert (receipt.message_id, receipt.stat, receipt.err, receipt.delivered) == (
        "00000000A1",
        "UNDELIV",
        213,
        0,
    )
    assert pdu.receipted_message_id == "00000000A1" and pdu.message_state == 5
    assert smsc_router.wants_receipt(1, success=True) and not smsc_router.wants_receipt(0, success=False)
    assert smsc_router.wants_receipt(2, success=False) and not smsc_router.wants_receipt(2, success=True)


def test_validity_period() -> None:
    assert smsc_router.expiry_seconds("", submitted=SCTS, default_s=60.0) == 60.0
    assert smsc_router.expiry_seconds("000000001000000R", submitted=SCTS, default_s=0) == 600.0
    assert (
        smsc_router.expiry_seconds("220725010000004+", submitted=SCTS, default_s=0) == 0.0
    )  # 01:00 at UTC+1
    with pytest.raises(SmppViolation) as info:
        smsc_router.expiry_seconds("garbage", submitted=SCTS, default_s=0)
    assert info.value.command_status == CommandStatus.ESME_RINVEXPIRY


def test_validity_period_already_past_is_rinvexpiry() -> None:
    # 00:59:59.9 at UTC+1 is a tenth of a second before SCTS (2022-07-25 00:00 UTC).
    with pytest.raises(SmppViolation) as info:
        smsc_router.expiry_seconds("220725005959904+", submitted=SCTS, default_s=0)
    assert info.value.command_status == CommandStatus.ESME_RINVEXPIRY
    assert "before the submission" in str(info.value)
