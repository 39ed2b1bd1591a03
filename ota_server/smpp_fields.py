"""Fields between our frozen PDU dataclasses and smpplib's PDU objects (SMPP 3.4 §4.4, §4.6, §5.3.2).

* :func:`submit_sm_fields`: our :class:`~ota_protocols.smpp.pdu_codec.SubmitSm` -> the keywords
  of smpplib's ``make_pdu("submit_sm", ...)``, every field carried and checked first, where
  smpplib would cut an over-long C-string or drop a TLV silently;
* :func:`deliver_received`: smpplib's parsed deliver_sm -> :class:`DeliverReceived`, and
  :func:`deliver_received_from_codec` the same from the shared codec's :class:`DeliverSm` (for
  what smpplib cannot parse). The user data is short_message with its UDH, else
  message_payload (§5.3.2.32); receipts keep receipted_message_id and message_state.

No I/O: smpplib is imported for its tables (TLV names, parameter types) only.

Glossary: TLV optional parameter (tag, length, value); UDH user data header; C-string
NUL-terminated octet string (§3.1).
"""

from __future__ import annotations

import smpplib.command
import smpplib.consts

from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm
from ota_server.smpp_link_events import DeliverReceived, fits_cstring

__all__ = ["deliver_received", "deliver_received_from_codec", "smpplib_text", "submit_sm_fields"]

# SMPP 3.4 §4.4.1: C-strings with their maximum size (NUL included), times, 1-octet integers.
_SUBMIT_CSTRINGS = (("service_type", 6), ("source_addr", 21), ("destination_addr", 21))
_SUBMIT_TIMES = ("schedule_delivery_time", "validity_period")
_SUBMIT_OCTETS = (
    "source_addr_ton",
    "source_addr_npi",
    "dest_addr_ton",
    "dest_addr_npi",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "registered_delivery",
    "replace_if_present_flag",
    "data_coding",
    "sm_default_msg_id",
)


def _submit_tlvs() -> dict[int, tuple[str, smpplib.command.Param]]:
    """The TLVs smpplib writes in a submit_sm (§5.3.2), by tag; flags it would drop are left out."""
    table = {}
    for name, tag in smpplib.consts.OPTIONAL_PARAMS.items():
        param = smpplib.command.SubmitSM.params.get(name)
        if param is not None and param.type in (int, str, smpplib.command.ostr):
            table[tag] = (name, param)
    return table


_SUBMIT_TLVS = _submit_tlvs()


def submit_sm_fields(pdu: SubmitSm) -> dict[str, object]:
    """Our frozen :class:`SubmitSm` -> the keywords of smpplib's ``make_pdu("submit_sm", ...)``.

    Every field is carried; ``short_message`` stays bytes with its UDH (never split off,
    smpp-and-peers.md §2.3). Raises ``ValueError`` naming a field that does not fit, which
    smpplib would cut or drop silently.
    """
    fields: dict[str, object] = {}
    for name, max_octets in _SUBMIT_CSTRINGS:
        value = getattr(pdu, name)
        if not fits_cstring(value, max_octets):
            raise ValueError(f"{name} {value!r}: at most {max_octets - 1} characters (SMPP 3.4 §4.4.1)")
        fields[name] = value
    for name in _SUBMIT_TIMES:
        value = getattr(pdu, name)
        if value and not (len(value) == 16 and value.isascii() and value[15] in "+-R"):
            raise ValueError(f"{name} {value!r}: neither empty nor a 16-character time (SMPP 3.4 §7.1.1)")
        fields[name] = value
    for name in _SUBMIT_OCTETS:
        value = getattr(pdu, name)
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} {value}: does not fit one octet (SMPP 3.4 §4.4.1)")
        fields[name] = value
    if len(pdu.short_message) > 254:
        raise ValueError(f"short_message: {len(pdu.short_message)} octets, at most 254 (SMPP 3.4 §4.4.1)")
    fields["short_message"] = bytes(pdu.short_message)
    for tag, value in pdu.tlvs:
        entry = _SUBMIT_TLVS.get(tag)
        if entry is None:
            raise ValueError(f"TLV {tag:#06x}: not one smpplib can send in a submit_sm")
        name, param = entry
        if name in fields:
            raise ValueError(f"TLV {tag:#06x} ({name}) given twice")
        if param.type is int:
            if len(value) != param.size:
                raise ValueError(f"TLV {tag:#06x} ({name}): {len(value)} octets, expected {param.size}")
            fields[name] = int.from_bytes(value, "big")
        elif param.type is str:
            text = value.rstrip(b"\x00")
            if not text.isascii():
                raise ValueError(f"TLV {tag:#06x} ({name}): smpplib writes ASCII only")
            fields[name] = text.decode("ascii")
        else:
            fields[name] = bytes(value)
    if pdu.short_message and fields.get("message_payload"):
        raise ValueError("short_message and message_payload both set (SMPP 3.4 §5.3.2.32)")
    return fields


def smpplib_text(value: object) -> str:
    """smpplib parses C-strings to bytes; absent fields are None."""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return "" if value is None else str(value)


def deliver_received(pdu: smpplib.command.DeliverSM, handle: object) -> DeliverReceived:
    """smpplib's parsed deliver_sm (C-strings as bytes, absent TLVs None) -> the link's event."""
    short, payload = pdu.short_message, getattr(pdu, "message_payload", None)
    state = getattr(pdu, "message_state", None)
    receipted = getattr(pdu, "receipted_message_id", None)
    return DeliverReceived(
        handle=handle,
        source_addr=smpplib_text(pdu.source_addr),
        destination_addr=smpplib_text(pdu.destination_addr),
        esm_class=int(pdu.esm_class or 0),
        protocol_id=int(pdu.protocol_id or 0),
        data_coding=int(pdu.data_coding or 0),
        user_data=bytes(short) if short else bytes(payload or b""),
        receipted_message_id=smpplib_text(receipted) if receipted is not None else None,
        message_state=int(state) if isinstance(state, int) else None,
    )


def deliver_received_from_codec(pdu: DeliverSm, handle: object) -> DeliverReceived:
    """The shared codec's deliver_sm -> the link's event (the same fields as :func:`deliver_received`)."""
    return DeliverReceived(
        handle=handle,
        source_addr=pdu.source_addr,
        destination_addr=pdu.destination_addr,
        esm_class=pdu.esm_class,
        protocol_id=pdu.protocol_id,
        data_coding=pdu.data_coding,
        user_data=pdu.payload,
        receipted_message_id=pdu.receipted_message_id,
        message_state=pdu.message_state,
    )
