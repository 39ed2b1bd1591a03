"""Card-originated secured messages: the SMS-SUBMIT a card application sends to the platform.

Clauses: patent WO 00/07153 claims 7-9 (the action counter sent later, in a new transaction
request or an information message), docs/action-counter.md "Deferred reports"; TS 102 225
§5.1 (command packet, SPI §5.1.1, KIc §5.1.2, KID §5.1.3) and TS 31.115 §4.2 (``02 70 00``
CPI header) for the packet, built by the shared codec; TS 23.040 §9.2.2.2 (SMS-SUBMIT);
TS 102 223 §6.4.10 (SEND SHORT MESSAGE carries it to the ME).

Glossary: MO mobile originated; SPI security parameter indicator; KIc/KID key identifiers;
KVN key version number; TAR toolkit application reference; CNTR replay counter; CC
cryptographic checksum; PID/DCS protocol identifier / data coding scheme.

PURE. The packet is a command packet in the MO direction: TAR of the application, KIc/KID of
the key set with their explicit codings, SPI ``16 00`` (ciphering, CC, counter "higher", no
PoR), CNTR the application's own MO counter, secured data a :class:`CardMessage`. The shell
saves the new MO CNTR *before* it queues the message (house-style §2 write-ahead order).
"""

from __future__ import annotations

from ota_protocols.action_counter import CardMessage
from ota_protocols.errors import EncodeError
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    command_user_data,
    encode_command_packet,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import Spi, kic_octet, kid_octet
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import SmsSubmit
from sim_emulator.profile import KeysetProfile

# SPI1 16: counter higher (b5b4 10), ciphering (b3), CC (b2b1 10); SPI2 00: no PoR.
MO_SPI = Spi(0x16, 0x00)
MO_KEYSET_KVN = 1
PID_DATA_DOWNLOAD = 0x7F  # TS 23.040 §9.2.3.9, as the PoR SMS-SUBMIT (protocols.md §9.2)
DCS_CLASS2_8BIT = 0xF6  # TS 23.038 §4


def key_identifiers(keyset: KeysetProfile) -> tuple[int, int]:
    """(KIc, KID) naming ``keyset`` with the explicit coding of its algorithms, or the implicit
    coding (b2b1 = 00, TS 102 225 §5.1.2/§5.1.3) for those that have none (3DES-ECB, XOR)."""
    try:
        kic = kic_octet(keyset.kvn, keyset.kic_algorithm)
    except EncodeError:
        kic = keyset.kvn << 4
    try:
        kid = kid_octet(keyset.kvn, keyset.kid_algorithm)
    except EncodeError:
        kid = keyset.kvn << 4
    return kic, kid


def mo_keyset(keysets: tuple[KeysetProfile, ...]) -> KeysetProfile | None:
    """Key set 1, else the lowest KVN the card has; None: a card without keys sends nothing."""
    by_kvn = {k.kvn: k for k in keysets}
    if MO_KEYSET_KVN in by_kvn:
        return by_kvn[MO_KEYSET_KVN]
    return by_kvn[min(by_kvn)] if by_kvn else None


def seal_card_message(
    message: CardMessage, *, tar: bytes, cntr: int, keyset: KeysetProfile, keys: PacketKeys
) -> bytes:
    """The secured packet (CPL to the end) carrying ``message``; raises EncodeError or
    SecurityRejection when the key set cannot cipher and MAC (e.g. a CRC-only KID)."""
    kic, kid = key_identifiers(keyset)
    return encode_command_packet(CommandPacket(MO_SPI, kic, kid, tar, cntr, message.encode()), keys)


def card_message_submit(packet: bytes, *, destination: str, mr: int) -> bytes:
    """``41 MR DA 7F F6 UDL 02 70 00 <packet>``: the SMS-SUBMIT TPDU to the platform."""
    return SmsSubmit(
        tp_mr=mr & 0xFF,
        tp_da=Address(destination, Ton.INTERNATIONAL, Npi.ISDN),
        tp_pid=PID_DATA_DOWNLOAD,
        tp_dcs=DCS_CLASS2_8BIT,
        tp_ud=command_user_data(packet),
        tp_udhi=True,
    ).encode()
