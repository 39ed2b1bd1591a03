"""The TP-User-Data-Header (3GPP TS 23.040 §9.2.3.24) and the information elements OTA uses.

Glossary: UD user data, UDH user data header, UDHL its length, UDHI the first-octet
flag saying the UD starts with a UDH, IE information element, IEI its identifier,
IEDL its data length, CPI / RPI command / response packet identifier (TS 31.115 §4.2).

``UDH = UDHL || (IEI IEDL data)*`` where UDHL counts the octets after itself
(§9.2.3.24). Every IE is kept verbatim, known or not, in received order, so a header
re-encodes to the octets it came from. Interpretation lives in helpers:
:func:`concat_8bit` / :func:`concat_16bit` build the concatenation IEs (§9.2.3.24.1,
§9.2.3.24.8), :func:`parse_concatenation` reads them back, :data:`CPI` / :data:`RPI`
are the empty ``70`` / ``71`` markers of TS 31.115 §4.2 / §4.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError

__all__ = [
    "CPI",
    "RPI",
    "ConcatenationInfo",
    "Iei",
    "InformationElement",
    "UserDataHeader",
    "concat_8bit",
    "concat_16bit",
    "parse_concatenation",
    "split_udh",
]


class Iei(IntEnum):
    """Information element identifiers used here (TS 23.040 §9.2.3.24)."""

    CONCAT_8BIT = 0x00
    CONCAT_16BIT = 0x08
    # TS 23.040 §9.2.3.24 lists 70-7F as "(U)SIM Toolkit Security Headers"; TS 31.115
    # §4.2 / §4.3 give 70 to command packets and 71 to response packets.
    COMMAND_PACKET = 0x70
    RESPONSE_PACKET = 0x71


@dataclass(frozen=True, slots=True)
class InformationElement:
    """One IE: identifier and data, the IEDL being ``len(data)``."""

    iei: int
    data: bytes = b""

    def encode(self) -> bytes:
        if not 0 <= self.iei <= 0xFF:
            raise EncodeError("udh.iei", 0, f"IEI {self.iei} does not fit one octet (TS 23.040 §9.2.3.24)")
        if len(self.data) > 0xFF:
            raise EncodeError(
                "udh.iedl", 1, f"IE {self.iei:#04x} data of {len(self.data)} octets exceeds IEDL 255"
            )
        return bytes((self.iei, len(self.data))) + self.data


CPI = InformationElement(int(Iei.COMMAND_PACKET), b"")
RPI = InformationElement(int(Iei.RESPONSE_PACKET), b"")


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    """A whole UDH; ``encode`` writes UDHL first."""

    elements: tuple[InformationElement, ...] = ()

    def encode(self) -> bytes:
        octets: list[bytes] = []
        for ie in self.elements:
            data = ie.data
            if 0 <= ie.iei <= 0xFF and len(data) <= 0xFF:
                octets += (bytes((ie.iei, len(data))), data)  # InformationElement.encode, inline
            else:
                octets.append(ie.encode())  # raises what is wrong
        body = b"".join(octets)
        if len(body) > 0xFF:
            raise EncodeError(
                "udh.udhl", 0, f"{len(body)} octets of IEs exceed UDHL 255 (TS 23.040 §9.2.3.24)"
            )
        return bytes((len(body),)) + body

    @property
    def encoded_length(self) -> int:
        """Octets of the encoded header, UDHL included."""
        length = 1
        for ie in self.elements:
            length += 2 + len(ie.data)
        return length

    @classmethod
    def decode(cls, reader: ByteReader) -> UserDataHeader:
        """Read UDHL and the IEs it covers, leaving ``reader`` at the first octet after the UDH."""
        udhl_offset = reader.offset
        udhl = reader.u8("udh.udhl")
        if udhl > reader.remaining:
            raise DecodeError(
                "udh.udhl",
                udhl_offset,
                f"UDHL {udhl} but only {reader.remaining} octet(s) of UD follow (TS 23.040 §9.2.3.24)",
            )
        body = ByteReader(reader.take(udhl, "udh"), base_offset=udhl_offset + 1)
        elements: list[InformationElement] = []
        while not body.at_end():
            iei = body.u8("udh.iei")
            iedl_offset = body.offset
            iedl = body.u8("udh.iedl")
            if iedl > body.remaining:
                raise DecodeError(
                    "udh.iedl",
                    iedl_offset,
                    f"IE {iei:#04x} IEDL {iedl} runs past UDHL, {body.remaining} octet(s) left "
                    "(TS 23.040 §9.2.3.24)",
                )
            elements.append(InformationElement(iei, body.take(iedl, "udh.ie_data")))
        return cls(tuple(elements))

    def find(self, iei: int) -> InformationElement | None:
        """The last IE with this identifier: TS 23.040 §9.2.3.24 says the last occurrence
        of a non-repeatable IE is the one to use."""
        for ie in reversed(self.elements):
            if ie.iei == iei:
                return ie
        return None

    def has(self, iei: int) -> bool:
        return self.find(iei) is not None

    def without(self, *ieis: int) -> UserDataHeader:
        """A copy with every IE of the given identifiers removed."""
        return UserDataHeader(tuple([ie for ie in self.elements if ie.iei not in ieis]))


def split_udh(ud: bytes, *, base_offset: int = 0) -> tuple[UserDataHeader, bytes]:
    """Split a TP-UD whose TP-UDHI is set into its header and the octets after it.

    ``base_offset`` is the offset of ``ud[0]`` in the enclosing TPDU, for error messages.
    """
    if type(ud) is bytes:
        # Fast path for the single-SMS OTA headers ``02 70 00`` / ``02 71 00`` (TS 31.115 §4.2, §4.3).
        shared = _SINGLE_IE_HEADERS.get(ud[:3])
        if shared is not None:
            return shared, ud[3:]
        # A well-formed header (every IE inside UDHL, UDHL inside the UD) by indexing; anything else
        # goes to the reader below, which names the field and offset that is wrong.
        end = 1 + ud[0] if ud else 0
        if 0 < end <= len(ud):
            elements: list[InformationElement] = []
            i = 1
            while i + 1 < end:
                stop = i + 2 + ud[i + 1]
                if stop > end:
                    break
                elements.append(InformationElement(ud[i], ud[i + 2 : stop]))
                i = stop
            if i == end:
                return UserDataHeader(tuple(elements)), ud[end:]
    reader = ByteReader(ud, base_offset=base_offset)
    header = UserDataHeader.decode(reader)
    return header, reader.rest()


# What UserDataHeader.decode makes of these three octets; headers are immutable, so shared.
_SINGLE_IE_HEADERS = {
    b"\x02\x70\x00": UserDataHeader((CPI,)),
    b"\x02\x71\x00": UserDataHeader((RPI,)),
}


@dataclass(frozen=True, slots=True)
class ConcatenationInfo:
    """The content of a concatenation IE; ``seq`` is 1-based."""

    reference: int
    total: int
    seq: int
    ref16: bool = False


def concat_8bit(reference: int, total: int, seq: int) -> InformationElement:
    """IEI 00: ``ref total seq``, one octet each (TS 23.040 §9.2.3.24.1)."""
    _check_concat_values(reference, total, seq, 0xFF)
    return InformationElement(int(Iei.CONCAT_8BIT), bytes((reference, total, seq)))


def concat_16bit(reference: int, total: int, seq: int) -> InformationElement:
    """IEI 08: ``refH refL total seq`` (TS 23.040 §9.2.3.24.8)."""
    _check_concat_values(reference, total, seq, 0xFFFF)
    return InformationElement(int(Iei.CONCAT_16BIT), reference.to_bytes(2, "big") + bytes((total, seq)))


def _check_concat_values(reference: int, total: int, seq: int, max_reference: int) -> None:
    if not 0 <= reference <= max_reference:
        raise EncodeError("concat.reference", 0, f"reference {reference} outside 0..{max_reference}")
    # TS 23.040 §9.2.3.24.1: total and seq are 1..255 and seq never exceeds total.
    if not 1 <= total <= 0xFF:
        raise EncodeError("concat.total", 0, f"total {total} outside 1..255 (TS 23.040 §9.2.3.24.1)")
    if not 1 <= seq <= total:
        raise EncodeError("concat.seq", 0, f"seq {seq} outside 1..{total} (TS 23.040 §9.2.3.24.1)")


_CONCAT_8BIT, _CONCAT_16BIT = int(Iei.CONCAT_8BIT), int(Iei.CONCAT_16BIT)


def parse_concatenation(header: UserDataHeader, *, base_offset: int = 0) -> ConcatenationInfo | None:
    """The concatenation IE of ``header`` (8- or 16-bit reference), or None if it has none.

    Checks the IE length and that ``1 <= seq <= total``. TS 23.040 §9.2.3.24.1 tells a
    receiver to ignore an IE with a zero or out-of-range number; we raise instead so
    the caller decides, because a silently unconcatenated fragment is never useful to OTA.
    """
    found: InformationElement | None = None
    for ie in header.elements:
        if ie.iei == _CONCAT_8BIT or ie.iei == _CONCAT_16BIT:
            found = ie  # TS 23.040 §9.2.3.24: the last occurrence wins
    if found is None:
        return None
    ref16 = found.iei == _CONCAT_16BIT
    expected = 4 if ref16 else 3
    clause = "TS 23.040 §9.2.3.24.8" if ref16 else "TS 23.040 §9.2.3.24.1"
    if len(found.data) != expected:
        raise DecodeError(
            "udh.concat",
            base_offset,
            f"IE {found.iei:#04x} IEDL {len(found.data)}, expected {expected} ({clause})",
        )
    reference = int.from_bytes(found.data[:-2], "big")
    total, seq = found.data[-2], found.data[-1]
    if total == 0:
        raise DecodeError("udh.concat.total", base_offset, f"total 0, expected 1..255 ({clause})")
    if not 1 <= seq <= total:
        raise DecodeError("udh.concat.seq", base_offset, f"seq {seq}, expected 1..{total} ({clause})")
    return ConcatenationInfo(reference, total, seq, ref16)
