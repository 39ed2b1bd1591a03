"""Cross-check against smpplib 2.2.4, an independent SMPP codec (tests only).

Our bytes parse in smpplib to the same field values, and smpplib's bytes
decode with ours to the same values.  smpplib quirks (smpp-and-peers.md §3):
parse with ``sequence=0, allow_unknown_opt_params=True``; set ``.sequence``
after building; parsed C-strings come back as bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.smpp.command_status import CommandStatus
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
    Tag,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
)

from . import strategies as sst

KANNEL_SM = bytes.fromhex("027000") + bytes.fromhex(
    "001d1512211515b000100000000001001122334455667788a0a40000023f00"
)

SM_FIELDS = (
    "service_type",
    "source_addr_ton",
    "source_addr_npi",
    "source_addr",
    "dest_addr_ton",
    "dest_addr_npi",
    "destination_addr",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "schedule_delivery_time",
    "validity_period",
    "registered_delivery",
    "replace_if_present_flag",
    "data_coding",
    "sm_default_msg_id",
    "short_message",
)


def _theirs(raw: bytes) -> Any:
    return smpplib.smpp.parse_pdu(raw, sequence=0, allow_unknown_opt_params=True)


def _cmp_str(ours: str, theirs: Any) -> None:
    # smpplib hands back C-strings as bytes, and None when absent.
    assert (theirs or b"") == ours.encode("latin-1")


def _make(name: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpplib.smpp.make_pdu(name, client=smpplib.client.SimpleSequenceGenerator(), **fields)
    pdu.sequence = sequence
    return pdu.generate()


def _kannel_submit_sm(**kw: Any) -> SubmitSm:
    fields: dict[str, Any] = dict(
        sequence_number=17,
        source_addr_ton=2,
        source_addr_npi=1,
        source_addr="12345",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4915112345678",
        esm_class=0x43,
        protocol_id=0x7F,
        registered_delivery=1,
        data_coding=0xF6,
        short_message=KANNEL_SM,
    )
    fields.update(kw)
    return SubmitSm(**fields)


# ---------------------------------------------------------------- ours -> smpplib


def test_our_bind_transceiver_parses_in_smpplib() -> None:
    ours = Bind(
        kind=BindKind.TRANSCEIVER,
        sequence_number=1,
        system_id="kannel",
        password="kpw",
        system_type="OTA",
        addr_ton=1,
        addr_npi=1,
        address_range="49.*",
    )
    theirs = _theirs(encode_pdu(ours))
    assert theirs.command == "bind_transceiver"
    assert theirs.sequence == 1
    for name in ("system_id", "password", "system_type", "address_range"):
        _cmp_str(getattr(ours, name), getattr(theirs, name))
    assert (theirs.interface_version, theirs.addr_ton, theirs.addr_npi) == (0x34, 1, 1)


def test_our_bind_transceiver_resp_parses_in_smpplib() -> None:
    ours = BindResp(
        kind=BindKind.TRANSCEIVER,
        sequence_number=1,
        system_id="SMSCEMU",
        tlvs=((Tag.SC_INTERFACE_VERSION, b"\x34"),),
    )
    theirs = _theirs(encode_pdu(ours))
    assert theirs.command == "bind_transceiver_resp"
    assert (theirs.sequence, theirs.status, theirs.system_id) == (1, 0, b"SMSCEMU")
    assert theirs.sc_interface_version == 0x34


@pytest.mark.parametrize(
    "ours",
    [
        _kannel_submit_sm(),
        _kannel_submit_sm(short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, KANNEL_SM * 4),)),
        _kannel_submit_sm(
            validity_period="000001000000000R",
            schedule_delivery_time="240301120500004+",
            service_type="WAP",
            priority_flag=1,
        ),
    ],
    ids=["kannel-short_message", "message_payload", "times"],
)
def test_our_submit_sm_parses_in_smpplib(ours: SubmitSm) -> None:
    theirs = _theirs(encode_pdu(ours))
    assert theirs.command == "submit_sm"
    assert theirs.sequence == ours.sequence_number
    _assert_same_sm(ours, theirs)


def _assert_same_sm(ours: SubmitSm | DeliverSm, theirs: Any) -> None:
    for name in SM_FIELDS:
        value = getattr(ours, name)
        if isinstance(value, str):
            _cmp_str(value, getattr(theirs, name))
        elif isinstance(value, bytes):
            assert (getattr(theirs, name) or b"") == value
        else:
            assert getattr(theirs, name) == value, name
    assert theirs.sm_length == len(ours.short_message)
    if ours.message_payload is not None:
        assert theirs.message_payload == ours.message_payload


def test_our_deliver_sm_receipt_parses_in_smpplib() -> None:
    ours = DeliverSm(
        sequence_number=0x7FFFFFFF,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="4915112345678",
        destination_addr="12345",
        esm_class=0x04,
        short_message=b"id:7 sub:001 dlvrd:001 submit date:2403011205 done date:2403011206 "
        b"stat:DELIVRD err:000 text:",
        tlvs=((Tag.RECEIPTED_MESSAGE_ID, b"7\x00"), (Tag.MESSAGE_STATE, b"\x02")),
    )
    theirs = _theirs(encode_pdu(ours))
    assert theirs.command == "deliver_sm"
    assert theirs.sequence == 0x7FFFFFFF
    _assert_same_sm(ours, theirs)
    assert theirs.receipted_message_id == b"7"
    assert theirs.message_state == 2


@pytest.mark.parametrize(
    ("ours", "command", "status"),
    [
        (SubmitSmResp(sequence_number=5, message_id="M00001"), "submit_sm_resp", 0),
        (
            SubmitSmResp(sequence_number=5, command_status=CommandStatus.ESME_RTHROTTLED),
            "submit_sm_resp",
            0x58,
        ),
        (DeliverSmResp(sequence_number=6), "deliver_sm_resp", 0),
        (EnquireLink(sequence_number=7), "enquire_link", 0),
        (EnquireLinkResp(sequence_number=7), "enquire_link_resp", 0),
        (Unbind(sequence_number=8), "unbind", 0),
        (UnbindResp(sequence_number=8), "unbind_resp", 0),
        (GenericNack(sequence_number=9, command_status=CommandStatus.ESME_RINVCMDID), "generic_nack", 3),
    ],
)
def test_our_small_pdus_parse_in_smpplib(ours: Pdu, command: str, status: int) -> None:
    theirs = _theirs(encode_pdu(ours))
    assert (theirs.command, theirs.sequence, theirs.status) == (command, ours.sequence_number, status)
    if isinstance(ours, SubmitSmResp) and not status:
        assert theirs.message_id == b"M00001"


@settings(max_examples=100)
@given(st.one_of(sst.short_message_pdu(SubmitSm), sst.short_message_pdu(DeliverSm)))
def test_generated_short_message_pdus_parse_in_smpplib(ours: SubmitSm | DeliverSm) -> None:
    # smpplib knows SMPP 3.4 TLV tags only in their own command's table (gotcha 5): keep ours unknown.
    known = set(smpplib.consts.OPTIONAL_PARAMS.values())
    ours = type(ours)(
        **{
            **{n: getattr(ours, n) for n in (*SM_FIELDS, "sequence_number")},
            "tlvs": tuple(t for t in ours.tlvs if t[0] not in known or t[0] == Tag.MESSAGE_PAYLOAD),
        }
    )
    theirs = _theirs(encode_pdu(ours))
    assert theirs.sequence == ours.sequence_number
    _assert_same_sm(ours, theirs)


# ---------------------------------------------------------------- smpplib -> ours


def test_smpplib_bind_transceiver_decodes() -> None:
    raw = _make("bind_transceiver", 2, system_id="ota", password="secret", system_type="OTA")
    assert decode_pdu(raw) == Bind(
        kind=BindKind.TRANSCEIVER, sequence_number=2, system_id="ota", password="secret", system_type="OTA"
    )


def test_smpplib_bind_transceiver_resp_decodes() -> None:
    raw = _make("bind_transceiver_resp", 2, system_id="SMSCEMU", sc_interface_version=0x34)
    assert decode_pdu(raw) == BindResp(
        kind=BindKind.TRANSCEIVER,
        sequence_number=2,
        system_id="SMSCEMU",
        tlvs=((Tag.SC_INTERFACE_VERSION, b"\x34"),),
    )


def _smpplib_sm_fields(ours: SubmitSm | DeliverSm) -> dict[str, Any]:
    fields = {n: getattr(ours, n) for n in SM_FIELDS}
    if ours.message_payload is not None:
        fields["message_payload"] = ours.message_payload
    return fields


@pytest.mark.parametrize(
    "ours",
    [
        _kannel_submit_sm(),
        _kannel_submit_sm(short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, KANNEL_SM * 3),)),
    ],
    ids=["kannel-short_message", "message_payload"],
)
def test_smpplib_submit_sm_decodes(ours: SubmitSm) -> None:
    raw = _make("submit_sm", ours.sequence_number, **_smpplib_sm_fields(ours))
    assert decode_pdu(raw) == ours


def test_smpplib_deliver_sm_decodes() -> None:
    ours = DeliverSm(
        sequence_number=2,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="4915112345678",
        dest_addr_ton=2,
        dest_addr_npi=1,
        destination_addr="12345",
        esm_class=0x40,
        protocol_id=0x7F,
        data_coding=0xF6,
        short_message=bytes.fromhex("027100000e0a") + bytes(8),
    )
    # smpp-and-peers.md §3 gotcha 3: the SMSC's deliver_sm takes a sequence generator.
    pdu = smpplib.smpp.make_pdu(
        "deliver_sm", client=smpplib.client.SimpleSequenceGenerator(), **_smpplib_sm_fields(ours)
    )
    pdu.sequence = 2
    assert decode_pdu(pdu.generate()) == ours


@pytest.mark.parametrize(
    ("name", "fields", "ours"),
    [
        ("submit_sm_resp", {"message_id": "M1"}, SubmitSmResp(sequence_number=4, message_id="M1")),
        ("deliver_sm_resp", {}, DeliverSmResp(sequence_number=4)),
        ("enquire_link", {}, EnquireLink(sequence_number=4)),
        ("enquire_link_resp", {}, EnquireLinkResp(sequence_number=4)),
        ("unbind", {}, Unbind(sequence_number=4)),
        ("unbind_resp", {}, UnbindResp(sequence_number=4)),
        ("generic_nack", {"status": 3}, GenericNack(sequence_number=4, command_status=3)),
    ],
)
def test_smpplib_small_pdus_decode(name: str, fields: dict[str, Any], ours: Pdu) -> None:
    assert decode_pdu(_make(name, 4, **fields)) == ours


def test_smpplib_error_submit_sm_resp_with_empty_body_decodes() -> None:
    # gotcha 6: smpplib keeps an empty message_id on an error response; SMPP 3.4 omits the body.
    raw = _make("submit_sm_resp", 4, message_id="", status=CommandStatus.ESME_RMSGQFUL)
    assert decode_pdu(raw) == SubmitSmResp(sequence_number=4, command_status=CommandStatus.ESME_RMSGQFUL)
