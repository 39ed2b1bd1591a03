"""session: scripted exchanges per rule, and every (state, input) pair has a defined outcome."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
import smpplib.client
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.errors import LocalProtocolViolation
from ota_protocols.smpp.command_status import CommandId, CommandStatus
from ota_protocols.smpp.events import (
    BindCompleted,
    BindRejected,
    BindRequested,
    ConnectionShouldClose,
    PduReceived,
    ProtocolError,
    ResponseReceived,
    ResponseTimedOut,
    SessionTimerExpired,
    Unbound,
)
from ota_protocols.smpp.framing import PduFramer
from ota_protocols.smpp.pdu_codec import (
    Bind,
    BindKind,
    BindResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnknownPdu,
    decode_pdu,
    encode_pdu,
    is_response,
)
from ota_protocols.smpp.session import MAX_SEQUENCE_NUMBER, Role, SessionState, SmppSession

from . import strategies as sst

S = SessionState


def _out(session: SmppSession) -> list[Pdu]:
    return [decode_pdu(raw) for raw in PduFramer().feed(session.data_to_send())]


def _feed(session: SmppSession, *pdus: Pdu, now: float = 0.0) -> None:
    session.receive_data(b"".join(encode_pdu(p) for p in pdus), now)


def _bound_smsc(kind: BindKind = BindKind.TRANSCEIVER, **kw: object) -> SmppSession:
    s = SmppSession(Role.SMSC, **kw)  # type: ignore[arg-type]
    _feed(s, Bind(kind=kind, sequence_number=1, system_id="ota", password="pw"))
    s.accept_bind("SMSCEMU", now=0.0)
    s.events()
    s.data_to_send()
    return s


def _bound_esme(kind: BindKind = BindKind.TRANSCEIVER, **kw: object) -> SmppSession:
    e = SmppSession(Role.ESME, **kw)  # type: ignore[arg-type]
    sent = e.bind(kind, "ota", "pw", now=0.0)
    assert sent is not None
    _feed(e, BindResp(kind=kind, sequence_number=sent.sequence_number, system_id="SMSCEMU"))
    e.events()
    e.data_to_send()
    return e


SUBMIT = SubmitSm(
    sequence_number=5,
    destination_addr="4915112345678",
    esm_class=0x43,
    protocol_id=0x7F,
    data_coding=0xF6,
    short_message=b"\x02\x70\x00\x01",
)
POR = DeliverSm(
    source_addr="4915112345678",
    destination_addr="12345",
    esm_class=0x40,
    protocol_id=0x7F,
    data_coding=0xF6,
    short_message=b"\x02\x71\x00",
)

# ------------------------------------------------------------------ SMSC role


def test_smsc_bind_is_handed_to_the_shell_and_accepted() -> None:
    s = SmppSession(Role.SMSC)
    bind = Bind(kind=BindKind.TRANSCEIVER, sequence_number=1, system_id="ota", password="pw")
    _feed(s, bind)
    assert s.events() == [BindRequested(bind)]
    assert s.data_to_send() == b""  # smpplib reads exactly one PDU after bind: nothing before bind_resp
    s.accept_bind("SMSCEMU")
    (resp,) = _out(s)
    assert isinstance(resp, BindResp) and resp.command_status == 0 and resp.sequence_number == 1
    assert resp.system_id == "SMSCEMU" and resp.kind is BindKind.TRANSCEIVER
    assert s.state is S.BOUND_TRX
    assert s.events() == [BindCompleted(BindKind.TRANSCEIVER, "ota")]


def test_smsc_rejects_bind() -> None:
    s = SmppSession(Role.SMSC)
    _feed(s, Bind(kind=BindKind.TRANSMITTER, sequence_number=3))
    s.events()
    s.reject_bind(CommandStatus.ESME_RINVPASWD)
    (resp,) = _out(s)
    assert resp == BindResp(
        kind=BindKind.TRANSMITTER, sequence_number=3, command_status=CommandStatus.ESME_RINVPASWD
    )
    assert s.state is S.OPEN
    with pytest.raises(LocalProtocolViolation):
        s.accept_bind("x")


def test_submit_sm_before_bind_gets_rinvbndsts() -> None:
    s = SmppSession(Role.SMSC)
    _feed(s, SUBMIT)
    assert _out(s) == [SubmitSmResp(sequence_number=5, command_status=CommandStatus.ESME_RINVBNDSTS)]
    (event,) = s.events()
    assert isinstance(event, ProtocolError) and event.status == CommandStatus.ESME_RINVBNDSTS


def test_submit_sm_on_receiver_bind_gets_rinvbndsts() -> None:
    s = _bound_smsc(BindKind.RECEIVER)
    _feed(s, SUBMIT)
    assert _out(s) == [SubmitSmResp(sequence_number=5, command_status=CommandStatus.ESME_RINVBNDSTS)]


def test_submit_sm_on_transceiver_bind_is_for_the_shell() -> None:
    s = _bound_smsc()
    _feed(s, SUBMIT)
    assert s.events() == [PduReceived(SUBMIT)]
    assert s.data_to_send() == b""
    s.send(SubmitSmResp(sequence_number=5, message_id="1"), now=0.0)
    assert _out(s) == [SubmitSmResp(sequence_number=5, message_id="1")]


def test_second_bind_gets_ralybnd() -> None:
    s = _bound_smsc()
    _feed(s, Bind(kind=BindKind.RECEIVER, sequence_number=9))
    assert _out(s) == [
        BindResp(kind=BindKind.RECEIVER, sequence_number=9, command_status=CommandStatus.ESME_RALYBND)
    ]


@pytest.mark.parametrize("factory", [lambda: SmppSession(Role.SMSC), _bound_smsc, _bound_esme])
def test_enquire_link_is_answered_in_any_state(factory: Callable[[], SmppSession]) -> None:
    s = factory()
    _feed(s, EnquireLink(sequence_number=77))
    assert _out(s) == [EnquireLinkResp(sequence_number=77)]
    assert s.events() == []


def test_peer_unbind_is_answered_and_closes() -> None:
    s = _bound_smsc()
    _feed(s, Unbind(sequence_number=12), SUBMIT)
    assert _out(s) == [UnbindResp(sequence_number=12)]
    assert s.events() == [Unbound(by_peer=True)]
    assert s.state is S.CLOSED and s.next_deadline() is None
    assert s.send(POR, now=1.0) is None  # ignored once closed


def test_unknown_command_gets_generic_nack_with_same_sequence() -> None:
    s = _bound_smsc()
    _feed(s, UnknownPdu(CommandId.CANCEL_SM, 0, 31, b"\x00" * 5))
    assert _out(s) == [GenericNack(sequence_number=31, command_status=CommandStatus.ESME_RINVCMDID)]


def test_deliver_sm_at_the_smsc_is_foreign_to_its_role() -> None:
    s = _bound_smsc()
    _feed(s, POR)
    assert _out(s) == [GenericNack(sequence_number=0, command_status=CommandStatus.ESME_RINVCMDID)]


def test_malformed_submit_sm_gets_its_own_resp_with_the_decoded_status() -> None:
    s = _bound_smsc()
    body = b"\x00\x00\x00\x00\x01\x01" + b"1" * 25 + bytes(20)
    s.receive_data(struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM, 0, 44) + body, 0.0)
    assert _out(s) == [SubmitSmResp(sequence_number=44, command_status=CommandStatus.ESME_RINVDSTADR)]
    assert isinstance(s.events()[0], ProtocolError)
    assert s.state is S.BOUND_TRX


def test_malformed_enquire_link_gets_generic_nack() -> None:
    s = _bound_smsc()
    s.receive_data(struct.pack(">IIII", 17, CommandId.ENQUIRE_LINK, 0, 45) + b"\x00", 0.0)
    assert _out(s) == [GenericNack(sequence_number=45, command_status=CommandStatus.ESME_RINVCMDLEN)]


def test_broken_framing_nacks_and_asks_to_close() -> None:
    s = _bound_smsc()
    s.receive_data(encode_pdu(EnquireLink(sequence_number=1)) + struct.pack(">IIII", 8, 4, 0, 46), 0.0)
    assert _out(s) == [
        EnquireLinkResp(sequence_number=1),
        GenericNack(sequence_number=46, command_status=CommandStatus.ESME_RINVCMDLEN),
    ]
    events = s.events()
    assert isinstance(events[0], ProtocolError)
    assert isinstance(events[-1], ConnectionShouldClose)
    assert s.state is S.CLOSED


def test_smsc_originated_sequences_count_up_and_wrap() -> None:
    s = _bound_smsc(first_sequence_number=MAX_SEQUENCE_NUMBER - 1)
    seqs = [s.send(POR, now=0.0).sequence_number for _ in range(3)]  # type: ignore[union-attr]
    assert seqs == [MAX_SEQUENCE_NUMBER - 1, MAX_SEQUENCE_NUMBER, 1]
    assert [p.sequence_number for p in _out(s)] == seqs


def test_sequence_numbers_still_outstanding_are_skipped() -> None:
    s = _bound_smsc(first_sequence_number=MAX_SEQUENCE_NUMBER)
    first = s.send(POR, now=0.0)
    second = s.send(POR, now=0.0)
    assert (first.sequence_number, second.sequence_number) == (MAX_SEQUENCE_NUMBER, 1)  # type: ignore[union-attr]
    s._next_seq = MAX_SEQUENCE_NUMBER  # force the wrap onto outstanding numbers
    assert s.send(POR, now=0.0).sequence_number == 2  # type: ignore[union-attr]


def test_responses_match_requests_by_sequence_in_any_order() -> None:
    s = _bound_smsc()
    a = s.send(POR, now=0.0)
    b = s.send(POR, now=0.0)
    assert a is not None and b is not None
    _feed(
        s,
        DeliverSmResp(sequence_number=b.sequence_number),
        DeliverSmResp(sequence_number=a.sequence_number, command_status=8),
    )
    assert s.events() == [
        ResponseReceived(b, DeliverSmResp(sequence_number=b.sequence_number)),
        ResponseReceived(a, DeliverSmResp(sequence_number=a.sequence_number, command_status=8)),
    ]
    assert s.outstanding_requests == ()


def test_unexpected_response_is_a_protocol_error() -> None:
    s = _bound_smsc()
    _feed(s, DeliverSmResp(sequence_number=999))
    (event,) = s.events()
    assert isinstance(event, ProtocolError)
    assert s.data_to_send() == b""


def test_response_timeout_is_reported_from_handle_deadline() -> None:
    s = _bound_smsc(response_timeout_s=5.0)
    sent = s.send(POR, now=10.0)
    assert s.next_deadline() == 15.0
    s.handle_deadline(14.9)
    assert s.events() == []
    s.handle_deadline(15.0)
    assert s.events() == [ResponseTimedOut(sent.sequence_number, sent)]  # type: ignore[union-attr]
    assert s.next_deadline() is None
    _feed(s, DeliverSmResp(sequence_number=sent.sequence_number))  # type: ignore[union-attr]
    assert isinstance(s.events()[0], ProtocolError)  # a late answer matches nothing


def test_deliver_sm_on_transmitter_bind_is_a_local_violation() -> None:
    s = _bound_smsc(BindKind.TRANSMITTER)
    assert not s.may_send(CommandId.DELIVER_SM)
    with pytest.raises(LocalProtocolViolation):
        s.send(POR, now=0.0)


def test_keepalive_enquire_link_after_quiet_interval() -> None:
    s = _bound_smsc(enquire_link_interval_s=30.0, response_timeout_s=10.0)
    _feed(s, EnquireLink(sequence_number=2), now=5.0)
    s.data_to_send()
    assert s.next_deadline() == 35.0
    s.handle_deadline(35.0)
    (ping,) = _out(s)
    assert isinstance(ping, EnquireLink)
    assert s.next_deadline() == 45.0
    _feed(s, EnquireLinkResp(sequence_number=ping.sequence_number), now=36.0)
    assert s.events() == []  # our own keepalive is not surfaced
    assert s.next_deadline() == 66.0
    s.handle_deadline(66.0)
    (ping,) = _out(s)
    s.handle_deadline(76.0)
    events = s.events()
    assert isinstance(events[0], ResponseTimedOut) and isinstance(events[1], ConnectionShouldClose)
    assert s.state is S.CLOSED


# ------------------------------------------------------------------ ESME role


def test_esme_and_smsc_sessions_talk_to_each_other() -> None:
    smsc = SmppSession(Role.SMSC)
    esme = SmppSession(Role.ESME)
    esme.bind(BindKind.TRANSCEIVER, "ota", "pw", now=0.0)
    assert esme.state is S.OPEN and not esme.may_send(CommandId.BIND_TRANSCEIVER)
    smsc.receive_data(esme.data_to_send(), 0.0)
    assert isinstance(smsc.events()[0], BindRequested)
    smsc.accept_bind("SMSCEMU")
    assert smsc.events() == [BindCompleted(BindKind.TRANSCEIVER, "ota")]
    esme.receive_data(smsc.data_to_send(), 0.1)
    assert esme.events()[-1] == BindCompleted(BindKind.TRANSCEIVER, "SMSCEMU")
    assert esme.state is S.BOUND_TRX
    submit = esme.send(SubmitSm(destination_addr="49", short_message=b"\x02\x70\x00"), now=1.0)
    smsc.receive_data(esme.data_to_send(), 1.0)
    (received,) = smsc.events()
    assert isinstance(received, PduReceived) and received.pdu == submit
    smsc.send(SubmitSmResp(sequence_number=received.pdu.sequence_number, message_id="M1"), now=1.0)
    por = smsc.send(POR, now=1.1)
    esme.receive_data(smsc.data_to_send(), 1.1)
    events = esme.events()
    assert events[0] == ResponseReceived(
        submit,
        SubmitSmResp(
            sequence_number=submit.sequence_number,  # type: ignore[union-attr]
            message_id="M1",
        ),
    )
    assert events[1] == PduReceived(por)  # type: ignore[arg-type]
    esme.send(DeliverSmResp(sequence_number=por.sequence_number), now=1.2)  # type: ignore[union-attr]
    esme.send(Unbind(), now=1.2)
    assert esme.state is S.UNBINDING
    smsc.receive_data(esme.data_to_send(), 1.2)
    assert isinstance(smsc.events()[0], ResponseReceived)
    esme.receive_data(smsc.data_to_send(), 1.3)
    assert esme.events()[-1] == Unbound(by_peer=False)
    assert esme.state is S.CLOSED and smsc.state is S.CLOSED


def test_esme_bind_rejected() -> None:
    e = SmppSession(Role.ESME)
    sent = e.bind(BindKind.TRANSMITTER, "ota", "bad", now=0.0)
    _feed(e, GenericNack(sequence_number=sent.sequence_number, command_status=CommandStatus.ESME_RINVCMDID))  # type: ignore[union-attr]
    assert e.events()[-1] == BindRejected(CommandStatus.ESME_RINVCMDID)
    assert e.state is S.OPEN and e.may_send(CommandId.BIND_TRANSMITTER)


def test_esme_deliver_sm_on_transmitter_bind_gets_rinvbndsts() -> None:
    e = _bound_esme(BindKind.TRANSMITTER)
    _feed(e, DeliverSm(sequence_number=4))
    assert _out(e) == [DeliverSmResp(sequence_number=4, command_status=CommandStatus.ESME_RINVBNDSTS)]


def test_esme_may_not_submit_before_binding() -> None:
    with pytest.raises(LocalProtocolViolation):
        SmppSession(Role.ESME).send(SUBMIT, now=0.0)
    with pytest.raises(LocalProtocolViolation):
        SmppSession(Role.SMSC).bind(BindKind.TRANSCEIVER, "a", "b", now=0.0)


def test_smpplib_bytes_drive_the_smsc_and_it_parses_our_answers() -> None:
    gen = smpplib.client.SimpleSequenceGenerator()
    bind = smpplib.smpp.make_pdu("bind_transceiver", client=gen, system_id="ota", password="pw")
    s = SmppSession(Role.SMSC)
    s.receive_data(bind.generate(), 0.0)
    s.accept_bind("SMSCEMU")
    resp = smpplib.smpp.parse_pdu(s.data_to_send(), sequence=0, allow_unknown_opt_params=True)
    assert (resp.command, resp.sequence, resp.status) == ("bind_transceiver_resp", bind.sequence, 0)


# ------------------------------------------------------------------ SMPP 3.4 §7.2 timers, pre-bind limits


def test_session_init_timer_closes_a_connection_that_never_binds() -> None:
    s = SmppSession(Role.SMSC, session_init_timeout_s=10.0, now=100.0)
    assert s.next_deadline() == 110.0
    _feed(s, EnquireLink(sequence_number=1), now=105.0)  # traffic does not stop the timer: a bind does
    _out(s)
    s.handle_deadline(109.9)
    assert not s.is_closed
    s.handle_deadline(110.0)
    events = s.events()
    assert s.is_closed and s.data_to_send() == b""  # §7.2: the connection is dropped, no PDU sent
    assert isinstance(events[-2], SessionTimerExpired) and events[-2].timer == "session_init"
    assert isinstance(events[-1], ConnectionShouldClose) and "§7.2" in events[-1].reason


def test_session_init_timer_stops_once_bound() -> None:
    s = SmppSession(Role.SMSC, session_init_timeout_s=10.0, now=0.0)
    _feed(s, Bind(kind=BindKind.TRANSCEIVER, sequence_number=1), now=1.0)
    s.accept_bind("SMSCEMU", now=1.0)
    assert s.next_deadline() is None
    s.handle_deadline(50.0)
    assert s.state is S.BOUND_TRX


def test_session_init_timer_keeps_running_through_refused_binds() -> None:
    s = SmppSession(Role.SMSC, session_init_timeout_s=10.0, now=0.0)
    for i in range(3):
        _feed(s, Bind(kind=BindKind.TRANSCEIVER, sequence_number=i + 1), now=float(i))
        s.reject_bind(CommandStatus.ESME_RINVPASWD)
    assert s.next_deadline() == 10.0


def test_inactivity_timer_unbinds_a_silent_peer_and_the_response_timer_closes() -> None:
    s = _bound_smsc(inactivity_timeout_s=60.0, response_timeout_s=5.0)
    _feed(s, SUBMIT, now=30.0)
    s.events()
    _out(s)
    assert s.next_deadline() == 90.0  # the last PDU received + 60 s
    s.handle_deadline(90.0)
    (unbind,) = _out(s)
    assert isinstance(unbind, Unbind) and s.state is S.UNBINDING
    assert s.events() == [SessionTimerExpired("inactivity", 60.0)]
    s.handle_deadline(95.0)
    assert s.is_closed


def test_enquire_link_answers_keep_a_bound_session_active() -> None:
    s = _bound_smsc(enquire_link_interval_s=30.0, inactivity_timeout_s=100.0, response_timeout_s=5.0)
    now = 0.0
    for _ in range(10):
        now = s.next_deadline() or now
        s.handle_deadline(now)
        (probe,) = _out(s)
        assert isinstance(probe, EnquireLink)
        _feed(s, EnquireLinkResp(sequence_number=probe.sequence_number), now=now + 0.1)
    assert s.state is S.BOUND_TRX and now >= 300.0


def test_before_bind_a_long_command_length_is_refused_from_the_header() -> None:
    s = SmppSession(Role.SMSC, max_unbound_pdu_length=1024)
    # The header of a 65 KB PDU: refused on its command_length before any body octet is held.
    s.receive_data(struct.pack(">IIII", 65_000, CommandId.SUBMIT_SM, 0, 7), 0.0)
    (nack,) = _out(s)
    assert isinstance(nack, GenericNack) and nack.sequence_number == 7
    assert nack.command_status == CommandStatus.ESME_RINVCMDLEN
    assert s.is_closed and "before bind" in s.events()[0].detail  # type: ignore[union-attr]


def test_after_bind_the_full_pdu_length_is_allowed() -> None:
    s = _bound_smsc(max_unbound_pdu_length=64)
    big = SubmitSm(sequence_number=9, destination_addr="49", short_message=bytes(200))
    _feed(s, big)
    assert s.events() == [PduReceived(big)]


def test_unbind_before_bind_is_rinvbndsts_and_the_connection_stays_open() -> None:
    s = SmppSession(Role.SMSC)
    _feed(s, Unbind(sequence_number=4))
    (resp,) = _out(s)
    assert resp == UnbindResp(sequence_number=4, command_status=CommandStatus.ESME_RINVBNDSTS)
    assert s.state is S.OPEN
    _feed(s, Bind(kind=BindKind.TRANSCEIVER, sequence_number=5))
    assert isinstance(s.events()[-1], BindRequested)


def test_overlong_service_type_is_rinvsertyp() -> None:
    s = _bound_smsc()
    raw = bytearray(encode_pdu(SUBMIT))
    body = b"TOOLONGTYPE\x00" + raw[17:]  # service_type is at most 5 characters + NUL (§5.2.11)
    pdu = struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM, 0, 6) + body
    s.receive_data(pdu, 0.0)
    (resp,) = _out(s)
    assert isinstance(resp, SubmitSmResp) and resp.sequence_number == 6
    assert resp.command_status == CommandStatus.ESME_RINVSERTYP


def test_overlong_system_type_in_a_bind_is_rinvsystyp() -> None:
    s = SmppSession(Role.SMSC)
    body = b"ota\x00pw\x00" + b"S" * 20 + b"\x00\x34\x00\x00\x00"
    s.receive_data(struct.pack(">IIII", 16 + len(body), CommandId.BIND_TRANSCEIVER, 0, 2) + body, 0.0)
    (resp,) = _out(s)
    assert resp.command_status == CommandStatus.ESME_RINVSYSTYP  # type: ignore[union-attr]


# ------------------------------------------------------------------ state x input totality

STATES = ["open", "bind_pending", "bound_tx", "bound_rx", "bound_trx", "unbinding", "closed"]


def _session_in(role: Role, state: str) -> SmppSession:
    kinds = {
        "bound_tx": BindKind.TRANSMITTER,
        "bound_rx": BindKind.RECEIVER,
        "bound_trx": BindKind.TRANSCEIVER,
    }
    if state == "open":
        s = SmppSession(role)
    elif state in kinds:
        s = _bound_smsc(kinds[state]) if role is Role.SMSC else _bound_esme(kinds[state])
    elif state == "bind_pending":
        s = SmppSession(role)
        if role is Role.SMSC:
            _feed(s, Bind(kind=BindKind.TRANSCEIVER, sequence_number=1))
        else:
            s.bind(BindKind.TRANSCEIVER, "ota", "pw", now=0.0)
    elif state == "unbinding":
        s = _bound_smsc() if role is Role.SMSC else _bound_esme()
        s.send(Unbind(), now=0.0)
    else:
        s = _bound_smsc() if role is Role.SMSC else _bound_esme()
        _feed(s, Unbind(sequence_number=99))
    s.events()
    s.data_to_send()
    return s


def _assert_outcome(s: SmppSession, incoming: list[Pdu] | None, was_closed: bool) -> None:
    out = _out(s)
    events = s.events()
    if was_closed:
        assert out == [] and events == []
        return
    assert out or events, "input vanished without an answer or an event"
    for pdu in out:
        assert is_response(pdu)
    if incoming is not None and len(incoming) == 1 and not is_response(incoming[0]) and out:
        assert out[0].sequence_number == incoming[0].sequence_number


@settings(max_examples=200)
@given(st.sampled_from(Role), st.sampled_from(STATES), sst.pdus)
def test_every_pdu_in_every_state_has_a_defined_outcome(role: Role, state: str, pdu: Pdu) -> None:
    s = _session_in(role, state)
    was_closed = s.is_closed
    s.receive_data(encode_pdu(pdu), 1.0)
    _assert_outcome(s, [pdu], was_closed)


@settings(max_examples=200)
@given(st.sampled_from(Role), st.sampled_from(STATES), st.binary(min_size=1, max_size=80))
def test_garbage_in_every_state_has_a_defined_outcome(role: Role, state: str, data: bytes) -> None:
    s = _session_in(role, state)
    was_closed = s.is_closed
    framed = len(data) >= 4 and 16 <= int.from_bytes(data[:4], "big") <= len(data)
    s.receive_data(data, 1.0)
    if framed or s.is_closed:
        _assert_outcome(s, None, was_closed)
    else:
        s.events()  # a partial PDU may simply wait for more bytes
        assert s.data_to_send() == b""


ACTIONS = st.one_of(
    st.tuples(st.just("recv"), sst.pdus),
    st.tuples(st.just("tick"), st.floats(0.0, 40.0)),
    st.tuples(st.just("send"), st.sampled_from([POR, SUBMIT, EnquireLink(), Unbind()])),
    st.tuples(st.just("answer"), st.sampled_from(["accept", "reject", "bind"])),
)


@settings(max_examples=150)
@given(st.sampled_from(Role), st.sampled_from(STATES), st.lists(ACTIONS, max_size=10))
def test_random_action_sequences_never_raise_unexpectedly(role: Role, state: str, actions: list) -> None:
    s = (
        SmppSession(role, response_timeout_s=10.0, enquire_link_interval_s=15.0)
        if state == "open"
        else (_session_in(role, state))
    )
    now = 0.0
    for kind, arg in actions:
        if kind == "recv":
            s.receive_data(encode_pdu(arg), now)
        elif kind == "tick":
            now += arg
            deadline = s.next_deadline()
            if deadline is not None:
                assert deadline >= 0.0
            s.handle_deadline(now)
        elif kind == "send":
            awaiting = {r.sequence_number for r in s.outstanding_requests}
            reused = arg.sequence_number != 0 and arg.sequence_number in awaiting and not is_response(arg)
            if s.may_send(arg.command_id) and not reused:
                s.send(arg, now)
            elif not s.is_closed:
                with pytest.raises(LocalProtocolViolation):
                    s.send(arg, now)
        else:
            try:
                if arg == "accept":
                    s.accept_bind("SMSCEMU", now=now)
                elif arg == "reject":
                    s.reject_bind(CommandStatus.ESME_RBINDFAIL)
                else:
                    s.bind(BindKind.TRANSCEIVER, "ota", "pw", now=now)
            except LocalProtocolViolation:
                pass
        for pdu in _out(s):  # every byte we emit is a well-formed PDU
            assert pdu.sequence_number <= 0xFFFFFFFF
        s.events()
        if s.is_closed:
            assert s.next_deadline() is None
