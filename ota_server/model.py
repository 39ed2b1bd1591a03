"""What the OTA platform works with: cards, key sets, security parameters and actions.

Clauses: TS 102 225 §5.1.1-§5.1.3 (SPI, KIc, KID: the key index b8..b5 names the key set),
TS 102 226 §5.1 / §5.2 (compact or expanded remote APDU script, fixed per TAR),
docs/action-counter.md (an *action* is navigation commands plus one counted command).

Glossary: KVN key version number (the KIc/KID key index), TAR toolkit application
reference, CNTR 03.48 replay counter, SPI security parameter indicator, APDU
application protocol data unit.

PURE data: frozen slotted dataclasses. Key fields are ``repr=False`` (house-style §9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.errors import DecodeError
from ota_protocols.fleet import DerivedCard
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import (
    CipherAlgorithm,
    IntegrityAlgorithm,
    Spi,
    key_index,
)


class ScriptFormat(Enum):
    """TS 102 226 §5.1 (compact) and §5.2 (expanded)."""

    COMPACT = "compact"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class Action:
    """One action: navigation commands, then exactly one counted command (the last APDU)."""

    label: str
    apdus: tuple[CommandApdu, ...]

    @property
    def counted(self) -> CommandApdu:
        return self.apdus[-1]

    def to_json(self) -> list[str]:
        """The APDUs in ISO/IEC 7816-4 short form, hex (the jobs table's ``pending`` column)."""
        return [apdu.encode().hex() for apdu in self.apdus]

    @classmethod
    def from_json(cls, label: str, apdus: list[str]) -> Action:
        try:
            return cls(label, tuple(CommandApdu.decode(bytes.fromhex(a)) for a in apdus))
        except ValueError as exc:
            raise DecodeError("pending", 0, f"stored APDU is not hex: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Keyset:
    """One key set of a card (TS 102 225 §5.1.2): algorithms and TEST keys."""

    kvn: int
    kic_algorithm: CipherAlgorithm
    kid_algorithm: IntegrityAlgorithm
    kic: bytes = field(repr=False)
    kid: bytes = field(repr=False)

    def packet_keys(self) -> PacketKeys:
        """Keep the result: a PacketKeys caches its key schedules."""
        return PacketKeys(
            kic_key=self.kic,
            kid_key=self.kid,
            kic_implicit=self.kic_algorithm,
            kid_implicit=self.kid_algorithm,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    iccid: str
    imsi: str
    msisdn: str
    tags: tuple[str, ...] = ()
    index: int | None = None  # fleet index when the card comes from a FleetSpec

    def __repr__(self) -> str:
        return f"Card(iccid={self.iccid}, msisdn={self.msisdn})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """The 03.48 parameters a campaign sends with (TS 102 225 §5.1.1-§5.1.3)."""

    spi: Spi
    kic: int
    kid: int
    tar: bytes
    checksum_length: int | None = None  # None: the algorithm's default (8 for CMAC / CBC-MAC)
    script_format: ScriptFormat = ScriptFormat.COMPACT

    @property
    def cipher_kvn(self) -> int:
        return key_index(self.kic)

    @property
    def checksum_kvn(self) -> int:
        return key_index(self.kid)

    @property
    def counter_kvn(self) -> int:
        """The key set whose CNTR this campaign uses: KIc's, or KID's when KIc names none."""
        return self.cipher_kvn or self.checksum_kvn

    @property
    def por_checksum_required(self) -> bool:
        """SPI2 b4b3 asks for an RC/CC/DS on the PoR (TS 102 225 §5.1.1)."""
        return self.spi.por_integrity != 0


def packet_keys_for(keysets: Mapping[int, Keyset], security: Security) -> PacketKeys:
    """PacketKeys combining the KIc key set's cipher key and the KID key set's checksum key."""
    cipher = keysets.get(security.cipher_kvn)
    checksum = keysets.get(security.checksum_kvn)
    if cipher is not None and cipher is checksum:
        return cipher.packet_keys()
    return PacketKeys(
        kic_key=cipher.kic if cipher else None,
        kid_key=checksum.kid if checksum else None,
        kic_implicit=cipher.kic_algorithm if cipher else None,
        kid_implicit=checksum.kid_algorithm if checksum else None,
    )


# Value -> member, read per derived card (an Enum call runs Python code): fixed, both enums' members.
_CIPHERS = {a.value: a for a in CipherAlgorithm}
_INTEGRITIES = {a.value: a for a in IntegrityAlgorithm}


def keysets_of(derived: DerivedCard) -> list[Keyset]:
    """A fleet card's key sets (``ota_protocols.fleet.derive_card``) as the platform holds them."""
    out = []
    for k in derived.keysets:
        kic_algorithm = _CIPHERS.get(k.kic_algorithm)
        kid_algorithm = _INTEGRITIES.get(k.kid_algorithm)
        out.append(
            Keyset(
                kvn=k.kvn,
                # not a member's value: the Enum call raises as it always did
                kic_algorithm=CipherAlgorithm(k.kic_algorithm) if kic_algorithm is None else kic_algorithm,
                kid_algorithm=IntegrityAlgorithm(k.kid_algorithm) if kid_algorithm is None else kid_algorithm,
                kic=k.kic,
                kid=k.kid,
            )
        )
    return out
