from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import (
    FailureCause,
    SmsDeliver,
    SmsDeliverReport,
    SmsSubmit,
    ValidityPeriodFormat,
    dcs_message_class,
    decode_mo_tpdu,
    decode_mt_tpdu,
    is_7bit_dcs,
    is_8bit_dcs,
    is_sim_data_download,
    is_ucs2_dcs,
    scts_from_datetime,
    scts_to_datetime,
    ud_octet_length,
)
from ota_protocols.sms.user_data_header import CPI, RPI, UserDataHeader
from tests.ota_protocols.sms.strategies import (
    SETTINGS,
    mutated,
    section,
    sms_deliver_reports,
    sms_delivers,
    sms_submits,
)

OTA_CASES = section("pysim_sms_ota_deliver")["cases"]


# --- vectors: pySim OTA SMS-DELIVERs (corrected UDL) --------------------------------------


@pytest.mark.parametrize("case", OTA_CASES, ids=lambda c: c["name"])
def test_pysim_ota_deliver_decodes_and_reencodes_identically(case: dict[str, str]) -> None:
    expect = section("pysim_sms_ota_deliver")["expect"]
    raw = bytes.fromhex(case["tpdu"])
    tpdu = SmsDeliver.decode(raw)
    assert tpdu.tp_oa == Address(expect["tp_oa_digits"], Ton(expect["tp_oa_ton"]), Npi(expect["tp_oa_npi"]))
    assert tpdu.tp_pid == expect["tp_pid"]
    assert tpdu.tp_dcs == expect["tp_dcs"]
    assert tpdu.tp_udhi is expect["tp_udhi"]
    assert tpdu.tp_scts == bytes.fromhex(expect["tp_scts"])
    assert tpdu.tp_ud.startswith(bytes.fromhex(expect["ud_prefix"]))
    assert tpdu.tp_udl is None
    assert is_sim_data_download(tpdu.tp_pid, tpdu.tp_dcs)
    header, packet = tpdu.split_user_data()
    assert header == UserDataHeader((CPI,))
    assert packet == bytes.fromhex(case["encoded_cmd"])
    assert tpdu.scts_datetime() == datetime(2022, 7, 25, tzinfo=UTC)
    assert tpdu.encode() == raw
    assert decode_mt_tpdu(raw) == tpdu


@pytest.mark.parametrize("case", OTA_CASES, ids=lambda c: c["name"])
def test_pysim_wrong_udl_is_reported_with_the_udl_field(case: dict[str, str]) -> None:
    with pytest.raises(DecodeError, match=r"tp_udl.*§9\.2\.3\.16"):
        SmsDeliver.decode(bytes.fromhex(case["tpdu_wrong_udl"]))


@pytest.mark.parametrize("case", OTA_CASES, ids=lambda c: c["name"])
def test_every_strict_prefix_and_any_extension_of_a_tpdu_is_rejected(case: dict[str, str]) -> None:
    raw = bytes.fromhex(case["tpdu"])
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            SmsDeliver.decode(raw[:cut])
    with pytest.raises(DecodeError):
        SmsDeliver.decode(raw + b"\x00")


# --- vectors: pySim codec SMS-SUBMIT / SMS-DELIVER -------------------------------------------


def test_pysim_sms_submit_vector() -> None:
    entry = section("pysim_sms_codec")["sms_submit"]
    raw = bytes.fromhex(entry["inp"])
    tpdu = SmsSubmit.decode(raw)
    assert raw[0] & 0x03 == entry["mti"]
    assert tpdu.tp_rd is entry["rd"]
    assert tpdu.tp_vpf == ValidityPeriodFormat.RELATIVE
    assert tpdu.tp_vp == b"\xa7"
    assert tpdu.tp_rp is entry["rp"]
    assert tpdu.tp_udhi is entry["udhi"]
    assert tpdu.tp_srr is entry["srr"]
    assert tpdu.tp_pid == entry["pid"]
    assert tpdu.tp_dcs == entry["dcs"]
    assert len(tpdu.tp_ud) == entry["udl"]
    assert tpdu.tp_da == Address("61416271170", Ton.INTERNATIONAL, Npi.ISDN)
    header, _ = tpdu.split_user_data()
    assert header is not None and [ie.iei for ie in header.elements] == [0x05, 0x00]
    assert tpdu.encode() == raw
    assert decode_mo_tpdu(raw) == tpdu


def test_pysim_sms_deliver_vector_with_alphanumeric_originator() -> None:
    entry = section("pysim_sms_codec")["sms_deliver"]
    raw = bytes.fromhex(entry["inp"])
    tpdu = SmsDeliver.decode(raw)
    assert raw[0] & 0x03 == entry["mti"]
    assert tpdu.tp_mms is entry["mms"]
    assert tpdu.tp_lp is entry["lp"]
    assert tpdu.tp_rp is entry["rp"]
    assert tpdu.tp_udhi is entry["udhi"]
    assert tpdu.tp_sri is entry["sri"]
    assert tpdu.tp_pid == entry["pid"]
    assert tpdu.tp_dcs == entry["dcs"]
    assert len(tpdu.tp_ud) == entry["udl"]
    assert tpdu.tp_oa == Address("ekit", Ton.ALPHANUMERIC, Npi.UNKNOWN)
    # The sender counted 8 semi-octets for 4 septets (28 bits); we write the useful
    # count, 7, so re-encoding differs in that one length octet only.
    reencoded = tpdu.encode()
    assert reencoded[1] == 7
    assert reencoded[:1] + reencoded[2:] == raw[:1] + raw[2:]


# --- hand-built spec vectors -----------------------------------------------------------------


@pytest.mark.parametrize("case", section("spec_deliver_report")["cases"], ids=lambda c: c["id"])
def test_spec_deliver_report_vector(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["tpdu"])
    ud = case["tp_ud"]
    expected = SmsDeliverReport(
        tp_fcs=case["tp_fcs"],
        tp_udhi=case["tp_udhi"],
        tp_pid=case["tp_pid"],
        tp_dcs=case["tp_dcs"],
        tp_ud=None if ud is None else bytes.fromhex(ud),
    )
    rp_error = bool(case["rp_error"])
    assert SmsDeliverReport.decode(raw, rp_error=rp_error) == expected
    assert decode_mo_tpdu(raw, rp_error=rp_error) == expected
    assert expected.encode() == raw
    assert expected.is_rp_error is rp_error


def test_por_deliver_report_is_40_07_7f_f6() -> None:
    por = bytes.fromhex("027100000e0ab0001100000000000000016132")
    report = SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por)
    assert report.encode()[:5].hex() == "40077ff613"
    assert report.tp_pi == 0x07
    header, rest = report.split_user_data()
    assert header == UserDataHeader((RPI,))
    assert rest == por[3:]
    error = SmsDeliverReport(
        tp_fcs=FailureCause.SIM_DATA_DOWNLOAD_ERROR, tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por
    )
    assert error.encode()[:6].hex() == "40d5077ff613"


def test_deliver_report_skips_tp_pi_extension_octets() -> None:
    # TS 23.040 §9.2.3.27: extension bit set, one more TP-PI octet (reserved content) follows.
    report = SmsDeliverReport.decode(bytes.fromhex("00 81 00 7f".replace(" ", "")))
    assert report == SmsDeliverReport(tp_pid=0x7F)


def test_deliver_report_without_dcs_counts_septets() -> None:
    report = SmsDeliverReport.decode(bytes.fromhex("0004" + "05" + "e8329bfd06"))
    assert report.tp_ud == bytes.fromhex("e8329bfd06")
    assert report.tp_udl == 5


@pytest.mark.parametrize("case", section("spec_sms_submit")["cases"], ids=lambda c: c["id"])
def test_spec_sms_submit_vector(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(str(case["tpdu"]))
    tpdu = SmsSubmit.decode(raw)
    assert tpdu.tp_mr == case["tp_mr"]
    assert tpdu.tp_da.digits == case["tp_da_digits"]
    assert tpdu.tp_vpf == case["tp_vpf"]
    assert tpdu.tp_udhi is case["tp_udhi"]
    assert tpdu.tp_ud == bytes.fromhex(str(case["tp_ud"]))
    assert tpdu.encode() == raw


@pytest.mark.parametrize("case", section("spec_sms_deliver_7bit")["cases"], ids=lambda c: c["id"])
def test_spec_7bit_deliver_keeps_septet_count_and_raw_octets(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(str(case["tpdu"]))
    tpdu = SmsDeliver.decode(raw)
    assert tpdu.tp_udl == case["tp_udl"]
    assert tpdu.tp_ud == bytes.fromhex(str(case["tp_ud"]))
    assert tpdu.encode() == raw


@pytest.mark.parametrize("case", section("spec_scts")["cases"], ids=lambda c: c["hex"])
def test_spec_scts_vector(case: dict[str, str]) -> None:
    moment = datetime.fromisoformat(case["iso"])
    assert scts_to_datetime(bytes.fromhex(case["hex"])) == moment
    assert scts_from_datetime(moment).hex() == case["hex"]


# --- DCS helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dcs", "seven", "eight", "ucs2", "klass"),
    [
        (0xF6, False, True, False, 2),
        (0x16, False, True, False, 2),
        (0x04, False, True, False, None),
        (0xF2, True, False, False, 2),
        (0x12, True, False, False, 2),
        (0x00, True, False, False, None),
        (0x08, False, False, True, None),
        (0x36, False, False, False, 2),  # compressed 8-bit: octets, not "8-bit data"
        (0x56, False, True, False, 2),  # automatic-deletion group
        (0xC0, True, False, False, None),
        (0xE0, False, False, True, None),
        (0x80, True, False, False, None),  # reserved group: assumed GSM 7-bit
    ],
)
def test_dcs_interpretation(dcs: int, seven: bool, eight: bool, ucs2: bool, klass: int | None) -> None:
    assert is_7bit_dcs(dcs) is seven
    assert is_8bit_dcs(dcs) is eight
    assert is_ucs2_dcs(dcs) is ucs2
    assert dcs_message_class(dcs) == klass


@pytest.mark.parametrize(
    ("pid", "dcs", "expected"),
    [(0x7F, 0xF6, True), (0x7F, 0x16, True), (0x7F, 0x04, False), (0x00, 0xF6, False), (0x7F, 0xF5, False)],
)
def test_sim_data_download_needs_pid_7f_and_class_2(pid: int, dcs: int, expected: bool) -> None:
    assert is_sim_data_download(pid, dcs) is expected


def test_udl_octet_length() -> None:
    assert ud_octet_length(160, 0x00) == 140
    assert ud_octet_length(8, 0xF2) == 7
    assert ud_octet_length(140, 0xF6) == 140


# --- encoder errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tpdu",
    [
        SmsDeliver(Address("1"), tp_dcs=0xF6, tp_ud=bytes(141)),
        SmsDeliver(Address("1"), tp_scts=bytes(6)),
        SmsDeliver(Address("1"), tp_pid=256),
        SmsDeliver(Address("1"), tp_dcs=0xF2, tp_ud=bytes(3), tp_udl=5),
        SmsDeliver(Address("1"), tp_dcs=0xF6, tp_ud=bytes(3), tp_udl=4),
        SmsDeliver(Address("1"), tp_dcs=0x00, tp_ud=b"", tp_udl=-1),
        SmsSubmit(0, Address("1"), tp_vpf=ValidityPeriodFormat.RELATIVE),
        SmsSubmit(300, Address("1")),
        SmsDeliverReport(tp_udhi=True),
        SmsDeliverReport(tp_fcs=-1),
    ],
)
def test_values_that_do_not_fit_raise_encode_error(tpdu: SmsDeliver | SmsSubmit | SmsDeliverReport) -> None:
    with pytest.raises(EncodeError):
        tpdu.encode()


def test_scts_encoder_rejects_naive_and_odd_offsets() -> None:
    with pytest.raises(EncodeError):
        scts_from_datetime(datetime(2024, 1, 1))
    with pytest.raises(EncodeError):
        scts_from_datetime(datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10))))
    with pytest.raises(EncodeError):
        scts_from_datetime(datetime(1999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "raw_hex", ["22705200000000" + "00", "22135200000000", "227052000000f0", "2a705200000000"]
)
def test_scts_decoder_rejects_bad_octets(raw_hex: str) -> None:
    with pytest.raises(DecodeError, match="tp_scts"):
        scts_to_datetime(bytes.fromhex(raw_hex))


@pytest.mark.parametrize("raw_hex", ["", "01000881214365877ff600", "0200", "1300"])
def test_mt_dispatch_rejects_unsupported_types(raw_hex: str) -> None:
    with pytest.raises(DecodeError):
        decode_mt_tpdu(bytes.fromhex(raw_hex))


@pytest.mark.parametrize("raw_hex", ["", "02000000", "03000000"])
def test_mo_dispatch_rejects_unsupported_types(raw_hex: str) -> None:
    with pytest.raises(DecodeError):
        decode_mo_tpdu(bytes.fromhex(raw_hex))


def test_reserved_mti_is_read_as_sms_deliver() -> None:
    raw = bytes.fromhex(section("pysim_sms_ota_deliver")["cases"][0]["tpdu"])
    # TS 23.040 §9.2.3.1: an MS treats TP-MTI 11 as SMS-DELIVER.
    assert decode_mt_tpdu(bytes([raw[0] | 0x03]) + raw[1:]) == SmsDeliver.decode(raw)


# --- properties -------------------------------------------------------------------------------


@settings(**SETTINGS)
@given(sms_delivers())
def test_sms_deliver_round_trips(tpdu: SmsDeliver) -> None:
    assert SmsDeliver.decode(tpdu.encode()) == tpdu


@settings(**SETTINGS)
@given(sms_submits())
def test_sms_submit_round_trips(tpdu: SmsSubmit) -> None:
    assert SmsSubmit.decode(tpdu.encode()) == tpdu


@settings(**SETTINGS)
@given(sms_deliver_reports())
def test_sms_deliver_report_round_trips(report: SmsDeliverReport) -> None:
    assert SmsDeliverReport.decode(report.encode(), rp_error=report.is_rp_error) == report


@settings(**SETTINGS)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31, 23, 59, 59),
        timezones=st.integers(-79, 79).map(lambda q: timezone(timedelta(minutes=15 * q))),
    ).map(lambda d: d.replace(microsecond=0))
)
def test_scts_round_trips(moment: datetime) -> None:
    assert scts_to_datetime(scts_from_datetime(moment)) == moment


@settings(**SETTINGS)
@given(st.binary(max_size=180), st.booleans())
def test_tpdu_decoders_are_total(data: bytes, rp_error: bool) -> None:
    for decode in (
        SmsDeliver.decode,
        SmsSubmit.decode,
        decode_mt_tpdu,
        lambda raw: SmsDeliverReport.decode(raw, rp_error=rp_error),
        lambda raw: decode_mo_tpdu(raw, rp_error=rp_error),
        scts_to_datetime,
    ):
        with contextlib.suppress(DecodeError):
            decode(data)


@settings(**SETTINGS)
@given(st.data())
def test_tpdu_decoders_are_total_on_near_misses(data: st.DataObject) -> None:
    tpdu = data.draw(st.one_of(sms_delivers(), sms_submits(), sms_deliver_reports()))
    raw = data.draw(mutated(tpdu.encode()))
    rp_error = isinstance(tpdu, SmsDeliverReport) and tpdu.is_rp_error
    for decode in (
        decode_mt_tpdu,
        lambda raw: decode_mo_tpdu(raw, rp_error=rp_error),
    ):
        try:
            decoded = decode(raw)
        except DecodeError:
            continue
        with contextlib.suppress(DecodeError):
            decoded.split_user_data()
