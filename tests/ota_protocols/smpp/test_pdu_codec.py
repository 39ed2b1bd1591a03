"""pdu_codec: hand-built vectors, strictness rules, round trips and totality."""

from __future__ import annotations

import json
import struct
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.errors import DecodeError, EncodeError, SmppViolation
from ota_protocols.smpp import pdu_codec
from ota_protocols.smpp.command_status import CommandId, CommandStatus
from ota_protocols.smpp.pdu_codec import (
    Bind,
    BindKind,
    DeliverSm,
    DeliveryReceipt,
    MalformedPdu,
    MessageState,
    SubmitSm,
    SubmitSmResp,
    Tag,
    UnknownPdu,
    decode_pdu,
    encode_pdu,
)

from . import strategies as sst

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "smpp_vectors.json").read_text())


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _build(entry: dict) -> pdu_codec.Pdu:
    cls = getattr(pdu_codec, entry["type"])
    fields = dict(entry["fields"])
    for key in ("short_message", "body"):
        if key in fields:
            fields[key] = bytes.fromhex(fields[key])
    if "tlvs" in fields:
        fields["tlvs"] = tuple((tag, bytes.fromhex(value)) for tag, value in fields["tlvs"])
    if "kind" in fields:
        fields["kind"] = BindKind(fields["kind"])
    return cls(**fields)


@pytest.mark.parametrize("entry", VECTORS["pdus"], ids=lambda e: e["id"])
def test_vector_decodes_to_its_fields_and_encodes_back(entry: dict) -> None:
    raw = _hex(entry["hex"])
    expected = _build(entry)
    assert decode_pdu(raw) == expected
    assert encode_pdu(expected) == raw


@pytest.mark.parametrize("entry", VECTORS["malformed"], ids=lambda e: e["id"])
def test_malformed_vector_is_refused_with_its_status(entry: dict) -> None:
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(_hex(entry["hex"]))
    assert info.value.command_status == entry["command_status"]
    assert info.value.sequence_number == entry["sequence_number"]


def test_every_codec_class_has_a_vector() -> None:
    covered = {entry["type"] for entry in VECTORS["pdus"]}
    assert {
        "Bind",
        "BindResp",
        "SubmitSm",
        "SubmitSmResp",
        "DeliverSm",
        "DeliverSmResp",
        "EnquireLink",
        "UnbindResp",
        "GenericNack",
        "UnknownPdu",
    } <= covered


def _sm(**kw: object) -> SubmitSm:
    base = dict(
        sequence_number=3,
        destination_addr="4915112345678",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=b"\x02\x70\x00",
    )
    base.update(kw)
    return SubmitSm(**base)  # type: ignore[arg-type]


def _patch_length(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw[4:]


def test_command_length_mismatch_is_rinvcmdlen_with_sequence() -> None:
    raw = encode_pdu(_sm())
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw + b"\x00")
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number == 3


def test_short_header_is_rinvcmdlen_without_sequence() -> None:
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(b"\x00\x00\x00\x0c\x00\x00\x00\x15\x00\x00\x00\x00")
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number is None
    assert isinstance(info.value, SmppViolation)


def test_short_message_and_message_payload_together_are_refused() -> None:
    good = encode_pdu(_sm())
    raw = _patch_length(good + b"\x04\x24\x00\x02\xaa\xbb")
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_ROPTPARNOTALLWD
    with pytest.raises(EncodeError):
        encode_pdu(_sm(tlvs=((Tag.MESSAGE_PAYLOAD, b"x"),)))


def test_overlong_source_addr_is_rinvsrcadr() -> None:
    body = b"\x00" + b"\x01\x01" + b"1" * 30 + b"\x00" + bytes(20)
    raw = struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM, 0, 4) + body
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_RINVSRCADR


def test_unterminated_system_id_in_bind_is_rinvsysid() -> None:
    body = b"x" * 20 + bytes(20)
    raw = struct.pack(">IIII", 16 + len(body), CommandId.BIND_TRANSCEIVER, 0, 1) + body
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_RINVSYSID


def test_truncated_body_is_rinvcmdlen() -> None:
    raw = _patch_length(encode_pdu(_sm())[:30])
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN


def test_bad_validity_period_is_rinvexpiry() -> None:
    good = encode_pdu(_sm(validity_period="000001000000000R"))
    raw = good.replace(b"000001000000000R", b"000001000000000X")
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_RINVEXPIRY


def test_wrong_message_state_length_is_rinvparlen() -> None:
    raw = _patch_length(encode_pdu(_sm(short_message=b"")) + b"\x04\x27\x00\x02\x02\x00")
    with pytest.raises(MalformedPdu) as info:
        decode_pdu(raw)
    assert info.value.command_status == CommandStatus.ESME_RINVPARLEN


def test_unknown_tlvs_are_kept_in_order() -> None:
    pdu = _sm(tlvs=((0x1400, b"vendor"), (0x0204, b"\x00\x01")))
    assert decode_pdu(encode_pdu(pdu)) == pdu


def test_cancel_sm_decodes_to_unknown_pdu() -> None:
    raw = struct.pack(">IIII", 20, CommandId.CANCEL_SM, 0, 42) + b"abc\x00"
    assert decode_pdu(raw) == UnknownPdu(CommandId.CANCEL_SM, 0, 42, b"abc\x00")


@pytest.mark.parametrize(
    "pdu",
    [
        _sm(destination_addr="1" * 21),
        _sm(short_message=bytes(255)),
        _sm(esm_class=256),
        _sm(source_addr="\u20ac"),
        _sm(schedule_delivery_time="2401011200"),
        Bind(kind=BindKind.TRANSMITTER, password="123456789"),
        SubmitSmResp(message_id="a\x00b"),
    ],
)
def test_values_that_do_not_fit_raise_encode_error(pdu: pdu_codec.Pdu) -> None:
    with pytest.raises(EncodeError):
        encode_pdu(pdu)


def test_payload_helpers() -> None:
    assert _sm().payload == b"\x02\x70\x00"
    mp = _sm(short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, b"\x02\x71\x00"),))
    assert mp.payload == mp.message_payload == b"\x02\x71\x00"
    assert _sm().message_payload is None
    receipt = DeliverSm(tlvs=((Tag.RECEIPTED_MESSAGE_ID, b"abc\x00"), (Tag.MESSAGE_STATE, b"\x02")))
    assert receipt.receipted_message_id == "abc"
    assert receipt.message_state == MessageState.DELIVERED
    assert DeliverSm().receipted_message_id is None and DeliverSm().message_state is None


def test_delivery_receipt_text_and_parse() -> None:
    receipt = DeliveryReceipt(
        message_id="1A2B", submit_date=datetime(2024, 3, 1, 12, 5), done_date=datetime(2024, 3, 1, 12, 6)
    )
    text = receipt.encode()
    assert text == (
        b"id:1A2B sub:001 dlvrd:001 submit date:2403011205 done date:2403011206 stat:DELIVRD err:000 text:"
    )
    assert DeliveryReceipt.parse(text) == receipt
    assert dict(receipt.tlvs()) == {Tag.RECEIPTED_MESSAGE_ID: b"1A2B\x00", Tag.MESSAGE_STATE: b"\x02"}
    undeliv = DeliveryReceipt(
        message_id="9",
        submit_date=datetime(2024, 1, 1),
        done_date=datetime(2024, 1, 1),
        stat="UNDELIV",
        err=0xC4,
        delivered=0,
    )
    assert b"stat:UNDELIV err:196" in undeliv.encode()
    assert DeliveryReceipt.parse(undeliv.encode()).message_state == MessageState.UNDELIVERABLE


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"hello",
        b"id:1 sub:001 dlvrd:001 submit date:2413011205 done date:2403011206 stat:DELIVRD err:000 text:",
        b"id:1 sub:001 dlvrd:001 submit date:2403011205 done date:2403011206 stat:WHATEVR err:000 text:",
    ],
)
def test_delivery_receipt_parse_rejects_garbage(text: bytes) -> None:
    with pytest.raises(DecodeError):
        DeliveryReceipt.parse(text)


@settings(max_examples=200)
@given(sst.pdus)
def test_round_trip(pdu: pdu_codec.Pdu) -> None:
    raw = encode_pdu(pdu)
    assert decode_pdu(raw) == pdu
    assert encode_pdu(decode_pdu(raw)) == raw


def _total(raw: bytes) -> None:
    try:
        decode_pdu(raw)
    except MalformedPdu as exc:
        assert isinstance(exc.command_status, int)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_totality_on_arbitrary_bytes(raw: bytes) -> None:
    _total(raw)


@settings(max_examples=200)
@given(
    st.sampled_from(
        [
            1,
            2,
            4,
            5,
            6,
            9,
            0x15,
            0x80000000,
            0x80000001,
            0x80000002,
            0x80000004,
            0x80000005,
            0x80000006,
            0x80000009,
            0x80000015,
        ]
    ),
    sst.status,
    st.binary(max_size=300),
)
def test_totality_on_arbitrary_bodies_behind_a_valid_header(cid: int, status: int, body: bytes) -> None:
    _total(struct.pack(">IIII", 16 + len(body), cid, status, 1) + body)


@settings(max_examples=200)
@given(sst.pdus, st.data())
def test_totality_on_mutated_pdus(pdu: pdu_codec.Pdu, data: st.DataObject) -> None:
    raw = bytearray(encode_pdu(pdu))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(raw) - 1)) if len(raw) > 4 else 0
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(16, len(raw)))
    _total(_patch_length(bytes(raw[:cut])))
