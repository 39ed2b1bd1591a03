"""PURE: is a PoR authentic, and what does it say (TS 102 225 §5.2, TS 31.115 §4.3)?

Clauses: TS 102 225 §5.2 and TS 31.115 §4.3 (PoR, statuses, SMS-SUBMIT path 0B),
protocols.md §6.4 (error PoRs: unsecured, CNTR possibly zero), TS 102 226 §5.1.2
(compact response ``NN SW1 SW2``) and §5.2.2 (expanded), docs/action-counter.md
(the ``AC 08 before after`` block ending the PoR's additional data).

Glossary: PoR proof of receipt; SW status word; NN number of commands executed; CNTR the 03.48
replay counter; SPI2 the PoR half of the security parameter indicator.

A status-00 PoR decides which actions ran (claim 1c), so only one whose checksum verified counts;
anything that cannot be trusted is a :class:`RejectedPor` and is treated like a lost PoR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ota_protocols.action_counter import CounterReport, split_counter_report
from ota_protocols.apdu.remote_commands import CompactResponse, ExpandedResponse
from ota_protocols.errors import DecodeError
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponseStatus,
    decode_response_packet,
    status_meaning,
)
from ota_server.model import ScriptFormat, Security

__all__ = ["PERMANENT_SWS", "PorReport", "RejectedPor", "por_tar", "sw_meaning", "verify_por"]

# docs/action-counter.md: SWs that will fail again if resent.
PERMANENT_SWS = frozenset(
    {0x6A82, 0x6A83, 0x6A80, 0x6A88, 0x6981, 0x6986, 0x6985, 0x6B00, 0x6D00, 0x6E00, 0x6700}
)

_SW_MEANINGS = {
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A80: "incorrect data",
    0x6A88: "referenced data not found",
    0x6981: "command incompatible with file structure",
    0x6986: "command not allowed",
    0x6985: "conditions of use not satisfied",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6700: "wrong length",
    0x6F00: "technical problem",
    0x6581: "memory problem",
    0x9300: "toolkit busy",
}

# TS 31.115 §4.3: a PoR TP-UD is UDHL(02) IEI(71) IEIDL(00), then RPL(2) RHL(1) TAR(3).
_POR_TAR = slice(6, 9)


def sw_meaning(sw: int) -> str:
    return _SW_MEANINGS.get(sw) or _SW_MEANINGS.get(sw & 0xFF00, "error")


def por_tar(user_data: bytes) -> bytes:
    """The TAR of a PoR TP-UD (``02 71 00`` RPL RHL TAR ...), read before anything is verified: it
    only picks the candidate jobs whose keys then verify the packet. Empty when too short."""
    return user_data[_POR_TAR] if len(user_data) >= _POR_TAR.stop else b""


class PorReport(NamedTuple):
    """A PoR whose integrity was checked as far as SPI2 allows (immutable; a NamedTuple: one is
    built per PoR, cheaper than a frozen dataclass)."""

    tar: bytes
    cntr: int
    status: int
    counter: CounterReport | None  # status 00 only
    sw: int | None  # SW of the last command run (the failing one, if any)
    executed: int | None  # NN: commands run, the failing one included

    @property
    def meaning(self) -> str:
        return status_meaning(self.status)


@dataclass(frozen=True, slots=True)
class RejectedPor:
    """A PoR that cannot be trusted (forged, corrupt, undecodable): treated as lost."""

    tar: bytes
    reason: str


def verify_por(user_data: bytes, security: Security, keys: PacketKeys) -> PorReport | RejectedPor:
    """Decode a PoR TP-UD (``02 71 00`` first) with the job's key set and SPI."""
    tar = por_tar(user_data)
    try:
        decoded = decode_response_packet(user_data, security.spi, security.kic, security.kid, keys)
    except DecodeError as exc:
        return RejectedPor(tar, f"undecodable PoR: {exc}")
    if decoded.checksum_valid is False:
        return RejectedPor(decoded.tar, "PoR checksum wrong: forged or corrupt")
    if decoded.status != ResponseStatus.POR_OK:
        # protocols.md §6.4: error PoRs are read whatever SPI2 said; no script ran.
        return PorReport(decoded.tar, decoded.cntr, decoded.status, None, None, None)
    if security.por_checksum_required and decoded.checksum_valid is not True:
        # A status-00 PoR decides which actions ran: only a verified one may (claim 1c).
        return RejectedPor(
            decoded.tar, "status 00 PoR without the checksum SPI2 asked for: forged or corrupt"
        )
    try:
        standard, counter = split_counter_report(decoded.data)
        sw: int | None = None
        executed: int | None = None
        if standard:
            if security.script_format is ScriptFormat.EXPANDED:
                expanded = ExpandedResponse.decode(standard)
                executed = expanded.executed
                sw = expanded.r_apdus[-1].sw if expanded.r_apdus else None
            else:
                compact = CompactResponse.decode(standard)
                executed, sw = compact.executed, compact.sw
    except DecodeError as exc:
        return RejectedPor(decoded.tar, f"PoR additional data unreadable: {exc}")
    return PorReport(decoded.tar, decoded.cntr, decoded.status, counter, sw, executed)
