"""SMS transfer-layer PDUs (3GPP TS 23.040 §9.2): SMS-DELIVER, SMS-SUBMIT, SMS-DELIVER-REPORT.

Glossary: TPDU transfer protocol data unit, MT / MO mobile terminated / originated,
TP-MTI message type indicator, TP-OA / TP-DA originating / destination address,
TP-PID protocol identifier, TP-DCS data coding scheme (TS 23.038 §4), TP-SCTS service
centre time stamp, TP-VP(F) validity period (format), TP-UDL / TP-UD user data length
/ user data, TP-UDHI user data header indicator, TP-FCS failure cause, TP-PI parameter
indicator, RP-ACK / RP-ERROR the relay-layer messages that carry a DELIVER-REPORT.

Layouts (octet order, §9.2.2.1, §9.2.2.2, §9.2.2.1a)::

    SMS-DELIVER         first | TP-OA | TP-PID | TP-DCS | TP-SCTS(7) | TP-UDL | TP-UD
    SMS-SUBMIT          first | TP-MR | TP-DA | TP-PID | TP-DCS | [TP-VP 0/1/7] | TP-UDL | TP-UD
    DELIVER-REPORT ack  first | TP-PI | [TP-PID] | [TP-DCS] | [TP-UDL TP-UD]
    DELIVER-REPORT err  first | TP-FCS | TP-PI | [TP-PID] | [TP-DCS] | [TP-UDL TP-UD]

``tp_ud`` always holds the raw user data octets, the UDH included when ``tp_udhi``
is set. Octet-coded data (8-bit, UCS2, compressed) has ``TP-UDL = len(tp_ud)`` and
``tp_udl`` stays None. For the GSM 7-bit alphabet TP-UDL counts septets (§9.2.3.16),
which the octet count does not determine, so decoding keeps it in ``tp_udl``;
septets are not unpacked here.

Flags are stored as the raw bit values. Note TP-MMS: bit set means *no* more
messages are waiting (§9.2.3.2), so ``tp_mms=True`` is the usual single-SMS value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.sms.address import Address
from ota_protocols.sms.user_data_header import UserDataHeader, split_udh

__all__ = [
    "MAX_UD_OCTETS",
    "MAX_UD_SEPTETS",
    "PID_SIM_DATA_DOWNLOAD",
    "FailureCause",
    "MtiMo",
    "MtiMt",
    "SmsDeliver",
    "SmsDeliverReport",
    "SmsSubmit",
    "ValidityPeriodFormat",
    "dcs_message_class",
    "decode_mo_tpdu",
    "decode_mt_tpdu",
    "deliver_pid_dcs",
    "encode_report_with_data",
    "is_7bit_dcs",
    "is_8bit_dcs",
    "is_sim_data_download",
    "is_ucs2_dcs",
    "scts_from_datetime",
    "scts_to_datetime",
    "ud_octet_length",
]

# TS 23.040 §9.2.3.9: TP-PID 0x7F, (U)SIM data download.
PID_SIM_DATA_DOWNLOAD = 0x7F

# TS 23.040 §9.2.3.16: 140 octets of user data, or 160 septets.
MAX_UD_OCTETS = 140
MAX_UD_SEPTETS = 160

# First-octet masks (TS 23.040 §9.2.2.1, §9.2.2.2, §9.2.2.1a).
_MTI_MASK = 0x03
_MMS_OR_RD = 0x04
_LP = 0x08
_VPF_MASK = 0x18
_SRI_OR_SRR = 0x20
_UDHI = 0x40
_RP = 0x80

# TP-PI bits (TS 23.040 §9.2.3.27).
_PI_PID = 0x01
_PI_DCS = 0x02
_PI_UDL = 0x04
_PI_EXTENSION = 0x80

_SCTS_LENGTH = 7


class MtiMt(IntEnum):
    """TP-MTI of a TPDU sent SC -> MS (TS 23.040 §9.2.3.1)."""

    SMS_DELIVER = 0
    SMS_SUBMIT_REPORT = 1
    SMS_STATUS_REPORT = 2
    RESERVED = 3


class MtiMo(IntEnum):
    """TP-MTI of a TPDU sent MS -> SC (TS 23.040 §9.2.3.1)."""

    SMS_DELIVER_REPORT = 0
    SMS_SUBMIT = 1
    SMS_COMMAND = 2
    RESERVED = 3


class ValidityPeriodFormat(IntEnum):
    """TP-VPF, first-octet bits 0x18 of SMS-SUBMIT (TS 23.040 §9.2.3.3)."""

    NONE = 0
    ENHANCED = 1
    RELATIVE = 2
    ABSOLUTE = 3


# TS 23.040 §9.2.3.3: octets of TP-VP for each TP-VPF.
_VP_LENGTH = {
    ValidityPeriodFormat.NONE: 0,
    ValidityPeriodFormat.ENHANCED: 7,
    ValidityPeriodFormat.RELATIVE: 1,
    ValidityPeriodFormat.ABSOLUTE: 7,
}


class FailureCause(IntEnum):
    """TP-FCS values an ME reports for SIM-bound messages (TS 23.040 §9.2.3.22)."""

    SIM_SMS_STORAGE_FULL = 0xD0
    NO_SMS_STORAGE_CAPABILITY_IN_SIM = 0xD1
    ERROR_IN_MS = 0xD2
    MEMORY_CAPACITY_EXCEEDED = 0xD3
    SIM_APPLICATION_TOOLKIT_BUSY = 0xD4
    SIM_DATA_DOWNLOAD_ERROR = 0xD5
    UNSPECIFIED = 0xFF


# ---------------------------------------------------------------------------
# TP-DCS interpretation (TS 23.038 §4)


def _alphabet(dcs: int) -> str:
    """'gsm7', '8bit', 'ucs2' or 'compressed', as far as TP-UDL is concerned."""
    group = dcs >> 4
    if group <= 0x7:
        # General data coding (00xx) and automatic deletion (01xx) share a layout:
        # bit 0x20 compressed, bits 0x0C alphabet.
        if dcs & 0x20:
            return "compressed"
        # TS 23.038 §4: reserved alphabet 11 is to be read as the GSM 7-bit default.
        return {0x0: "gsm7", 0x4: "8bit", 0x8: "ucs2", 0xC: "gsm7"}[dcs & 0x0C]
    if group == 0xF:
        # Data coding / message class: bit 0x04 chooses 8-bit over GSM 7-bit.
        return "8bit" if dcs & 0x04 else "gsm7"
    if group == 0xE:
        return "ucs2"  # message waiting indication, store, UCS2
    # 1100 / 1101 message waiting (GSM 7-bit); 1000-1011 reserved, which TS 23.038 §4
    # says a receiver assumes to be the GSM 7-bit default alphabet.
    return "gsm7"


# _alphabet of every octet, read once per TPDU field on the hot path (a tuple index).
_ALPHABETS = tuple(_alphabet(dcs) for dcs in range(256))


def _alphabet_of(dcs: int) -> str:
    return _ALPHABETS[dcs] if 0 <= dcs <= 0xFF else _alphabet(dcs)


def is_7bit_dcs(dcs: int) -> bool:
    """True when TP-UDL counts septets: uncompressed GSM 7-bit (TS 23.040 §9.2.3.16)."""
    return _alphabet_of(dcs) == "gsm7"


def is_8bit_dcs(dcs: int) -> bool:
    """True for uncompressed 8-bit data, the coding of every OTA packet (TS 23.038 §4)."""
    return _alphabet_of(dcs) == "8bit"


def is_ucs2_dcs(dcs: int) -> bool:
    return _alphabet_of(dcs) == "ucs2"


def dcs_message_class(dcs: int) -> int | None:
    """The message class 0-3 that ``dcs`` carries, or None if it carries none (TS 23.038 §4)."""
    group = dcs >> 4
    if group <= 0x7:
        return dcs & 0x03 if dcs & 0x10 else None
    if group == 0xF:
        return dcs & 0x03
    return None


def is_sim_data_download(pid: int, dcs: int) -> bool:
    """Whether the ME must pass an SMS-DELIVER to the (U)SIM by ENVELOPE: TP-PID 7F and
    message class 2 (TS 31.111 §7.1.1, TS 23.038 §4). DCS ``04`` (no class) does not qualify."""
    return pid == PID_SIM_DATA_DOWNLOAD and dcs_message_class(dcs) == 2


def ud_octet_length(udl: int, dcs: int) -> int:
    """Octets of TP-UD that a TP-UDL of ``udl`` denotes under ``dcs`` (TS 23.040 §9.2.3.16)."""
    return (udl * 7 + 7) // 8 if is_7bit_dcs(dcs) else udl


# ---------------------------------------------------------------------------
# TP-SCTS (TS 23.040 §9.2.3.11)


def _swapped_bcd(value: int) -> int:
    return (value % 10) << 4 | (value // 10)


_SWAPPED_BCD = tuple(_swapped_bcd(value) for value in range(100))  # 0..99, units digit high


def scts_from_datetime(moment: datetime) -> bytes:
    """Encode an aware ``datetime`` as the 7 TP-SCTS octets ``YY MM DD hh mm ss TZ``.

    Semi-octets are swapped (units digit in the high nibble); TZ is in quarters of an
    hour with the sign in bit 0x08 (TS 23.040 §9.2.3.11). Sub-second parts are dropped.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise EncodeError("tp_scts", 0, "naive datetime, expected one with a time zone (TS 23.040 §9.2.3.11)")
    if not 2000 <= moment.year <= 2099:
        raise EncodeError("tp_scts", 0, f"year {moment.year} outside 2000..2099 (two-digit TP-SCTS year)")
    seconds = int(offset.total_seconds())
    if seconds % 900:
        raise EncodeError(
            "tp_scts", 6, f"UTC offset {offset} is not whole quarter hours (TS 23.040 §9.2.3.11)"
        )
    quarters = abs(seconds) // 900
    if quarters > 79:
        raise EncodeError("tp_scts", 6, f"UTC offset {offset} beyond 79 quarter hours")
    swapped = _SWAPPED_BCD
    return bytes(
        (
            swapped[moment.year - 2000],
            swapped[moment.month],
            swapped[moment.day],
            swapped[moment.hour],
            swapped[moment.minute],
            swapped[moment.second],
            swapped[quarters] | (0x08 if seconds < 0 else 0),
        )
    )


def scts_to_datetime(raw: bytes, *, base_offset: int = 0) -> datetime:
    """Decode 7 TP-SCTS octets into an aware ``datetime``; the two-digit year is read as 20YY."""
    if len(raw) != _SCTS_LENGTH:
        raise DecodeError("tp_scts", base_offset, f"{len(raw)} octets, expected 7 (TS 23.040 §9.2.3.11)")
    names = ("year", "month", "day", "hour", "minute", "second")
    values: list[int] = []
    for i, octet in enumerate(raw[:6]):
        low, high = octet & 0x0F, octet >> 4
        if low > 9 or high > 9:
            raise DecodeError(
                f"tp_scts.{names[i]}",
                base_offset + i,
                f"octet {octet:#04x} is not swapped BCD (TS 23.040 §9.2.3.11)",
            )
        values.append(low * 10 + high)
    tz_octet = raw[6]
    tens, units = tz_octet & 0x07, tz_octet >> 4
    if units > 9:
        raise DecodeError(
            "tp_scts.tz", base_offset + 6, f"octet {tz_octet:#04x} is not swapped BCD (TS 23.040 §9.2.3.11)"
        )
    quarters = tens * 10 + units
    sign = -1 if tz_octet & 0x08 else 1
    try:
        return datetime(
            2000 + values[0],
            values[1],
            values[2],
            values[3],
            values[4],
            values[5],
            tzinfo=timezone(timedelta(minutes=15 * quarters * sign)),
        )
    except ValueError as exc:
        raise DecodeError("tp_scts", base_offset, f"{raw.hex()} is not a valid date and time: {exc}") from exc


# ---------------------------------------------------------------------------
# Shared field codecs


def _encode_udl(ud: bytes, udl: int | None, dcs: int, *, max_octets: int, max_septets: int) -> int:
    if is_7bit_dcs(dcs):
        # Without a given count assume the last octet is full, i.e. no spare septet slot.
        septets = len(ud) * 8 // 7 if udl is None else udl
        if septets < 0:
            raise EncodeError("tp_udl", 0, f"TP-UDL {septets} is negative")
        if (septets * 7 + 7) // 8 != len(ud):
            raise EncodeError(
                "tp_udl",
                0,
                f"TP-UDL {septets} septets needs {(septets * 7 + 7) // 8} octets of TP-UD, "
                f"got {len(ud)} (TS 23.040 §9.2.3.16)",
            )
        if septets > max_septets:
            raise EncodeError("tp_udl", 0, f"{septets} septets exceed {max_septets} (TS 23.040 §9.2.3.16)")
        return septets
    if udl is not None and udl != len(ud):
        raise EncodeError(
            "tp_udl",
            0,
            f"TP-UDL {udl} but TP-UD has {len(ud)} octets under DCS {dcs:#04x} (TS 23.040 §9.2.3.16)",
        )
    if len(ud) > max_octets:
        raise EncodeError("tp_ud", 0, f"{len(ud)} octets exceed {max_octets} (TS 23.040 §9.2.3.16)")
    return len(ud)


def _decode_ud(
    reader: ByteReader, dcs: int, *, max_octets: int, max_septets: int
) -> tuple[bytes, int | None]:
    """Read TP-UDL and TP-UD, which must end the TPDU. Returns (ud, septet count or None)."""
    udl_offset = reader.offset
    udl = reader.u8("tp_udl")
    septets = is_7bit_dcs(dcs)
    limit = max_septets if septets else max_octets
    unit = "septets" if septets else "octets"
    if udl > limit:
        raise DecodeError(
            "tp_udl", udl_offset, f"TP-UDL {udl} {unit}, expected at most {limit} (TS 23.040 §9.2.3.16)"
        )
    n_octets = ud_octet_length(udl, dcs)
    if n_octets != reader.remaining:
        raise DecodeError(
            "tp_udl",
            udl_offset,
            f"TP-UDL {udl} {unit} under DCS {dcs:#04x} means {n_octets} octet(s) of TP-UD, "
            f"{reader.remaining} follow (TS 23.040 §9.2.3.16)",
        )
    return reader.take(n_octets, "tp_ud"), (udl if septets else None)


def _check_octet(value: int, field: str) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(field, 0, f"{value} does not fit one octet")


def _read_first_octet(reader: ByteReader, allowed_mti: tuple[int, ...], what: str) -> int:
    offset = reader.offset
    first = reader.u8("first_octet")
    mti = first & _MTI_MASK
    if mti not in allowed_mti:
        raise DecodeError(
            "tp_mti",
            offset,
            f"TP-MTI {mti:02b}, expected {' or '.join(f'{m:02b}' for m in allowed_mti)} for {what} "
            "(TS 23.040 §9.2.3.1)",
        )
    return first


def _split_user_data(udhi: bool, ud: bytes) -> tuple[UserDataHeader | None, bytes]:
    if not udhi:
        return None, ud
    return split_udh(ud)


# ---------------------------------------------------------------------------
# TPDUs


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """SMS-DELIVER, SC -> MS (TS 23.040 §9.2.2.1). ``tp_scts`` is the 7 raw octets."""

    tp_oa: Address
    tp_pid: int = 0
    tp_dcs: int = 0
    tp_scts: bytes = bytes(_SCTS_LENGTH)
    tp_ud: bytes = b""
    tp_mms: bool = True
    tp_rp: bool = False
    tp_udhi: bool = False
    tp_sri: bool = False
    tp_lp: bool = False
    tp_udl: int | None = None

    def encode(self) -> bytes:
        pid, dcs, ud = self.tp_pid, self.tp_dcs, self.tp_ud
        if (
            0 <= pid <= 0xFF
            and 0 <= dcs <= 0xFF
            and self.tp_udl is None
            and _ALPHABETS[dcs] != "gsm7"
            and len(ud) <= MAX_UD_OCTETS
            and len(self.tp_scts) == _SCTS_LENGTH
        ):
            udl = len(ud)  # octet-coded user data (every OTA SMS): what _encode_udl answers
        else:
            _check_octet(pid, "tp_pid")
            _check_octet(dcs, "tp_dcs")
            if len(self.tp_scts) != _SCTS_LENGTH:
                raise EncodeError(
                    "tp_scts", 0, f"{len(self.tp_scts)} octets, expected 7 (TS 23.040 §9.2.3.11)"
                )
            udl = _encode_udl(ud, self.tp_udl, dcs, max_octets=MAX_UD_OCTETS, max_septets=MAX_UD_SEPTETS)
        first = (
            MtiMt.SMS_DELIVER
            | (_MMS_OR_RD if self.tp_mms else 0)
            | (_LP if self.tp_lp else 0)
            | (_SRI_OR_SRR if self.tp_sri else 0)
            | (_UDHI if self.tp_udhi else 0)
            | (_RP if self.tp_rp else 0)
        )
        return bytes((first,)) + self.tp_oa.encode() + bytes((pid, dcs)) + self.tp_scts + bytes((udl,)) + ud

    @classmethod
    def decode(cls, raw: bytes) -> SmsDeliver:
        if type(raw) is bytes and cls is SmsDeliver:
            fast = _decode_deliver_common_shape(raw)
            if fast is not None:
                return fast
        return cls._decode_checked(raw)

    @classmethod
    def _decode_checked(cls, raw: bytes) -> SmsDeliver:
        """The general reader: every shape, and the error that names what is wrong."""
        reader = ByteReader(raw)
        # TS 23.040 §9.2.3.1: an MS treats the reserved TP-MTI 11 as an SMS-DELIVER;
        # re-encoding writes 00.
        first = _read_first_octet(reader, (MtiMt.SMS_DELIVER, MtiMt.RESERVED), "SMS-DELIVER")
        tp_oa = Address.decode(reader)
        tp_pid = reader.u8("tp_pid")
        tp_dcs = reader.u8("tp_dcs")
        tp_scts = reader.take(_SCTS_LENGTH, "tp_scts")
        tp_ud, tp_udl = _decode_ud(reader, tp_dcs, max_octets=MAX_UD_OCTETS, max_septets=MAX_UD_SEPTETS)
        return cls(
            tp_oa=tp_oa,
            tp_pid=tp_pid,
            tp_dcs=tp_dcs,
            tp_scts=tp_scts,
            tp_ud=tp_ud,
            tp_mms=bool(first & _MMS_OR_RD),
            tp_rp=bool(first & _RP),
            tp_udhi=bool(first & _UDHI),
            tp_sri=bool(first & _SRI_OR_SRR),
            tp_lp=bool(first & _LP),
            tp_udl=tp_udl,
        )

    def scts_datetime(self) -> datetime:
        return scts_to_datetime(self.tp_scts)

    def split_user_data(self) -> tuple[UserDataHeader | None, bytes]:
        """(UDH or None, the octets after it); raises DecodeError on a malformed UDH."""
        return _split_user_data(self.tp_udhi, self.tp_ud)


# TP-OA / TP-DA octets (length, TON/NPI, value) -> the Address they decode to; a few addresses
# carry everything (the OTA platform), so a small memo saves the BCD work. Bounded.
_OA_MEMO: dict[bytes, Address] = {}
_OA_MEMO_MAX = 1024


def _deliver_common_shape(raw: bytes) -> tuple[int, Address] | None:
    """Where TP-PID is, and the TP-OA, of an SMS-DELIVER with octet-coded user data (every OTA
    SMS) and a BCD TP-OA; None for any other shape, valid or not, which the general reader
    then judges (so errors stay its own)."""
    n = len(raw)
    if n < 3 or (raw[0] & _MTI_MASK) not in (MtiMt.SMS_DELIVER, MtiMt.RESERVED):
        return None
    semi_octets = raw[1]
    pos = 3 + (semi_octets + 1) // 2  # TP-PID
    if semi_octets > 20 or n < pos + 10:
        return None
    tp_oa = _address_at(raw, 1, pos)
    if tp_oa is None:
        return None
    udl = raw[pos + 9]
    if _ALPHABETS[raw[pos + 1]] == "gsm7" or udl > MAX_UD_OCTETS or udl != n - pos - 10:
        return None
    return pos, tp_oa


def deliver_pid_dcs(raw: bytes) -> tuple[int, int]:
    """``(tp_pid, tp_dcs)`` of ``SmsDeliver.decode(raw)``, raising what it raises: what an ME
    needs to route an SMS (TS 31.111 §7.1.1), without the object for the usual shape."""
    if type(raw) is bytes:
        shape = _deliver_common_shape(raw)
        if shape is not None:
            pos = shape[0]
            return raw[pos], raw[pos + 1]
    deliver = SmsDeliver.decode(raw)
    return deliver.tp_pid, deliver.tp_dcs


def _decode_deliver_common_shape(raw: bytes) -> SmsDeliver | None:
    """An SMS-DELIVER with octet-coded user data (every OTA SMS) and a BCD TP-OA, read by
    index: what the general reader returns for it. None for any other shape, valid or not,
    which the general reader then judges (so errors stay its own)."""
    shape = _deliver_common_shape(raw)
    if shape is None:
        return None
    pos, tp_oa = shape
    tp_dcs = raw[pos + 1]
    first = raw[0]
    return SmsDeliver(
        tp_oa,
        raw[pos],
        tp_dcs,
        raw[pos + 2 : pos + 9],
        raw[pos + 10 :],
        bool(first & _MMS_OR_RD),
        bool(first & _RP),
        bool(first & _UDHI),
        bool(first & _SRI_OR_SRR),
        bool(first & _LP),
        None,
    )


@dataclass(frozen=True, slots=True)
class SmsSubmit:
    """SMS-SUBMIT, MS -> SC (TS 23.040 §9.2.2.2). ``tp_vp`` is raw: 0, 1 or 7 octets per ``tp_vpf``."""

    tp_mr: int
    tp_da: Address
    tp_pid: int = 0
    tp_dcs: int = 0
    tp_ud: bytes = b""
    tp_vpf: ValidityPeriodFormat = ValidityPeriodFormat.NONE
    tp_vp: bytes = b""
    tp_rd: bool = False
    tp_srr: bool = False
    tp_udhi: bool = False
    tp_rp: bool = False
    tp_udl: int | None = None

    def encode(self) -> bytes:
        mr, pid, dcs, ud, vpf = self.tp_mr, self.tp_pid, self.tp_dcs, self.tp_ud, self.tp_vpf
        if (
            0 <= mr <= 0xFF
            and 0 <= pid <= 0xFF
            and 0 <= dcs <= 0xFF
            and type(vpf) is ValidityPeriodFormat
            and len(self.tp_vp) == _VP_LENGTH[vpf]
            and self.tp_udl is None
            and _ALPHABETS[dcs] != "gsm7"
            and len(ud) <= MAX_UD_OCTETS
        ):
            udl = len(ud)  # octet-coded user data (every PoR): what the checks below answer
        else:
            udl, vpf = self._checked_udl_vpf()
        first = (
            MtiMo.SMS_SUBMIT
            | (_MMS_OR_RD if self.tp_rd else 0)
            | (vpf << 3)
            | (_SRI_OR_SRR if self.tp_srr else 0)
            | (_UDHI if self.tp_udhi else 0)
            | (_RP if self.tp_rp else 0)
        )
        return bytes((first, mr)) + self.tp_da.encode() + bytes((pid, dcs)) + self.tp_vp + bytes((udl,)) + ud

    def _checked_udl_vpf(self) -> tuple[int, ValidityPeriodFormat]:
        """Every field check of :meth:`encode`, in order: TP-UDL and TP-VPF, or the EncodeError."""
        _check_octet(self.tp_mr, "tp_mr")
        _check_octet(self.tp_pid, "tp_pid")
        _check_octet(self.tp_dcs, "tp_dcs")
        if self.tp_vpf not in _VP_LENGTH:
            raise EncodeError("tp_vpf", 0, f"TP-VPF {self.tp_vpf!r} outside 0..3 (TS 23.040 §9.2.3.3)")
        vpf = ValidityPeriodFormat(self.tp_vpf)
        if len(self.tp_vp) != _VP_LENGTH[vpf]:
            raise EncodeError(
                "tp_vp",
                0,
                f"{len(self.tp_vp)} octets, TP-VPF {vpf.name} needs {_VP_LENGTH[vpf]} (TS 23.040 §9.2.3.3)",
            )
        udl = _encode_udl(
            self.tp_ud, self.tp_udl, self.tp_dcs, max_octets=MAX_UD_OCTETS, max_septets=MAX_UD_SEPTETS
        )
        return udl, vpf

    @classmethod
    def decode(cls, raw: bytes) -> SmsSubmit:
        if type(raw) is bytes and cls is SmsSubmit:
            fast = _decode_submit_common_shape(raw)
            if fast is not None:
                return fast
        return cls._decode_checked(raw)

    @classmethod
    def _decode_checked(cls, raw: bytes) -> SmsSubmit:
        """The general reader: every shape, and the error that names what is wrong."""
        reader = ByteReader(raw)
        first = _read_first_octet(reader, (MtiMo.SMS_SUBMIT,), "SMS-SUBMIT")
        tp_mr = reader.u8("tp_mr")
        tp_da = Address.decode(reader)
        tp_pid = reader.u8("tp_pid")
        tp_dcs = reader.u8("tp_dcs")
        vpf = ValidityPeriodFormat((first & _VPF_MASK) >> 3)
        tp_vp = reader.take(_VP_LENGTH[vpf], "tp_vp")
        tp_ud, tp_udl = _decode_ud(reader, tp_dcs, max_octets=MAX_UD_OCTETS, max_septets=MAX_UD_SEPTETS)
        return cls(
            tp_mr=tp_mr,
            tp_da=tp_da,
            tp_pid=tp_pid,
            tp_dcs=tp_dcs,
            tp_ud=tp_ud,
            tp_vpf=vpf,
            tp_vp=tp_vp,
            tp_rd=bool(first & _MMS_OR_RD),
            tp_srr=bool(first & _SRI_OR_SRR),
            tp_udhi=bool(first & _UDHI),
            tp_rp=bool(first & _RP),
            tp_udl=tp_udl,
        )

    def split_user_data(self) -> tuple[UserDataHeader | None, bytes]:
        """(UDH or None, the octets after it); raises DecodeError on a malformed UDH."""
        return _split_user_data(self.tp_udhi, self.tp_ud)


_VPFS = tuple(ValidityPeriodFormat(vpf) for vpf in range(4))
_VP_LENGTHS = tuple(_VP_LENGTH[vpf] for vpf in _VPFS)


def _address_at(raw: bytes, start: int, end: int) -> Address | None:
    """The BCD address in ``raw[start:end]`` (length, TON/NPI, value) through the bounded memo,
    or None when it does not decode (the general reader then names what is wrong)."""
    octets = raw[start:end]
    address = _OA_MEMO.get(octets)
    if address is None:
        try:
            address = Address.decode(ByteReader(octets))
        except DecodeError:
            return None
        if len(_OA_MEMO) >= _OA_MEMO_MAX:
            _OA_MEMO.clear()
        _OA_MEMO[octets] = address
    return address


def _decode_submit_common_shape(raw: bytes) -> SmsSubmit | None:
    """An SMS-SUBMIT with octet-coded user data (every PoR) read by index: what the general
    reader returns for it. None for any other shape, valid or not, which the general reader
    then judges (so errors stay its own)."""
    n = len(raw)
    if n < 4 or (raw[0] & _MTI_MASK) != MtiMo.SMS_SUBMIT:
        return None
    semi_octets = raw[2]
    pos = 4 + (semi_octets + 1) // 2  # TP-PID
    if semi_octets > 20 or n < pos + 3:
        return None
    tp_da = _address_at(raw, 2, pos)
    if tp_da is None:
        return None
    first = raw[0]
    vpf = (first & _VPF_MASK) >> 3
    tp_dcs = raw[pos + 1]
    ud_at = pos + 3 + _VP_LENGTHS[vpf]  # after TP-UDL
    if ud_at > n or _ALPHABETS[tp_dcs] == "gsm7":
        return None
    udl = raw[ud_at - 1]
    if udl > MAX_UD_OCTETS or udl != n - ud_at:
        return None
    return SmsSubmit(
        raw[1],
        tp_da,
        raw[pos],
        tp_dcs,
        raw[ud_at:],
        _VPFS[vpf],
        raw[pos + 2 : ud_at - 1],
        bool(first & _MMS_OR_RD),
        bool(first & _SRI_OR_SRR),
        bool(first & _UDHI),
        bool(first & _RP),
        None,
    )


@dataclass(frozen=True, slots=True)
class SmsDeliverReport:
    """SMS-DELIVER-REPORT, MS -> SC (TS 23.040 §9.2.2.1a).

    ``tp_fcs`` None is the RP-ACK form; an integer selects the RP-ERROR form. The TP-PI
    octet is derived from which of ``tp_pid``, ``tp_dcs``, ``tp_ud`` are not None. A
    PoR report is ``SmsDeliverReport(tp_udhi=True, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por)``.
    """

    tp_fcs: int | None = None
    tp_udhi: bool = False
    tp_pid: int | None = None
    tp_dcs: int | None = None
    tp_ud: bytes | None = None
    tp_udl: int | None = None

    @property
    def tp_pi(self) -> int:
        return (
            (_PI_PID if self.tp_pid is not None else 0)
            | (_PI_DCS if self.tp_dcs is not None else 0)
            | (_PI_UDL if self.tp_ud is not None else 0)
        )

    @property
    def is_rp_error(self) -> bool:
        return self.tp_fcs is not None

    def encode(self) -> bytes:
        out = bytearray((MtiMo.SMS_DELIVER_REPORT | (_UDHI if self.tp_udhi else 0),))
        if self.tp_fcs is not None:
            _check_octet(self.tp_fcs, "tp_fcs")
            out.append(self.tp_fcs)
        out.append(self.tp_pi)
        if self.tp_pid is not None:
            _check_octet(self.tp_pid, "tp_pid")
            out.append(self.tp_pid)
        if self.tp_dcs is not None:
            _check_octet(self.tp_dcs, "tp_dcs")
            out.append(self.tp_dcs)
        if self.tp_ud is None:
            if self.tp_udhi or self.tp_udl is not None:
                raise EncodeError(
                    "tp_ud", 0, "TP-UDHI or TP-UDL given without TP-UD (TS 23.040 §9.2.3.27: TP-PI bit 3)"
                )
            return bytes(out)
        # TS 23.040 §9.2.3.27: an absent TP-DCS means the default, 00 (GSM 7-bit).
        dcs = 0 if self.tp_dcs is None else self.tp_dcs
        # The report's TP-UD maximum (§9.2.2.1a) is left to the caller; only the UDL octet binds here.
        udl = _encode_udl(self.tp_ud, self.tp_udl, dcs, max_octets=0xFF, max_septets=0xFF)
        out.append(udl)
        out += self.tp_ud
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes, *, rp_error: bool = False) -> SmsDeliverReport:
        """Decode the RP-ACK form, or with ``rp_error`` the RP-ERROR form that carries TP-FCS.

        The TPDU itself does not say which form it is; the relay layer does.
        """
        if type(raw) is bytes and cls is SmsDeliverReport:
            fast = _decode_report_common_shape(raw, rp_error)
            if fast is not None:
                return fast
        return cls._decode_checked(raw, rp_error=rp_error)

    @classmethod
    def _decode_checked(cls, raw: bytes, *, rp_error: bool = False) -> SmsDeliverReport:
        """The general reader: every shape, and the error that names what is wrong."""
        reader = ByteReader(raw)
        first = _read_first_octet(reader, (MtiMo.SMS_DELIVER_REPORT,), "SMS-DELIVER-REPORT")
        tp_fcs = reader.u8("tp_fcs") if rp_error else None
        pi = reader.u8("tp_pi")
        extension = pi
        # TS 23.040 §9.2.3.27: with the extension bit set, more TP-PI octets follow. Their
        # bits, like the reserved ones, mean nothing to us; they are skipped, not re-encoded.
        while extension & _PI_EXTENSION:
            extension = reader.u8("tp_pi")
        tp_pid = reader.u8("tp_pid") if pi & _PI_PID else None
        tp_dcs = reader.u8("tp_dcs") if pi & _PI_DCS else None
        tp_ud: bytes | None = None
        tp_udl: int | None = None
        if pi & _PI_UDL:
            tp_ud, tp_udl = _decode_ud(
                reader, 0 if tp_dcs is None else tp_dcs, max_octets=0xFF, max_septets=0xFF
            )
        else:
            reader.expect_end("tp_pi")
        return cls(
            tp_fcs=tp_fcs,
            tp_udhi=bool(first & _UDHI) and tp_ud is not None,
            tp_pid=tp_pid,
            tp_dcs=tp_dcs,
            tp_ud=tp_ud,
            tp_udl=tp_udl,
        )

    def split_user_data(self) -> tuple[UserDataHeader | None, bytes]:
        """(UDH or None, the octets after it); raises DecodeError on a malformed UDH."""
        return _split_user_data(self.tp_udhi, self.tp_ud or b"")


def _decode_report_common_shape(raw: bytes, rp_error: bool) -> SmsDeliverReport | None:
    """An SMS-DELIVER-REPORT with one TP-PI octet and, if any, octet-coded user data (every
    PoR report and every bare RP-ACK/RP-ERROR) read by index: what the general reader returns
    for it. None for any other shape, valid or not, which the general reader then judges."""
    n = len(raw)
    pos = 2 if rp_error else 1  # TP-PI
    if n <= pos or raw[0] & _MTI_MASK:
        return None
    pi = raw[pos]
    if pi & _PI_EXTENSION:
        return None
    pos += 1
    tp_pid = tp_dcs = None
    if pi & _PI_PID:
        if pos >= n:
            return None
        tp_pid = raw[pos]
        pos += 1
    if pi & _PI_DCS:
        if pos >= n:
            return None
        tp_dcs = raw[pos]
        pos += 1
    tp_ud = None
    if pi & _PI_UDL:
        if tp_dcs is None or pos >= n or _ALPHABETS[tp_dcs] == "gsm7" or raw[pos] != n - pos - 1:
            return None
        tp_ud = raw[pos + 1 :]
    elif pos != n:
        return None
    return SmsDeliverReport(
        raw[1] if rp_error else None,
        bool(raw[0] & _UDHI) and tp_ud is not None,
        tp_pid,
        tp_dcs,
        tp_ud,
        None,
    )


def encode_report_with_data(fcs: int | None, udhi: bool, pid: int, dcs: int, ud: bytes) -> bytes:
    """``SmsDeliverReport(fcs, udhi, pid, dcs, ud).encode()`` (the ME's PoR report, ``tp_ud``
    given): the same octets and the same :class:`EncodeError`, without the object for the
    usual octet-coded case."""
    if (
        0 <= pid <= 0xFF
        and 0 <= dcs <= 0xFF
        and _ALPHABETS[dcs] != "gsm7"
        and len(ud) <= 0xFF
        and (fcs is None or 0 <= fcs <= 0xFF)
    ):
        first = _UDHI if udhi else 0  # TP-MTI 00: SMS-DELIVER-REPORT
        pi = _PI_PID | _PI_DCS | _PI_UDL
        if fcs is None:
            return bytes((first, pi, pid, dcs, len(ud))) + ud
        return bytes((first, fcs, pi, pid, dcs, len(ud))) + ud
    return SmsDeliverReport(tp_fcs=fcs, tp_udhi=udhi, tp_pid=pid, tp_dcs=dcs, tp_ud=ud).encode()


def decode_mt_tpdu(raw: bytes) -> SmsDeliver:
    """Decode a TPDU sent SC -> MS by its TP-MTI. Only SMS-DELIVER is supported."""
    if not raw:
        raise DecodeError("first_octet", 0, "empty TPDU")
    mti = MtiMt(raw[0] & _MTI_MASK)
    if mti in (MtiMt.SMS_DELIVER, MtiMt.RESERVED):
        return SmsDeliver.decode(raw)
    raise DecodeError(
        "tp_mti", 0, f"{mti.name} is not supported here, expected SMS-DELIVER (TS 23.040 §9.2.3.1)"
    )


def decode_mo_tpdu(raw: bytes, *, rp_error: bool = False) -> SmsSubmit | SmsDeliverReport:
    """Decode a TPDU sent MS -> SC by its TP-MTI; ``rp_error`` as in :meth:`SmsDeliverReport.decode`."""
    if not raw:
        raise DecodeError("first_octet", 0, "empty TPDU")
    mti = MtiMo(raw[0] & _MTI_MASK)
    if mti == MtiMo.SMS_SUBMIT:
        return SmsSubmit.decode(raw)
    if mti == MtiMo.SMS_DELIVER_REPORT:
        return SmsDeliverReport.decode(raw, rp_error=rp_error)
    raise DecodeError(
        "tp_mti",
        0,
        f"{mti.name} is not supported here, expected SMS-SUBMIT or SMS-DELIVER-REPORT (TS 23.040 §9.2.3.1)",
    )
