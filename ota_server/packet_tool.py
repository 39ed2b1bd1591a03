"""``ota-server packet ...``: build and take apart secured packets from JSON.

One JSON object in, one JSON object out; hex strings are read case-insensitively
and written in lower case. Every bad key or value raises :class:`ConfigError`
naming the key, which the CLI prints as one line with exit status 2.
:func:`read_json` reads stdin's text the same way (invalid JSON, or JSON nested
deeper than the parser can follow, is one ``ConfigError``, not a traceback), and
:data:`KEYS` / :func:`command_help` say which keys each command takes and gives:
the help is built from the same tuples the commands check their input against.

The functions here are pure (dict in, dict out) so that tests call them
directly as well as through the console script.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ota_protocols.errors import ConfigError, DecodeError, EncodeError, SecurityRejection
from ota_protocols.hex_text import parse_hex
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    command_user_data,
    decode_command_packet,
    seal_command,
    split_command_user_data,
)
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    decode_response_packet,
    packet_to_user_data,
    seal_response,
)
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm, Spi

CIPHER_NAMES = {a.value: a for a in CipherAlgorithm} | {
    "aes-cbc": CipherAlgorithm.AES_CBC,
    "des": CipherAlgorithm.DES_CBC,
}
INTEGRITY_NAMES = {a.value: a for a in IntegrityAlgorithm} | {
    "des-mac": IntegrityAlgorithm.DES_MAC,
    "aes": IntegrityAlgorithm.AES_CMAC,
}

_T = TypeVar("_T")

_KEY_FIELDS = ("kic_key", "kid_key", "kic_implicit", "kid_implicit")


@dataclass(frozen=True, slots=True)
class CommandKeys:
    """The JSON keys of one command: required and optional input, and output."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    output: tuple[str, ...]

    @property
    def accepted(self) -> tuple[str, ...]:
        return self.required + self.optional


_KEY_NOTES = {
    "spi": "4 hex digits",
    "kic": "2 hex digits",
    "kid": "2 hex digits",
    "tar": "6 hex digits",
    "cntr": "10 hex digits",
    "data": "hex",
    "kic_key": "hex",
    "kid_key": "hex",
    "kic_implicit": "cipher when KIc b2b1 = 00",
    "kid_implicit": "checksum when KID b2b1 = 00",
    "checksum_length": "4 or 8, AES-CMAC",
    "padding_byte": "2 hex digits",
    "status": "integer 0..255",
    "user_data": "hex; exactly one of user_data and packet",
    "packet": "hex; exactly one of user_data and packet",
}
KEYS: dict[str, CommandKeys] = {
    "encode-command": CommandKeys(
        ("spi", "kic", "kid", "tar", "cntr", "data"),
        ("checksum_length", "padding_byte", *_KEY_FIELDS),
        ("packet", "user_data"),
    ),
    "decode-command": CommandKeys(
        (),
        ("user_data", "packet", *_KEY_FIELDS),
        ("spi", "kic", "kid", "tar", "cntr", "pcntr", "checksum", "checksum_valid", "data"),
    ),
    "encode-response": CommandKeys(
        ("spi", "kic", "kid", "tar", "cntr", "status"),
        ("data", "checksum_length", "padding_byte", *_KEY_FIELDS),
        ("user_data",),
    ),
    "decode-response": CommandKeys(
        ("spi", "kic", "kid"),
        ("user_data", "packet", *_KEY_FIELDS),
        ("tar", "cntr", "pcntr", "status", "checksum", "checksum_valid", "data"),
    ),
}


def command_help(command: str) -> str:
    """The keys of ``command`` for its ``--help`` (one JSON object on stdin, one on stdout)."""
    keys = KEYS[command]

    def describe(names: tuple[str, ...]) -> str:
        return ", ".join(f"{n} ({_KEY_NOTES[n]})" if n in _KEY_NOTES else n for n in names) or "none"

    return (
        f"input keys, required: {describe(keys.required)}; optional: {describe(keys.optional)}. "
        f"Output keys: {', '.join(keys.output)}."
    )


def read_json(text: str) -> object:
    """stdin's text as JSON; one ``ConfigError`` naming stdin when it is not, or is nested deeper
    than the parser follows (100,000 ``[`` would otherwise end in a RecursionError traceback)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "stdin", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ConfigError("stdin", "JSON nested too deeply (expected one flat object)") from None


class _Input:
    """Reads typed values out of the JSON object, naming the key on every error."""

    def __init__(self, raw: object, allowed: tuple[str, ...]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError("", f"expected a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key (allowed: {', '.join(allowed)})")
        self.raw: Mapping[str, Any] = raw

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def hex(self, key: str, *, length: int | None = None, required: bool = True) -> bytes | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise ConfigError(key, "missing")
            return None
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a hex string, got {type(value).__name__}")
        try:
            data = parse_hex(value)
        except ValueError as exc:
            raise ConfigError(key, f"not hex: {exc}") from None
        if length is not None and len(data) != length:
            raise ConfigError(key, f"expected {length} octet(s) ({2 * length} hex digits), got {len(data)}")
        return data

    def integer(self, key: str, *, low: int, high: int, default: int | None = None) -> int:
        value = self.raw.get(key, default)
        if value is None:
            raise ConfigError(key, "missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ConfigError(key, f"{value} outside {low}..{high}")
        return value

    def choice(self, key: str, names: Mapping[str, Any]) -> Any:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or value.lower() not in names:
            raise ConfigError(key, f"unknown algorithm {value!r} (one of: {', '.join(sorted(names))})")
        return names[value.lower()]


def _keys(inp: _Input) -> PacketKeys:
    return PacketKeys(
        kic_key=inp.hex("kic_key", required=False),
        kid_key=inp.hex("kid_key", required=False),
        kic_implicit=inp.choice("kic_implicit", CIPHER_NAMES),
        kid_implicit=inp.choice("kid_implicit", INTEGRITY_NAMES),
    )


def _security(inp: _Input) -> tuple[Spi, int, int]:
    spi_raw = inp.hex("spi", length=2)
    kic_raw = inp.hex("kic", length=1)
    kid_raw = inp.hex("kid", length=1)
    assert spi_raw is not None and kic_raw is not None and kid_raw is not None
    return Spi.from_bytes(spi_raw), kic_raw[0], kid_raw[0]


def _checksum_length(inp: _Input) -> int | None:
    if not inp.has("checksum_length"):
        return None
    value = inp.integer("checksum_length", low=0, high=8)
    if value not in (4, 8):
        raise ConfigError("checksum_length", f"{value}: AES-CMAC takes 4 or 8")
    return value


def _resolve(prefix: str, resolve: Callable[[], _T]) -> _T:
    """Resolve a KIc (``prefix`` "kic") or KID key, naming the input key at fault on failure."""
    try:
        return resolve()
    except SecurityRejection as exc:
        text = str(exc)
        if "implicitly" in text:
            key = f"{prefix}_implicit"
        elif "key" in text.split(":", 1)[-1]:
            key = f"{prefix}_key"
        else:
            key = prefix
        raise ConfigError(key, text) from exc


def _security_keys(
    keys: PacketKeys, spi: Spi, kic: int, kid: int, checksum_length: int | None, *, por: bool
) -> tuple[CipherKey | None, ChecksumKey | None]:
    ciphering = spi.por_ciphered if por else spi.ciphering
    mode = spi.por_integrity if por else spi.integrity
    cipher = _resolve("kic", lambda: keys.cipher(kic)) if ciphering else None
    checksum = _resolve("kid", lambda: keys.checksum(kid, mode, checksum_length))
    return cipher, checksum


def encode_command(raw: object) -> dict[str, Any]:
    inp = _Input(raw, KEYS["encode-command"].accepted)
    spi, kic, kid = _security(inp)
    tar = inp.hex("tar", length=3)
    cntr = inp.hex("cntr", length=5)
    data = inp.hex("data")
    padding = inp.hex("padding_byte", length=1, required=False) or b"\x00"
    keys = _keys(inp)
    checksum_length = _checksum_length(inp)
    assert tar is not None and cntr is not None and data is not None
    command = CommandPacket(spi, kic, kid, tar, int.from_bytes(cntr, "big"), data)

    cipher, checksum = _security_keys(keys, spi, kic, kid, checksum_length, por=False)
    try:
        packet = seal_command(command, cipher, checksum, padding_byte=padding[0])
    except EncodeError as exc:
        raise ConfigError("data", exc.detail) from exc
    return {"packet": packet.hex(), "user_data": command_user_data(packet).hex()}


def _user_data_or_packet(inp: _Input, *, command: bool) -> bytes:
    if inp.has("user_data") == inp.has("packet"):
        raise ConfigError("user_data", "give exactly one of 'user_data' and 'packet'")
    if inp.has("packet"):
        packet = inp.hex("packet")
        assert packet is not None
        return packet if command else packet_to_user_data(packet)
    user_data = inp.hex("user_data")
    assert user_data is not None
    if not command:
        return user_data
    try:
        return split_command_user_data(user_data)
    except DecodeError as exc:
        raise ConfigError("user_data", exc.detail) from exc


def decode_command(raw: object) -> dict[str, Any]:
    inp = _Input(raw, KEYS["decode-command"].accepted)
    packet = _user_data_or_packet(inp, command=True)
    keys = _keys(inp)
    try:
        opened = decode_command_packet(packet, keys)
    except DecodeError as exc:
        raise ConfigError("user_data" if inp.has("user_data") else "packet", str(exc)) from exc
    header = opened.header
    return {
        "spi": header.spi.to_bytes().hex(),
        "kic": f"{header.kic:02x}",
        "kid": f"{header.kid:02x}",
        "tar": header.tar.hex(),
        "cntr": opened.cntr.to_bytes(5, "big").hex(),
        "pcntr": opened.pcntr,
        "checksum": opened.checksum.hex(),
        "checksum_valid": opened.checksum_valid,
        "data": opened.data.hex(),
    }


def encode_response(raw: object) -> dict[str, Any]:
    inp = _Input(raw, KEYS["encode-response"].accepted)
    spi, kic, kid = _security(inp)
    tar = inp.hex("tar", length=3)
    cntr = inp.hex("cntr", length=5)
    status = inp.integer("status", low=0, high=255)
    data = inp.hex("data", required=False) or b""
    padding = inp.hex("padding_byte", length=1, required=False) or b"\x00"
    keys = _keys(inp)
    checksum_length = _checksum_length(inp)
    assert tar is not None and cntr is not None
    response = ResponsePacket(tar, int.from_bytes(cntr, "big"), status, data)

    cipher, checksum = _security_keys(keys, spi, kic, kid, checksum_length, por=True)
    try:
        user_data = seal_response(response, cipher, checksum, padding_byte=padding[0])
    except EncodeError as exc:
        raise ConfigError("data", exc.detail) from exc
    return {"user_data": user_data.hex()}


def decode_response(raw: object) -> dict[str, Any]:
    inp = _Input(raw, KEYS["decode-response"].accepted)
    user_data = _user_data_or_packet(inp, command=False)
    spi, kic, kid = _security(inp)
    keys = _keys(inp)
    try:
        decoded = decode_response_packet(user_data, spi, kic, kid, keys)
    except DecodeError as exc:
        raise ConfigError("user_data" if inp.has("user_data") else "packet", str(exc)) from exc
    return {
        "tar": decoded.tar.hex(),
        "cntr": decoded.cntr.to_bytes(5, "big").hex(),
        "pcntr": decoded.pcntr,
        "status": decoded.status,
        "checksum": decoded.checksum.hex(),
        "checksum_valid": decoded.checksum_valid,
        "data": decoded.data.hex(),
    }


COMMANDS: dict[str, Callable[[object], dict[str, Any]]] = {
    "encode-command": encode_command,
    "decode-command": decode_command,
    "encode-response": encode_response,
    "decode-response": decode_response,
}
