"""Remote APDU formats of the secured data: compact and expanded (ETSI TS 102 226 §5).

The format is fixed per target application (TAR), never detected from the bytes, so each
format has its own codec and the caller picks one from the TAR's configuration.

* **Compact** (§5.1): commands are T=0 C-APDUs back to back, ``CLA INS P1 P2 P3 [data]``;
  P3 is Le for case 2 instructions and Lc otherwise, so the decoder needs the case-2 set
  of the target application. The response is ``NN SW1 SW2 [data]`` (§5.1.2): NN counts
  the executed commands including the one that failed, SW and data are the last one's.
* **Expanded** (§5.2): a command scripting template ``AA`` (definite length) or ``AE``
  (indefinite, ``AE 80 ... 00 00``) holding C-APDU TLVs ``22`` in ISO/IEC 7816-4 short
  form with Le, plus immediate action ``81``, error action ``82`` and script chaining
  ``83``. The response template ``AB`` / ``AF`` starts with ``80 01 NN`` and holds one
  R-APDU TLV ``23`` (data + SW1 SW2) per executed C-APDU, plus immediate action
  response ``81``, script chaining response ``83`` and bad format ``90``.

Glossary: C-APDU / R-APDU command / response APDU; NN number of executed commands;
SW status word; TAR toolkit application reference; T=0 the character protocol's APDU form.

The dataclasses group the optional TLVs by kind, so their relative order is not kept:
encoders write ``83, 81, 82, 22...`` (command) and ``80, 83, 81, 23..., 90`` (response),
then any unknown TLV. Which order TS 102 226 demands is an open point (protocols.md §16).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu, sw_bytes
from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.tlv import (
    MAX_BER_LENGTH,
    Tlv,
    decode_ber_all,
    decode_ber_any_length,
    encode_ber,
    encode_ber_indefinite,
)


class ScriptTag(IntEnum):
    """BER tags of the expanded remote APDU format (TS 102 226 §5.2, TS 101 220 §7.2)."""

    COMMAND_SCRIPTING_TEMPLATE = 0xAA
    RESPONSE_SCRIPTING_TEMPLATE = 0xAB
    COMMAND_SCRIPTING_TEMPLATE_INDEFINITE = 0xAE
    RESPONSE_SCRIPTING_TEMPLATE_INDEFINITE = 0xAF
    C_APDU = 0x22
    R_APDU = 0x23
    NUMBER_OF_EXECUTED_COMMANDS = 0x80
    IMMEDIATE_ACTION = 0x81
    ERROR_ACTION = 0x82
    SCRIPT_CHAINING = 0x83
    BAD_FORMAT = 0x90


# Bad format TLV value for an unknown tag, ``90 01 01`` (protocols.md §12.4; other codes unverified).
BAD_FORMAT_UNKNOWN_TAG = 0x01


# --------------------------------------------------------------------------- compact format


def encode_compact_commands(
    apdus: Sequence[CommandApdu], case2_instructions: frozenset[int] = CASE2_INSTRUCTIONS
) -> bytes:
    """Concatenate T=0 forms (§5.1.1).

    A case 4 command loses its Le, as T=0 has none: the script fetches the data with an
    explicit GET RESPONSE. Forms the decoder would read back differently raise
    :class:`EncodeError`: data on a case 2 instruction, or Le without data on another.
    """
    out = bytearray()
    for index, apdu in enumerate(apdus):
        if apdu.ins in case2_instructions:
            if apdu.data:
                raise EncodeError(
                    f"c_apdu[{index}].data",
                    len(out) + 5,
                    f"INS {apdu.ins:02X} is case 2 here (P3 = Le), so it cannot carry data",
                )
        elif not apdu.data and apdu.le is not None:
            raise EncodeError(
                f"c_apdu[{index}].le",
                len(out) + 4,
                f"INS {apdu.ins:02X} is not in the case 2 set, so P3 would be read as Lc",
            )
        out += apdu.encode_t0()
    return bytes(out)


def decode_compact_commands(
    data: bytes, case2_instructions: frozenset[int] = CASE2_INSTRUCTIONS, *, base_offset: int = 0
) -> list[CommandApdu]:
    """Split a compact command script into C-APDUs (§5.1.1); empty data gives no commands."""
    reader = ByteReader(data, base_offset=base_offset)
    commands: list[CommandApdu] = []
    while not reader.at_end():
        commands.append(CommandApdu.decode_t0(reader, case2_instructions=case2_instructions))
    return commands


def _check_sw(field: str, sw: int) -> None:
    if not 0 <= sw <= 0xFFFF:
        raise EncodeError(field, 0, f"status word {sw:#x} does not fit two octets")


def _check_count(field: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(field, 0, f"{value} does not fit one octet")


@dataclass(frozen=True, slots=True)
class CompactResponse:
    """Compact response ``NN SW1 SW2 [data]`` (§5.1.2).

    ``executed`` counts the commands run, the failing one included; ``sw`` and ``data`` are
    those of the last command run.
    """

    executed: int
    sw: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_count("compact_response.executed", self.executed)
        _check_sw("compact_response.sw", self.sw)

    @property
    def last_response(self) -> ResponseApdu:
        return ResponseApdu(self.data, self.sw)

    def encode(self) -> bytes:
        return bytes((self.executed,)) + sw_bytes(self.sw) + self.data

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> CompactResponse:
        reader = ByteReader(data, base_offset=base_offset)
        executed = reader.u8("compact_response.nn")
        sw = reader.uint(2, "compact_response.sw")
        return cls(executed, sw, reader.rest())


# --------------------------------------------------------------------------- expanded format


def _optional_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _encode_template(
    tag_definite: int, tag_indefinite: int, body: bytes, indefinite: bool, field: str
) -> bytes:
    if indefinite:
        return encode_ber_indefinite(tag_indefinite, body)
    if len(body) > MAX_BER_LENGTH:
        raise EncodeError(field, 0, f"{len(body)} octets exceed a definite template; use the indefinite form")
    return encode_ber(tag_definite, body)


def _decode_template(
    data: bytes, tag_definite: int, tag_indefinite: int, base_offset: int, field: str
) -> tuple[list[tuple[int, Tlv]], bool]:
    """The TLVs inside one scripting template, each with its absolute offset."""
    reader = ByteReader(data, base_offset=base_offset)
    template, indefinite = decode_ber_any_length(reader)
    # TS 102 226 §5.2: the tag says which length form follows; they do not mix.
    expected = tag_indefinite if indefinite else tag_definite
    if template.tag != expected:
        form = "indefinite" if indefinite else "definite"
        raise DecodeError(
            f"{field}.tag",
            base_offset,
            f"expected {expected:02X} for the {form} length form, got {template.tag:X} (TS 102 226 §5.2)",
        )
    reader.expect_end(field)
    value_offset = reader.offset - len(template.value) - (2 if indefinite else 0)
    inner: list[tuple[int, Tlv]] = []
    offset = value_offset
    for tlv in decode_ber_all(template.value, value_offset):
        inner.append((offset, tlv))
        # Decoded lengths are canonical, so re-encoding gives back the exact octet count.
        offset += len(tlv.encode())
    return inner, indefinite


def _set_once(slots: dict[int, bytes], tlv: Tlv, offset: int, field: str) -> None:
    if tlv.tag in slots:
        raise DecodeError(f"{field}.tlv[{tlv.tag:02X}]", offset, f"tag {tlv.tag:02X} appears twice")
    slots[tlv.tag] = tlv.value


@dataclass(frozen=True, slots=True)
class ExpandedCommandScript:
    """Command scripting template ``AA`` / ``AE`` (§5.2.1).

    ``immediate_action``, ``error_action`` and ``script_chaining`` are the raw values of
    TLVs ``81``, ``82`` and ``83``. ``unknown`` keeps any other TLV, so that the executor
    can answer bad format ``90 01 01`` instead of failing to decode.
    """

    apdus: tuple[CommandApdu, ...]
    immediate_action: bytes | None = None
    error_action: bytes | None = None
    script_chaining: bytes | None = None
    indefinite: bool = False
    unknown: tuple[Tlv, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples, so instances stay hashable.
        object.__setattr__(self, "apdus", tuple(self.apdus))
        object.__setattr__(self, "unknown", tuple(self.unknown))
        for name in ("immediate_action", "error_action", "script_chaining"):
            object.__setattr__(self, name, _optional_bytes(getattr(self, name)))

    def encode(self) -> bytes:
        body = bytearray()
        for tag, value in (
            (ScriptTag.SCRIPT_CHAINING, self.script_chaining),
            (ScriptTag.IMMEDIATE_ACTION, self.immediate_action),
            (ScriptTag.ERROR_ACTION, self.error_action),
        ):
            if value is not None:
                body += encode_ber(tag, value)
        for apdu in self.apdus:
            body += encode_ber(ScriptTag.C_APDU, apdu.encode())
        for tlv in self.unknown:
            body += tlv.encode()
        return _encode_template(
            ScriptTag.COMMAND_SCRIPTING_TEMPLATE,
            ScriptTag.COMMAND_SCRIPTING_TEMPLATE_INDEFINITE,
            bytes(body),
            self.indefinite,
            "command_script",
        )

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> ExpandedCommandScript:
        inner, indefinite = _decode_template(
            data,
            ScriptTag.COMMAND_SCRIPTING_TEMPLATE,
            ScriptTag.COMMAND_SCRIPTING_TEMPLATE_INDEFINITE,
            base_offset,
            "command_script",
        )
        apdus: list[CommandApdu] = []
        actions: dict[int, bytes] = {}
        unknown: list[Tlv] = []
        for offset, tlv in inner:
            if tlv.tag == ScriptTag.C_APDU:
                apdus.append(
                    _decode_c_apdu(tlv.value, offset + len(tlv.encode()) - len(tlv.value), len(apdus))
                )
            elif tlv.tag in (ScriptTag.IMMEDIATE_ACTION, ScriptTag.ERROR_ACTION, ScriptTag.SCRIPT_CHAINING):
                _set_once(actions, tlv, offset, "command_script")
            else:
                unknown.append(tlv)
        return cls(
            tuple(apdus),
            actions.get(ScriptTag.IMMEDIATE_ACTION),
            actions.get(ScriptTag.ERROR_ACTION),
            actions.get(ScriptTag.SCRIPT_CHAINING),
            indefinite,
            tuple(unknown),
        )


def _decode_c_apdu(value: bytes, value_offset: int, index: int) -> CommandApdu:
    try:
        return CommandApdu.decode(value)
    except DecodeError as exc:
        # CommandApdu.decode counts from the APDU's first octet; name the script position.
        raise DecodeError(
            f"command_script.c_apdu[{index}].{exc.field}",
            value_offset + exc.offset,
            f"{exc.detail} (TS 102 226 §5.2.1, ISO/IEC 7816-4 short form)",
        ) from exc


@dataclass(frozen=True, slots=True)
class ExpandedResponse:
    """Response scripting template ``AB`` / ``AF`` (§5.2.2).

    ``executed`` is the ``80 01 NN`` count of executed command TLVs; ``r_apdus`` one
    R-APDU per executed C-APDU; ``immediate_action_response`` and ``chaining_response``
    the raw values of ``81`` and ``83``; ``bad_format`` the value of ``90 01 xx``.
    """

    executed: int
    r_apdus: tuple[ResponseApdu, ...] = ()
    immediate_action_response: bytes | None = None
    chaining_response: bytes | None = None
    bad_format: int | None = None
    indefinite: bool = False
    unknown: tuple[Tlv, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_apdus", tuple(self.r_apdus))
        object.__setattr__(self, "unknown", tuple(self.unknown))
        for name in ("immediate_action_response", "chaining_response"):
            object.__setattr__(self, name, _optional_bytes(getattr(self, name)))
        _check_count("expanded_response.executed", self.executed)
        if self.bad_format is not None:
            _check_count("expanded_response.bad_format", self.bad_format)
        for index, r_apdu in enumerate(self.r_apdus):
            _check_sw(f"expanded_response.r_apdu[{index}].sw", r_apdu.sw)

    def encode(self) -> bytes:
        # TS 102 226 §5.2.2: the number of executed commands comes first.
        body = bytearray(encode_ber(ScriptTag.NUMBER_OF_EXECUTED_COMMANDS, bytes((self.executed,))))
        if self.chaining_response is not None:
            body += encode_ber(ScriptTag.SCRIPT_CHAINING, self.chaining_response)
        if self.immediate_action_response is not None:
            body += encode_ber(ScriptTag.IMMEDIATE_ACTION, self.immediate_action_response)
        for r_apdu in self.r_apdus:
            body += encode_ber(ScriptTag.R_APDU, r_apdu.encode())
        if self.bad_format is not None:
            body += encode_ber(ScriptTag.BAD_FORMAT, bytes((self.bad_format,)))
        for tlv in self.unknown:
            body += tlv.encode()
        return _encode_template(
            ScriptTag.RESPONSE_SCRIPTING_TEMPLATE,
            ScriptTag.RESPONSE_SCRIPTING_TEMPLATE_INDEFINITE,
            bytes(body),
            self.indefinite,
            "expanded_response",
        )

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> ExpandedResponse:
        inner, indefinite = _decode_template(
            data,
            ScriptTag.RESPONSE_SCRIPTING_TEMPLATE,
            ScriptTag.RESPONSE_SCRIPTING_TEMPLATE_INDEFINITE,
            base_offset,
            "expanded_response",
        )
        if not inner or inner[0][1].tag != ScriptTag.NUMBER_OF_EXECUTED_COMMANDS:
            offset = inner[0][0] if inner else base_offset
            got = f"{inner[0][1].tag:X}" if inner else "an empty template"
            raise DecodeError(
                "expanded_response.nn", offset, f"expected 80 01 NN first, got {got} (TS 102 226 §5.2.2)"
            )
        count_offset, count_tlv = inner[0]
        if len(count_tlv.value) != 1:
            raise DecodeError(
                "expanded_response.nn",
                count_offset,
                f"length {len(count_tlv.value)}, expected 1 (TS 102 226 §5.2.2)",
            )
        r_apdus: list[ResponseApdu] = []
        singles: dict[int, bytes] = {}
        unknown: list[Tlv] = []
        for offset, tlv in inner[1:]:
            if tlv.tag == ScriptTag.R_APDU:
                if len(tlv.value) < 2:
                    raise DecodeError(
                        f"expanded_response.r_apdu[{len(r_apdus)}]",
                        offset,
                        f"length {len(tlv.value)}, expected at least SW1 SW2 (TS 102 226 §5.2.2)",
                    )
                r_apdus.append(ResponseApdu.decode(tlv.value))
            elif tlv.tag in (ScriptTag.IMMEDIATE_ACTION, ScriptTag.SCRIPT_CHAINING, ScriptTag.BAD_FORMAT):
                if tlv.tag == ScriptTag.BAD_FORMAT and len(tlv.value) != 1:
                    raise DecodeError(
                        "expanded_response.bad_format",
                        offset,
                        f"length {len(tlv.value)}, expected 1 (TS 102 226 §5.2.2)",
                    )
                _set_once(singles, tlv, offset, "expanded_response")
            else:
                # Includes a second 80: kept rather than refused, the count is the first one.
                unknown.append(tlv)
        bad_format = singles.get(ScriptTag.BAD_FORMAT)
        return cls(
            count_tlv.value[0],
            tuple(r_apdus),
            singles.get(ScriptTag.IMMEDIATE_ACTION),
            singles.get(ScriptTag.SCRIPT_CHAINING),
            None if bad_format is None else bad_format[0],
            indefinite,
            tuple(unknown),
        )
