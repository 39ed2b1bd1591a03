"""Response packet (Proof of Receipt, PoR): ETSI TS 102 225 §5.2, 3GPP TS 31.115 §4.3.

Glossary: RPL response packet length, RHL response header length, RPI response
packet identifier (UDH IEI 71), PoR proof of receipt.

Layout of the TP-UD of the SMS-DELIVER-REPORT or SMS-SUBMIT::

    02 71 00 | RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) status(1) RC/CC/DS(n) data padding
                                      <----------- ciphered when SPI2 b5 = 1 ---------->

Rules enforced here (protocols.md §6):

* RHL = 10 + n counts TAR .. RC/CC/DS; RPL counts RHL .. end, padding included.
* The PoR RC/CC/DS input **includes** the UDH ``02 71 00``, then RPL .. status,
  then data and padding (TS 31.115 §4.3: with RPL and RHL they make the 13-octet
  header up to 16). The command checksum excludes its UDH: see command_packet.py.
* The PoR is secured with the command's KIc / KID as SPI2 asks.
* TS 102 225 §5.2: status 06 is sent unciphered and without RC/CC/DS; real cards
  do the same for other errors. A decoder therefore reads a PoR whatever SPI2
  said: an RHL of 0A means "no checksum", and a part after TAR that is not a
  multiple of the block size means "not ciphered" (protocols.md §6.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError, SecurityRejection
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import Spi

RPI_UDH = b"\x02\x71\x00"  # UDHL 02, IEI 71 (RPI), IEDL 00
MIN_RHL = 0x0A  # TAR(3) CNTR(5) PCNTR(1) status(1)


class ResponseStatus(IntEnum):
    """PoR status codes, TS 102 225 §5.2 table and TS 31.115 §4.3 (0B, 0C)."""

    POR_OK = 0x00
    RC_CC_DS_FAILED = 0x01
    CNTR_LOW = 0x02
    CNTR_HIGH = 0x03
    CNTR_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    UNIDENTIFIED_SECURITY_ERROR = 0x06
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME_NEEDED = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY_LEVEL = 0x0A
    ACTUAL_RESPONSE_BY_SMS_SUBMIT = 0x0B
    ACTUAL_RESPONSE_BY_USSD = 0x0C

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ResponseStatus.POR_OK: "PoR OK",
    ResponseStatus.RC_CC_DS_FAILED: "RC/CC/DS failed",
    ResponseStatus.CNTR_LOW: "CNTR low",
    ResponseStatus.CNTR_HIGH: "CNTR high",
    ResponseStatus.CNTR_BLOCKED: "CNTR blocked",
    ResponseStatus.CIPHERING_ERROR: "ciphering error",
    ResponseStatus.UNIDENTIFIED_SECURITY_ERROR: "unidentified security error",
    ResponseStatus.INSUFFICIENT_MEMORY: "insufficient memory to process incoming message",
    ResponseStatus.MORE_TIME_NEEDED: "more time needed",
    ResponseStatus.TAR_UNKNOWN: "TAR unknown",
    ResponseStatus.INSUFFICIENT_SECURITY_LEVEL: "insufficient security level",
    ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT: "actual response packet sent by SMS-SUBMIT",
    ResponseStatus.ACTUAL_RESPONSE_BY_USSD: "actual response packet sent by USSD",
}


def status_meaning(status: int) -> str:
    try:
        return ResponseStatus(status).meaning
    except ValueError:
        return "proprietary" if 0xC0 <= status <= 0xFE else "RFU"


@dataclass(frozen=True, slots=True)
class ResponsePacket:
    tar: bytes
    cntr: int
    status: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.tar) != 3:
            raise EncodeError("tar", 6, f"TAR must be 3 octets, got {len(self.tar)}")
        if not 0 <= self.cntr < 1 << 40:
            raise EncodeError("cntr", 9, f"CNTR {self.cntr} does not fit 5 octets")
        if not 0 <= self.status <= 0xFF:
            raise EncodeError("status", 15, f"status {self.status} does not fit one octet")


@dataclass(frozen=True, slots=True)
class DecodedResponse:
    rpl: int
    rhl: int
    tar: bytes
    cntr: int
    pcntr: int
    status: int
    checksum: bytes
    checksum_valid: bool | None  # None: no checksum present
    ciphered: bool
    data: bytes  # padding removed


def por_keys(
    spi: Spi, kic: int, kid: int, keys: PacketKeys, *, checksum_length: int | None = None
) -> tuple[CipherKey | None, ChecksumKey | None]:
    """The keys SPI2 asks the PoR to be secured with (the command's KIc / KID)."""
    cipher = keys.cipher(kic) if spi.por_ciphered else None
    checksum = keys.checksum(kid, spi.por_integrity, checksum_length)
    return cipher, checksum


def seal_response(
    response: ResponsePacket,
    cipher_key: CipherKey | None,
    checksum_key: ChecksumKey | None,
    *,
    padding_byte: int = 0x00,
) -> bytes:
    """TP-UD of a single-SMS PoR: ``02 71 00`` + RPL .. end."""
    n = checksum_key.length if checksum_key is not None else 0
    rhl = MIN_RHL + n
    data = response.data
    if cipher_key is not None:
        pcntr = -(7 + n + len(data)) % cipher_key.block_size
        data += bytes((padding_byte,)) * pcntr
    else:
        pcntr = 0
    rpl = 1 + rhl + len(data)
    if rpl > 0xFFFF:
        raise EncodeError("rpl", 3, f"response of {rpl} octets exceeds the 2-octet RPL")
    head = RPI_UDH + rpl.to_bytes(2, "big") + bytes((rhl,)) + response.tar
    tail = response.cntr.to_bytes(5, "big") + bytes((pcntr, response.status))
    checksum = checksum_key.compute(head + tail + data) if checksum_key is not None else b""
    secured = tail + checksum + data
    if cipher_key is not None:
        secured = cipher_key.encrypt(secured)
    return head + secured


def encode_response_packet(
    response: ResponsePacket,
    spi: Spi,
    kic: int,
    kid: int,
    keys: PacketKeys,
    *,
    checksum_length: int | None = None,
    padding_byte: int = 0x00,
) -> bytes:
    cipher_key, checksum_key = por_keys(spi, kic, kid, keys, checksum_length=checksum_length)
    return seal_response(response, cipher_key, checksum_key, padding_byte=padding_byte)


def decode_response_packet(
    user_data: bytes,
    spi: Spi,
    kic: int,
    kid: int,
    keys: PacketKeys,
) -> DecodedResponse:
    """Decode a PoR TP-UD (``02 71 00`` first) secured as the command's SPI2 asked.

    Unsecured error PoRs are read as such (module docstring); the checksum is
    reported in ``checksum_valid``, never silently accepted.
    """
    if user_data[:3] != RPI_UDH:
        raise DecodeError("udh", 0, f"expected UDH 027100 (RPI, TS 31.115 §4.3), got {user_data[:3].hex()}")
    user_data = bytes(user_data)
    rpl, rhl, tar, body = _response_header(user_data)
    n = rhl - MIN_RHL
    try:
        cipher_key = keys.cipher(kic) if spi.por_ciphered else None
        checksum_key = keys.checksum(kid, spi.por_integrity, n) if n else None
    except SecurityRejection as exc:
        raise DecodeError("rhl", 5, f"PoR security cannot be applied: {exc}") from exc
    aligned = cipher_key is not None and len(body) > 0 and len(body) % cipher_key.block_size == 0
    if not aligned:
        return _read_body(user_data, rpl, rhl, tar, body, n, checksum_key, ciphered=False)
    assert cipher_key is not None
    # SPI2 asked for ciphering and the length allows it. An unsecured error PoR can be block-aligned
    # too, so when the deciphered reading fails its checksum, the reading in clear gets a chance:
    # whichever verifies is the PoR; if neither does, the ciphered reading is reported (invalid).
    try:
        deciphered = _read_body(
            user_data, rpl, rhl, tar, cipher_key.decrypt(body), n, checksum_key, ciphered=True
        )
    except DecodeError:
        deciphered = None
    if deciphered is not None and deciphered.checksum_valid is not False:
        return deciphered
    try:
        clear = _read_body(user_data, rpl, rhl, tar, body, n, checksum_key, ciphered=False)
    except DecodeError:
        clear = None
    if clear is not None and clear.checksum_valid is True:
        return clear
    if deciphered is not None:
        return deciphered
    raise DecodeError("pcntr", 14, "neither the deciphered nor the clear reading of the PoR is well formed")


def _response_header(user_data: bytes) -> tuple[int, int, bytes, bytes]:
    """RPL, RHL, TAR and the rest of a PoR after its ``02 71 00``. The usual PoR is read by index
    (RPL counts the rest and RHL fits in it, so TAR is there); anything else by the field-by-field
    reader, which names what is wrong."""
    size = len(user_data)
    if size > 5 + MIN_RHL:
        rpl = (user_data[3] << 8) | user_data[4]
        rhl = user_data[5]
        if rpl == size - 5 and MIN_RHL <= rhl <= rpl - 1:
            return rpl, rhl, user_data[6:9], user_data[9:]
    return _read_response_header(user_data)


def _read_response_header(user_data: bytes) -> tuple[int, int, bytes, bytes]:
    """RPL, RHL, TAR and the rest of a PoR after its ``02 71 00``, field by field: every error."""
    reader = ByteReader(user_data)
    reader.take(3, "udh")
    rpl = reader.uint(2, "rpl")
    if rpl != reader.remaining:
        raise DecodeError("rpl", 3, f"RPL {rpl} but {reader.remaining} octets follow it")
    rhl = reader.u8("rhl")
    if rhl < MIN_RHL or rhl > rpl - 1:
        raise DecodeError("rhl", 5, f"RHL {rhl:#04x} outside {MIN_RHL:#04x}..RPL - 1 = {rpl - 1}")
    tar = reader.take(3, "tar")
    return rpl, rhl, tar, reader.rest()


def _read_body(
    user_data: bytes,
    rpl: int,
    rhl: int,
    tar: bytes,
    body: bytes,
    n: int,
    checksum_key: ChecksumKey | None,
    *,
    ciphered: bool,
) -> DecodedResponse:
    if len(body) < 7 + n:
        raise DecodeError(
            "rhl", 5, f"{len(body)} octets after TAR cannot hold CNTR, PCNTR, status and a {n}-octet checksum"
        )
    cntr = int.from_bytes(body[:5], "big")
    pcntr = body[5]
    status = body[6]
    checksum = body[7 : 7 + n]
    padded = body[7 + n :]
    if pcntr > len(padded):
        raise DecodeError("pcntr", 14, f"PCNTR {pcntr} exceeds the {len(padded)} octets of data")
    valid: bool | None = None
    if n:
        if checksum_key is None:
            valid = False  # a checksum nobody asked for cannot be verified
        else:
            valid = checksum_key.compute(user_data[:9] + body[:7] + padded) == checksum
    data = padded[: len(padded) - pcntr]
    return DecodedResponse(rpl, rhl, tar, cntr, pcntr, status, checksum, valid, ciphered, data)


def packet_to_user_data(packet: bytes) -> bytes:
    """A PoR given from RPL on gets its ``02 71 00`` back (the checksum covers it)."""
    return RPI_UDH + packet
