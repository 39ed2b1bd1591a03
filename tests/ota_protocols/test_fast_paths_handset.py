"""The handset path's fast encoders and decoders agree with the general codecs they shortcut.

Claim: for any input, each fast path gives exactly what the general path gives: the same
value or octets, or the same error (type, field, offset, message). Decoders get valid
messages, then the same with octets changed, inserted, dropped or cut (``mutated``), so both
the common shapes and the near misses that must fall back are covered; encoders get fields
across their ranges, including ones that do not fit.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.apdu.envelope import SmsPpDownload, sms_pp_download_t0
from ota_protocols.apdu.proactive import (
    CommandDetails,
    SendShortMessage,
    TerminalResponse,
    decode_proactive,
    send_short_message_common_shape,
    terminal_response_t0,
)
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.concatenation import _segments, split_user_data
from ota_protocols.sms.tpdu import (
    SmsDeliver,
    SmsDeliverReport,
    SmsSubmit,
    ValidityPeriodFormat,
    _encode_udl,
    deliver_pid_dcs,
    encode_report_with_data,
)
from ota_protocols.sms.user_data_header import CPI, RPI, InformationElement, UserDataHeader
from tests.ota_protocols.test_fast_paths import addresses, deliveries, mutated


def _outcome(call, *args):  # type: ignore[no-untyped-def]
    try:
        return ("ok", call(*args))
    except (DecodeError, EncodeError) as exc:
        return ("error", type(exc), exc.field, exc.offset, str(exc))


_VP = {
    ValidityPeriodFormat.NONE: b"",
    ValidityPeriodFormat.RELATIVE: b"\xa7",
    ValidityPeriodFormat.ENHANCED: bytes(7),
}


def _submit(vpf: ValidityPeriodFormat, dcs: int, ud: bytes, da: Address) -> bytes:
    return SmsSubmit(
        tp_mr=0x11, tp_da=da, tp_pid=0x7F, tp_dcs=dcs, tp_ud=ud, tp_udhi=True, tp_vpf=vpf, tp_vp=_VP[vpf]
    ).encode()


submits = st.builds(
    _submit,
    st.sampled_from(list(_VP)),
    st.sampled_from([0xF6, 0x16, 0x04, 0x08]),
    st.binary(max_size=140).map(lambda b: b"\x02\x71\x00" + b[:137]),
    addresses,
)
reports = st.builds(
    lambda fcs, udhi, pid, dcs, ud: SmsDeliverReport(
        tp_fcs=fcs, tp_udhi=udhi and ud is not None, tp_pid=pid, tp_dcs=dcs, tp_ud=ud
    ).encode(),
    st.one_of(st.none(), st.sampled_from([0xD4, 0xD5, 0xFF])),
    st.booleans(),
    st.one_of(st.none(), st.just(0x7F)),
    st.one_of(st.none(), st.sampled_from([0xF6, 0x04, 0x00])),
    st.one_of(st.none(), st.binary(max_size=40).map(lambda b: b"\x02\x71\x00" + b)),
)


@given(mutated(submits))
def test_sms_submit_fast_path_agrees_with_the_general_reader(raw: bytes) -> None:
    assert _outcome(SmsSubmit.decode, raw) == _outcome(SmsSubmit._decode_checked, raw)


@given(mutated(reports), st.booleans())
def test_deliver_report_fast_path_agrees_with_the_general_reader(raw: bytes, rp_error: bool) -> None:
    fast = _outcome(lambda r: SmsDeliverReport.decode(r, rp_error=rp_error), raw)
    assert fast == _outcome(lambda r: SmsDeliverReport._decode_checked(r, rp_error=rp_error), raw)


terminal_responses = st.builds(
    lambda number, kind, result, info: TerminalResponse(
        CommandDetails(number, kind, 0), result, info
    ).encode(),
    st.integers(0, 255),
    st.sampled_from([0x13, 0x02, 0x21]),
    st.sampled_from([0x00, 0x32, 0x35, 0x30, 0x99]),
    st.binary(max_size=3),
)


@given(mutated(terminal_responses))
def test_terminal_response_fast_path_agrees_with_the_general_reader(raw: bytes) -> None:
    general = lambda d: TerminalResponse._decode_checked(d, base_offset=5)  # noqa: E731
    assert _outcome(lambda d: TerminalResponse.decode(d, base_offset=5), raw) == _outcome(general, raw)


def _general_ssm(data: bytes):  # type: ignore[no-untyped-def]
    ssm = SendShortMessage.from_proactive(decode_proactive(data))
    command = decode_proactive(data)
    return command.command_details, ssm.tpdu, ssm.address


send_short_messages = st.builds(
    lambda tpdu, address, alpha, number: SendShortMessage(tpdu, address, alpha, number).encode(),
    st.binary(max_size=200),
    st.one_of(st.none(), st.binary(max_size=12)),
    st.one_of(st.none(), st.binary(max_size=3)),
    st.integers(0, 255),
)


@given(mutated(send_short_messages))
def test_send_short_message_fast_shape_agrees_with_the_general_readers(raw: bytes) -> None:
    fast = send_short_message_common_shape(raw)
    if fast is not None:  # the fast reader only ever answers what the general ones answer
        assert _outcome(_general_ssm, raw) == ("ok", fast)


@given(
    st.binary(max_size=250),
    st.one_of(st.none(), st.binary(max_size=130)),
    st.one_of(st.none(), st.binary(max_size=3)),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_send_short_message_encode_is_the_proactive_command_encoding(
    tpdu: bytes, address: bytes | None, alpha: bytes | None, number: int, qualifier: int
) -> None:
    ssm = SendShortMessage(tpdu, address, alpha, number, qualifier)
    assert _outcome(ssm.encode) == _outcome(lambda: ssm.to_proactive().encode())


@given(
    st.binary(max_size=260),
    st.one_of(st.none(), st.binary(max_size=140)),
    st.sampled_from([0x80, 0xA0, 0x00, 0x100]),
)
def test_sms_pp_download_t0_is_the_envelope_apdu(tpdu: bytes, smsc: bytes | None, cla: int) -> None:
    def general() -> bytes:
        return SmsPpDownload(tpdu, smsc).to_apdu(cla).encode_t0()

    assert _outcome(sms_pp_download_t0, tpdu, smsc, cla) == _outcome(general)


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([0x00, 0x32, 0x35, 0x100, -1]),
    st.binary(max_size=260),
    st.sampled_from([0x80, 0xA0]),
)
def test_terminal_response_t0_is_the_terminal_response_apdu(
    number: int, kind: int, result: int, info: bytes, cla: int
) -> None:
    details = CommandDetails(number, kind, 1)

    def general() -> bytes:
        return TerminalResponse(details, result, info).to_apdu(cla).encode_t0()

    assert _outcome(terminal_response_t0, details, result, info, cla) == _outcome(general)


@given(
    st.one_of(st.none(), st.sampled_from([0xD5, 0x100])),
    st.booleans(),
    st.sampled_from([0x7F, 0x00, 0x100]),
    st.sampled_from([0xF6, 0x00, 0x04, -1]),
    st.binary(max_size=300),
)
def test_report_with_data_is_the_deliver_report_encoding(
    fcs: int | None, udhi: bool, pid: int, dcs: int, ud: bytes
) -> None:
    def general() -> bytes:
        return SmsDeliverReport(tp_fcs=fcs, tp_udhi=udhi, tp_pid=pid, tp_dcs=dcs, tp_ud=ud).encode()

    assert _outcome(encode_report_with_data, fcs, udhi, pid, dcs, ud) == _outcome(general)


def test_submit_fast_path_reads_a_por_submit() -> None:
    raw = _submit(
        ValidityPeriodFormat.RELATIVE, 0xF6, b"\x02\x71\x00abc", Address("12345", Ton.INTERNATIONAL, Npi.ISDN)
    )
    fast = SmsSubmit.decode(raw)
    assert fast == SmsSubmit._decode_checked(raw)
    assert fast.tp_vp == b"\xa7" and fast.tp_ud == b"\x02\x71\x00abc"


def test_the_usual_send_short_message_takes_the_fast_shape() -> None:
    for address in (None, b"\x91\x94\x71"):
        raw = SendShortMessage(
            b"\x41\x00\x05\x91\x21\x43\xf5\x7f\xf6\x03\x02\x71\x00", address, None, 7
        ).encode()
        fast = send_short_message_common_shape(raw)
        assert fast is not None and fast == _general_ssm(raw)


@given(
    st.binary(max_size=700),
    st.sampled_from([(), (CPI,), (RPI, InformationElement(0x70, b"\x01\x02"))]),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.sampled_from([140, 133, 20]),
)
def test_split_user_data_octets_are_the_header_objects_octets(
    payload: bytes, first_ies: tuple[InformationElement, ...], reference: int, ref16: bool, max_ud: int
) -> None:
    reference = reference if ref16 else reference & 0xFF

    def general() -> list[bytes]:
        single = UserDataHeader(first_ies).encode() if first_ies else b""
        if len(single) + len(payload) <= max_ud:
            return [single + payload]
        concat = 6 if ref16 else 5
        first_capacity = max_ud - (concat + UserDataHeader(first_ies).encoded_length)
        later_capacity = max_ud - (1 + concat)
        total = 1 + -(-max(0, len(payload) - first_capacity) // later_capacity)
        return _segments(payload, first_ies, reference, total, first_capacity, later_capacity, ref16)

    fast = _outcome(
        lambda: split_user_data(payload, first_ies=first_ies, reference=reference, max_ud=max_ud, ref16=ref16)
    )
    assert fast == _outcome(general)


@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.binary(max_size=300)), max_size=4))
def test_udh_encode_is_the_elements_encoding(elements: list[tuple[int, bytes]]) -> None:
    header = UserDataHeader(tuple(InformationElement(iei, data) for iei, data in elements))

    def general() -> bytes:
        body = b"".join(ie.encode() for ie in header.elements)
        if len(body) > 0xFF:
            raise EncodeError(
                "udh.udhl", 0, f"{len(body)} octets of IEs exceed UDHL 255 (TS 23.040 §9.2.3.24)"
            )
        return bytes((len(body),)) + body

    assert _outcome(header.encode) == _outcome(general)


def _deliver_encode_general(d: SmsDeliver) -> bytes:
    """SmsDeliver.encode as written before its octet-coded shortcut (every check, in order)."""
    for value, name in ((d.tp_pid, "tp_pid"), (d.tp_dcs, "tp_dcs")):
        if not 0 <= value <= 0xFF:
            raise EncodeError(name, 0, f"{value} does not fit one octet")
    if len(d.tp_scts) != 7:
        raise EncodeError("tp_scts", 0, f"{len(d.tp_scts)} octets, expected 7 (TS 23.040 §9.2.3.11)")
    udl = _encode_udl(d.tp_ud, d.tp_udl, d.tp_dcs, max_octets=140, max_septets=160)
    first = 0x04 * d.tp_mms | 0x08 * d.tp_lp | 0x20 * d.tp_sri | 0x40 * d.tp_udhi | 0x80 * d.tp_rp
    return (
        bytes((first,)) + d.tp_oa.encode() + bytes((d.tp_pid, d.tp_dcs)) + d.tp_scts + bytes((udl,)) + d.tp_ud
    )


@given(
    addresses,
    st.sampled_from([0x7F, 0x00, 0x100, -1]),
    st.sampled_from([0xF6, 0x16, 0x04, 0x00, 0xF2, 0x08, 0x100]),
    st.sampled_from([bytes(7), bytes(6)]),
    st.binary(max_size=150),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 170)),
)
def test_sms_deliver_encode_agrees_with_the_checked_encoding(
    oa: Address, pid: int, dcs: int, scts: bytes, ud: bytes, flags: bool, udl: int | None
) -> None:
    deliver = SmsDeliver(oa, pid, dcs, scts, ud, flags, not flags, flags, flags, not flags, udl)
    assert _outcome(deliver.encode) == _outcome(_deliver_encode_general, deliver)


def _pid_dcs_general(raw: bytes) -> tuple[int, int]:
    deliver = SmsDeliver._decode_checked(raw)
    return deliver.tp_pid, deliver.tp_dcs


@given(mutated(deliveries))
def test_deliver_pid_dcs_is_the_decoders_verdict(raw: bytes) -> None:
    assert _outcome(deliver_pid_dcs, raw) == _outcome(_pid_dcs_general, raw)


def _submit_encode_general(d: SmsSubmit) -> bytes:
    """SmsSubmit.encode as written before its octet-coded shortcut (every check, in order)."""
    for value, name in ((d.tp_mr, "tp_mr"), (d.tp_pid, "tp_pid"), (d.tp_dcs, "tp_dcs")):
        if not 0 <= value <= 0xFF:
            raise EncodeError(name, 0, f"{value} does not fit one octet")
    lengths = {0: 0, 1: 7, 2: 1, 3: 7}
    if d.tp_vpf not in lengths:
        raise EncodeError("tp_vpf", 0, f"TP-VPF {d.tp_vpf!r} outside 0..3 (TS 23.040 §9.2.3.3)")
    vpf = ValidityPeriodFormat(d.tp_vpf)
    if len(d.tp_vp) != lengths[vpf]:
        raise EncodeError(
            "tp_vp", 0, f"{len(d.tp_vp)} octets, TP-VPF {vpf.name} needs {lengths[vpf]} (TS 23.040 §9.2.3.3)"
        )
    udl = _encode_udl(d.tp_ud, d.tp_udl, d.tp_dcs, max_octets=140, max_septets=160)
    first = 0x01 | 0x04 * d.tp_rd | vpf << 3 | 0x20 * d.tp_srr | 0x40 * d.tp_udhi | 0x80 * d.tp_rp
    return (
        bytes((first, d.tp_mr))
        + d.tp_da.encode()
        + bytes((d.tp_pid, d.tp_dcs))
        + d.tp_vp
        + bytes((udl,))
        + d.tp_ud
    )


@given(
    addresses,
    st.sampled_from([0x00, 0x11, 0x100, -1]),
    st.sampled_from([0x7F, 0x00, 0x100]),
    st.sampled_from([0xF6, 0x16, 0x04, 0x00, 0x08, -1]),
    st.sampled_from([*ValidityPeriodFormat, 2, 4]),
    st.sampled_from([b"", b"\xa7", bytes(7)]),
    st.binary(max_size=150),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 170)),
)
def test_sms_submit_encode_agrees_with_the_checked_encoding(
    da: Address, mr: int, pid: int, dcs: int, vpf: int, vp: bytes, ud: bytes, flags: bool, udl: int | None
) -> None:
    submit = SmsSubmit(mr, da, pid, dcs, ud, vpf, vp, flags, not flags, flags, not flags, udl)  # type: ignore[arg-type]
    assert _outcome(submit.encode) == _outcome(_submit_encode_general, submit)
