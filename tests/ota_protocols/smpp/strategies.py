"""Hypothesis strategies for SMPP PDUs (valid by construction, so they round-trip)."""

from __future__ import annotations

from hypothesis import strategies as st

from ota_protocols.smpp.pdu_codec import (
    Bind,
    BindKind,
    BindResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    UnknownPdu,
)

u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)
seq = st.integers(1, 0x7FFFFFFF)
status = st.integers(0, 0xFFFFFFFF)

_FIXED = {
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.MESSAGE_STATE: 1,
}


def cstr(max_length: int) -> st.SearchStrategy[str]:
    """A latin-1 C-string value fitting ``max_length`` octets with its NUL."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_length - 1)


smpp_time = st.one_of(
    st.just(""),
    st.builds(
        lambda digits, p: digits + p,
        st.text("0123456789", min_size=15, max_size=15),
        st.sampled_from("+-R"),
    ),
)

free_tlv = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda t: t not in _FIXED and t != Tag.MESSAGE_PAYLOAD),
    st.binary(max_size=40),
)
fixed_tlv = st.sampled_from(sorted(_FIXED.items())).flatmap(
    lambda item: st.tuples(st.just(int(item[0])), st.binary(min_size=item[1], max_size=item[1]))
)
tlvs = st.lists(st.one_of(free_tlv, fixed_tlv), max_size=4).map(tuple)


@st.composite
def short_message_pdu(draw: st.DrawFn, cls: type[SubmitSm] | type[DeliverSm]) -> SubmitSm | DeliverSm:
    extra = draw(tlvs)
    if draw(st.booleans()):
        sm = draw(st.binary(max_size=254))
    else:
        sm = b""
        extra = ((int(Tag.MESSAGE_PAYLOAD), draw(st.binary(max_size=600))), *extra)
    return cls(
        sequence_number=draw(seq),
        service_type=draw(cstr(6)),
        source_addr_ton=draw(u8),
        source_addr_npi=draw(u8),
        source_addr=draw(cstr(21)),
        dest_addr_ton=draw(u8),
        dest_addr_npi=draw(u8),
        destination_addr=draw(cstr(21)),
        esm_class=draw(u8),
        protocol_id=draw(u8),
        priority_flag=draw(u8),
        schedule_delivery_time=draw(smpp_time),
        validity_period=draw(smpp_time),
        registered_delivery=draw(u8),
        replace_if_present_flag=draw(u8),
        data_coding=draw(u8),
        sm_default_msg_id=draw(u8),
        short_message=sm,
        tlvs=extra,
    )


binds = st.builds(
    Bind,
    kind=st.sampled_from(BindKind),
    sequence_number=seq,
    system_id=cstr(16),
    password=cstr(9),
    system_type=cstr(13),
    interface_version=u8,
    addr_ton=u8,
    addr_npi=u8,
    address_range=cstr(41),
)
bind_resps = st.builds(
    BindResp,
    kind=st.sampled_from(BindKind),
    sequence_number=seq,
    command_status=status,
    system_id=cstr(16),
    tlvs=tlvs,
)
submit_sm_resps = st.one_of(
    st.builds(SubmitSmResp, sequence_number=seq, command_status=st.just(0), message_id=cstr(65), tlvs=tlvs),
    st.builds(SubmitSmResp, sequence_number=seq, command_status=st.integers(1, 0xFFFFFFFF)),
)
deliver_sm_resps = st.builds(
    DeliverSmResp, sequence_number=seq, command_status=status, message_id=cstr(65), tlvs=tlvs
)
header_only = st.one_of(
    st.builds(EnquireLink, sequence_number=seq),
    st.builds(EnquireLinkResp, sequence_number=seq, command_status=status),
    st.builds(Unbind, sequence_number=seq),
    st.builds(UnbindResp, sequence_number=seq, command_status=status),
    st.builds(GenericNack, sequence_number=seq, command_status=status),
)
_MODELLED = {1, 2, 4, 5, 6, 9, 0x15}
unknown_pdus = st.builds(
    UnknownPdu,
    command_id=st.sampled_from([3, 7, 8, 0x0B, 0x21, 0x102, 0x103, 0x80000003, 0x80000103, 0x12345]),
    command_status=status,
    sequence_number=seq,
    body=st.binary(max_size=40),
)

pdus = st.one_of(
    binds,
    bind_resps,
    short_message_pdu(SubmitSm),
    short_message_pdu(DeliverSm),
    submit_sm_resps,
    deliver_sm_resps,
    header_only,
    unknown_pdus,
)
