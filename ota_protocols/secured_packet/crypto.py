"""Ciphers, MACs and redundancy checks of secured packets; the one module importing pycryptodome.

ETSI TS 102 225 §5.1.2 / §5.1.3 and TS 31.115 §4: DES, 3DES (outer CBC, 2 or 3
keys) and AES in CBC mode with an all-zero IV and no cipher-internal padding;
CC = ISO/IEC 9797-1 MAC algorithm 1 with padding method 1 (full DES/3DES-CBC,
zero octets appended to a block boundary, last block) or AES-CMAC (NIST SP
800-38B, RFC 4493) truncated to the leftmost 8 or 4 octets; RC = CRC-16 or CRC-32.

Glossary: CBC cipher block chaining, ECB electronic code book, CMAC cipher-based
MAC, CRC cyclic redundancy check, XOR4/XOR8 the opentelecoms lane checksums.

Speed: building a 3DES key schedule costs about as much as a whole packet, so a
:class:`CipherKey` or :class:`ChecksumKey` is built once per key and reused.
It holds one CBC encryptor whose chaining value carries over between calls;
XORing that value into the first block cancels it, so every call is CBC with
IV 0 in a single C call. The objects are therefore not thread-safe: one per
thread. Key bytes never appear in their repr.
"""

from __future__ import annotations

import zlib

from Crypto.Cipher import AES, DES, DES3

from ota_protocols.errors import ConfigError, EncodeError
from ota_protocols.secured_packet.security_parameters import (
    KEY_LENGTHS,
    CipherAlgorithm,
    IntegrityAlgorithm,
)


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


def _strip_parity(key: bytes) -> bytes:
    # DES ignores the least significant bit of each key octet (FIPS 46-3 §3).
    return bytes(octet & 0xFE for octet in key)


def _des_family_engine(key: bytes, mode: int, **kwargs: bytes) -> object:
    """A DES or 3DES engine for an 8-, 16- or 24-octet key.

    3DES EDE with K1 = K2 (or K2 = K3) collapses to single DES; pycryptodome
    refuses such keys, but published vectors (opentelecoms, all-zero keys) use
    them, so the equivalent single-DES engine is built instead.
    """
    if len(key) == 8:
        return DES.new(key, mode, **kwargs)
    k1, k2 = key[:8], key[8:16]
    k3 = key[16:24] if len(key) == 24 else k1
    p1, p2, p3 = _strip_parity(k1), _strip_parity(k2), _strip_parity(k3)
    if p1 == p2:
        return DES.new(k3, mode, **kwargs)
    if p2 == p3:
        return DES.new(k1, mode, **kwargs)
    return DES3.new(k1 + k2 + k3, mode, **kwargs)


def _engine(aes: bool, key: bytes, mode: int, block: int) -> object:
    if mode == AES.MODE_ECB or mode == DES.MODE_ECB:
        return AES.new(key, AES.MODE_ECB) if aes else _des_family_engine(key, DES.MODE_ECB)
    zero = bytes(block)
    return AES.new(key, AES.MODE_CBC, iv=zero) if aes else _des_family_engine(key, DES.MODE_CBC, iv=zero)


def _check_key(algorithm: CipherAlgorithm | IntegrityAlgorithm, key: bytes) -> None:
    allowed = KEY_LENGTHS.get(algorithm)
    if allowed is not None and len(key) not in allowed:
        wanted = " or ".join(str(n) for n in allowed)
        raise ConfigError("key", f"{algorithm.value} needs a {wanted}-octet key, got {len(key)} octets")


class _ChainedCbc:
    """CBC with IV 0 on a reused encryptor (see the module docstring)."""

    __slots__ = ("_block", "_chain", "_encryptor")

    def __init__(self, aes: bool, key: bytes) -> None:
        self._block = 16 if aes else 8
        self._encryptor = _engine(aes, key, AES.MODE_CBC, self._block)
        self._chain = bytes(self._block)

    def encrypt(self, data: bytes) -> bytes:
        b = self._block
        first = _xor(data[:b], self._chain)
        # Into a buffer of ours (``output=``): pycryptodome then skips building its own (~0.6 us).
        buffer = bytearray(len(data))
        self._encryptor.encrypt(first + data[b:], output=buffer)  # type: ignore[attr-defined]
        out = bytes(buffer)
        self._chain = out[-b:]
        return out


class CipherKey:
    """A ciphering key of a key set (KIc), ready to encrypt and decrypt packets."""

    __slots__ = ("_cbc", "_ecb", "algorithm", "block_size")

    def __init__(self, algorithm: CipherAlgorithm, key: bytes) -> None:
        _check_key(algorithm, key)
        self.algorithm = algorithm
        aes = algorithm is CipherAlgorithm.AES_CBC
        self.block_size = 16 if aes else 8
        self._ecb = _engine(aes, key, AES.MODE_ECB, self.block_size)
        cbc = algorithm in (
            CipherAlgorithm.AES_CBC,
            CipherAlgorithm.DES_CBC,
            CipherAlgorithm.TDES2_CBC,
            CipherAlgorithm.TDES3_CBC,
        )
        self._cbc = _ChainedCbc(aes, key) if cbc else None

    def __repr__(self) -> str:
        return f"CipherKey({self.algorithm.value})"

    def _check(self, data: bytes, field: str) -> None:
        if len(data) % self.block_size:
            raise EncodeError(
                field, 0, f"{len(data)} octets is not a multiple of the {self.block_size}-octet block"
            )

    def encrypt(self, data: bytes) -> bytes:
        if len(data) % self.block_size:
            self._check(data, "plaintext")
        if not data:
            return b""
        if self._cbc is None:
            return self._ecb.encrypt(data)  # type: ignore[attr-defined,no-any-return]
        return self._cbc.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        if len(data) % self.block_size:
            self._check(data, "ciphertext")
        if not data:
            return b""
        buffer = bytearray(len(data))  # as _ChainedCbc.encrypt: our own output buffer
        self._ecb.decrypt(data, output=buffer)  # type: ignore[attr-defined]
        plain = bytes(buffer)
        if self._cbc is None:
            return plain
        # CBC: P_i = D(C_i) xor C_{i-1}, with C_0 = IV = 0.
        return _xor(plain, bytes(self.block_size) + data[: -self.block_size])


_CRC16_X25_TABLE = []
for _i in range(256):
    _crc = _i
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x8408 if _crc & 1 else _crc >> 1
    _CRC16_X25_TABLE.append(_crc)
_CRC16_X25 = tuple(_CRC16_X25_TABLE)
del _CRC16_X25_TABLE


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25: polynomial 0x1021 reflected, init FFFF, final XOR FFFF (ISO/IEC 13239)."""
    crc = 0xFFFF
    table = _CRC16_X25
    for octet in data:
        crc = (crc >> 8) ^ table[(crc ^ octet) & 0xFF]
    return crc ^ 0xFFFF


def _xor_lanes(data: bytes, lane: int) -> bytes:
    padded = data + bytes(-len(data) % lane)
    acc = 0
    for i in range(0, len(padded), lane):
        acc ^= int.from_bytes(padded[i : i + lane], "big")
    return acc.to_bytes(lane, "big")


_AES_CMAC = IntegrityAlgorithm.AES_CMAC


def _shift_left_one(block: bytes) -> bytes:
    n = len(block)
    return ((int.from_bytes(block, "big") << 1) & ((1 << (8 * n)) - 1)).to_bytes(n, "big")


class ChecksumKey:
    """An RC/CC algorithm with its key (KID) and output length, ready to compute checksums."""

    __slots__ = ("_cbc", "_k1", "_k2", "algorithm", "length")

    def __init__(self, algorithm: IntegrityAlgorithm, key: bytes = b"", length: int | None = None) -> None:
        self.algorithm = algorithm
        self.length = algorithm.default_length() if length is None else length
        self._cbc: _ChainedCbc | None = None
        self._k1 = self._k2 = b""
        if algorithm is IntegrityAlgorithm.AES_CMAC:
            if self.length not in (4, 8):
                raise ConfigError(
                    "checksum_length", f"AES-CMAC is truncated to 4 or 8 octets, not {self.length}"
                )
        elif self.length != algorithm.default_length():
            raise ConfigError(
                "checksum_length",
                f"{algorithm.value} gives {algorithm.default_length()} octets, not {self.length}",
            )
        if algorithm.is_redundancy_check:
            return
        _check_key(algorithm, key)
        aes = algorithm is IntegrityAlgorithm.AES_CMAC
        self._cbc = _ChainedCbc(aes, key)
        if aes:
            # RFC 4493 §2.3: L = AES-K(0^128) (one block of CBC with IV 0 is one block of ECB);
            # K1 = L << 1 (^ Rb if the MSB was set); K2 = K1 << 1 (likewise); Rb = 0x87.
            lvalue = self._cbc.encrypt(bytes(16))
            k1 = _shift_left_one(lvalue)
            if lvalue[0] & 0x80:
                k1 = k1[:-1] + bytes((k1[-1] ^ 0x87,))
            k2 = _shift_left_one(k1)
            if k1[0] & 0x80:
                k2 = k2[:-1] + bytes((k2[-1] ^ 0x87,))
            self._k1, self._k2 = k1, k2

    def __repr__(self) -> str:
        return f"ChecksumKey({self.algorithm.value}, {self.length})"

    def compute(self, data: bytes) -> bytes:
        algorithm = self.algorithm
        if algorithm is _AES_CMAC:  # the usual one first (the branches exclude each other)
            return self._cmac(data)[: self.length]
        if algorithm is IntegrityAlgorithm.CRC32:
            # TS 102 225 §5.1.3: CRC-32 as in ISO/IEC 13239 (= zlib), written big-endian.
            return zlib.crc32(data).to_bytes(4, "big")
        if algorithm is IntegrityAlgorithm.CRC16:
            # Byte order of the CRC-16 result is not confirmed (protocols.md §4.4): big-endian, as CRC-32.
            return crc16_x25(data).to_bytes(2, "big")
        if algorithm is IntegrityAlgorithm.XOR4:
            return _xor_lanes(data, 4)
        if algorithm is IntegrityAlgorithm.XOR8:
            return _xor_lanes(data, 8)
        assert self._cbc is not None
        # ISO/IEC 9797-1 MAC algorithm 1, padding method 1: zero octets to a block boundary.
        padded = data + bytes(-len(data) % 8) if data else bytes(8)
        return self._cbc.encrypt(padded)[-8:]

    def _cmac(self, data: bytes) -> bytes:
        assert self._cbc is not None
        if data and len(data) % 16 == 0:
            last = _xor(data[-16:], self._k1)
            message = data[:-16] + last
        else:
            tail_start = len(data) - len(data) % 16
            tail = data[tail_start:] + b"\x80" + bytes(15 - len(data) % 16)
            message = data[:tail_start] + _xor(tail, self._k2)
        return self._cbc.encrypt(message)[-16:]
