"""Secured command packet over SMS-PP: ETSI TS 102 225 §5.1, 3GPP TS 31.115 §4.2.

Glossary: CPL command packet length, CHL command header length, SPI security
parameter indicator, KIc/KID key identifiers, TAR toolkit application reference,
CNTR replay counter, PCNTR padding counter, RC/CC/DS checksum, CPI command
packet identifier (UDH IEI 70).

Layout, from CPL on (the SMS TP-UD adds the UDH ``02 70 00`` in front)::

    CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) RC/CC/DS(n) data padding
    <--------------- always in clear ------->  <---- ciphered when SPI1 b3 = 1 ---->

Rules enforced here (protocols.md §2):

* CHL = 13 + n counts SPI .. RC/CC/DS; CPL counts CHL .. end, padding included.
* The RC/CC/DS input is CPL .. PCNTR, then data and padding; the UDH is **not**
  part of it (TS 31.115 §4.2, unlike the PoR, see response_packet.py).
* When ciphering, PCNTR = (-(6 + n + len(data))) mod B pads the ciphered part to
  the block size B; otherwise PCNTR = 0. A receiver strips PCNTR octets unread.

Decoding is staged the way a card works (TS 102 225 §5.1 and protocols.md §2.5):
:func:`parse_command_header` reads the clear header (the card then finds the TAR
and key set), and :func:`open_command_packet` deciphers and checks the checksum.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import (
    CipheringFailed,
    DecodeError,
    EncodeError,
    SecurityRejection,
    UnidentifiedSecurityError,
)
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import Spi

CPI_UDH = b"\x02\x70\x00"  # UDHL 02, IEI 70 (CPI), IEDL 00: TS 31.115 §4.2
MIN_CHL = 0x0D  # TS 102 225 §5.1: SPI(2) KIc KID TAR(3) CNTR(5) PCNTR, no RC/CC/DS
MAX_CNTR = (1 << 40) - 1
CIPHERING_ERROR = 0x05
UNIDENTIFIED = 0x06


@dataclass(frozen=True, slots=True)
class CommandPacket:
    """What a sender chooses; lengths, PCNTR and the checksum follow from it."""

    spi: Spi
    kic: int
    kid: int
    tar: bytes
    cntr: int
    data: bytes

    def __post_init__(self) -> None:
        if len(self.tar) != 3:
            raise EncodeError("tar", 10, f"TAR must be 3 octets, got {len(self.tar)}")
        if not 0 <= self.cntr <= MAX_CNTR:
            raise EncodeError("cntr", 13, f"CNTR {self.cntr} does not fit 5 octets")
        if not (0 <= self.kic <= 0xFF and 0 <= self.kid <= 0xFF):
            raise EncodeError("kic", 8, "KIc and KID are one octet each")


@dataclass(frozen=True, slots=True)
class CommandHeader:
    """The clear part of a received packet, and the rest still as received."""

    cpl: int
    chl: int
    spi: Spi
    kic: int
    kid: int
    tar: bytes
    body: bytes  # CNTR .. end, ciphered or not

    @property
    def checksum_length(self) -> int:
        return self.chl - MIN_CHL

    @property
    def clear_header(self) -> bytes:
        """CPL .. TAR as received: the first 10 octets of the checksum input."""
        spi = self.spi
        return (
            self.cpl.to_bytes(2, "big") + bytes((self.chl, spi.spi1, spi.spi2, self.kic, self.kid)) + self.tar
        )


@dataclass(frozen=True, slots=True)
class OpenedCommand:
    header: CommandHeader
    cntr: int
    pcntr: int
    checksum: bytes
    checksum_valid: bool | None  # None: SPI1 asks for no RC/CC/DS
    data: bytes  # padding removed (as received when checksum_valid is False)


def encode_command_packet(
    command: CommandPacket,
    keys: PacketKeys,
    *,
    checksum_length: int | None = None,
    padding_byte: int = 0x00,
) -> bytes:
    """The packet from CPL to the end (protocols.md §2.4 order of operations)."""
    spi = command.spi
    checksum_key = keys.checksum(command.kid, spi.integrity, checksum_length)
    cipher_key = keys.cipher(command.kic) if spi.ciphering else None
    return seal_command(command, cipher_key, checksum_key, padding_byte=padding_byte)


def seal_command(
    command: CommandPacket,
    cipher_key: CipherKey | None,
    checksum_key: ChecksumKey | None,
    *,
    padding_byte: int = 0x00,
) -> bytes:
    """Encode with already-resolved keys (the hot path of the OTA server)."""
    spi = command.spi
    n = checksum_key.length if checksum_key is not None else 0
    chl = MIN_CHL + n
    data = command.data
    if cipher_key is not None:
        pcntr = -(6 + n + len(data)) % cipher_key.block_size
        data += bytes((padding_byte,)) * pcntr
    else:
        pcntr = 0
    cpl = 1 + chl + len(data)
    if cpl > 0xFFFF:
        raise EncodeError("cpl", 0, f"packet of {cpl} octets exceeds the 2-octet CPL")
    header = (
        cpl.to_bytes(2, "big")
        + bytes((chl,))
        + spi.to_bytes()
        + bytes((command.kic, command.kid))
        + command.tar
    )
    counter = command.cntr.to_bytes(5, "big") + bytes((pcntr,))
    checksum = checksum_key.compute(header + counter + data) if checksum_key is not None else b""
    secured = counter + checksum + data
    if cipher_key is not None:
        secured = cipher_key.encrypt(secured)
    return header + secured


def command_user_data(packet: bytes) -> bytes:
    """TP-UD of a single-SMS command: the CPI UDH, then the packet."""
    return CPI_UDH + packet


def parse_command_header(packet: bytes, *, base_offset: int = 0) -> CommandHeader:
    """Read CPL .. TAR and check the lengths (failures: status 06, TS 102 225 §5.2)."""
    packet = bytes(packet)
    n = len(packet)
    if n > 2 + MIN_CHL:
        # The usual packet, read by index: CPL counts the rest and CHL fits in it, so SPI .. TAR
        # are there. Anything else goes through the reader below, which names what is wrong.
        cpl = (packet[0] << 8) | packet[1]
        chl = packet[2]
        if cpl == n - 2 and MIN_CHL <= chl <= cpl - 1:
            spi = Spi.from_bytes(packet[3:5])
            return CommandHeader(cpl, chl, spi, packet[5], packet[6], packet[7:10], packet[10:])
    return _read_command_header(packet, base_offset)


def _read_command_header(packet: bytes, base_offset: int) -> CommandHeader:
    """:func:`parse_command_header` field by field: every shape, every error."""
    reader = ByteReader(packet, base_offset=base_offset)
    cpl = reader.uint(2, "cpl")
    if cpl != reader.remaining:
        raise DecodeError("cpl", base_offset, f"CPL {cpl} but {reader.remaining} octets follow it")
    chl = reader.u8("chl")
    # TS 31.115 §4.2: CHL counts SPI through RC/CC/DS, so it is never below 0x0D.
    if chl < MIN_CHL:
        raise DecodeError("chl", base_offset + 2, f"CHL {chl:#04x} below minimum {MIN_CHL:#04x}")
    if chl > cpl - 1:
        raise DecodeError("chl", base_offset + 2, f"CHL {chl} exceeds CPL - 1 = {cpl - 1}")
    spi = Spi.from_bytes(reader.take(2, "spi"))
    kic = reader.u8("kic")
    kid = reader.u8("kid")
    tar = reader.take(3, "tar")
    return CommandHeader(cpl, chl, spi, kic, kid, tar, reader.rest())


def open_command_packet(header: CommandHeader, keys: PacketKeys) -> OpenedCommand:
    """Decipher and verify. Raises CipheringFailed (05) and UnidentifiedSecurityError (06);
    a wrong checksum is *reported* (``checksum_valid`` False), the caller decides."""
    spi = header.spi
    n = header.checksum_length
    checksum_key = keys.checksum(header.kid, spi.integrity, n if n else None)
    _check_checksum_length(header, checksum_key)  # before the KIc is resolved: that error first
    cipher_key = keys.cipher(header.kic) if spi.ciphering else None
    return open_command(header, cipher_key, checksum_key)


def open_command(
    header: CommandHeader, cipher_key: CipherKey | None, checksum_key: ChecksumKey | None
) -> OpenedCommand:
    """:func:`open_command_packet` with keys already resolved for this header's KIc, KID and
    SPI (the card's hot path: it resolved them when it checked the key set). Same checks."""
    spi = header.spi
    _check_checksum_length(header, checksum_key)
    body = header.body
    if spi.ciphering:
        if cipher_key is None:
            raise UnidentifiedSecurityError(UNIDENTIFIED, f"SPI {spi} asks for ciphering, no KIc key given")
        if len(body) % cipher_key.block_size:
            raise CipheringFailed(
                CIPHERING_ERROR,
                f"ciphered part of {len(body)} octets is not a multiple of {cipher_key.block_size}",
            )
        body = cipher_key.decrypt(body)
    return _open_plain(header, body, checksum_key)


def _check_checksum_length(header: CommandHeader, checksum_key: ChecksumKey | None) -> None:
    n = header.checksum_length
    expected_n = checksum_key.length if checksum_key is not None else 0
    if expected_n != n:
        raise UnidentifiedSecurityError(
            UNIDENTIFIED,
            f"CHL {header.chl:#04x} gives a {n}-octet RC/CC/DS, SPI {header.spi} and KID {header.kid:02x} "
            f"need {expected_n} (TS 102 225 §5.1)",
        )


def _open_plain(header: CommandHeader, body: bytes, checksum_key: ChecksumKey | None) -> OpenedCommand:
    n = header.checksum_length
    if len(body) < 6 + n:
        raise UnidentifiedSecurityError(
            UNIDENTIFIED, f"{len(body)} octets after TAR cannot hold CNTR, PCNTR and a {n}-octet checksum"
        )
    cntr = int.from_bytes(body[:5], "big")
    pcntr = body[5]
    checksum = body[6 : 6 + n]
    secured_data = body[6 + n :]
    valid: bool | None = None
    if checksum_key is not None:
        # The checksum covers the padding and not PCNTR's meaning, so it is checked first:
        # a corrupted packet is then reported as what it is (status 01), whatever PCNTR became.
        expected = checksum_key.compute(header.clear_header + body[:6] + secured_data)
        valid = expected == checksum
        if not valid:
            return OpenedCommand(header, cntr, pcntr, checksum, False, secured_data)
    # protocols.md §2.3: strip PCNTR octets without looking; only PCNTR <= len(data) is required
    # (which also tolerates the shadysim sender's whole block of padding).
    if pcntr > len(secured_data):
        raise CipheringFailed(
            CIPHERING_ERROR, f"PCNTR {pcntr} exceeds the {len(secured_data)} octets of data"
        )
    data = secured_data[: len(secured_data) - pcntr]
    return OpenedCommand(header, cntr, pcntr, checksum, valid, data)


def decode_command_packet(packet: bytes, keys: PacketKeys) -> OpenedCommand:
    """Both stages at once, for the packet tool and tests: every failure is a DecodeError.

    (A card uses the two stages, whose SecurityRejections carry the PoR status.)
    """
    header = parse_command_header(packet)
    try:
        return open_command_packet(header, keys)
    except SecurityRejection as exc:
        raise DecodeError("secured_data", 10, f"{exc} (PoR status {exc.response_status:02x})") from exc


def split_command_user_data(user_data: bytes) -> bytes:
    """The packet of a single-SMS TP-UD that starts with the CPI UDH ``02 70 00``."""
    if user_data[:3] != CPI_UDH:
        raise DecodeError("udh", 0, f"expected UDH 027000 (CPI, TS 31.115 §4.2), got {user_data[:3].hex()}")
    return user_data[3:]
