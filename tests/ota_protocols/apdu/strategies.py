"""Hypothesis strategies for the TLV and APDU codecs (shared by tests/ota_protocols)."""

from __future__ import annotations

from hypothesis import strategies as st

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu
from ota_protocols.tlv import ComprehensionTlv, Tlv

octets = st.integers(0, 0xFF)


@st.composite
def ber_tags(draw: st.DrawFn) -> int:
    """Valid 1- to 3-octet BER tags (ISO/IEC 8825-1 §8.1.2), first octet neither 00 nor FF."""
    size = draw(st.integers(1, 3))
    if size == 1:
        return draw(st.integers(1, 0xFE).filter(lambda t: t & 0x1F != 0x1F))
    first = draw(st.sampled_from([0x1F, 0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xDF]))
    if size == 2:
        return (first << 8) | draw(st.integers(0, 0x7F))
    return (first << 16) | (draw(st.integers(0x80, 0xFF)) << 8) | draw(st.integers(0, 0x7F))


def ber_tlvs(max_value: int = 300) -> st.SearchStrategy[Tlv]:
    return st.builds(Tlv, ber_tags(), st.binary(max_size=max_value))


def comprehension_tlvs(max_value: int = 255) -> st.SearchStrategy[ComprehensionTlv]:
    return st.builds(ComprehensionTlv, st.integers(1, 0x7FFF), st.binary(max_size=max_value), st.booleans())


def short_apdus() -> st.SearchStrategy[CommandApdu]:
    """Command APDUs that the ISO/IEC 7816-4 short form writes and reads back unchanged."""
    return st.builds(
        CommandApdu,
        octets,
        octets,
        octets,
        octets,
        st.binary(max_size=255),
        st.none() | st.integers(1, 256),
    )


@st.composite
def compact_apdus(draw: st.DrawFn, case2: frozenset[int] = CASE2_INSTRUCTIONS) -> CommandApdu:
    """Command APDUs whose T=0 form reads back unchanged under the ``case2`` instruction set."""
    cla, p1, p2 = draw(octets), draw(octets), draw(octets)
    if draw(st.booleans()):
        ins = draw(st.sampled_from(sorted(case2)))
        return CommandApdu(cla, ins, p1, p2, b"", draw(st.integers(1, 256)))
    ins = draw(octets.filter(lambda i: i not in case2))
    return CommandApdu(cla, ins, p1, p2, draw(st.binary(max_size=255)))


def response_apdus(max_data: int = 64) -> st.SearchStrategy[ResponseApdu]:
    return st.builds(ResponseApdu, st.binary(max_size=max_data), st.integers(0, 0xFFFF))


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few octets flipped, inserted, deleted or the tail cut off."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, len(data)))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 0xFF))
        elif action == "insert":
            data.insert(position, draw(octets))
        elif action == "delete" and position < len(data):
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


# Inputs that stress nesting: runs of indefinite and definite template headers.
nested_headers = st.lists(
    st.sampled_from(
        [b"\xae\x80", b"\xaf\x80", b"\xaa\x80", b"\xaa\x7f", b"\xd0\x81", b"\x22\x02", b"\x00\x00"]
    ),
    max_size=200,
).map(b"".join)
