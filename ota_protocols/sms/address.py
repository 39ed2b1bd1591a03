"""SMS addresses: TP-OA / TP-DA (3GPP TS 23.040 §9.1.2.5) and the CAT Address value (TS 102 223 §8.1).

Glossary: TON type of number, NPI numbering plan identification, BCD binary-coded
decimal (two digits per octet, low nibble first), TP-OA / TP-DA originating /
destination address, CAT card application toolkit.

Two encodings of the same thing travel in this project:

* TPDU form (TS 23.040 §9.1.2.5): ``length | TON/NPI | value``. The length counts
  *useful semi-octets* of the value (digits), not octets; an odd digit count is
  padded with an ``F`` nibble. With TON alphanumeric the value is text in the GSM
  7-bit default alphabet (TS 23.038 §6.2.1), packed, and the length counts the
  semi-octets the packed septets occupy.
* CAT TLV form (TS 102 223 §8.1, Address tag ``86``): the TLV length counts octets
  of ``TON/NPI || BCD``. :func:`encode_cat_address` / :func:`decode_cat_address`
  handle only that value part; the tag and length belong to the TLV layer.

The TON/NPI octet is ``0x80 | TON << 4 | NPI`` (TS 23.040 §9.1.2.5). Every TON
(3 bits) and NPI (4 bits) value has an enum member, reserved ones included, so a
received octet never fails to decode just for naming a reserved plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError

__all__ = [
    "MAX_ADDRESS_SEMI_OCTETS",
    "Address",
    "Npi",
    "Ton",
    "decode_cat_address",
    "encode_cat_address",
]


class Ton(IntEnum):
    """Type of number, bits 7..5 of the TON/NPI octet (TS 23.040 §9.1.2.5)."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED_EXTENSION = 7


class Npi(IntEnum):
    """Numbering plan identification, bits 4..1 of the TON/NPI octet (TS 23.040 §9.1.2.5)."""

    UNKNOWN = 0
    ISDN = 1  # E.164 / E.163
    RESERVED_2 = 2
    DATA = 3  # X.121
    TELEX = 4
    SC_SPECIFIC_5 = 5
    SC_SPECIFIC_6 = 6
    RESERVED_7 = 7
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    RESERVED_11 = 11
    RESERVED_12 = 12
    RESERVED_13 = 13
    RESERVED_14 = 14
    RESERVED_EXTENSION = 15


_TONS = tuple(Ton)  # by value: every 3-bit TON and 4-bit NPI has a member
_NPIS = tuple(Npi)

# TS 23.040 §9.1.2.5: the whole address field is at most 12 octets, so the value is
# at most 10 octets = 20 semi-octets.
MAX_ADDRESS_SEMI_OCTETS = 20

# TS 23.040 §9.1.2.3: semi-octet values 0-9, then "*", "#", "a", "b", "c"; 0xF is the filler.
_BCD_DIGITS = "0123456789*#abc"
_BCD_VALUE = {ch: i for i, ch in enumerate(_BCD_DIGITS)}
_FILLER = 0xF

# TS 23.038 §6.2.1 GSM 7-bit default alphabet, indexed by septet value. 0x1B is the
# escape to the extension table; it is kept as U+001B so any septet string maps to a
# distinct character and back (an alphanumeric address never legitimately uses it).
_GSM7_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
_GSM7_VALUE = {ch: i for i, ch in enumerate(_GSM7_DEFAULT)}


def _ton_npi_octet(ton: Ton, npi: Npi) -> int:
    if not 0 <= ton <= 7 or not 0 <= npi <= 15:
        raise EncodeError("address.ton_npi", 0, f"TON {ton!r} / NPI {npi!r} outside 0..7 / 0..15")
    # TS 23.040 §9.1.2.5: bit 8 of the type-of-address octet is always 1.
    return 0x80 | (int(ton) << 4) | int(npi)


_NIBBLE_SWAP = bytes(((octet & 0x0F) << 4) | (octet >> 4) for octet in range(256))


def _encode_bcd(digits: str, field: str) -> bytes:
    if digits.isascii() and digits.isdigit():
        # Plain digits: hex text is BCD high nibble first, so swap the nibbles; F pads an odd count.
        return bytes.fromhex(digits if len(digits) % 2 == 0 else digits + "f").translate(_NIBBLE_SWAP)
    nibbles: list[int] = []
    for pos, ch in enumerate(digits):
        value = _BCD_VALUE.get(ch)
        if value is None:
            raise EncodeError(
                field, pos, f"character {ch!r} is not a BCD address digit 0-9 * # a b c (TS 23.040 §9.1.2.3)"
            )
        nibbles.append(value)
    if len(nibbles) % 2:
        nibbles.append(_FILLER)
    return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))


# Both digits of an octet, low nibble first; the filler nibble becomes "F", which is no digit.
_BCD_PAIRS = tuple(
    ("F" if low == _FILLER else _BCD_DIGITS[low]) + ("F" if high == _FILLER else _BCD_DIGITS[high])
    for high in range(16)
    for low in range(16)
)


def _decode_bcd(value: bytes, n_digits: int, field: str, base_offset: int) -> str:
    pairs = _BCD_PAIRS
    text = "".join([pairs[octet] for octet in value[: (n_digits + 1) // 2]])[:n_digits]
    if len(text) == n_digits and "F" not in text:
        return text
    return _decode_bcd_checked(value, n_digits, field, base_offset)


def _decode_bcd_checked(value: bytes, n_digits: int, field: str, base_offset: int) -> str:
    """Digit by digit, to name the offending one (a filler inside the digits)."""
    out: list[str] = []
    for i in range(n_digits):
        octet = value[i // 2]
        nibble = (octet >> 4) if i % 2 else (octet & 0x0F)
        if nibble == _FILLER:
            raise DecodeError(
                field,
                base_offset + i // 2,
                f"filler nibble F at digit {i + 1} of {n_digits}, expected a digit "
                "(TS 23.040 §9.1.2.3: F only pads an odd count)",
            )
        out.append(_BCD_DIGITS[nibble])
    # The filler nibble of an odd count is not checked: TS 23.040 §9.1.2.3 asks senders
    # for 1111, and nothing is gained by refusing a sender that wrote something else.
    return "".join(out)


def _pack_septets(septets: list[int]) -> bytes:
    acc = 0
    n_bits = 0
    out = bytearray()
    for septet in septets:
        acc |= septet << n_bits
        n_bits += 7
        while n_bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            n_bits -= 8
    if n_bits:
        out.append(acc & 0xFF)
    return bytes(out)


def _unpack_septets(data: bytes, count: int) -> list[int]:
    value = int.from_bytes(data, "little")
    return [(value >> (7 * i)) & 0x7F for i in range(count)]


def _encode_alphanumeric(text: str, field: str) -> tuple[int, bytes]:
    septets: list[int] = []
    for pos, ch in enumerate(text):
        septet = _GSM7_VALUE.get(ch)
        if septet is None:
            raise EncodeError(
                field, pos, f"character {ch!r} is not in the GSM 7-bit default alphabet (TS 23.038 §6.2.1)"
            )
        septets.append(septet)
    # TS 23.040 §9.1.2.5: the length counts the useful semi-octets the packed septets occupy.
    semi_octets = (len(septets) * 7 + 3) // 4
    return semi_octets, _pack_septets(septets)


@dataclass(frozen=True, slots=True)
class Address:
    """An SMS address. ``digits`` holds BCD digits (``0-9 * # a b c``), without ``+``;
    with ``Ton.ALPHANUMERIC`` it holds the text instead (GSM 7-bit default alphabet)."""

    digits: str
    ton: Ton = Ton.UNKNOWN
    npi: Npi = Npi.ISDN

    def encode(self) -> bytes:
        """The TPDU form: ``semi-octet length | TON/NPI | value`` (TS 23.040 §9.1.2.5)."""
        key = (self.digits, self.ton, self.npi)
        octets = _ENCODED.get(key)
        if octets is None:
            octets = self._encode()
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.clear()
            _ENCODED[key] = octets
        return octets

    def _encode(self) -> bytes:
        if self.ton == Ton.ALPHANUMERIC:
            semi_octets, value = _encode_alphanumeric(self.digits, "address.digits")
        else:
            semi_octets, value = len(self.digits), _encode_bcd(self.digits, "address.digits")
        if semi_octets > MAX_ADDRESS_SEMI_OCTETS:
            raise EncodeError(
                "address.digits",
                0,
                f"{semi_octets} semi-octets, at most {MAX_ADDRESS_SEMI_OCTETS} fit "
                "(TS 23.040 §9.1.2.5: address field at most 12 octets)",
            )
        return bytes((semi_octets, _ton_npi_octet(self.ton, self.npi))) + value

    @classmethod
    def decode(cls, reader: ByteReader) -> Address:
        """Read one TPDU-form address from ``reader`` and leave it after the address."""
        length_offset = reader.offset
        semi_octets = reader.u8("address.length")
        if semi_octets > MAX_ADDRESS_SEMI_OCTETS:
            raise DecodeError(
                "address.length",
                length_offset,
                f"{semi_octets} semi-octets, expected at most {MAX_ADDRESS_SEMI_OCTETS} "
                "(TS 23.040 §9.1.2.5: address field at most 12 octets)",
            )
        ton, npi = _split_ton_npi(reader, "address.ton_npi")
        value_offset = reader.offset
        value = reader.take((semi_octets + 1) // 2, "address.value")
        if ton == Ton.ALPHANUMERIC:
            # TS 23.040 §9.1.2.5: the length counts semi-octets, so floor(4n/7) septets fit.
            text = "".join(_GSM7_DEFAULT[s] for s in _unpack_septets(value, semi_octets * 4 // 7))
            return cls(text, ton, npi)
        return cls(_decode_bcd(value, semi_octets, "address.value", value_offset), ton, npi)


# Address fields -> their TPDU octets: a few addresses (the OTA platform, the fleet's SMSC) are
# encoded for every message, so a small memo saves the BCD work. Bounded; errors are not kept.
_ENCODED: dict[tuple[str, int, int], bytes] = {}
_ENCODED_MAX = 1024


def _split_ton_npi(reader: ByteReader, field: str) -> tuple[Ton, Npi]:
    offset = reader.offset
    octet = reader.u8(field)
    if not octet & 0x80:
        raise DecodeError(
            field, offset, f"TON/NPI octet {octet:#04x} has bit 8 clear, expected 1 (TS 23.040 §9.1.2.5)"
        )
    return _TONS[(octet >> 4) & 0x07], _NPIS[octet & 0x0F]


def encode_cat_address(address: Address) -> bytes:
    """The value of a CAT Address data object: ``TON/NPI || BCD digits`` (TS 102 223 §8.1).

    The tag ``86`` and the octet length are the TLV layer's business.
    """
    if address.ton == Ton.ALPHANUMERIC:
        raise EncodeError(
            "cat_address.ton", 0, "TON alphanumeric has no BCD form (TS 102 223 §8.1: dialling number is BCD)"
        )
    value = _encode_bcd(address.digits, "cat_address.digits")
    if len(value) > 254:
        raise EncodeError("cat_address.digits", 0, f"{len(address.digits)} digits do not fit a TLV length")
    return bytes((_ton_npi_octet(address.ton, address.npi),)) + value


def decode_cat_address(value: bytes, *, base_offset: int = 0) -> Address:
    """Decode the value of a CAT Address data object (TS 102 223 §8.1).

    The digit count follows from the octet count: a final ``F`` high nibble marks an odd
    count. ``base_offset`` is the offset of ``value[0]`` in the enclosing message.
    """
    reader = ByteReader(value, base_offset=base_offset)
    ton, npi = _split_ton_npi(reader, "cat_address.ton_npi")
    if ton == Ton.ALPHANUMERIC:
        raise DecodeError(
            "cat_address.ton_npi",
            base_offset,
            "TON alphanumeric, expected a BCD numbering type (TS 102 223 §8.1: dialling number is BCD)",
        )
    bcd_offset = reader.offset
    bcd = reader.rest()
    n_digits = 2 * len(bcd)
    if bcd and bcd[-1] >> 4 == _FILLER:
        n_digits -= 1
    return Address(_decode_bcd(bcd, n_digits, "cat_address.value", bcd_offset), ton, npi)
