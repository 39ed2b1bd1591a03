"""Command and response APDUs (ISO/IEC 7816-4 §5) and the status words we use.

Glossary: CLA class, INS instruction, P1/P2 parameters, P3 the single length
octet of the T=0 form (Lc for case 3/4, Le for case 2), SW1 SW2 status word.

The compact remote-APDU format (TS 102 226 §5.1) and the handset's ENVELOPE all
use the T=0 short form ``CLA INS P1 P2 P3 [data]``; :func:`CommandApdu.decode`
reads that form, and needs the instruction's case to know what P3 means.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError


class StatusWord(IntEnum):
    """Status words with names from ISO/IEC 7816-4 §5.6 and TS 102 221 §10.2."""

    OK = 0x9000
    # TS 102 221 §10.2.1.1: 91 XX, proactive command of XX octets pending (low octet varies).
    PROACTIVE_PENDING = 0x9100
    # ISO 7816-4: 61 XX, XX response octets available (T=0).
    RESPONSE_AVAILABLE = 0x6100
    # GSM 11.11: 9F XX, the 2G equivalent of 61 XX.
    RESPONSE_AVAILABLE_2G = 0x9F00
    TOOLKIT_BUSY = 0x9300
    WARNING_NO_INFO = 0x6200
    WARNING_STATE_CHANGED = 0x6300
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    COMMAND_NOT_ALLOWED = 0x6986
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1_P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1_P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    TECHNICAL_PROBLEM = 0x6F00


def sw_bytes(sw: int) -> bytes:
    return (sw & 0xFFFF).to_bytes(2, "big")


def is_success_sw(sw: int, *, legacy_2g: bool = False) -> bool:
    """Whether a script may go on after this SW.

    TS 102 226 §5.1.1 as implemented by onomondo-uicc: 90 00, 91 XX, 61 XX,
    62 XX and 63 XX count as success; 9F XX too on a 2G SIM.
    """
    sw1 = sw >> 8
    if sw == 0x9000 or sw1 in (0x91, 0x61, 0x62, 0x63):
        return True
    return legacy_2g and sw1 == 0x9F


# ISO 7816-4 / TS 102 221 instructions whose P3 is Le (case 2): nothing follows P3.
CASE2_INSTRUCTIONS = frozenset({0xB0, 0xB2, 0xC0, 0x84, 0xF2, 0x12, 0xCA, 0xCB})


@dataclass(frozen=True, slots=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # expected length; None = absent

    def __post_init__(self) -> None:
        # One test for the usual case (runs for every APDU built or decoded): octets and short lengths.
        le = self.le
        if not ((self.cla | self.ins | self.p1 | self.p2) >> 8 or len(self.data) > 255) and (
            le is None or 0 <= le <= 256
        ):
            return
        if not (
            0 <= self.cla <= 0xFF and 0 <= self.ins <= 0xFF and 0 <= self.p1 <= 0xFF and 0 <= self.p2 <= 0xFF
        ):
            for name in ("cla", "ins", "p1", "p2"):
                value = getattr(self, name)
                if not 0 <= value <= 0xFF:
                    raise EncodeError(name, 0, f"{value} does not fit one octet")
        if len(self.data) > 255:
            raise EncodeError("data", 5, f"{len(self.data)} octets exceed a short APDU")
        if self.le is not None and not 0 <= self.le <= 256:
            raise EncodeError("le", 0, f"Le {self.le} outside 0..256")

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def encode_t0(self) -> bytes:
        """T=0 form ``CLA INS P1 P2 P3 [data]``: P3 = Lc if there is data, else Le (or 00)."""
        data = self.data
        if data:
            return bytes((self.cla, self.ins, self.p1, self.p2, len(data))) + data
        return bytes((self.cla, self.ins, self.p1, self.p2, (self.le or 0) & 0xFF))

    def encode(self) -> bytes:
        """ISO 7816-4 short form: ``header [Lc data] [Le]`` (the expanded remote format's form)."""
        data, le = self.data, self.le
        if data:
            out = bytes((self.cla, self.ins, self.p1, self.p2, len(data))) + data
            return out if le is None else out + bytes((le & 0xFF,))
        if le is None:
            return bytes((self.cla, self.ins, self.p1, self.p2))
        return bytes((self.cla, self.ins, self.p1, self.p2, le & 0xFF))

    @classmethod
    def decode_t0(
        cls, reader: ByteReader, *, case2_instructions: frozenset[int] = CASE2_INSTRUCTIONS
    ) -> CommandApdu:
        """Read one T=0 command; P3 is Le for the instructions in ``case2_instructions``."""
        if reader.remaining >= 5:
            cla, ins, p1, p2, p3 = reader.take(5, "c_apdu.header")
        else:  # the field that runs short is named: header or P3
            cla, ins, p1, p2 = reader.take(4, "c_apdu.header")
            p3 = reader.u8("c_apdu.p3")
        if ins in case2_instructions:
            return cls(cla, ins, p1, p2, b"", 256 if p3 == 0 else p3)
        if p3 == 0:
            # Case 1 (no data, no Le) written with P3 = 00.
            return cls(cla, ins, p1, p2)
        return cls(cla, ins, p1, p2, reader.take(p3, "c_apdu.data"))  # take() checks the length

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        """ISO 7816-4 short APDU (cases 1-4, no extended lengths)."""
        reader = ByteReader(raw)
        cla, ins, p1, p2 = reader.take(4, "c_apdu.header")
        if reader.at_end():
            return cls(cla, ins, p1, p2)
        lc_or_le = reader.u8("c_apdu.lc")
        if reader.at_end():
            return cls(cla, ins, p1, p2, b"", 256 if lc_or_le == 0 else lc_or_le)
        if lc_or_le == 0:
            raise DecodeError("c_apdu.lc", 4, "Lc 00 followed by data (extended APDUs unsupported)")
        data = reader.take(lc_or_le, "c_apdu.data")
        le: int | None = None
        if not reader.at_end():
            raw_le = reader.u8("c_apdu.le")
            le = 256 if raw_le == 0 else raw_le
        reader.expect_end("c_apdu")
        return cls(cla, ins, p1, p2, data, le)


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def encode(self) -> bytes:
        return self.data + (self.sw & 0xFFFF).to_bytes(2, "big")  # data + sw_bytes(sw)

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise DecodeError("r_apdu.sw", len(raw), "a response APDU needs at least SW1 SW2")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])
