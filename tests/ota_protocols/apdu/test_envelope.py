"""SMS-PP DOWNLOAD ENVELOPE (TS 31.111 §7.1.1)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.envelope import SmsPpDownload, decode_envelope
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.tlv import BerTag, ComprehensionTag, ComprehensionTlv
from tests.ota_protocols.apdu.strategies import comprehension_tlvs, mutated, nested_headers

FAST = settings(max_examples=150, deadline=None)
ADDRESS = bytes.fromhex("91 94 71 06 00 40 34")


def test_long_tpdu_uses_two_octet_lengths() -> None:
    tpdu = bytes(range(140))
    data = SmsPpDownload(tpdu, ADDRESS).encode()
    # TS 31.111 §7.1.1: 128-255 octets take the 81 xx length form, in D1 and in 8B.
    assert data[:3] == bytes((0xD1, 0x81, 4 + 9 + 3 + 140))
    assert data[3 + 4 + 9 : 3 + 4 + 9 + 3] == bytes((0x8B, 0x81, 140))
    assert SmsPpDownload.decode(data) == SmsPpDownload(tpdu, ADDRESS)


def test_envelope_too_big_for_a_short_apdu_is_refused() -> None:
    with pytest.raises(EncodeError, match="Lc"):
        SmsPpDownload(bytes(250), ADDRESS).to_apdu()


def test_wrong_device_identities_are_refused() -> None:
    raw = bytes.fromhex("D1 07 82 02 82 81 8B 01 40")
    with pytest.raises(DecodeError, match="expected 83 -> 81") as excinfo:
        SmsPpDownload.decode(raw, base_offset=5)
    assert excinfo.value.offset == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("D0 07 82 02 83 81 8B 01 40", "expected D1"),
        ("D1 04 82 02 83 81", "sms_tpdu"),
        ("D1 06 82 02 83 81 8B 00", "empty SMS TPDU"),
        ("D1 03 8B 01 40", "device_identities"),
        ("D1 09 82 02 83 81 86 00 8B 01 40", "empty address"),
        ("D1 0A 82 02 83 81 8B 01 40 0B 01 40", "again"),
        ("D1 08 82 03 83 81 00 8B 01 40", "expected 2"),
    ],
)
def test_malformed_sms_pp_download_is_refused(raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        SmsPpDownload.decode(bytes.fromhex(raw))


def test_from_apdu_checks_the_instruction() -> None:
    apdu = CommandApdu(0x80, 0xC3, 0, 0, bytes.fromhex("D1 07 82 02 83 81 8B 01 40"))
    with pytest.raises(DecodeError, match="C2"):
        SmsPpDownload.from_apdu(apdu)
    with pytest.raises(DecodeError, match="00 00"):
        SmsPpDownload.from_apdu(CommandApdu(0x80, 0xC2, 1, 0, apdu.data))


def test_unknown_tlvs_are_kept_for_the_card_to_judge() -> None:
    raw = bytes.fromhex("D1 0A 82 02 83 81 8B 01 40 9E 01 00")
    decoded = SmsPpDownload.decode(raw)
    assert decoded.other_tlvs == (ComprehensionTlv(0x1E, b"\x00", True),)
    assert decoded.encode() == raw


def test_generic_decode_returns_tag_and_tlvs_in_order() -> None:
    envelope = decode_envelope(bytes.fromhex("D6 07 99 01 02 82 02 82 81"))
    assert envelope.tag == BerTag.EVENT_DOWNLOAD
    assert [tlv.tag for tlv in envelope.tlvs] == [0x19, ComprehensionTag.DEVICE_IDENTITIES]
    assert envelope.find(0x82) == ComprehensionTlv(0x02, b"\x82\x81", True)
    assert envelope.find(0x0B) is None


sms_pp = st.builds(
    SmsPpDownload,
    st.binary(min_size=1, max_size=180),
    st.none() | st.binary(min_size=1, max_size=12),
    st.lists(comprehension_tlvs(8).filter(lambda t: t.tag not in (0x02, 0x06, 0x0B)), max_size=2).map(tuple),
)


@FAST
@given(sms_pp, st.sampled_from([0x80, 0xA0]))
def test_round_trip_through_the_apdu(download: SmsPpDownload, cla: int) -> None:
    if len(download.encode()) > 255:
        return
    apdu = download.to_apdu(cla)
    assert (apdu.le is None) == (cla == 0xA0)
    assert SmsPpDownload.from_apdu(CommandApdu.decode(apdu.encode())) == download


@FAST
@given(st.binary(max_size=300) | nested_headers | mutated(sms_pp.map(lambda d: d.encode())))
def test_decoders_are_total(data: bytes) -> None:
    for decode in (SmsPpDownload.decode, decode_envelope):
        with contextlib.suppress(DecodeError):
            decode(data)
