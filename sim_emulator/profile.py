"""What a card is made of: identity, key sets, applications (TARs), file overrides, options.

Clauses: TS 102 225 §5.1.2-§5.1.3 (key sets named by KIc/KID key indices),
TS 102 226 §8.2.1.3.2.4 (an application's TAR and minimum security level, MSL),
TS 102 226 §5.1 / §5.2 (compact or expanded remote APDU format per TAR).

Glossary: KVN key version number (KIc/KID b8..b5), KIc/KID/KIK ciphering, integrity
and key-encryption keys, TAR toolkit application reference, MSL minimum security
level (coded like SPI1), RFM/RAM remote file/application management, EF elementary file.

PURE data: frozen dataclasses only. ``config.py`` reads TOML into them and
``ota_protocols.fleet`` supplies identities and keys for fleet cards. Key fields are
``repr=False`` so a profile can be logged without leaking keys (house-style §9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm

FilePath = tuple[bytes, ...]  # FIDs from the MF: (b"\x3f\x00", b"\x7f\x20", b"\x6f\x07")


def path_text(path: FilePath) -> str:
    return "/".join(fid.hex().upper() for fid in path)


class AppKind(Enum):
    RFM = "rfm"
    RAM = "ram"
    PURSE = "purse"


class ScriptFormat(Enum):
    """TS 102 226 §5.1 (compact) and §5.2 (expanded); fixed per TAR."""

    COMPACT = "compact"
    EXPANDED = "expanded"


class ErrorPorStyle(Enum):
    """How a PoR with an error status (01-0A) is built (protocols.md §6.4, §8).

    * ``unsecured`` (default): no cipher, no checksum, whatever SPI2 asked.
    * ``secured``: statuses 02/03/04 (the packet's checksum was verified) are secured
      as SPI2 asks; 01, 05, 06, 09 and 0A stay unsecured.
    * ``sja2``: like sysmoISIM-SJA2, counter errors are answered with status 06; all
      error PoRs unsecured and with a zero CNTR.
    """

    UNSECURED = "unsecured"
    SECURED = "secured"
    SJA2 = "sja2"


class EfStructure(Enum):
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear_fixed"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysetProfile:
    kvn: int
    kic_algorithm: CipherAlgorithm
    kid_algorithm: IntegrityAlgorithm
    kic: bytes = field(repr=False)
    kid: bytes = field(repr=False)
    kik: bytes = field(repr=False, default=b"")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationProfile:
    tar: bytes
    kind: AppKind
    msl: int = 0x00
    format: ScriptFormat = ScriptFormat.COMPACT
    action_counter: int = 0
    # purse only
    max_balance: int = 0
    balance: int = 0
    # purse, fleet template: balance + (index % balance_modulo) * balance_step
    balance_step: int = 0
    balance_modulo: int = 1
    # purse: what one "pay" menu selection debits (docs/action-counter.md "Deferred reports")
    payment_amount: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsentWhen:
    """Per-card variation of a fleet: the EF is absent on cards with index % modulo == remainder."""

    modulo: int
    remainder: int

    def applies(self, index: int) -> bool:
        return index % self.modulo == self.remainder


@dataclass(frozen=True, slots=True, kw_only=True)
class FileProfile:
    """An EF added to or overriding the standard tree (file_system.standard_tree)."""

    path: FilePath
    structure: EfStructure | None = None  # None: keep the standard tree's
    size: int | None = None
    record_length: int | None = None
    record_count: int | None = None
    content: bytes | None = None
    absent_when: AbsentWhen | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CardOptions:
    """Behaviours protocols.md §7-§8 leaves open; defaults documented in docs/sim-emulator.md."""

    # Largest PoR TP-UD (02 71 00 included) returned in the ENVELOPE response; above it the
    # card answers status 0B and sends the PoR by SMS-SUBMIT (protocols.md §7, unverified limit).
    por_max_deliver_report: int = 128
    error_por_style: ErrorPorStyle = ErrorPorStyle.UNSECURED
    # T=0: data answered with 61 XX / GET RESPONSE (True) or returned directly with 90 00.
    t0_get_response: bool = True
    # Remote scripts: SELECT answers 61 XX and the script must GET RESPONSE itself (SJA5).
    no_auto_get_response: bool = True
    # SPI2 "PoR on error": does a script stopped by a failing SW count as an error?
    por_on_error_includes_script_failure: bool = False
    # SPI1 counter mode 01 (no check): store the received CNTR when it is higher.
    counter_update_on_no_check: bool = False
    por_padding: int = 0x00
    journal_limit: int = 10_000
    # Card-originated messages (patent claims 7-9): TP-DA of their SMS-SUBMIT (TON 1, NPI 1).
    ota_platform_address: str = "12345"
    # Claim 9: after a reset, answer the TERMINAL PROFILE 91 XX with an information message per purse.
    info_message_on_power_up: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CardIdentity:
    iccid: str
    imsi: str
    msisdn: str
    keysets: tuple[KeysetProfile, ...] = ()
    index: int = 0  # fleet index (0 for a single-card profile); drives per-card variation

    def __repr__(self) -> str:  # keys are repr=False already; keep the identity short
        return f"CardIdentity(iccid={self.iccid}, msisdn={self.msisdn}, keysets={len(self.keysets)})"
