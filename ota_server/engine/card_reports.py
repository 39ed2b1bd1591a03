"""PURE: open a card-originated secured packet (claims 7-9) and apply the MO replay rule.

Clauses: TS 102 225 §5.1 in the MO direction (docs/action-counter.md "Deferred reports"), §5.1.1
(counter mode "higher"), claim 4 (the counter travels secured: only a CC or DS authenticates).

Glossary: MO mobile originated; KIc/KID key identifiers (b8..b5: the key set); CC cryptographic
checksum; DS digital signature; RC redundancy check (no authentication); CNTR replay counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.action_counter import CardMessage, CardMessageKind
from ota_protocols.errors import DecodeError, SecurityRejection
from ota_protocols.secured_packet.command_packet import CPI_UDH, open_command_packet, parse_command_header
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import IntegrityMode, key_index

__all__ = ["CardReport", "RejectedCardMessage", "mo_cntr_fresh", "open_card_message"]

# TS 102 225 §5.1: ``02 70 00`` CPL(2) CHL(1) SPI(2) KIc KID TAR(3): the TAR at offsets 9..11.
_MO_TAR = slice(9, 12)


@dataclass(frozen=True, slots=True)
class CardReport:
    """A card-originated secured packet (claims 7-9) whose CC was verified with the card's key set."""

    tar: bytes
    cntr: int  # the application's MO CNTR (replay rule: must exceed the last one accepted)
    message: CardMessage

    @property
    def label(self) -> str:
        """The report's ``counter_path``: "transaction" (kind 01) or "information" (kind 02)."""
        return "transaction" if self.message.kind is CardMessageKind.TRANSACTION_REQUEST else "information"


@dataclass(frozen=True, slots=True)
class RejectedCardMessage:
    """An MO packet that cannot be trusted (undecodable, no CC/DS, wrong checksum): recorded, ignored."""

    tar: bytes
    reason: str


def open_card_message(user_data: bytes, keysets: dict[int, PacketKeys]) -> CardReport | RejectedCardMessage:
    """Open ``02 70 00`` + a command packet sent BY the card (docs/action-counter.md "Deferred
    reports"; TS 102 225 §5.1 in the MO direction) with the card's key set named by KIc b8..b5.

    Only an authenticated packet counts (claim 4: the counter travels secured): SPI1 must ask for a
    CC or DS (an RC is no authentication) and the checksum must verify. The replay rule (CNTR
    higher than the last accepted, :func:`mo_cntr_fresh`) is the caller's, which owns the store.
    """
    tar = user_data[_MO_TAR] if len(user_data) >= _MO_TAR.stop else b""
    if user_data[:3] != CPI_UDH:
        return RejectedCardMessage(tar, f"not a command packet: UDH {user_data[:3].hex()}")
    try:
        header = parse_command_header(user_data[3:], base_offset=3)
    except DecodeError as exc:
        return RejectedCardMessage(tar, f"undecodable card message: {exc}")
    tar = header.tar
    if header.spi.integrity not in (IntegrityMode.CC, IntegrityMode.DS):
        return RejectedCardMessage(tar, f"SPI {header.spi} asks for no CC/DS: unauthenticated, ignored")
    keys = keysets.get(key_index(header.kic)) or keysets.get(key_index(header.kid))
    if keys is None:
        return RejectedCardMessage(tar, f"no key set {key_index(header.kic)} for this card")
    try:
        opened = open_command_packet(header, keys)
    except (SecurityRejection, DecodeError) as exc:
        return RejectedCardMessage(tar, f"card message cannot be opened: {exc}")
    if opened.checksum_valid is not True:
        return RejectedCardMessage(tar, "card message checksum wrong: forged or corrupt")
    try:
        message = CardMessage.decode(opened.data)
    except DecodeError as exc:
        return RejectedCardMessage(tar, f"card message body unreadable: {exc}")
    return CardReport(tar, opened.cntr, message)


def mo_cntr_fresh(last_accepted: int | None, cntr: int) -> bool:
    """The server's replay rule for MO packets, counter mode "higher" (TS 102 225 §5.1.1 b5b4 = 10):
    a copy (duplicate, replay, late resend) carries a CNTR not above the last one accepted."""
    return cntr > (last_accepted if last_accepted is not None else 0)


# --------------------------------------------------------------------------- the job machine
