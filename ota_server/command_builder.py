"""PURE: actions + key set + CNTR -> the TP-UD segments of one secured command packet.

Clauses: TS 102 225 §5.1 / TS 31.115 §4.2 (command packet, UDH ``02 70 00``),
TS 102 226 §5.1 / §5.2 (compact / expanded remote APDU script), protocols.md §14.1
(concatenation in the 03.48 layout: the whole packet first, one CC and one CBC
chain, then cut; ``00 03 ref total seq`` first and the CPI ``70 00`` in the first
segment only).

Glossary: TP-UD user data of the SMS, UDH user data header, CPI command packet
identifier, CNTR replay counter, CC cryptographic checksum.

A *status query* (reconciliation.py) is a command packet with an empty script: the
card runs nothing, and its PoR reports the current action counter.

No I/O, clock or RNG of its own: the concatenation reference comes from the
caller's seeded ``random.Random``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.remote_commands import ExpandedCommandScript, encode_compact_commands
from ota_protocols.secured_packet.command_packet import CommandPacket, seal_command
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.sms.concatenation import split_user_data
from ota_protocols.sms.user_data_header import CPI
from ota_server.model import Action, ScriptFormat, Security

if TYPE_CHECKING:
    import random

MAX_UD = 140  # TS 23.040 §9.2.3.16: 140 octets of 8-bit user data, the UDH included


def encode_script(apdus: Sequence[CommandApdu], script_format: ScriptFormat) -> bytes:
    """The secured data: TS 102 226 §5.1 compact or §5.2 expanded (empty for a status query)."""
    if not apdus:
        return b""  # a status query: no command at all, in either format
    if script_format is ScriptFormat.EXPANDED:
        return ExpandedCommandScript(tuple(apdus)).encode()
    return encode_compact_commands(apdus)


def script_apdus(actions: Sequence[Action]) -> list[CommandApdu]:
    return [apdu for action in actions for apdu in action.apdus]


def build_packet(
    keys: PacketKeys,
    security: Security,
    cntr: int,
    actions: Sequence[Action],
    *,
    script: bytes | None = None,
) -> bytes:
    """The complete command packet, CPL to the end (protocols.md §2.4). ``script``: the secured
    data already encoded from ``actions`` (:func:`encode_script`), by a caller that keeps it."""
    spi = security.spi
    checksum_key = keys.checksum(security.kid, spi.integrity, security.checksum_length)
    cipher_key = keys.cipher(security.kic) if spi.ciphering else None
    data = encode_script(script_apdus(actions), security.script_format) if script is None else script
    command = CommandPacket(spi, security.kic, security.kid, security.tar, cntr, data)
    return seal_command(command, cipher_key, checksum_key)


def build_user_data(
    keys: PacketKeys,
    security: Security,
    cntr: int,
    actions: Sequence[Action],
    *,
    rng: random.Random,
    script: bytes | None = None,
) -> list[bytes]:
    """TP-UD segments: ``02 70 00 + packet`` when it fits 140 octets, else the §14.1 layout.
    ``script``: as for :func:`build_packet`."""
    packet = build_packet(keys, security, cntr, actions, script=script)
    if 3 + len(packet) <= MAX_UD:
        return [b"\x02\x70\x00" + packet]
    # protocols.md §14.1: complete packet first, then cut; the CPI rides in the first UDH.
    return split_user_data(packet, first_ies=(CPI,), reference=rng.randrange(256), max_ud=MAX_UD)
