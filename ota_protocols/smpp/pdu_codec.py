"""SMPP 3.4 PDUs: bytes <-> frozen dataclasses, strictly.

Covers the PDUs an OTA SMSC and ESME exchange: bind_* and their responses
(§4.1), submit_sm (§4.4), deliver_sm (§4.6), unbind (§4.2), enquire_link
(§4.11) and generic_nack (§4.3), with the 16-octet header of §3.2 and the
TLV optional parameters of §5.3.  Any other command_id decodes to
:class:`UnknownPdu`, so the session can answer generic_nack ESME_RINVCMDID with
the same sequence_number (§3.3).  :class:`DeliveryReceipt` writes and reads
the receipt text of Appendix B.

Every violation found while decoding raises :class:`MalformedPdu`, an
``SmppViolation`` carrying the command_status to answer with plus the
command_id and sequence_number whenever the header was readable.  Encoding a
value that does not fit raises ``EncodeError``.

Glossary: PDU protocol data unit; TLV tag-length-value optional parameter;
C-string NUL-terminated octet string (§3.1); TON/NPI type of number /
numbering plan indicator; sm short message; DCS data_coding; PID protocol_id.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError, SmppViolation, TruncatedData
from ota_protocols.smpp.command_status import RESPONSE_BIT, CommandId, CommandStatus, command_name

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "HEADER_LENGTH",
    "Bind",
    "BindKind",
    "BindResp",
    "DeliverSm",
    "DeliverSmResp",
    "DeliveryReceipt",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "MalformedPdu",
    "MessageState",
    "Pdu",
    "SubmitSm",
    "SubmitSmResp",
    "Tag",
    "Tlvs",
    "Unbind",
    "UnbindResp",
    "UnknownPdu",
    "decode_pdu",
    "encode_pdu",
    "error_response",
    "is_response",
]

# SMPP 3.4 §3.2: command_length, command_id, command_status, sequence_number.
_HEADER = struct.Struct(">IIII")
_TL = struct.Struct(">HH")
HEADER_LENGTH = 16
# SMPP 3.4 §4.4.1: sm_length is 0..254.
MAX_SM_LENGTH = 254
# SMPP 3.4 §3.1: the interface version this codec speaks (bind, sc_interface_version).
SMPP_VERSION_34 = 0x34

_ROK = CommandStatus.ESME_ROK

Tlvs = tuple[tuple[int, bytes], ...]


class BindKind(IntEnum):
    """The three binds of SMPP 3.4 §4.1; values are their command_ids."""

    RECEIVER = CommandId.BIND_RECEIVER
    TRANSMITTER = CommandId.BIND_TRANSMITTER
    TRANSCEIVER = CommandId.BIND_TRANSCEIVER


class Tag(IntEnum):
    """TLV tags used here (SMPP 3.4 §5.3.2, Table 5-8); others are kept as raw pairs."""

    RECEIPTED_MESSAGE_ID = 0x001E
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


class MessageState(IntEnum):
    """SMPP 3.4 §5.2.28, message_state values."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


# SMPP 3.4 §5.3.2: TLVs whose value has one fixed size; another length is ESME_RINVPARLEN.
_FIXED_TLV_LENGTH: dict[int, int] = {
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.MESSAGE_STATE: 1,
}


class MalformedPdu(SmppViolation):
    """A received PDU that must be refused with ``command_status``.

    ``command_id`` and ``sequence_number`` are ``None`` when the header itself
    could not be read; the answer then goes out with sequence_number 0.
    """

    def __init__(
        self,
        command_status: int,
        message: str,
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        super().__init__(command_status, message)
        self.command_id = command_id
        self.sequence_number = sequence_number


class _FieldViolation(DecodeError):
    """A body field breaks a rule that has its own command_status."""

    def __init__(self, field: str, offset: int, message: str, command_status: int) -> None:
        super().__init__(field, offset, message)
        self.command_status = command_status


# --------------------------------------------------------------------------- PDUs


def _first_tlv(tlvs: Tlvs, tag: int) -> bytes | None:
    for t, value in tlvs:
        if t == tag:
            return value
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind:
    """bind_transmitter / bind_receiver / bind_transceiver (SMPP 3.4 §4.1.1, §4.1.3, §4.1.5)."""

    kind: BindKind
    sequence_number: int = 0
    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    interface_version: int = SMPP_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    @property
    def command_id(self) -> int:
        return int(self.kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindResp:
    """bind_*_resp (SMPP 3.4 §4.1.2); ``tlvs`` may hold sc_interface_version 0x0210."""

    kind: BindKind
    sequence_number: int = 0
    command_status: int = _ROK
    system_id: str = ""
    tlvs: Tlvs = ()

    @property
    def command_id(self) -> int:
        return int(self.kind) | RESPONSE_BIT


@dataclass(frozen=True, slots=True, kw_only=True)
class _HeaderPdu:
    """A PDU of fixed command_id: the header fields every PDU has (SMPP 3.4 §3.2)."""

    COMMAND_ID: ClassVar[int] = 0

    sequence_number: int = 0

    @property
    def command_id(self) -> int:
        return self.COMMAND_ID


@dataclass(frozen=True, slots=True, kw_only=True)
class _ResponsePdu(_HeaderPdu):
    """A response: the header plus the command_status it carries (§3.2)."""

    command_status: int = _ROK


@dataclass(frozen=True, slots=True, kw_only=True)
class _MessageIdResp(_ResponsePdu):
    """submit_sm_resp and deliver_sm_resp share one body: message_id, then TLVs (§4.4.2, §4.6.2)."""

    message_id: str = ""
    tlvs: Tlvs = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessage(_HeaderPdu):
    """Fields shared by submit_sm (SMPP 3.4 §4.4.1) and deliver_sm (§4.6.1), in wire order."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = ()

    def tlv(self, tag: int) -> bytes | None:
        """The value of the first TLV with ``tag``, or ``None``."""
        return _first_tlv(self.tlvs, tag)

    @property
    def message_payload(self) -> bytes | None:
        """TLV 0x0424 (SMPP 3.4 §5.3.2.32)."""
        return _first_tlv(self.tlvs, Tag.MESSAGE_PAYLOAD)

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or message_payload when that is used instead."""
        if self.short_message:
            return self.short_message
        mp = _first_tlv(self.tlvs, Tag.MESSAGE_PAYLOAD)
        return b"" if mp is None else mp

    @property
    def receipted_message_id(self) -> str | None:
        """TLV 0x001E (SMPP 3.4 §5.3.2.12), a C-string; the NUL is stripped."""
        value = _first_tlv(self.tlvs, Tag.RECEIPTED_MESSAGE_ID)
        if value is None:
            return None
        return value.split(b"\x00", 1)[0].decode("latin-1")

    @property
    def message_state(self) -> int | None:
        """TLV 0x0427 (SMPP 3.4 §5.3.2.35), one octet; see :class:`MessageState`."""
        value = _first_tlv(self.tlvs, Tag.MESSAGE_STATE)
        return value[0] if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(_ShortMessage):
    COMMAND_ID: ClassVar[int] = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(_ShortMessage):
    COMMAND_ID: ClassVar[int] = CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    """submit_sm_resp (SMPP 3.4 §4.4.2); the body is omitted when the status is an error."""

    COMMAND_ID: ClassVar[int] = CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    """deliver_sm_resp (SMPP 3.4 §4.6.2); message_id is unused and sent as a lone NUL."""

    COMMAND_ID: ClassVar[int] = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(_HeaderPdu):
    """enquire_link (SMPP 3.4 §4.11.1): header only."""

    COMMAND_ID: ClassVar[int] = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(_ResponsePdu):
    """enquire_link_resp (SMPP 3.4 §4.11.2): header only."""

    COMMAND_ID: ClassVar[int] = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(_HeaderPdu):
    """unbind (SMPP 3.4 §4.2.1): header only."""

    COMMAND_ID: ClassVar[int] = CommandId.UNBIND


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(_ResponsePdu):
    """unbind_resp (SMPP 3.4 §4.2.2): header only."""

    COMMAND_ID: ClassVar[int] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(_ResponsePdu):
    """generic_nack (SMPP 3.4 §4.3.1): header only, answers a PDU with a bad header."""

    COMMAND_ID: ClassVar[int] = CommandId.GENERIC_NACK


@dataclass(frozen=True, slots=True)
class UnknownPdu:
    """Any command_id this codec does not model (outbind, query_sm, data_sm, ...), body kept raw."""

    command_id: int
    command_status: int
    sequence_number: int
    body: bytes = b""


Pdu = (
    Bind
    | BindResp
    | SubmitSm
    | SubmitSmResp
    | DeliverSm
    | DeliverSmResp
    | EnquireLink
    | EnquireLinkResp
    | Unbind
    | UnbindResp
    | GenericNack
    | UnknownPdu
)


def is_response(pdu: Pdu) -> bool:
    """SMPP 3.4 §5.1.2: bit 31 of command_id marks a response (generic_nack included)."""
    return bool(pdu.command_id & RESPONSE_BIT)


def error_response(command_id: int, sequence_number: int, command_status: int) -> Pdu:
    """The PDU refusing request ``command_id`` with ``command_status``.

    SMPP 3.4 §3.3: a request we model gets its own *_resp; anything else gets
    generic_nack.  Statuses about the header itself (RINVCMDLEN, RINVCMDID)
    are the caller's to route to generic_nack.
    """
    if command_id == CommandId.SUBMIT_SM:
        return SubmitSmResp(sequence_number=sequence_number, command_status=command_status)
    if command_id == CommandId.DELIVER_SM:
        return DeliverSmResp(sequence_number=sequence_number, command_status=command_status)
    if command_id in _BIND_KINDS:
        return BindResp(
            kind=BindKind(command_id), sequence_number=sequence_number, command_status=command_status
        )
    if command_id == CommandId.ENQUIRE_LINK:
        return EnquireLinkResp(sequence_number=sequence_number, command_status=command_status)
    if command_id == CommandId.UNBIND:
        return UnbindResp(sequence_number=sequence_number, command_status=command_status)
    return GenericNack(sequence_number=sequence_number, command_status=command_status)


_BIND_KINDS = frozenset(int(k) for k in BindKind)

# --------------------------------------------------------------------------- encoding


def _cstr(value: str, max_length: int, name: str) -> bytes:
    # SMPP 3.4 §3.1: a C-Octet String of max_length counts its NUL terminator.
    raw = value.encode("latin-1")
    if len(raw) >= max_length or b"\x00" in raw:
        raise EncodeError(
            name, 0, f"{value!r} does not fit a C-string of max {max_length} octets (SMPP 3.4 §3.1, §4)"
        )
    return raw + b"\x00"


def _check_time(value: str, name: str) -> None:
    # SMPP 3.4 §7.1.1: NULL or exactly 16 characters "YYMMDDhhmmsstnnp", p in '+', '-', 'R'.
    if value and (len(value) != 16 or value[15] not in "+-R"):
        raise EncodeError(name, 0, f"{value!r} is neither NULL nor a §7.1.1 time")


def _encode_tlvs(tlvs: Tlvs) -> bytes:
    if not tlvs:
        return b""
    return b"".join([_TL.pack(tag, len(value)) + value for tag, value in tlvs])


def _encode_sm(p: _ShortMessage) -> bytes:
    sm = p.short_message
    if len(sm) > MAX_SM_LENGTH:
        raise EncodeError("short_message", 0, f"{len(sm)} octets, SMPP 3.4 §4.4.1 allows {MAX_SM_LENGTH}")
    if sm and _first_tlv(p.tlvs, Tag.MESSAGE_PAYLOAD) is not None:
        raise EncodeError("message_payload", 0, "short_message and message_payload both set (§5.3.2.32)")
    _check_time(p.schedule_delivery_time, "schedule_delivery_time")
    _check_time(p.validity_period, "validity_period")
    return b"".join(
        (
            _cstr(p.service_type, 6, "service_type"),
            bytes((p.source_addr_ton, p.source_addr_npi)),
            _cstr(p.source_addr, 21, "source_addr"),
            bytes((p.dest_addr_ton, p.dest_addr_npi)),
            _cstr(p.destination_addr, 21, "destination_addr"),
            bytes((p.esm_class, p.protocol_id, p.priority_flag)),
            _cstr(p.schedule_delivery_time, 17, "schedule_delivery_time"),
            _cstr(p.validity_period, 17, "validity_period"),
            bytes(
                (
                    p.registered_delivery,
                    p.replace_if_present_flag,
                    p.data_coding,
                    p.sm_default_msg_id,
                    len(sm),
                )
            ),
            sm,
            _encode_tlvs(p.tlvs),
        )
    )


def _encode_bind(p: Bind) -> bytes:
    return b"".join(
        (
            _cstr(p.system_id, 16, "system_id"),
            _cstr(p.password, 9, "password"),
            _cstr(p.system_type, 13, "system_type"),
            bytes((p.interface_version, p.addr_ton, p.addr_npi)),
            _cstr(p.address_range, 41, "address_range"),
        )
    )


def _encode_bind_resp(p: BindResp) -> bytes:
    return _cstr(p.system_id, 16, "system_id") + _encode_tlvs(p.tlvs)


def _encode_message_id_resp(p: _MessageIdResp) -> bytes:
    return _cstr(p.message_id, 65, "message_id") + _encode_tlvs(p.tlvs)


def _encode_submit_sm_resp(p: SubmitSmResp) -> bytes:
    # SMPP 3.4 §4.4.2: "The submit_sm_resp PDU Body is not returned if the
    # command_status field contains a non-zero value."
    if p.command_status != _ROK and not p.message_id and not p.tlvs:
        return b""
    return _encode_message_id_resp(p)


def _encode_empty(p: Pdu) -> bytes:
    return b""


def _encode_unknown(p: UnknownPdu) -> bytes:
    return p.body


_ENCODERS: dict[type, Callable[[Pdu], bytes]] = {
    Bind: _encode_bind,  # type: ignore[dict-item]
    BindResp: _encode_bind_resp,  # type: ignore[dict-item]
    SubmitSm: _encode_sm,  # type: ignore[dict-item]
    DeliverSm: _encode_sm,  # type: ignore[dict-item]
    SubmitSmResp: _encode_submit_sm_resp,  # type: ignore[dict-item]
    DeliverSmResp: _encode_message_id_resp,  # type: ignore[dict-item]
    EnquireLink: _encode_empty,
    EnquireLinkResp: _encode_empty,
    Unbind: _encode_empty,
    UnbindResp: _encode_empty,
    GenericNack: _encode_empty,
    UnknownPdu: _encode_unknown,  # type: ignore[dict-item]
}


def encode_pdu(pdu: Pdu) -> bytes:
    """The wire form of ``pdu``; raises ``EncodeError`` when a value does not fit its field."""
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise EncodeError("pdu", 0, f"not an SMPP PDU: {type(pdu).__name__}")
    try:
        body = encoder(pdu)
        # SMPP 3.4 §3.2: command_status is NULL in a request.
        status = getattr(pdu, "command_status", 0)
        return _HEADER.pack(HEADER_LENGTH + len(body), pdu.command_id, status, pdu.sequence_number) + body
    except EncodeError:
        raise
    except (ValueError, TypeError, struct.error, UnicodeEncodeError, OverflowError) as exc:
        raise EncodeError(command_name(pdu.command_id), 0, f"value out of range: {exc}") from exc


# --------------------------------------------------------------------------- decoding


def _read_cstr(r: ByteReader, name: str, max_length: int) -> str:
    return r.cstring(name, max_length).decode("latin-1")


def _read_time(r: ByteReader, name: str, status: int) -> str:
    offset = r.offset
    value = r.cstring(name, 17).decode("latin-1")
    # SMPP 3.4 §7.1.1: NULL or a 16-character absolute/relative time ending in '+', '-' or 'R'.
    if value and (len(value) != 16 or value[15] not in "+-R"):
        raise _FieldViolation(name, offset, f"{value!r} is neither NULL nor a §7.1.1 time", status)
    return value


def _read_tlvs(r: ByteReader) -> Tlvs:
    """SMPP 3.4 §3.2.4 / §5.3: the rest of the body is a TLV stream, each fitting exactly."""
    if r.at_end():
        return ()
    base = r.offset
    data = r.rest()
    n = len(data)
    pos = 0
    out: list[tuple[int, bytes]] = []
    while pos < n:
        if n - pos < 4:
            raise _FieldViolation(
                "tlv",
                base + pos,
                f"{n - pos} stray octet(s), a TLV header needs 4",
                CommandStatus.ESME_RINVOPTPARSTREAM,
            )
        tag, length = _TL.unpack_from(data, pos)
        pos += 4
        if length > n - pos:
            raise _FieldViolation(
                f"tlv {tag:#06x}",
                base + pos - 4,
                f"length {length} overruns the PDU by {length - n + pos}",
                CommandStatus.ESME_RINVOPTPARSTREAM,
            )
        fixed = _FIXED_TLV_LENGTH.get(tag)
        if fixed is not None and length != fixed:
            raise _FieldViolation(
                f"tlv {tag:#06x}",
                base + pos - 4,
                f"length {length}, §5.3.2 fixes it at {fixed}",
                CommandStatus.ESME_RINVPARLEN,
            )
        out.append((tag, data[pos : pos + length]))
        pos += length
    return tuple(out)


def _expect_empty(r: ByteReader) -> None:
    if not r.at_end():
        raise _FieldViolation(
            "body",
            r.offset,
            f"{r.remaining} octet(s) where the PDU has no body",
            CommandStatus.ESME_RINVCMDLEN,
        )


def _decode_sm(cls: type[_ShortMessage], r: ByteReader, seq: int) -> _ShortMessage:
    """The body submit_sm (SMPP 3.4 §4.4.1) and deliver_sm (§4.6.1) share, every rule checked."""
    service_type = r.cstring("service_type", 6).decode("latin-1")
    source_addr_ton, source_addr_npi = r.take(2, "source_addr_ton")
    source_addr = r.cstring("source_addr", 21).decode("latin-1")
    dest_addr_ton, dest_addr_npi = r.take(2, "dest_addr_ton")
    destination_addr = r.cstring("destination_addr", 21).decode("latin-1")
    esm_class, protocol_id, priority_flag = r.take(3, "esm_class")
    schedule = _read_time(r, "schedule_delivery_time", CommandStatus.ESME_RINVSCHED)
    validity = _read_time(r, "validity_period", CommandStatus.ESME_RINVEXPIRY)
    registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length = r.take(
        5, "registered_delivery"
    )
    offset = r.offset
    # SMPP 3.4 §4.4.1: sm_length 0..254, and the octets it counts must be there.
    if sm_length > MAX_SM_LENGTH or sm_length > r.remaining:
        raise _FieldViolation(
            "sm_length",
            offset - 1,
            f"{sm_length} with {r.remaining} octet(s) left (max {MAX_SM_LENGTH})",
            CommandStatus.ESME_RINVMSGLEN,
        )
    short_message = r.take(sm_length, "short_message")
    tlvs = _read_tlvs(r)
    # SMPP 3.4 §5.3.2.32: message_payload is used *instead of* short_message (sm_length 0).
    if sm_length and _first_tlv(tlvs, Tag.MESSAGE_PAYLOAD) is not None:
        raise _FieldViolation(
            "message_payload",
            offset,
            "present together with a non-empty short_message",
            CommandStatus.ESME_ROPTPARNOTALLWD,
        )
    return cls(
        sequence_number=seq,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_addr_ton,
        dest_addr_npi=dest_addr_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        schedule_delivery_time=schedule,
        validity_period=validity,
        registered_delivery=registered_delivery,
        replace_if_present_flag=replace_if_present,
        data_coding=data_coding,
        sm_default_msg_id=sm_default_msg_id,
        short_message=short_message,
        tlvs=tlvs,
    )


def _decode_submit_sm(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    return _decode_sm(SubmitSm, r, seq)  # type: ignore[return-value]


def _decode_deliver_sm(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    return _decode_sm(DeliverSm, r, seq)  # type: ignore[return-value]


def _decode_sm_fast(cls: type[_ShortMessage], raw: bytes) -> _ShortMessage | None:
    """The common shape of :func:`_decode_sm`, read by index: C-strings within their maxima,
    NULL schedule_delivery_time and validity_period, a short_message that ends the PDU (no
    TLVs).  ``None`` for anything else, which the checked reader then decides, so the
    result is always the checked reader's (tests/ota_protocols/test_fast_paths.py)."""
    n = len(raw)
    if n < 33:  # header + the shortest body (§4.4.1: 17 octets, every C-string NULL)
        return None
    length, _, _, seq = _HEADER.unpack_from(raw)
    if length != n:
        return None
    end = raw.find(0, 16, 22)  # service_type, 6 with its NUL
    if end < 0:
        return None
    service_type = raw[16:end].decode("latin-1") if end > 16 else ""
    source = end + 1  # source_addr_ton, source_addr_npi
    pos = end + 3
    end = raw.find(0, pos, pos + 21)  # source_addr
    if end < 0:
        return None
    source_addr = raw[pos:end].decode("latin-1")
    dest = end + 1  # dest_addr_ton, dest_addr_npi
    pos = end + 3
    end = raw.find(0, pos, pos + 21)  # destination_addr
    if end < 0:
        return None
    destination_addr = raw[pos:end].decode("latin-1")
    pos = end + 1
    # esm_class, protocol_id, priority_flag, two NULL times, then five octets up to sm_length.
    if n < pos + 10 or raw[pos + 3] or raw[pos + 4]:
        return None
    sm_length = raw[pos + 9]
    if pos + 10 + sm_length != n or sm_length > MAX_SM_LENGTH:
        return None
    return cls(
        sequence_number=seq,
        service_type=service_type,
        source_addr_ton=raw[source],
        source_addr_npi=raw[source + 1],
        source_addr=source_addr,
        dest_addr_ton=raw[dest],
        dest_addr_npi=raw[dest + 1],
        destination_addr=destination_addr,
        esm_class=raw[pos],
        protocol_id=raw[pos + 1],
        priority_flag=raw[pos + 2],
        registered_delivery=raw[pos + 5],
        replace_if_present_flag=raw[pos + 6],
        data_coding=raw[pos + 7],
        sm_default_msg_id=raw[pos + 8],
        short_message=raw[pos + 10 :],
    )


def _decode_bind(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    system_id = _read_cstr(r, "system_id", 16)
    password = _read_cstr(r, "password", 9)
    system_type = _read_cstr(r, "system_type", 13)
    interface_version, addr_ton, addr_npi = r.take(3, "interface_version")
    address_range = _read_cstr(r, "address_range", 41)
    _expect_empty(r)  # SMPP 3.4 §4.1.1: a bind has no optional parameters
    return Bind(
        kind=BindKind(cid),
        sequence_number=seq,
        system_id=system_id,
        password=password,
        system_type=system_type,
        interface_version=interface_version,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=address_range,
    )


def _decode_bind_resp(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    kind = BindKind(cid & ~RESPONSE_BIT)
    if status != _ROK and r.at_end():
        # Error responses without a body are common (cf. §4.4.2) and harmless.
        return BindResp(kind=kind, sequence_number=seq, command_status=status)
    system_id = _read_cstr(r, "system_id", 16)
    return BindResp(
        kind=kind, sequence_number=seq, command_status=status, system_id=system_id, tlvs=_read_tlvs(r)
    )


def _decode_message_id_resp(cls: type[_MessageIdResp], r: ByteReader, status: int, seq: int) -> Pdu:
    message_id = _read_cstr(r, "message_id", 65)
    return cls(sequence_number=seq, command_status=status, message_id=message_id, tlvs=_read_tlvs(r))


def _decode_submit_sm_resp(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    # SMPP 3.4 §4.4.2: no body when command_status is non-zero.
    if status != _ROK and r.at_end():
        return SubmitSmResp(sequence_number=seq, command_status=status)
    return _decode_message_id_resp(SubmitSmResp, r, status, seq)


def _decode_deliver_sm_resp(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
    # SMPP 3.4 §4.6.2: message_id is unused; some ESMEs omit it altogether, which we accept.
    if r.at_end():
        return DeliverSmResp(sequence_number=seq, command_status=status)
    return _decode_message_id_resp(DeliverSmResp, r, status, seq)


def _header_only(cls: type[_HeaderPdu]) -> Callable[[int, ByteReader, int, int], Pdu]:
    """The decoder of a PDU that is its header alone (§4.2, §4.3, §4.11); a response keeps its status."""
    takes_status = issubclass(cls, _ResponsePdu)

    def decode(cid: int, r: ByteReader, status: int, seq: int) -> Pdu:
        _expect_empty(r)
        if takes_status:
            return cls(sequence_number=seq, command_status=status)  # type: ignore[call-arg,return-value]
        return cls(sequence_number=seq)  # type: ignore[return-value]

    return decode


_DECODERS: dict[int, Callable[[int, ByteReader, int, int], Pdu]] = {
    CommandId.BIND_RECEIVER: _decode_bind,
    CommandId.BIND_TRANSMITTER: _decode_bind,
    CommandId.BIND_TRANSCEIVER: _decode_bind,
    CommandId.BIND_RECEIVER_RESP: _decode_bind_resp,
    CommandId.BIND_TRANSMITTER_RESP: _decode_bind_resp,
    CommandId.BIND_TRANSCEIVER_RESP: _decode_bind_resp,
    CommandId.SUBMIT_SM: _decode_submit_sm,
    CommandId.SUBMIT_SM_RESP: _decode_submit_sm_resp,
    CommandId.DELIVER_SM: _decode_deliver_sm,
    CommandId.DELIVER_SM_RESP: _decode_deliver_sm_resp,
    CommandId.ENQUIRE_LINK: _header_only(EnquireLink),
    CommandId.ENQUIRE_LINK_RESP: _header_only(EnquireLinkResp),
    CommandId.UNBIND: _header_only(Unbind),
    CommandId.UNBIND_RESP: _header_only(UnbindResp),
    CommandId.GENERIC_NACK: _header_only(GenericNack),
}

# The shapes read by index first (each falls back to the checked reader when it returns None).
_FAST_DECODERS: dict[int, type[_ShortMessage]] = {
    CommandId.SUBMIT_SM: SubmitSm,
    CommandId.DELIVER_SM: DeliverSm,
}

# Where each PDU's field table is, for error messages.
_CLAUSE: dict[int, str] = {
    CommandId.BIND_RECEIVER: "§4.1.3",
    CommandId.BIND_TRANSMITTER: "§4.1.1",
    CommandId.BIND_TRANSCEIVER: "§4.1.5",
    CommandId.BIND_RECEIVER_RESP: "§4.1.4",
    CommandId.BIND_TRANSMITTER_RESP: "§4.1.2",
    CommandId.BIND_TRANSCEIVER_RESP: "§4.1.6",
    CommandId.SUBMIT_SM: "§4.4.1",
    CommandId.SUBMIT_SM_RESP: "§4.4.2",
    CommandId.DELIVER_SM: "§4.6.1",
    CommandId.DELIVER_SM_RESP: "§4.6.2",
}

# Which status answers a C-string without a NUL inside its maximum (SMPP 3.4 §5.1.3, Table 5-2):
# service_type (§5.2.11) -> ESME_RINVSERTYP, system_type (§5.2.3) -> ESME_RINVSYSTYP.
_OVERLONG_STATUS: dict[str, int] = {
    "service_type": CommandStatus.ESME_RINVSERTYP,
    "system_type": CommandStatus.ESME_RINVSYSTYP,
    "source_addr": CommandStatus.ESME_RINVSRCADR,
    "destination_addr": CommandStatus.ESME_RINVDSTADR,
    "system_id": CommandStatus.ESME_RINVSYSID,
    "password": CommandStatus.ESME_RINVPASWD,
    "message_id": CommandStatus.ESME_RINVMSGID,
    "schedule_delivery_time": CommandStatus.ESME_RINVSCHED,
    "validity_period": CommandStatus.ESME_RINVEXPIRY,
}


def _status_for(exc: DecodeError) -> int:
    if isinstance(exc, _FieldViolation):
        return exc.command_status
    if isinstance(exc, TruncatedData):
        # The body ends before its mandatory fields do: command_length is wrong (§3.2).
        return CommandStatus.ESME_RINVCMDLEN
    return _OVERLONG_STATUS.get(exc.field, CommandStatus.ESME_RSYSERR)


def decode_pdu(raw: bytes) -> Pdu:
    """One whole PDU (as cut by :class:`PduFramer`) -> its dataclass.

    Raises :class:`MalformedPdu` and nothing else on bad input.  submit_sm and
    deliver_sm of the common shape are read by index (:func:`_decode_sm_fast`);
    the result is the same as :func:`_decode_pdu_checked`'s, value or error.
    """
    if type(raw) is bytes and len(raw) >= HEADER_LENGTH:
        cls = _FAST_DECODERS.get(int.from_bytes(raw[4:8], "big"))
        if cls is not None:
            pdu = _decode_sm_fast(cls, raw)
            if pdu is not None:
                return pdu  # type: ignore[return-value]
    return _decode_pdu_checked(raw)


def _decode_pdu_checked(raw: bytes) -> Pdu:
    """:func:`decode_pdu` by the general readers alone, every rule checked in wire order."""
    n = len(raw)
    if n < HEADER_LENGTH:
        # SMPP 3.4 §3.2: the header alone is 16 octets.
        cid = int.from_bytes(raw[4:8], "big") if n >= 8 else None
        raise MalformedPdu(
            CommandStatus.ESME_RINVCMDLEN,
            f"PDU of {n} octet(s) is shorter than the 16-octet header (§3.2)",
            command_id=cid,
        )
    length, cid, status, seq = _HEADER.unpack_from(raw)
    if length != n:
        raise MalformedPdu(
            CommandStatus.ESME_RINVCMDLEN,
            f"{command_name(cid)} seq={seq}: command_length {length} but {n} octet(s) given (§3.2)",
            command_id=cid,
            sequence_number=seq,
        )
    decoder = _DECODERS.get(cid)
    if decoder is None:
        return UnknownPdu(cid, status, seq, bytes(raw[HEADER_LENGTH:]))
    try:
        return decoder(cid, ByteReader(raw[HEADER_LENGTH:], base_offset=HEADER_LENGTH), status, seq)
    except DecodeError as exc:
        raise MalformedPdu(
            _status_for(exc),
            f"{command_name(cid)} seq={seq}: {exc} (SMPP 3.4 {_CLAUSE.get(cid, '§4')})",
            command_id=cid,
            sequence_number=seq,
        ) from exc


# --------------------------------------------------------------------------- delivery receipts

# SMPP 3.4 Appendix B: the de-facto receipt text carried in a deliver_sm with esm_class 0x04.
_RECEIPT_RE = re.compile(
    r"id:(?P<id>\S{0,65}) sub:(?P<sub>\d{3}) dlvrd:(?P<dlvrd>\d{3})"
    r" submit date:(?P<submit>\d{10}(?:\d{2})?) done date:(?P<done>\d{10}(?:\d{2})?)"
    r" stat:(?P<stat>[A-Z]{7}) err:(?P<err>\d{3})(?: text:(?P<text>.{0,20}))?",
    re.DOTALL,
)

# SMPP 3.4 Appendix B stat values -> message_state TLV (§5.2.28).
STAT_MESSAGE_STATE: dict[str, MessageState] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReceipt:
    """The receipt text of SMPP 3.4 Appendix B, with its TLVs (§5.3.2.12, §5.3.2.35).

    Dates are passed in (no clock reads) and written as YYMMDDhhmm.
    """

    message_id: str
    submit_date: datetime
    done_date: datetime
    stat: str = "DELIVRD"
    err: int = 0
    submitted: int = 1
    delivered: int = 1
    text: str = ""

    def encode(self) -> bytes:
        """The short_message octets (latin-1)."""
        if self.stat not in STAT_MESSAGE_STATE:
            raise EncodeError("stat", 0, f"{self.stat!r} is not an Appendix B stat value")
        if not (0 <= self.err <= 999 and 0 <= self.submitted <= 999 and 0 <= self.delivered <= 999):
            raise EncodeError("err", 0, "sub, dlvrd and err are 3 decimal digits")
        return (
            f"id:{self.message_id} sub:{self.submitted:03d} dlvrd:{self.delivered:03d}"
            f" submit date:{self.submit_date:%y%m%d%H%M} done date:{self.done_date:%y%m%d%H%M}"
            f" stat:{self.stat} err:{self.err:03d} text:{self.text[:20]}"
        ).encode("latin-1")

    @property
    def message_state(self) -> MessageState:
        return STAT_MESSAGE_STATE[self.stat]

    def tlvs(self) -> Tlvs:
        """receipted_message_id (C-string) and message_state, for the deliver_sm."""
        return (
            (Tag.RECEIPTED_MESSAGE_ID, self.message_id.encode("latin-1") + b"\x00"),
            (Tag.MESSAGE_STATE, bytes((self.message_state,))),
        )

    @classmethod
    def parse(cls, data: bytes) -> DeliveryReceipt:
        """Read receipt text; raises ``DecodeError`` when it is not Appendix B shaped."""
        text = data.decode("latin-1")
        m = _RECEIPT_RE.match(text)
        if m is None:
            raise DecodeError("short_message", 0, f"not a delivery receipt (Appendix B): {text[:60]!r}")
        if m["stat"] not in STAT_MESSAGE_STATE:
            raise DecodeError("stat", m.start("stat"), f"unknown stat {m['stat']!r}")
        dates = []
        for key in ("submit", "done"):
            value = m[key]
            try:
                dates.append(datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M"))
            except ValueError as exc:
                raise DecodeError(f"{key} date", m.start(key), f"{value!r} is not a date") from exc
        return cls(
            message_id=m["id"],
            submitted=int(m["sub"]),
            delivered=int(m["dlvrd"]),
            submit_date=dates[0],
            done_date=dates[1],
            stat=m["stat"],
            err=int(m["err"]),
            text=m["text"] or "",
        )
