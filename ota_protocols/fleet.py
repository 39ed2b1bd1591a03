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
    if digits.isascii() and digits.isdigit():
        # The same sum by table: from the right, digits 1, 3, 5, ... are doubled (minus 9 above 9).
        total = sum(map(int, digits[-1::-2].translate(_LUHN_DOUBLED))) + sum(map(int, digits[-2::-2]))
        return str((10 - total % 10) % 10)
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def _pad(prefix: str, index: int, width: int) -> str:
    return prefix + str(index).rjust(width - len(prefix), "0")


# RFC 2104: HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), K' the key padded to H's block.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_SHA256_BLOCK = 64


@functools.lru_cache(maxsize=16)
def _keyed(seed: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA-256 keyed with ``seed`` (RFC 2104): the inner and outer SHA-256 states after the
    padded key, never updated; copies of them skip the key setup and the ``hmac`` wrappers."""
    key = seed.encode()
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def _hmac(seed: str, message: bytes) -> bytes:
    inner, outer = _keyed(seed)
    mac = inner.copy()
    mac.update(message)
    result = outer.copy()
    result.update(mac.digest())
    return result.digest()


def _derive_key(seed: str, iccid: str, kvn: int, role: str, length: int) -> bytes:
    digest = _hmac(seed, f"{iccid}|{kvn}|{role}".encode())
    while len(digest) < length:  # 32 octets cover AES-256; longer keys are not used
        digest += _hmac(seed, digest)
    return digest[:length]


def derive_card(spec: FleetSpec, index: int) -> DerivedCard:
    base = _pad(spec.iccid_prefix, index, 18)
    iccid = base + luhn_digit(base)
    inner, outer = _keyed(spec.seed)
    keysets: list[DerivedKeyset] = []
    for t in spec.keysets:
        # _derive_key for each role, its first HMAC inline (a card wakes: six keys, no helper calls).
        keys: list[bytes] = []
        for role in ("kic", "kid", "kik"):
            mac = inner.copy()  # _hmac, inline
            mac.update(f"{iccid}|{t.kvn}|{role}".encode())
            result = outer.copy()
            result.update(mac.digest())
            digest = result.digest()
            if len(digest) < t.key_length:
                digest = _derive_key(spec.seed, iccid, t.kvn, role, t.key_length)
            keys.append(digest[: t.key_length])
        keysets.append(DerivedKeyset(t.kvn, t.kic_algorithm, t.kid_algorithm, keys[0], keys[1], keys[2]))
    return DerivedCard(
        index=index,
        iccid=iccid,
        imsi=_pad(spec.imsi_prefix, index, 15),
        msisdn=_pad(spec.msisdn_prefix, index, spec.msisdn_digits),
        keysets=tuple(keysets),
    )


def index_of_msisdn(spec: FleetSpec, msisdn: str) -> int | None:
    """The fleet index behind an MSISDN, or None when it is not one of the fleet's."""
    if len(msisdn) != spec.msisdn_digits or not msisdn.startswith(spec.msisdn_prefix) or not msisdn.isdigit():
        return None
    index = int(msisdn[len(spec.msisdn_prefix) :])
    first = spec.first_index
    return index if first <= index < first + spec.count else None  # index in spec.indices
