"""The ME's status-word table (protocols.md §10.2, TS 31.111 §7.1.1) against scripted cards."""

from __future__ import annotations

import logging

import pytest

from handset.mobile_equipment import MeOptions, MobileEquipment, MoSubmit, RetryEnvelopeAt, RpAck, RpError
from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.proactive import CommandDetails, CommandType, SendShortMessage, TerminalResponse
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsDeliver, SmsDeliverReport, SmsSubmit

from .fake_cards import ScriptedCard

POR = bytes.fromhex("027100000e0ab00010000000000100000190")
SMSC = bytes.fromhex("919471000000")


def ota_deliver(pid: int = 0x7F, dcs: int = 0xF6) -> bytes:
    return SmsDeliver(
        tp_oa=Address("12345", Ton.INTERNATIONAL, Npi.ISDN),
        tp_pid=pid,
        tp_dcs=dcs,
        tp_ud=bytes.fromhex("027000") + bytes(20),
        tp_udhi=True,
    ).encode()


def me_for(responses: list[bytes], **options: object) -> tuple[MobileEquipment, ScriptedCard]:
    card = ScriptedCard(responses)
    return MobileEquipment(card, smsc_address=SMSC, options=MeOptions(**options), phone_id="p1"), card  # type: ignore[arg-type]


def ssm(with_address: bool = False) -> bytes:
    submit = SmsSubmit(
        tp_mr=0,
        tp_da=Address("12345", Ton.INTERNATIONAL, Npi.ISDN),
        tp_pid=0x7F,
        tp_dcs=0xF6,
        tp_ud=POR,
        tp_udhi=True,
    )
    return SendShortMessage(submit.encode(), address=SMSC if with_address else None).encode()


def test_envelope_carries_the_tpdu_and_smsc_address_and_90_00_gives_rp_ack_with_por() -> None:
    me, card = me_for([POR + b"\x90\x00"])
    tpdu = ota_deliver()
    [outcome] = me.receive_sms(tpdu, 0.0)
    apdu = card.apdus[0]
    assert apdu[:4] == bytes.fromhex("80c20000") and apdu[4] == len(apdu) - 5
    assert apdu[5] == 0xD1 and bytes.fromhex("82028381") in apdu and b"\x86\x06" + SMSC in apdu
    assert apdu.endswith(b"\x8b" + bytes((len(tpdu),)) + tpdu)
    assert isinstance(outcome, RpAck)
    # protocols.md §9.3: 40 07 7F F6 UDL UD
    assert outcome.report_tpdu == bytes.fromhex("40077ff6") + bytes((len(POR),)) + POR


def test_90_00_without_data_is_rp_ack_without_user_data() -> None:
    me, _ = me_for([b"\x90\x00"])
    assert me.receive_sms(ota_deliver(), 0.0) == [RpAck(bytes.fromhex("0000"))]


@pytest.mark.parametrize(("sw1", "cla"), [(0x61, 0x00), (0x9F, 0xA0)])
def test_61_and_9f_are_followed_by_get_response(sw1: int, cla: int) -> None:
    me, card = me_for([bytes((sw1, len(POR))), POR + b"\x90\x00"])
    [outcome] = me.receive_sms(ota_deliver(), 0.0)
    assert card.apdus[1] == bytes((cla, 0xC0, 0, 0, len(POR)))
    assert isinstance(outcome, RpAck) and outcome.report_tpdu.endswith(POR)


def test_91_xx_acks_then_fetches_send_short_message_without_address_and_answers_83_01_00() -> None:
    command = ssm(with_address=False)
    me, card = me_for([POR + bytes((0x91, len(command))), command + b"\x90\x00", b"\x90\x00"])
    outcomes = me.receive_sms(ota_deliver(), 0.0)
    assert isinstance(outcomes[0], RpAck) and outcomes[0].report_tpdu.endswith(POR)
    assert card.apdus[1] == bytes((0x80, 0x12, 0, 0, len(command)))
    mo = outcomes[1]
    assert isinstance(mo, MoSubmit) and mo.smsc_address is None  # default SMSC, no crash
    submit = SmsSubmit.decode(mo.tpdu)
    assert submit.tp_mr == 1 and submit.tp_ud == POR  # the ME's own TP-MR
    assert me.awaiting_terminal_response and len(card.apdus) == 2  # TR only after the hand-over
    assert me.mo_sent() == []
    tr = TerminalResponse.from_apdu(CommandApdu.decode(card.apdus[2]))
    assert tr.general_result == 0 and card.apdus[2].endswith(bytes.fromhex("830100"))
    assert tr.command_details == CommandDetails(1, CommandType.SEND_SHORT_MESSAGE, 0)


def test_tp_mr_counts_per_me_and_address_tlv_is_kept() -> None:
    command = ssm(with_address=True)
    script = []
    for _ in range(2):
        script += [bytes((0x91, len(command))), command + b"\x90\x00", b"\x90\x00"]
    me, _ = me_for(script)
    mrs = []
    for _ in range(2):
        outcomes = me.receive_sms(ota_deliver(), 0.0)
        assert outcomes[0] == RpAck(bytes.fromhex("0000"))
        assert isinstance(outcomes[1], MoSubmit) and outcomes[1].smsc_address == SMSC
        mrs.append(SmsSubmit.decode(outcomes[1].tpdu).tp_mr)
        me.mo_sent()
    assert mrs == [1, 2]


def test_terminal_response_answered_91_fetches_the_next_command() -> None:
    command = ssm()
    me, _ = me_for(
        [
            bytes((0x91, len(command))),
            command + b"\x90\x00",
            bytes((0x91, len(command))),
            command + b"\x90\x00",
            b"\x90\x00",
        ]
    )
    outcomes = me.receive_sms(ota_deliver(), 0.0)
    assert isinstance(outcomes[1], MoSubmit)
    [second] = me.mo_sent()
    assert isinstance(second, MoSubmit) and SmsSubmit.decode(second.tpdu).tp_mr == 2
    assert me.mo_sent() == []


@pytest.mark.parametrize("sw", [b"\x62\x00", b"\x63\xc1"])
def test_warnings_rel11_ack_with_data_pre_rel11_error(sw: bytes) -> None:
    me, _ = me_for([POR + sw])
    [ack] = me.receive_sms(ota_deliver(), 0.0)
    assert isinstance(ack, RpAck) and ack.report_tpdu.endswith(POR)
    me, _ = me_for([POR + sw], pre_rel11_me=True)
    [err] = me.receive_sms(ota_deliver(), 0.0)
    assert isinstance(err, RpError) and err.fcs == 0xD5
    report = SmsDeliverReport.decode(err.report_tpdu, rp_error=True)
    assert report.tp_fcs == 0xD5 and report.tp_ud == POR


def test_93_00_retries_with_backoff_then_rp_error_d4() -> None:
    me, card = me_for([b"\x93\x00"] * 3, busy_retry_s=2.0, busy_backoff=2.0, busy_max_tries=3)
    tpdu = ota_deliver()
    assert me.receive_sms(tpdu, 10.0) == [RetryEnvelopeAt(12.0, 2)]
    assert me.receive_sms(tpdu, 12.0, attempt=2) == [RetryEnvelopeAt(16.0, 3)]
    [final] = me.receive_sms(tpdu, 16.0, attempt=3)
    assert final == RpError(0xD4, bytes.fromhex("00d400"))
    assert len(card.apdus) == 3


@pytest.mark.parametrize("sw", [b"\x6f\x00", b"\x6f\xc2", b"\x69\x85", b"\x6a\x80", b"\x98\x62"])
def test_errors_give_rp_error_d5_without_data(sw: bytes) -> None:
    me, _ = me_for([sw])
    assert me.receive_sms(ota_deliver(), 0.0) == [RpError(0xD5, bytes.fromhex("00d500"))]


def test_non_ota_sms_is_stored_without_envelope() -> None:
    for pid, dcs in [(0x00, 0xF6), (0x7F, 0x04), (0x7F, 0xF5)]:
        me, card = me_for([])
        assert me.receive_sms(ota_deliver(pid, dcs), 0.0) == [RpAck(bytes.fromhex("0000"))]
        assert card.apdus == []


def test_dcs_16_is_class_2_and_goes_to_the_card() -> None:
    me, card = me_for([b"\x90\x00"])
    me.receive_sms(ota_deliver(0x7F, 0x16), 0.0)
    assert len(card.apdus) == 1


@pytest.mark.parametrize("answer", [b"", b"\x90", b"\x91\x10", b"\x61\x05"])
def test_malformed_card_answers_never_raise(answer: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # b"\x91\x10" then FETCH gets 6F00; b"\x61\x05" then GET RESPONSE gets 6F00 (script exhausted).
    me, _ = me_for([answer])
    with caplog.at_level(logging.WARNING):
        outcomes = me.receive_sms(ota_deliver(), 0.0)
    assert outcomes and isinstance(outcomes[0], RpAck | RpError)
    if answer != b"\x61\x05":  # there the final SW is a plain 6F00: D5, no warning needed
        assert caplog.records


def test_garbage_proactive_command_ends_the_session_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    me, _ = me_for([b"\x91\x04", b"\xd0\x09\x81\x03" + b"\x90\x00"])
    with caplog.at_level(logging.WARNING):
        outcomes = me.receive_sms(ota_deliver(), 0.0)
    assert outcomes == [RpAck(bytes.fromhex("0000"))]
    assert not me.awaiting_terminal_response
    assert any("proactive" in r.message for r in caplog.records)


def test_card_exception_is_a_technical_problem() -> None:
    class Exploding:
        def exchange(self, apdu: bytes) -> bytes:
            raise RuntimeError("boom")

    me = MobileEquipment(Exploding(), smsc_address=SMSC)
    assert me.receive_sms(ota_deliver(), 0.0) == [RpError(0xD5, bytes.fromhex("00d500"))]


def test_undecodable_sms_deliver_is_rp_error_unspecified() -> None:
    me, card = me_for([])
    [outcome] = me.receive_sms(b"\x44\x05", 0.0)
    assert isinstance(outcome, RpError) and outcome.fcs == 0xFF and card.apdus == []


def test_other_proactive_commands_get_a_terminal_response() -> None:
    from ota_protocols.apdu.proactive import DeviceIdentities, ProactiveCommand

    display = ProactiveCommand(
        CommandDetails(1, CommandType.DISPLAY_TEXT, 0), DeviceIdentities(0x81, 0x02)
    ).encode()
    me, card = me_for([bytes((0x91, len(display))), display + b"\x90\x00", b"\x90\x00"])
    assert me.receive_sms(ota_deliver(), 0.0) == [RpAck(bytes.fromhex("0000"))]
    assert card.apdus[2][:2] == b"\x80\x14" and card.apdus[2].endswith(b"\x83\x01\x30")
