"""Hypothesis strategies and the vector loader shared by the SMS codec tests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import (
    SmsDeliver,
    SmsDeliverReport,
    SmsSubmit,
    ValidityPeriodFormat,
    is_7bit_dcs,
)
from ota_protocols.sms.user_data_header import InformationElement, UserDataHeader

VECTORS_PATH = Path(__file__).resolve().parents[2] / "vectors" / "sms_vectors.json"

GSM7_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

SETTINGS = {"max_examples": 150, "deadline": None}


@cache
def vectors() -> dict[str, Any]:
    with VECTORS_PATH.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def section(name: str) -> Any:
    return vectors()[name]


bcd_addresses = st.builds(
    Address,
    digits=st.text(alphabet="0123456789*#abc", max_size=20),
    ton=st.sampled_from([t for t in Ton if t != Ton.ALPHANUMERIC]),
    npi=st.sampled_from(list(Npi)),
)
alphanumeric_addresses = st.builds(
    Address,
    digits=st.text(alphabet=GSM7_DEFAULT, max_size=11),
    ton=st.just(Ton.ALPHANUMERIC),
    npi=st.sampled_from(list(Npi)),
)
addresses = st.one_of(bcd_addresses, alphanumeric_addresses)

information_elements = st.builds(InformationElement, iei=st.integers(0, 255), data=st.binary(max_size=12))
user_data_headers = st.builds(UserDataHeader, elements=st.lists(information_elements, max_size=6).map(tuple))

octets = st.integers(0, 255)
scts = st.binary(min_size=7, max_size=7)


@st.composite
def dcs_and_user_data(
    draw: st.DrawFn, *, max_octets: int = 140, max_septets: int = 160
) -> tuple[int, bytes, int | None]:
    """(dcs, ud, tp_udl) in canonical form: tp_udl only for 7-bit coding."""
    dcs = draw(st.one_of(st.sampled_from([0xF6, 0x16, 0x04, 0xF2, 0x00, 0x08, 0x12, 0xF5]), octets))
    if is_7bit_dcs(dcs):
        septets = draw(st.integers(0, max_septets))
        ud = draw(st.binary(min_size=(septets * 7 + 7) // 8, max_size=(septets * 7 + 7) // 8))
        return dcs, ud, septets
    return dcs, draw(st.binary(max_size=max_octets)), None


@st.composite
def sms_delivers(draw: st.DrawFn) -> SmsDeliver:
    dcs, ud, udl = draw(dcs_and_user_data())
    return SmsDeliver(
        tp_oa=draw(addresses),
        tp_pid=draw(octets),
        tp_dcs=dcs,
        tp_scts=draw(scts),
        tp_ud=ud,
        tp_mms=draw(st.booleans()),
        tp_rp=draw(st.booleans()),
        tp_udhi=draw(st.booleans()),
        tp_sri=draw(st.booleans()),
        tp_lp=draw(st.booleans()),
        tp_udl=udl,
    )


@st.composite
def sms_submits(draw: st.DrawFn) -> SmsSubmit:
    dcs, ud, udl = draw(dcs_and_user_data())
    vpf = draw(st.sampled_from(list(ValidityPeriodFormat)))
    vp_length = {0: 0, 1: 7, 2: 1, 3: 7}[vpf]
    return SmsSubmit(
        tp_mr=draw(octets),
        tp_da=draw(addresses),
        tp_pid=draw(octets),
        tp_dcs=dcs,
        tp_ud=ud,
        tp_vpf=vpf,
        tp_vp=draw(st.binary(min_size=vp_length, max_size=vp_length)),
        tp_rd=draw(st.booleans()),
        tp_srr=draw(st.booleans()),
        tp_udhi=draw(st.booleans()),
        tp_rp=draw(st.booleans()),
        tp_udl=udl,
    )


@st.composite
def sms_deliver_reports(draw: st.DrawFn) -> SmsDeliverReport:
    tp_fcs = draw(st.one_of(st.none(), octets))
    tp_pid = draw(st.one_of(st.none(), octets))
    tp_dcs = draw(st.one_of(st.none(), octets))
    if draw(st.booleans()):
        return SmsDeliverReport(tp_fcs=tp_fcs, tp_pid=tp_pid, tp_dcs=tp_dcs)
    dcs, ud, udl = draw(dcs_and_user_data(max_octets=255, max_septets=255))
    if tp_dcs is None:
        # An absent TP-DCS means 00, GSM 7-bit: TP-UDL counts septets.
        septets = draw(st.integers(0, 255))
        size = (septets * 7 + 7) // 8
        ud, udl = draw(st.binary(min_size=size, max_size=size)), septets
    else:
        tp_dcs = dcs
    return SmsDeliverReport(
        tp_fcs=tp_fcs, tp_udhi=draw(st.booleans()), tp_pid=tp_pid, tp_dcs=tp_dcs, tp_ud=ud, tp_udl=udl
    )


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few octets overwritten, inserted or cut: near-miss input for totality."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "set" and pos < len(data):
            data[pos] = draw(octets)
        elif op == "insert":
            data.insert(pos, draw(octets))
        elif op == "delete" and pos < len(data):
            del data[pos]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)
