"""The hot decoders' fast paths read the common shapes by index; the general readers stay.

Claim: for any input, the public decoder and its general reader agree exactly: the same
value, or the same error (type, field, offset, message). Inputs are valid OTA messages,
then the same with octets changed, inserted, dropped or cut, so that both the common
shapes and the near misses that must fall back are covered.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsDeliver
from ota_protocols.sms.user_data_header import UserDataHeader, split_udh

OA = Address("12345", Ton.UNKNOWN, Npi.ISDN)
SMSC = bytes.fromhex("91947106004034")


def _outcome(decode, raw):  # type: ignore[no-untyped-def]
    try:
        return ("ok", decode(raw))
    except DecodeError as exc:
        return ("error", type(exc), exc.field, exc.offset, str(exc))


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if kind == "insert" or not data:
            data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
            continue
        index = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[index] = draw(st.sampled_from([0x00, 0x02, 0x06, 0x0B, 0x70, 0x7F, 0x80, 0x81, 0x83, 0xFF]))
        elif kind == "delete":
            del data[index]
        else:
            del data[index:]
    return bytes(data)


def _deliver(dcs: int, ud: bytes, oa: Address = OA) -> bytes:
    return SmsDeliver(tp_oa=oa, tp_pid=0x7F, tp_dcs=dcs, tp_ud=ud, tp_udhi=True).encode()


addresses = st.builds(
    Address,
    st.text("0123456789*#abc", max_size=20),
    st.sampled_from(list(Ton)).filter(lambda t: t is not Ton.ALPHANUMERIC),
    st.sampled_from(list(Npi)),
)
deliveries = st.builds(
    _deliver,
    st.sampled_from([0xF6, 0x16, 0x04, 0xF2, 0x08]),
    st.binary(max_size=140).map(lambda b: b"\x02\x70\x00" + b[:137]),
    addresses,
)
envelopes = st.builds(
    lambda tpdu, smsc: SmsPpDownload(tpdu, smsc).encode(),
    deliveries,
    st.one_of(st.none(), st.just(SMSC), st.binary(min_size=1, max_size=12)),
)


@given(mutated(deliveries))
def test_sms_deliver_fast_path_agrees_with_the_general_reader(raw: bytes) -> None:
    assert _outcome(SmsDeliver.decode, raw) == _outcome(SmsDeliver._decode_checked, raw)


@given(mutated(envelopes))
def test_sms_pp_download_fast_path_agrees_with_the_general_reader(raw: bytes) -> None:
    assert _outcome(lambda d: SmsPpDownload.decode(d, base_offset=5), raw) == _outcome(
        lambda d: SmsPpDownload._decode_checked(d, base_offset=5), raw
    )


def _split_general(ud: bytes) -> tuple[UserDataHeader, bytes]:
    reader = ByteReader(ud)
    return UserDataHeader.decode(reader), reader.rest()


@given(mutated(st.binary(max_size=6).map(lambda b: b"\x02\x70\x00" + b)))
def test_split_udh_fast_path_agrees_with_the_general_reader(ud: bytes) -> None:
    assert _outcome(split_udh, ud) == _outcome(_split_general, ud)
