"""The keys of one key set, resolved against the KIc / KID / SPI of a packet.

TS 102 225 §5.1.2-§5.1.3: KIc names the ciphering algorithm and key set, KID the
RC/CC/DS algorithm and key set; b2b1 = 00 means "known implicitly", which a key
set settles by configuration (``kic_implicit`` / ``kid_implicit``).

A :class:`PacketKeys` remembers the key schedules it built, so an application
keeps one per key set and pays the schedule cost once (see crypto.py). Key bytes
never appear in its repr.
"""

from __future__ import annotations

from ota_protocols.errors import ConfigError, UnidentifiedSecurityError
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.security_parameters import (
    CipherAlgorithm,
    IntegrityAlgorithm,
    IntegrityMode,
    resolve_cipher,
    resolve_integrity,
)

UNIDENTIFIED = 0x06  # TS 102 225 §5.2 status "unidentified security error"
_MAX_MEMO = 64  # KIc and (KID, mode, length) answers kept per key set: a hostile peer cannot grow them


class PacketKeys:
    __slots__ = (
        "_by_kic",
        "_by_kid",
        "_checksums",
        "_ciphers",
        "kic_implicit",
        "kic_key",
        "kid_implicit",
        "kid_key",
    )

    def __init__(
        self,
        *,
        kic_key: bytes | None = None,
        kid_key: bytes | None = None,
        kic_implicit: CipherAlgorithm | None = None,
        kid_implicit: IntegrityAlgorithm | None = None,
    ) -> None:
        self.kic_key = kic_key
        self.kid_key = kid_key
        self.kic_implicit = kic_implicit
        self.kid_implicit = kid_implicit
        self._ciphers: dict[CipherAlgorithm, CipherKey] = {}
        self._checksums: dict[tuple[IntegrityAlgorithm, int], ChecksumKey] = {}
        # The answers by the packet's own octets (KIc; KID, mode, length), so a packet that uses this
        # key set again skips the algorithm resolution (bounded: _MAX_MEMO each).
        self._by_kic: dict[int, CipherKey] = {}
        self._by_kid: dict[tuple[int, IntegrityMode, int | None], ChecksumKey | None] = {}

    def __repr__(self) -> str:
        def describe(key: bytes | None) -> str:
            return "none" if key is None else f"{len(key)} octets"

        return f"PacketKeys(kic_key={describe(self.kic_key)}, kid_key={describe(self.kid_key)})"

    def cipher(self, kic: int) -> CipherKey:
        """The ciphering key for a packet whose SPI asks for ciphering (status 06 if unusable)."""
        found = self._by_kic.get(kic)
        if found is not None:
            return found
        found = self._cipher(kic)
        if len(self._by_kic) < _MAX_MEMO:
            self._by_kic[kic] = found
        return found

    def _cipher(self, kic: int) -> CipherKey:
        algorithm = resolve_cipher(kic, self.kic_implicit)
        cached = self._ciphers.get(algorithm)
        if cached is not None:
            return cached
        if self.kic_key is None:
            raise UnidentifiedSecurityError(UNIDENTIFIED, f"KIc {kic:02x}: no ciphering key in this key set")
        try:
            key = CipherKey(algorithm, self.kic_key)
        except ConfigError as exc:
            raise UnidentifiedSecurityError(UNIDENTIFIED, f"KIc {kic:02x}: {exc.detail}") from exc
        self._ciphers[algorithm] = key
        return key

    def checksum(self, kid: int, mode: IntegrityMode, length: int | None = None) -> ChecksumKey | None:
        """The RC/CC key for ``mode`` (SPI1 b2b1 or SPI2 b4b3); None when the mode is NONE.

        ``length`` is the checksum length (AES-CMAC: 4 or 8, from CHL/RHL on decode).
        """
        memo = (kid, mode, length)
        try:
            return self._by_kid[memo]
        except KeyError:
            pass
        found = self._checksum(kid, mode, length)
        if len(self._by_kid) < _MAX_MEMO:
            self._by_kid[memo] = found
        return found

    def _checksum(self, kid: int, mode: IntegrityMode, length: int | None) -> ChecksumKey | None:
        algorithm = resolve_integrity(kid, mode, self.kid_implicit)
        if algorithm is None:
            return None
        if length is None:
            length = algorithm.default_length()  # one cache entry whether the length was implied or read
        cached = self._checksums.get((algorithm, length))
        if cached is not None:
            return cached
        if not algorithm.is_redundancy_check and self.kid_key is None:
            raise UnidentifiedSecurityError(UNIDENTIFIED, f"KID {kid:02x}: no integrity key in this key set")
        try:
            key = ChecksumKey(algorithm, self.kid_key or b"", length)
        except ConfigError as exc:
            raise UnidentifiedSecurityError(UNIDENTIFIED, f"KID {kid:02x}: {exc.detail}") from exc
        self._checksums[(algorithm, length)] = key
        return key
