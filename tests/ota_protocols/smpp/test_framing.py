"""framing: whole, byte by byte, with trailing data and split at arbitrary points."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.framing import FramingBroken, PduFramer
from ota_protocols.smpp.pdu_codec import EnquireLink, SubmitSm, encode_pdu

from . import strategies as sst

PDUS = [
    encode_pdu(EnquireLink(sequence_number=1)),
    encode_pdu(SubmitSm(sequence_number=2, destination_addr="49", short_message=b"\x02\x70\x00" * 40)),
    encode_pdu(EnquireLink(sequence_number=3)),
]
STREAM = b"".join(PDUS)


def test_fed_whole() -> None:
    framer = PduFramer()
    assert framer.feed(STREAM) == PDUS
    assert framer.buffered == 0


def test_fed_byte_by_byte() -> None:
    framer = PduFramer()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += framer.feed(STREAM[i : i + 1])
    assert out == PDUS


def test_trailing_partial_pdu_is_held_back() -> None:
    framer = PduFramer()
    assert framer.feed(STREAM + PDUS[1][:20]) == PDUS
    assert framer.buffered == 20
    assert framer.feed(PDUS[1][20:]) == [PDUS[1]]


@pytest.mark.parametrize("length", [0, 15, 1000])
def test_impossible_command_length_breaks_the_stream(length: int) -> None:
    framer = PduFramer(max_pdu_length=999)
    bad = length.to_bytes(4, "big") + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x09"
    with pytest.raises(FramingBroken) as info:
        framer.feed(PDUS[0] + bad)
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number == 9
    assert info.value.complete == [PDUS[0]]
    with pytest.raises(FramingBroken):
        framer.feed(PDUS[0])


def test_bad_length_seen_before_the_sequence_number_arrives() -> None:
    with pytest.raises(FramingBroken) as info:
        PduFramer().feed(b"\x00\x00\x00\x05")
    assert info.value.sequence_number is None


@settings(max_examples=200)
@given(st.lists(sst.pdus, min_size=1, max_size=5), st.data())
def test_split_at_arbitrary_points(pdus: list, data: st.DataObject) -> None:
    raws = [encode_pdu(p) for p in pdus]
    stream = b"".join(raws)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = PduFramer()
    out: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[a:b])
    assert out == raws
    assert framer.buffered == 0


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_chunks_never_raise_anything_but_framing_broken(chunks: list[bytes]) -> None:
    framer = PduFramer(max_pdu_length=4096)
    for chunk in chunks:
        try:
            for raw in framer.feed(chunk):
                assert 16 <= len(raw) <= 4096
                assert int.from_bytes(raw[:4], "big") == len(raw)
        except FramingBroken:
            return
