"""Deterministic test fleets: card identities and TEST keys derived from a seed and an index.

The handset builds its emulated SIMs from a :class:`FleetSpec`, and the OTA
server derives the matching card inventory from the same spec, so a simulated
network needs no key files and neither application imports the other.

Identities: ICCID = prefix + index, padded to 18 digits, + Luhn check digit
(ITU-T E.118); IMSI = prefix + index padded to 15 digits (3GPP TS 23.003 §2.2);
MSISDN = prefix + index padded to ``msisdn_digits``.

Keys: HMAC-SHA-256(seed, "ICCID|KVN|role") truncated to the key length. They
are TEST keys by construction (anyone with the seed has them): never use a
derived fleet for real cards.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field

from ota_protocols.errors import ConfigError


@dataclass(frozen=True, slots=True)
class KeysetTemplate:
    """A key set every card of the fleet has; the key bytes are derived per card."""

    kvn: int
    kic_algorithm: str  # names as in the packet tool: "aes", "3des2", ...
    kid_algorithm: str  # "aes-cmac", "3des2", ...
    key_length: int  # octets, for KIc, KID and KIK alike


DEFAULT_KEYSETS = (
    KeysetTemplate(kvn=1, kic_algorithm="aes", kid_algorithm="aes-cmac", key_length=16),
    KeysetTemplate(kvn=2, kic_algorithm="3des2", kid_algorithm="3des2", key_length=16),
)


def _expect(name: str, value: object, kind: type, what: str) -> None:
    """``value`` must be a ``kind`` (a bool is not an integer here, though Python says it is)."""
    if not isinstance(value, kind) or isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
        raise ConfigError(name, f"expected {what}, got {shown}")


@dataclass(frozen=True, slots=True)
class FleetSpec:
    seed: str
    count: int
    first_index: int = 0
    iccid_prefix: str = "8988211"
    imsi_prefix: str = "00101"
    msisdn_prefix: str = "4917"
    msisdn_digits: int = 12
    keysets: tuple[KeysetTemplate, ...] = DEFAULT_KEYSETS
    # The action counter every application had when the fleet was issued, as the issuer recorded it
    # (WO 00/07153: the server stores CA). None: unknown, so the OTA server asks each card first.
    issued_action_counter: int | None = None

    def __post_init__(self) -> None:
        # A fleet comes from TOML that other programs wrote: check each value's type first, so a
        # ``count = "120"`` is named here rather than failing later in a comparison.
        for name in ("seed", "iccid_prefix", "imsi_prefix", "msisdn_prefix"):
            _expect(name, getattr(self, name), str, "a string")
        for name in ("count", "first_index", "msisdn_digits"):
            _expect(name, getattr(self, name), int, "an integer")
        if self.issued_action_counter is not None:
            _expect("issued_action_counter", self.issued_action_counter, int, "an integer")
        if not isinstance(self.keysets, tuple) or not all(
            isinstance(k, KeysetTemplate) for k in self.keysets
        ):
            raise ConfigError("keysets", "expected key set templates")
        for name in ("iccid_prefix", "imsi_prefix", "msisdn_prefix"):
            if not getattr(self, name).isdigit():
                raise ConfigError(name, f"must be digits, got {getattr(self, name)!r}")
        if self.issued_action_counter is not None and not 0 <= self.issued_action_counter <= 0xFFFFFFFF:
            raise ConfigError("issued_action_counter", f"{self.issued_action_counter} does not fit 4 octets")
        if self.count < 0 or self.first_index < 0:
            raise ConfigError("count", "count and first_index must not be negative")
        last = self.first_index + self.count - 1
        for name, prefix, width in (
            ("iccid_prefix", self.iccid_prefix, 18),
            ("imsi_prefix", self.imsi_prefix, 15),
            ("msisdn_prefix", self.msisdn_prefix, self.msisdn_digits),
        ):
            if len(prefix) + len(str(max(last, 0))) > width:
                raise ConfigError(name, f"{self.count} cards do not fit {width} digits after prefix {prefix}")

    @property
    def indices(self) -> range:
        return range(self.first_index, self.first_index + self.count)


@dataclass(frozen=True, slots=True)
class DerivedKeyset:
    kvn: int
    kic_algorithm: str
    kid_algorithm: str
    kic: bytes = field(repr=False)
    kid: bytes = field(repr=False)
    kik: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DerivedCard:
    index: int
    iccid: str
    imsi: str
    msisdn: str
    keysets: tuple[DerivedKeyset, ...]


def luhn_digit(digits: str) -> str:
    """The Luhn check digit of a digit string (ITU-T E.118 for ICCIDs)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def _pad(prefix: str, index: int, width: int) -> str:
    return prefix + str(index).rjust(width - len(prefix), "0")


@functools.lru_cache(maxsize=16)
def _keyed(seed: str) -> hmac.HMAC:
    """HMAC-SHA-256 keyed with ``seed``, never updated: copies of it skip the key setup."""
    return hmac.new(seed.encode(), digestmod=hashlib.sha256)


def _hmac(seed: str, message: bytes) -> bytes:
    mac = _keyed(seed).copy()
    mac.update(message)
    return mac.digest()


def _derive_key(seed: str, iccid: str, kvn: int, role: str, length: int) -> bytes:
    digest = _hmac(seed, f"{iccid}|{kvn}|{role}".encode())
    while len(digest) < length:  # 32 octets cover AES-256; longer keys are not used
        digest += _hmac(seed, digest)
    return digest[:length]


def derive_card(spec: FleetSpec, index: int) -> DerivedCard:
    base = _pad(spec.iccid_prefix, index, 18)
    iccid = base + luhn_digit(base)
    keysets = tuple(
        DerivedKeyset(
            kvn=t.kvn,
            kic_algorithm=t.kic_algorithm,
            kid_algorithm=t.kid_algorithm,
            kic=_derive_key(spec.seed, iccid, t.kvn, "kic", t.key_length),
            kid=_derive_key(spec.seed, iccid, t.kvn, "kid", t.key_length),
            kik=_derive_key(spec.seed, iccid, t.kvn, "kik", t.key_length),
        )
        for t in spec.keysets
    )
    return DerivedCard(
        index=index,
        iccid=iccid,
        imsi=_pad(spec.imsi_prefix, index, 15),
        msisdn=_pad(spec.msisdn_prefix, index, spec.msisdn_digits),
        keysets=keysets,
    )


def index_of_msisdn(spec: FleetSpec, msisdn: str) -> int | None:
    """The fleet index behind an MSISDN, or None when it is not one of the fleet's."""
    if len(msisdn) != spec.msisdn_digits or not msisdn.startswith(spec.msisdn_prefix) or not msisdn.isdigit():
        return None
    index = int(msisdn[len(spec.msisdn_prefix) :])
    return index if index in spec.indices else None
