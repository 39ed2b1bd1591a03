"""The submit_sm / deliver_sm fast path reads the common shape by index; the checked reader stays.

Claim: for any input, :func:`decode_pdu` and the checked reader alone agree exactly: the
same PDU, or the same :class:`MalformedPdu` (status, command_id, sequence_number,
message).  Inputs are PDUs of the common shape (what smpplib, Kannel and our SMSC send:
NULL times, a short_message, no TLVs), PDUs of any shape, and both with octets changed,
inserted, dropped or cut, so that the near misses that must fall back are covered too.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.smpp.pdu_codec import (
    DeliverSm,
    MalformedPdu,
    SubmitSm,
    _decode_pdu_checked,
    _decode_sm_fast,
    decode_pdu,
    encode_pdu,
)

from .strategies import cstr, seq, short_message_pdu, u8


def _outcome(decode, raw):  # type: ignore[no-untyped-def]
    try:
        return ("ok", decode(raw))
    except MalformedPdu as exc:
        return ("error", exc.command_status, exc.command_id, exc.sequence_number, str(exc))


@st.composite
def common_shape(draw: st.DrawFn) -> bytes:
    cls = draw(st.sampled_from([SubmitSm, DeliverSm]))
    pdu = cls(
        sequence_number=draw(seq),
        service_type=draw(st.one_of(st.just(""), cstr(6))),
        source_addr_ton=draw(u8),
        source_addr_npi=draw(u8),
        source_addr=draw(cstr(21)),
        dest_addr_ton=draw(u8),
        dest_addr_npi=draw(u8),
        destination_addr=draw(cstr(21)),
        esm_class=draw(u8),
        protocol_id=draw(u8),
        priority_flag=draw(u8),
        registered_delivery=draw(u8),
        replace_if_present_flag=draw(u8),
        data_coding=draw(u8),
        sm_default_msg_id=draw(u8),
        short_message=draw(st.binary(max_size=254)),
    )
    return encode_pdu(pdu)


any_shape = st.sampled_from([SubmitSm, DeliverSm]).flatmap(short_message_pdu).map(encode_pdu)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "cut", "length"]))
        if kind == "insert" or not data:
            data.insert(draw(st.integers(0, len(data))), draw(st.sampled_from([0x00, 0x2B, 0x52, 0xFF])))
            continue
        if kind == "length":
            # Keep command_length honest so the body rules, not the header, decide.
            data[0:4] = len(data).to_bytes(4, "big")
            continue
        index = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[index] = draw(st.sampled_from([0x00, 0x01, 0x10, 0x2B, 0x52, 0xFE, 0xFF]))
        elif kind == "delete":
            del data[index]
        else:
            del data[index:]
    if draw(st.booleans()):
        data[0:4] = len(data).to_bytes(4, "big")[: min(4, len(data))]
    return bytes(data)


@given(common_shape())
def test_the_common_shape_takes_the_fast_path(raw: bytes) -> None:
    cls = SubmitSm if raw[4:8] == b"\x00\x00\x00\x04" else DeliverSm
    fast = _decode_sm_fast(cls, raw)
    assert fast is not None
    assert fast == _decode_pdu_checked(raw)
    assert encode_pdu(fast) == raw


@given(st.one_of(common_shape(), any_shape, mutated(common_shape()), mutated(any_shape)))
def test_decode_pdu_agrees_with_the_checked_reader(raw: bytes) -> None:
    assert _outcome(decode_pdu, raw) == _outcome(_decode_pdu_checked, raw)


def test_a_bytearray_is_decoded_as_bytes() -> None:
    raw = encode_pdu(SubmitSm(sequence_number=7, destination_addr="4917", short_message=b"\x02\x70"))
    pdu = decode_pdu(bytearray(raw))  # type: ignore[arg-type]
    assert isinstance(pdu, SubmitSm) and type(pdu.short_message) is bytes
    assert pdu == decode_pdu(raw)


def test_every_octet_poked_agrees_with_the_checked_reader() -> None:
    """Exhaustive near misses of one OTA submit_sm: each octet set to each telling value."""
    raw = encode_pdu(
        SubmitSm(
            sequence_number=9,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="12345",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="491700000001",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=bytes.fromhex("027000001115121200000000b00010000000000001"),
        )
    )
    for index in range(len(raw)):
        for value in (0x00, 0x01, 0x15, 0x2B, 0x52, 0xFE, 0xFF):
            poked = bytearray(raw)
            poked[index] = value
            data = bytes(poked)
            assert _outcome(decode_pdu, data) == _outcome(_decode_pdu_checked, data), (index, value)
