"""Security parameters of a secured packet: SPI, KIc and KID.

ETSI TS 102 225 §5.1.1 (SPI), §5.1.2 (KIc), §5.1.3 (KID); 3GPP TS 31.115 §4.1
adds the SMS-SUBMIT PoR bit (SPI2 b6).

Glossary: SPI security parameter indicator (2 octets), KIc key and algorithm
identifier for ciphering, KID the same for RC/CC/DS, RC redundancy check, CC
cryptographic checksum, DS digital signature, PoR proof of receipt.

:class:`Spi` keeps the two raw octets, so every bit, reserved ones included,
round-trips; named properties read the fields. KIc and KID stay plain ints;
:func:`resolve_cipher` and :func:`resolve_integrity` turn them into algorithms,
using the caller's choice when the octet says "known implicitly".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from ota_protocols.errors import EncodeError, UnidentifiedSecurityError


class IntegrityMode(IntEnum):
    """SPI1 b2b1 (command) and SPI2 b4b3 (PoR), TS 102 225 §5.1.1."""

    NONE = 0
    RC = 1
    CC = 2
    DS = 3


class CounterMode(IntEnum):
    """SPI1 b5b4, TS 102 225 §5.1.1."""

    NO_COUNTER = 0
    NO_CHECK = 1  # counter available, no replay or sequence checking
    HIGHER = 2  # process only if CNTR is higher than the stored value
    ONE_HIGHER = 3  # process only if CNTR is exactly stored + 1


class PorRequest(IntEnum):
    """SPI2 b2b1, TS 102 225 §5.1.1."""

    NONE = 0
    ALWAYS = 1
    ON_ERROR = 2
    RFU = 3


# Members by value, so that reading a field is an index, not an enum lookup by value.
_INTEGRITY_MODES = tuple(IntegrityMode)
_COUNTER_MODES = tuple(CounterMode)
_POR_REQUESTS = tuple(PorRequest)


@dataclass(frozen=True, slots=True)
class Spi:
    """The two SPI octets, TS 102 225 §5.1.1 (bit numbers b1 = LSB)."""

    spi1: int
    spi2: int

    def __post_init__(self) -> None:
        if not (0 <= self.spi1 <= 0xFF and 0 <= self.spi2 <= 0xFF):
            raise EncodeError("spi", 0, f"SPI octets {self.spi1!r}, {self.spi2!r} do not fit one octet each")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Spi:
        # Every packet carries one; the 65536 possible values are immutable, so decoded ones are shared.
        if cls is Spi:
            key = (raw[0] << 8) | raw[1]
            cached = _SPI_CACHE.get(key)
            if cached is None:
                cached = _SPI_CACHE[key] = cls(raw[0], raw[1])
            return cached
        return cls(raw[0], raw[1])

    @classmethod
    def build(
        cls,
        *,
        integrity: IntegrityMode = IntegrityMode.NONE,
        ciphering: bool = False,
        counter: CounterMode = CounterMode.NO_COUNTER,
        por: PorRequest = PorRequest.NONE,
        por_integrity: IntegrityMode = IntegrityMode.NONE,
        por_ciphered: bool = False,
        por_via_sms_submit: bool = False,
    ) -> Spi:
        spi1 = int(integrity) | (0x04 if ciphering else 0) | (int(counter) << 3)
        spi2 = int(por) | (int(por_integrity) << 2) | (0x10 if por_ciphered else 0)
        spi2 |= 0x20 if por_via_sms_submit else 0
        return cls(spi1, spi2)

    def to_bytes(self) -> bytes:
        return bytes((self.spi1, self.spi2))

    # SPI1 -------------------------------------------------------------------
    @property
    def integrity(self) -> IntegrityMode:
        return _INTEGRITY_MODES[self.spi1 & 0x03]

    @property
    def ciphering(self) -> bool:
        return bool(self.spi1 & 0x04)

    @property
    def counter_mode(self) -> CounterMode:
        return _COUNTER_MODES[(self.spi1 >> 3) & 0x03]

    @property
    def spi1_reserved(self) -> int:
        """SPI1 b8b7b6, reserved (0) in TS 102 225."""
        return self.spi1 >> 5

    # SPI2 -------------------------------------------------------------------
    @property
    def por(self) -> PorRequest:
        return _POR_REQUESTS[self.spi2 & 0x03]

    @property
    def por_integrity(self) -> IntegrityMode:
        return _INTEGRITY_MODES[(self.spi2 >> 2) & 0x03]

    @property
    def por_ciphered(self) -> bool:
        return bool(self.spi2 & 0x10)

    @property
    def por_via_sms_submit(self) -> bool:
        """TS 31.115 §4.1: SPI2 b6 = 1 asks for the PoR by SMS-SUBMIT."""
        return bool(self.spi2 & 0x20)

    @property
    def spi2_reserved(self) -> int:
        """SPI2 b8b7, reserved (0)."""
        return self.spi2 >> 6

    def __str__(self) -> str:
        return f"{self.spi1:02x}{self.spi2:02x}"


_SPI_CACHE: dict[int, Spi] = {}


class CipherAlgorithm(Enum):
    """Ciphering algorithms of KIc b4..b1 (TS 102 225 §5.1.2), plus the implicit 3DES-ECB
    that the opentelecoms reference library agrees out of band (its "DESede/ECB")."""

    DES_CBC = "des-cbc"
    TDES2_CBC = "3des2"
    TDES3_CBC = "3des3"
    DES_ECB = "des-ecb"
    AES_CBC = "aes"
    TDES2_ECB = "3des2-ecb"
    TDES3_ECB = "3des3-ecb"

    __hash__ = object.__hash__  # members are singletons: identity hash in C (Enum hashes its name in Python)

    @property
    def block_size(self) -> int:
        return 16 if self is CipherAlgorithm.AES_CBC else 8


class IntegrityAlgorithm(Enum):
    """RC/CC algorithms of KID b4..b1 (TS 102 225 §5.1.3), plus the XOR4/XOR8 redundancy
    checks that opentelecoms offers as implicitly agreed algorithms."""

    CRC16 = "crc16"
    CRC32 = "crc32"
    DES_MAC = "des"
    TDES2_MAC = "3des2"
    TDES3_MAC = "3des3"
    AES_CMAC = "aes-cmac"
    XOR4 = "xor4"
    XOR8 = "xor8"

    __hash__ = object.__hash__  # see CipherAlgorithm

    @property
    def is_redundancy_check(self) -> bool:
        return self in (
            IntegrityAlgorithm.CRC16,
            IntegrityAlgorithm.CRC32,
            IntegrityAlgorithm.XOR4,
            IntegrityAlgorithm.XOR8,
        )

    def default_length(self) -> int:
        """Checksum octets: CRC-16 2, CRC-32 and XOR4 4, the MACs and XOR8 8."""
        return _DEFAULT_LENGTHS[self]


_DEFAULT_LENGTHS = {
    IntegrityAlgorithm.CRC16: 2,
    IntegrityAlgorithm.CRC32: 4,
    IntegrityAlgorithm.XOR4: 4,
    IntegrityAlgorithm.XOR8: 8,
    IntegrityAlgorithm.DES_MAC: 8,
    IntegrityAlgorithm.TDES2_MAC: 8,
    IntegrityAlgorithm.TDES3_MAC: 8,
    IntegrityAlgorithm.AES_CMAC: 8,
}

# KIc b4b3 within the DES family (b2b1 = 01), TS 102 225 §5.1.2.
_KIC_DES = {
    0b00: CipherAlgorithm.DES_CBC,
    0b01: CipherAlgorithm.TDES2_CBC,
    0b10: CipherAlgorithm.TDES3_CBC,
    0b11: CipherAlgorithm.DES_ECB,
}
# KID b4b3 within the DES family when SPI1 asks for a CC, TS 102 225 §5.1.3.
_KID_DES = {
    0b00: IntegrityAlgorithm.DES_MAC,
    0b01: IntegrityAlgorithm.TDES2_MAC,
    0b10: IntegrityAlgorithm.TDES3_MAC,
}
# KID b4b3 when SPI1 asks for an RC and b2b1 = 01, TS 102 225 §5.1.3.
_KID_CRC = {0b00: IntegrityAlgorithm.CRC16, 0b01: IntegrityAlgorithm.CRC32}

KEY_LENGTHS: dict[CipherAlgorithm | IntegrityAlgorithm, tuple[int, ...]] = {
    CipherAlgorithm.DES_CBC: (8,),
    CipherAlgorithm.DES_ECB: (8,),
    CipherAlgorithm.TDES2_CBC: (16,),
    CipherAlgorithm.TDES2_ECB: (16,),
    CipherAlgorithm.TDES3_CBC: (24,),
    CipherAlgorithm.TDES3_ECB: (24,),
    CipherAlgorithm.AES_CBC: (16, 24, 32),
    IntegrityAlgorithm.DES_MAC: (8,),
    IntegrityAlgorithm.TDES2_MAC: (16,),
    IntegrityAlgorithm.TDES3_MAC: (24,),
    IntegrityAlgorithm.AES_CMAC: (16, 24, 32),
}


def key_index(kic_or_kid: int) -> int:
    """b8..b5 of KIc/KID: the key version number (key set) to use."""
    return kic_or_kid >> 4


def resolve_cipher(kic: int, implicit: CipherAlgorithm | None = None) -> CipherAlgorithm:
    """The ciphering algorithm a KIc octet names (TS 102 225 §5.1.2).

    b2b1 = 00 means "known implicitly by both entities": ``implicit`` says which.
    Raises :class:`UnidentifiedSecurityError` (PoR status 06) for RFU and
    proprietary codings or a missing implicit algorithm.
    """
    family = kic & 0x03
    detail = (kic >> 2) & 0x03
    if family == 0b00:
        if implicit is None:
            raise UnidentifiedSecurityError(
                0x06, f"KIc {kic:02x}: algorithm known implicitly, none configured"
            )
        return implicit
    if family == 0b01:
        return _KIC_DES[detail]
    if family == 0b10 and detail == 0b00:
        return CipherAlgorithm.AES_CBC
    raise UnidentifiedSecurityError(0x06, f"KIc {kic:02x}: RFU or proprietary algorithm (TS 102 225 §5.1.2)")


def resolve_integrity(
    kid: int, mode: IntegrityMode, implicit: IntegrityAlgorithm | None = None
) -> IntegrityAlgorithm | None:
    """The RC/CC algorithm a KID octet names under SPI1 ``mode`` (TS 102 225 §5.1.3).

    Returns None for :attr:`IntegrityMode.NONE`. DS has no defined algorithm here
    (project choice, protocols.md §4.4): status 06.
    """
    if mode is IntegrityMode.NONE:
        return None
    if mode is IntegrityMode.DS:
        raise UnidentifiedSecurityError(0x06, "digital signature requested: not supported (status 06)")
    family = kid & 0x03
    detail = (kid >> 2) & 0x03
    if family == 0b00:
        if implicit is None:
            raise UnidentifiedSecurityError(
                0x06, f"KID {kid:02x}: algorithm known implicitly, none configured"
            )
        return implicit
    if mode is IntegrityMode.RC:
        if family == 0b01:
            return _KID_CRC.get(detail) or _reject_kid(kid)
        return _reject_kid(kid)
    if family == 0b01 and detail in _KID_DES:
        return _KID_DES[detail]
    if family == 0b10 and detail == 0b00:
        return IntegrityAlgorithm.AES_CMAC
    return _reject_kid(kid)


def _reject_kid(kid: int) -> IntegrityAlgorithm:
    raise UnidentifiedSecurityError(0x06, f"KID {kid:02x}: RFU or proprietary algorithm (TS 102 225 §5.1.3)")


def kic_octet(key_version: int, algorithm: CipherAlgorithm) -> int:
    """The explicit KIc coding of an algorithm (the ECB variants of 3DES have none)."""
    codes = {
        CipherAlgorithm.DES_CBC: 0x01,
        CipherAlgorithm.TDES2_CBC: 0x05,
        CipherAlgorithm.TDES3_CBC: 0x09,
        CipherAlgorithm.DES_ECB: 0x0D,
        CipherAlgorithm.AES_CBC: 0x02,
    }
    if algorithm not in codes:
        raise EncodeError("kic", 0, f"{algorithm.value} has no explicit KIc coding; use an implicit KIc")
    return (key_version << 4) | codes[algorithm]


def kid_octet(key_version: int, algorithm: IntegrityAlgorithm) -> int:
    """The explicit KID coding of an algorithm (XOR4/XOR8 have none)."""
    codes = {
        IntegrityAlgorithm.CRC16: 0x01,
        IntegrityAlgorithm.CRC32: 0x05,
        IntegrityAlgorithm.DES_MAC: 0x01,
        IntegrityAlgorithm.TDES2_MAC: 0x05,
        IntegrityAlgorithm.TDES3_MAC: 0x09,
        IntegrityAlgorithm.AES_CMAC: 0x02,
    }
    if algorithm not in codes:
        raise EncodeError("kid", 0, f"{algorithm.value} has no explicit KID coding; use an implicit KID")
    return (key_version << 4) | codes[algorithm]
