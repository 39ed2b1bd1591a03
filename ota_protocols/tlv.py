"""BER-TLV and COMPREHENSION-TLV data objects (ETSI TS 101 220 §7, ISO/IEC 8825-1).

Two TLV codings meet on the SIM Toolkit interface:

* **BER-TLV** (TS 101 220 §7.1, ISO/IEC 8825-1 §8.1) wraps a whole ENVELOPE (``D1``), a
  proactive command (``D0``) and the remote-APDU scripting templates of TS 102 226 §5.2
  (``AA``/``AB`` definite, ``AE``/``AF`` indefinite). Tags are 1 to 3 octets; lengths are
  ``00-7F``, ``81 80-FF`` or ``82 0100-FFFF``; the indefinite form ``80 ... 00 00`` is read
  only by :func:`decode_ber_any_length`, because only the templates may use it.
* **COMPREHENSION-TLV** (TS 101 220 §7.1.1) carries the simple data objects inside those
  (``82 02 83 81`` device identities, ``8B`` SMS TPDU, ...). Its one-octet tag holds the
  comprehension-required flag in b8, so ``82`` and ``02`` are the same object: decoders
  strip the flag into :attr:`ComprehensionTlv.comprehension_required`, and callers match
  on the 7-bit tag value. Lengths are limited to 255 here (``00-7F``, ``81 80-FF``).

Glossary: T tag, L length, V value; CR comprehension required (b8 of a one-octet
COMPREHENSION-TLV tag, b16 of the three-octet form); EOC end-of-contents ``00 00``.

Every length is written in its shortest form and decoders refuse longer forms, so
``encode(decode(v)) == v`` for every accepted ``v`` (the one exception: a three-octet
COMPREHENSION-TLV tag that fits one octet is read, then written as one octet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError

MAX_BER_LENGTH = 0xFFFF
MAX_COMPREHENSION_LENGTH = 0xFF

_CR_BIT = 0x80
_CR_BIT_LONG = 0x8000
_LONG_TAG_MARKER = 0x7F
_INDEFINITE_LENGTH = 0x80
_CONSTRUCTED_BIT = 0x20


class BerTag(IntEnum):
    """SIM Toolkit BER-TLV tags (TS 101 220 §7.2, card application toolkit templates)."""

    PROACTIVE_COMMAND = 0xD0
    SMS_PP_DOWNLOAD = 0xD1
    CELL_BROADCAST_DOWNLOAD = 0xD2
    MENU_SELECTION = 0xD3
    CALL_CONTROL = 0xD4
    MO_SMS_CONTROL = 0xD5
    EVENT_DOWNLOAD = 0xD6
    TIMER_EXPIRATION = 0xD7


class ComprehensionTag(IntEnum):
    """COMPREHENSION-TLV tag values without the CR bit (TS 101 220 §7.2, TS 102 223 §9.3)."""

    COMMAND_DETAILS = 0x01
    DEVICE_IDENTITIES = 0x02
    RESULT = 0x03
    DURATION = 0x04
    ALPHA_IDENTIFIER = 0x05
    ADDRESS = 0x06
    CAPABILITY_CONFIGURATION_PARAMETERS = 0x07
    SUBADDRESS = 0x08
    SS_STRING = 0x09
    USSD_STRING = 0x0A
    SMS_TPDU = 0x0B
    CELL_BROADCAST_PAGE = 0x0C
    TEXT_STRING = 0x0D
    TONE = 0x0E
    ITEM = 0x0F
    ITEM_IDENTIFIER = 0x10
    RESPONSE_LENGTH = 0x11
    FILE_LIST = 0x12
    LOCATION_INFORMATION = 0x13
    IMEI = 0x14
    EVENT_LIST = 0x19
    ICON_IDENTIFIER = 0x1E


# --------------------------------------------------------------------------- lengths


def encode_length(n: int, *, limit: int = MAX_BER_LENGTH, field: str = "length") -> bytes:
    """Shortest definite length: ``00-7F``, ``81 xx`` or ``82 xx xx`` (TS 101 220 §7.1)."""
    if n < 0 or n > limit:
        raise EncodeError(field, 0, f"length {n} outside 0..{limit} (TS 101 220 §7.1)")
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    return bytes((0x82, n >> 8, n & 0xFF))


def _decode_definite_length(reader: ByteReader, field: str, limit: int) -> int:
    start = reader.offset
    first = reader.u8(field)
    if first < 0x80:
        return first
    if first == _INDEFINITE_LENGTH:
        raise DecodeError(
            field,
            start,
            "indefinite length 80 not allowed here; only scripting templates use it (TS 102 226 §5.2)",
        )
    if first == 0x81 and limit >= 0x80:
        n = reader.u8(field)
        if n < 0x80:
            raise DecodeError(
                field, start, f"81 {n:02X}: a length below 128 takes one octet (TS 101 220 §7.1)"
            )
        return n
    if first == 0x82 and limit > 0xFF:
        n = reader.uint(2, field)
        if n <= 0xFF:
            raise DecodeError(
                field, start, f"82 {n:04X}: a length below 256 takes at most two octets (TS 101 220 §7.1)"
            )
        return n
    allowed = "00-7F, 81" if limit <= 0xFF else "00-7F, 81, 82"
    raise DecodeError(
        field, start, f"length octet {first:02X} unsupported, expected {allowed} (TS 101 220 §7.1)"
    )


# --------------------------------------------------------------------------- BER-TLV


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV; ``tag`` is the tag octets read as a big-endian integer (``0x9F70``)."""

    tag: int
    value: bytes

    def encode(self) -> bytes:
        return encode_ber(self.tag, self.value)

    @property
    def constructed(self) -> bool:
        return bool(_first_tag_octet(self.tag) & _CONSTRUCTED_BIT)


def _first_tag_octet(tag: int) -> int:
    return tag >> (8 * ((max(tag.bit_length(), 1) - 1) // 8))


def encode_ber_tag(tag: int) -> bytes:
    """Tag octets of ``tag`` after checking the ISO/IEC 8825-1 §8.1.2 structure."""
    if tag <= 0 or tag > 0xFFFFFF:
        raise EncodeError("ber.tag", 0, f"tag {tag:#x} outside 1..FFFFFF (three octets at most)")
    octets = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    problem = _ber_tag_problem(octets)
    if problem:
        raise EncodeError("ber.tag", 0, f"tag {tag:#x}: {problem}")
    return octets


def _ber_tag_problem(octets: bytes) -> str | None:
    first = octets[0]
    if first in (0x00, 0xFF):
        return "first tag octet 00 and FF are invalid (ISO/IEC 7816-4 §5.2.2.1)"
    multi = (first & 0x1F) == 0x1F
    if not multi:
        return None if len(octets) == 1 else "low five bits of the first octet are not 1F, so one octet only"
    if len(octets) == 1:
        return "first octet ends in 1F, subsequent octet(s) missing (ISO/IEC 8825-1 §8.1.2.4)"
    for octet in octets[1:-1]:
        if not octet & 0x80:
            return "a middle tag octet must have b8 = 1 (ISO/IEC 8825-1 §8.1.2.4.2)"
    if octets[-1] & 0x80:
        return "the last tag octet must have b8 = 0 (ISO/IEC 8825-1 §8.1.2.4.2)"
    return None


def _decode_ber_tag(reader: ByteReader) -> int:
    start = reader.offset
    first = reader.u8("ber.tag")
    if first in (0x00, 0xFF):
        # ISO/IEC 7816-4 §5.2.2.1: 00 and FF are not tags; 00 00 is only an EOC.
        raise DecodeError(
            "ber.tag", start, f"first tag octet {first:02X} is invalid (ISO/IEC 7816-4 §5.2.2.1)"
        )
    tag = first
    if (first & 0x1F) != 0x1F:
        return tag
    for index in (1, 2):
        octet = reader.u8("ber.tag")
        tag = (tag << 8) | octet
        if not octet & 0x80:
            return tag
        if index == 2:
            break
    raise DecodeError("ber.tag", start, "tag longer than three octets (TS 101 220 §7.1)")


def encode_ber(tag: int, value: bytes) -> bytes:
    """Definite-length BER-TLV; values above 65535 octets raise :class:`EncodeError`."""
    return encode_ber_tag(tag) + encode_length(len(value), field="ber.length") + bytes(value)


def encode_ber_indefinite(tag: int, value: bytes) -> bytes:
    """``tag 80 value 00 00`` (ISO/IEC 8825-1 §8.1.3.6), as the ``AE``/``AF`` templates use it.

    ``value`` must be a run of definite-length BER-TLVs, so that the EOC can be found again.
    """
    octets = encode_ber_tag(tag)
    if not octets[0] & _CONSTRUCTED_BIT:
        # ISO/IEC 8825-1 §8.1.3.2 a): a primitive encoding has a definite length.
        raise EncodeError(
            "ber.tag", 0, f"tag {tag:#x} is primitive; indefinite length needs a constructed tag"
        )
    try:
        decode_ber_all(value)
    except DecodeError as exc:
        raise EncodeError(
            "ber.value", exc.offset, f"indefinite contents are not definite TLVs: {exc}"
        ) from exc
    return octets + bytes((_INDEFINITE_LENGTH,)) + bytes(value) + b"\x00\x00"


def decode_ber(reader: ByteReader) -> Tlv:
    """Read one definite-length BER-TLV from ``reader``."""
    tag = _decode_ber_tag(reader)
    length = _decode_definite_length(reader, "ber.length", MAX_BER_LENGTH)
    return Tlv(tag, reader.take(length, "ber.value"))


def decode_ber_all(data: bytes, base_offset: int = 0) -> list[Tlv]:
    """Every definite-length BER-TLV in ``data``, which they must fill exactly."""
    reader = ByteReader(data, base_offset=base_offset)
    tlvs: list[Tlv] = []
    while not reader.at_end():
        tlvs.append(decode_ber(reader))
    return tlvs


def decode_ber_any_length(reader: ByteReader) -> tuple[Tlv, bool]:
    """Read one BER-TLV of definite or indefinite length; returns ``(tlv, indefinite)``.

    For the indefinite form the value is the contents between the length octet and the
    EOC. The contents must be definite-length TLVs: TS 102 226 §5.2 puts only primitive
    objects inside ``AE``/``AF``, and refusing nested indefinite forms keeps the reader
    free of recursion, so hostile nesting cannot exhaust the stack.
    """
    start = reader.offset
    tag = _decode_ber_tag(reader)
    if reader.peek_u8("ber.length") != _INDEFINITE_LENGTH:
        length = _decode_definite_length(reader, "ber.length", MAX_BER_LENGTH)
        return Tlv(tag, reader.take(length, "ber.value")), False
    reader.u8("ber.length")
    if not _first_tag_octet(tag) & _CONSTRUCTED_BIT:
        raise DecodeError(
            "ber.length",
            start,
            f"primitive tag {tag:X} with indefinite length (ISO/IEC 8825-1 §8.1.3.2 a)",
        )
    contents = bytearray()
    while True:
        octet_offset = reader.offset
        if reader.peek_u8("ber.eoc") == 0x00:
            reader.u8("ber.eoc")
            second = reader.u8("ber.eoc")
            if second != 0x00:
                raise DecodeError(
                    "ber.eoc",
                    octet_offset,
                    f"expected end-of-contents 00 00, got 00 {second:02X} (ISO/IEC 8825-1 §8.1.5)",
                )
            return Tlv(tag, bytes(contents)), True
        # decode_ber refuses a nested 80 length, which is what bounds the depth.
        inner = decode_ber(reader)
        contents += inner.encode()


# --------------------------------------------------------------------------- COMPREHENSION-TLV


@dataclass(frozen=True, slots=True)
class ComprehensionTlv:
    """One COMPREHENSION-TLV.

    ``tag`` is the tag value without the CR flag: ``0x01-0x7E`` for the one-octet form,
    up to ``0x7FFF`` for the three-octet form ``7F xx xx`` (TS 101 220 §7.1.1).
    """

    tag: int
    value: bytes
    comprehension_required: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.tag <= 0x7FFF:
            raise EncodeError(
                "comprehension.tag", 0, f"tag value {self.tag:#x} outside 01..7FFF (TS 101 220 §7.1.1)"
            )

    def matches(self, tag: int) -> bool:
        """Whether this is the object with one-octet tag ``tag``, CR flag ignored (``82`` == ``02``)."""
        return self.tag == tag & 0x7F

    def encode(self) -> bytes:
        return encode_comprehension(self.tag, self.value, self.comprehension_required)


def encode_comprehension(tag: int, value: bytes, comprehension_required: bool = False) -> bytes:
    """COMPREHENSION-TLV with the shortest tag form.

    ``tag`` is the tag value without the CR flag (``0x0B``, not ``0x8B``); values from
    ``0x7F`` up take the three-octet form. Values above 255 octets raise :class:`EncodeError`.
    """
    if not 0 < tag <= 0x7FFF:
        raise EncodeError("comprehension.tag", 0, f"tag value {tag:#x} outside 01..7FFF (TS 101 220 §7.1.1)")
    if tag < _LONG_TAG_MARKER:
        tag_octets = bytes((tag | (_CR_BIT if comprehension_required else 0),))
    else:
        # TS 101 220 §7.1.1: 7F is not a tag but the escape to the three-octet form.
        word = tag | (_CR_BIT_LONG if comprehension_required else 0)
        tag_octets = bytes((_LONG_TAG_MARKER, word >> 8, word & 0xFF))
    length = encode_length(len(value), limit=MAX_COMPREHENSION_LENGTH, field="comprehension.length")
    return tag_octets + length + bytes(value)


def decode_comprehension(reader: ByteReader) -> ComprehensionTlv:
    """Read one COMPREHENSION-TLV (TS 101 220 §7.1.1)."""
    start = reader.offset
    first = reader.u8("comprehension.tag")
    if first == _LONG_TAG_MARKER:
        word = reader.uint(2, "comprehension.tag")
        tag = word & 0x7FFF
        required = bool(word & _CR_BIT_LONG)
    else:
        tag = first & 0x7F
        required = bool(first & _CR_BIT)
    if tag == 0 or first == 0xFF:
        # TS 101 220 §7.1.1: 00, 80 and FF are not used as tags (00/FF are padding octets).
        raise DecodeError(
            "comprehension.tag", start, f"tag octet {first:02X} is not a valid tag (TS 101 220 §7.1.1)"
        )
    length = _decode_definite_length(reader, "comprehension.length", MAX_COMPREHENSION_LENGTH)
    return ComprehensionTlv(tag, reader.take(length, "comprehension.value"), required)


def decode_comprehension_all(data: bytes, base_offset: int = 0) -> list[ComprehensionTlv]:
    """Every COMPREHENSION-TLV in ``data``, which they must fill exactly."""
    reader = ByteReader(data, base_offset=base_offset)
    tlvs: list[ComprehensionTlv] = []
    while not reader.at_end():
        tlvs.append(decode_comprehension(reader))
    return tlvs


# --------------------------------------------------------------------------- object helpers


def unwrap_ber(
    data: bytes, expected_tag: int, base_offset: int, context: str, clause: str
) -> tuple[bytes, int]:
    """Value, and its absolute offset, of ``data`` holding exactly one BER-TLV ``expected_tag``."""
    reader = ByteReader(data, base_offset=base_offset)
    tlv = decode_ber(reader)
    if tlv.tag != expected_tag:
        raise DecodeError(
            f"{context}.tag", base_offset, f"expected {expected_tag:02X}, got {tlv.tag:X} ({clause})"
        )
    reader.expect_end(context)
    return tlv.value, reader.offset - len(tlv.value)


def short_ber_value_at(data: bytes, tag: int) -> int | None:
    """Where the value starts when ``data`` is exactly one BER-TLV with the one-octet ``tag`` and a
    short length (``00``-``7F`` or ``81 80``-``FF``, TS 101 220 §7.1); None for anything else, valid
    or not, which a general reader then judges. For the fast paths of hot decoders."""
    n = len(data)
    if n < 2 or data[0] != tag:
        return None
    length = data[1]
    pos = 2
    if length >= 0x80:
        if length != 0x81 or n < 3 or data[2] < 0x80:
            return None
        length = data[2]
        pos = 3
    return pos if pos + length == n else None


def short_comprehension_items(data: bytes, pos: int) -> list[tuple[int, bytes]] | None:
    """``(tag without CR, value)`` of the COMPREHENSION-TLVs from ``pos`` to the end of ``data``
    when every one has a one-octet tag and a short length; None otherwise (a three-octet tag, an
    invalid tag octet, a length that runs over), which a general reader then judges."""
    n = len(data)
    items: list[tuple[int, bytes]] = []
    while pos < n:
        tag = data[pos] & 0x7F
        if tag == 0 or tag == _LONG_TAG_MARKER or pos + 1 >= n:  # 00/80/FF invalid, 7F three-octet form
            return None
        size = data[pos + 1]
        pos += 2
        if size >= 0x80:
            if size != 0x81 or pos >= n or data[pos] < 0x80:
                return None
            size = data[pos]
            pos += 1
        end = pos + size
        if end > n:
            return None
        items.append((tag, data[pos:end]))
        pos = end
    return items


class ComprehensionTlvIndex:
    """The COMPREHENSION-TLVs of one CAT object: known tags by value, the others in order.

    A known tag may appear once; a second copy is a :class:`DecodeError`. Offsets are kept
    so that a later check on a value can name where that TLV began.
    """

    __slots__ = ("_context", "_end", "_found", "_offsets", "other")

    def __init__(self, data: bytes, base_offset: int, known: Iterable[int], context: str) -> None:
        self._context = context
        self._found: dict[int, ComprehensionTlv] = {}
        self._offsets: dict[int, int] = {}
        self.other: list[ComprehensionTlv] = []
        known_set = frozenset(int(tag) for tag in known)
        data = bytes(data)
        size = len(data)
        i = 0
        while i < size:
            offset = base_offset + i
            first = data[i]
            stop = i + 2 + data[i + 1] if i + 1 < size else size + 1
            if stop <= size and first & 0x7F and first not in (0x7F, 0xFF) and data[i + 1] < 0x80:
                # The usual form (one-octet tag, one-octet length, inside the data) by indexing;
                # the others through the reader, which also names what is wrong.
                tlv = ComprehensionTlv(first & 0x7F, data[i + 2 : stop], bool(first & _CR_BIT))
                i = stop
            else:
                reader = ByteReader(data[i:], base_offset=offset)
                tlv = decode_comprehension(reader)
                i = reader.offset - base_offset
            if tlv.tag not in known_set:
                self.other.append(tlv)
            elif tlv.tag in self._found:
                raise DecodeError(
                    f"{context}.tlv[{tlv.tag:02X}]",
                    offset,
                    f"tag {tlv.tag:02X} appears again (first at offset {self._offsets[tlv.tag]}), "
                    "expected at most once",
                )
            else:
                self._found[tlv.tag] = tlv
                self._offsets[tlv.tag] = offset
        self._end = base_offset + i

    def get(self, tag: int) -> ComprehensionTlv | None:
        return self._found.get(tag)

    def offset(self, tag: int) -> int:
        """Where TLV ``tag`` began, or the end of the object if it is absent."""
        return self._offsets.get(tag, self._end)

    def require(self, tag: int, name: str, clause: str) -> ComprehensionTlv:
        tlv = self._found.get(tag)
        if tlv is None:
            raise DecodeError(
                f"{self._context}.{name}", self._end, f"mandatory {name} TLV ({tag:02X}) missing ({clause})"
            )
        return tlv
