"""SMSC routing: SMPP submit_sm <-> GSM TPDUs, and delivery receipts (PURE).

Concept: the SMSC turns what an ESME submits into the SMS-DELIVER a phone
receives, and what a phone sends back (a DELIVER-REPORT carrying a PoR, or an
SMS-SUBMIT) into the deliver_sm an ESME receives.  Clauses: SMPP 3.4 §4.4.1
(submit_sm), §4.6.1 (deliver_sm), §5.2.12 (esm_class), §5.2.19 (data_coding),
§7.1.1 (validity_period), Appendix B (receipts); 3GPP TS 23.040 §9.2.2.1
(SMS-DELIVER), §9.2.2.1a (DELIVER-REPORT), §9.2.2.2 (SMS-SUBMIT), §9.2.3.2
(TP-MMS); TS 23.038 §4 (DCS); project mapping in smpp-and-peers.md §1.3-§1.6.

Mapping of submit_sm -> SMS-DELIVER (smpp-and-peers.md §1.3)::

    source_addr(+TON/NPI) -> TP-OA     esm_class & 0x40 -> TP-UDHI   esm_class & 0x80 -> TP-RP
    protocol_id -> TP-PID              data_coding -> TP-DCS (table in dcs_from_data_coding)
    short_message | message_payload -> TP-UD      scts (passed in) -> TP-SCTS
    first octet 0x44 for the last/only message, 0x40 while more are queued (TP-MMS)

Glossary: ESME external short message entity (the OTA platform); MT/MO mobile
terminated/originated; PoR proof of receipt; UDH(I) user data header
(indicator); DCS data coding scheme; PID protocol identifier; SCTS service
centre time stamp; TON/NPI type of number / numbering plan; FCS failure cause.

Nothing here reads a clock: times come in as ``datetime`` and seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from ota_protocols.errors import DecodeError, EncodeError, SmppViolation
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import DeliverSm, DeliveryReceipt, SubmitSm, Tag
from ota_protocols.sms.address import Address, Npi, Ton
from ota_protocols.sms.tpdu import (
    MAX_UD_OCTETS,
    SmsDeliver,
    SmsDeliverReport,
    SmsSubmit,
    is_7bit_dcs,
    is_8bit_dcs,
    scts_from_datetime,
)
from ota_protocols.sms.user_data_header import split_udh

__all__ = [
    "ESM_CLASS_RECEIPT",
    "ESM_CLASS_UDHI",
    "RouterOptions",
    "build_sms_deliver",
    "dcs_from_data_coding",
    "deliver_report_to_deliver_sm",
    "delivery_receipt",
    "expiry_seconds",
    "set_more_messages",
    "sms_submit_to_deliver_sm",
    "wants_receipt",
]

# SMPP 3.4 §5.2.12 esm_class bits; always tested with & (Kannel sends 0x43).
ESM_CLASS_UDHI = 0x40
ESM_CLASS_REPLY_PATH = 0x80
ESM_CLASS_RECEIPT = 0x04  # message type "SMSC delivery receipt" (bits 0x3C)

# TS 23.040 §9.2.2.1: SMS-DELIVER first octet bit 0x04 is TP-MMS (set = no more messages).
_TP_MMS = 0x04
# SMPP 3.4 §4.4.1: short_message holds at most 254 octets, beyond that message_payload.
_MAX_SHORT_MESSAGE = 254

# SMPP 3.4 §5.2.19 data_coding -> TS 23.038 §4 TP-DCS.
_DCS_GSM7 = 0x00
_DCS_8BIT = 0x04
_DCS_UCS2 = 0x08
_DATA_CODING_TO_DCS = {
    0x00: _DCS_GSM7,  # SMSC default alphabet: GSM 7-bit here
    0x01: _DCS_GSM7,  # IA5 (ASCII): packed as GSM 7-bit
    0x02: _DCS_8BIT,  # octet unspecified (8-bit binary)
    0x03: _DCS_GSM7,  # Latin-1 text: packed as GSM 7-bit, unmappable characters become '?'
    0x04: _DCS_8BIT,  # octet unspecified (8-bit binary)
    0x08: _DCS_UCS2,  # UCS2
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterOptions:
    """Validation and mapping choices of the SMSC (config ``[smsc]``).

    ``force_dcs``: write this TP-DCS whatever data_coding says (pySim-smpp2sim
    forces ``F6``); ``None`` maps faithfully.  ``require_pid_7f`` /
    ``require_8bit_dcs``: refuse other submits with ESME_RINVDCS, as
    pySim-smpp2sim does (smpp-and-peers.md §1.2).
    """

    force_dcs: int | None = None
    require_pid_7f: bool = False
    require_8bit_dcs: bool = False


# ---------------------------------------------------------------------------- GSM 7-bit (text only)

# TS 23.038 §6.2.1: the printable ASCII characters whose GSM default-alphabet code differs.
_ASCII_TO_GSM = {ord("@"): 0x00, ord("$"): 0x02, ord("_"): 0x11}
_GSM_TO_ASCII = {v: k for k, v in _ASCII_TO_GSM.items()}
# ASCII characters absent from the GSM default alphabet (not mapped 1:1): written as '?'.
_NOT_IN_GSM = frozenset(b"`[]{}\\^~|")


def _to_septets(text: bytes) -> list[int]:
    out = []
    for c in text:
        if c in _ASCII_TO_GSM:
            out.append(_ASCII_TO_GSM[c])
        elif (0x20 <= c < 0x7F and c not in _NOT_IN_GSM) or c in (0x0A, 0x0D):
            out.append(c)
        else:
            out.append(0x3F)  # '?'
    return out


def _pack_gsm7(udh: bytes, septets: list[int]) -> tuple[bytes, int]:
    """TS 23.038 §6.1.2.1 packing after a UDH, fill bits aligning the text to a septet.

    Returns (TP-UD, TP-UDL in septets), the UDH counted in septets (TS 23.040 §9.2.3.16).
    """
    udh_septets = (len(udh) * 8 + 6) // 7
    fill = udh_septets * 7 - len(udh) * 8
    acc = 0
    bits = fill
    for s in septets:
        acc |= s << bits
        bits += 7
    n_octets = (bits + 7) // 8
    return udh + acc.to_bytes(n_octets, "little") if septets else udh, udh_septets + len(septets)


def _unpack_gsm7(ud: bytes, udl: int, udh_len: int) -> bytes:
    udh_septets = (udh_len * 8 + 6) // 7
    fill = udh_septets * 7 - udh_len * 8
    acc = int.from_bytes(ud[udh_len:], "little") >> fill
    out = bytearray()
    for _ in range(max(udl - udh_septets, 0)):
        s = acc & 0x7F
        acc >>= 7
        out.append(_GSM_TO_ASCII.get(s, s if 0x20 <= s < 0x7F or s in (0x0A, 0x0D) else 0x3F))
    return bytes(out)


# ---------------------------------------------------------------------------- MT: submit_sm -> SMS-DELIVER


def dcs_from_data_coding(data_coding: int) -> int:
    """SMPP 3.4 §5.2.19 data_coding -> TS 23.038 §4 TP-DCS, as a real SMSC maps it.

    ``02``/``04`` -> ``04`` (8-bit, no class: the ME does not pass it to the SIM);
    ``08`` -> ``08``; ``00``/``01``/``03`` -> ``00`` (text packed as GSM 7-bit);
    ``10``-``FF`` are TS 23.038 DCS octets (SMPP 3.4 names ``C0``-``FF`` GSM groups,
    ``10``-``BF`` reserved; both pass through unchanged, so ``16`` and ``F6`` reach the
    phone as ``16`` and ``F6``).  Others (JIS, Cyrillic, ...) raise ESME_RINVDCS.
    """
    if data_coding >= 0x10:
        return data_coding
    dcs = _DATA_CODING_TO_DCS.get(data_coding)
    if dcs is None:
        raise SmppViolation(
            CommandStatus.ESME_RINVDCS,
            f"data_coding {data_coding:#04x} has no GSM TP-DCS here (SMPP 3.4 §5.2.19, TS 23.038 §4)",
        )
    return dcs


def _address(digits: str, ton: int, npi: int, field: str, status: int) -> Address:
    key = (digits, ton, npi)
    address = _ADDRESSES.get(key)
    if address is not None:
        return address
    address = _address_checked(digits, ton, npi, field, status)
    if len(_ADDRESSES) >= _ADDRESSES_MAX:
        _ADDRESSES.clear()
    _ADDRESSES[key] = address
    return address


# SMPP (addr, TON, NPI) -> the TP address it makes: the OTA platform sends every MT from one
# source address, so a small memo skips the enum lookups and the BCD check. Bounded; only
# successes are kept (a bad address raises its SmppViolation every time).
_ADDRESSES: dict[tuple[str, int, int], Address] = {}
_ADDRESSES_MAX = 1024


def _address_checked(digits: str, ton: int, npi: int, field: str, status: int) -> Address:
    try:
        ton_e, npi_e = Ton(ton & 0x07), Npi(npi & 0x0F)
        digits = digits[1:] if digits.startswith("+") and ton_e != Ton.ALPHANUMERIC else digits
        address = Address(digits, ton_e, npi_e)
        address.encode()  # TS 23.040 §9.1.2.5: BCD digits, at most 20 semi-octets
    except (EncodeError, ValueError) as exc:
        raise SmppViolation(status, f"{field} {digits!r} TON {ton} NPI {npi}: no TP address: {exc}") from exc
    return address


def build_sms_deliver(submit: SubmitSm, *, scts: datetime, options: RouterOptions = RouterOptions()) -> bytes:
    """The SMS-DELIVER TPDU for ``submit`` (smpp-and-peers.md §1.3), first octet 0x44/0x04.

    Raises ``SmppViolation`` with the status the submit_sm_resp must carry.  The
    destination is the caller's to check (it knows the subscribers).
    """
    # SMPP 3.4 §5.2.23: PID 7F = (U)SIM data download; pySim-compat check -> RINVDCS.
    if options.require_pid_7f and submit.protocol_id != 0x7F:
        raise SmppViolation(
            CommandStatus.ESME_RINVDCS, f"protocol_id {submit.protocol_id:#04x}, expected 0x7f (config)"
        )
    tp_dcs = dcs_from_data_coding(submit.data_coding)
    if options.require_8bit_dcs and not is_8bit_dcs(tp_dcs):
        raise SmppViolation(
            CommandStatus.ESME_RINVDCS, f"data_coding {submit.data_coding:#04x} is not 8-bit data (config)"
        )
    if options.force_dcs is not None:
        tp_dcs = options.force_dcs
    udhi = bool(submit.esm_class & ESM_CLASS_UDHI)
    ud = submit.payload
    tp_udl: int | None = None
    if is_7bit_dcs(tp_dcs):
        udh = b""
        text = ud
        if udhi:
            try:
                header, text = split_udh(ud)
            except DecodeError as exc:
                raise SmppViolation(
                    CommandStatus.ESME_RINVESMCLASS, f"UDHI set but UDH malformed: {exc}"
                ) from exc
            udh = ud[: header.encoded_length]
        ud, tp_udl = _pack_gsm7(udh, _to_septets(text))
    # TS 23.040 §9.2.3.16: at most 140 octets of TP-UD in one SMS.
    if len(ud) > MAX_UD_OCTETS:
        raise SmppViolation(
            CommandStatus.ESME_RINVMSGLEN,
            f"user data of {len(ud)} octets exceeds {MAX_UD_OCTETS} (TS 23.040 §9.2.3.16)",
        )
    tp_oa = _address(
        submit.source_addr,
        submit.source_addr_ton,
        submit.source_addr_npi,
        "source_addr",
        CommandStatus.ESME_RINVSRCADR,
    )
    try:
        return SmsDeliver(
            tp_oa=tp_oa,
            tp_pid=submit.protocol_id,
            tp_dcs=tp_dcs,
            tp_scts=scts_from_datetime(scts),
            tp_ud=ud,
            tp_mms=True,
            tp_rp=bool(submit.esm_class & ESM_CLASS_REPLY_PATH),
            tp_udhi=udhi,
            tp_udl=tp_udl,
        ).encode()
    except EncodeError as exc:
        raise SmppViolation(CommandStatus.ESME_RSUBMITFAIL, f"cannot build SMS-DELIVER: {exc}") from exc


def set_more_messages(tpdu: bytes, more: bool) -> bytes:
    """TS 23.040 §9.2.3.2: TP-MMS clear (first octet 0x40) while more messages wait."""
    first = tpdu[0] & ~_TP_MMS if more else tpdu[0] | _TP_MMS
    return tpdu if first == tpdu[0] else bytes((first,)) + tpdu[1:]


# ---------------------------------------------------------------------------- MO: TPDU -> deliver_sm


def _short_message_fields(ud: bytes) -> tuple[bytes, tuple[tuple[int, bytes], ...]]:
    if len(ud) > _MAX_SHORT_MESSAGE:
        return b"", ((Tag.MESSAGE_PAYLOAD, ud),)
    return ud, ()


def _mo_user_data(ud: bytes, udl: int | None, dcs: int, udhi: bool) -> tuple[bytes, int]:
    """(short_message octets, data_coding) for a TP-UD: 7-bit text is unpacked to ASCII."""
    if udl is not None and is_7bit_dcs(dcs):
        udh_len = ud[0] + 1 if udhi and ud else 0
        return ud[:udh_len] + _unpack_gsm7(ud, udl, udh_len), 0x00
    return ud, dcs


def _deliver_sm(
    *,
    msisdn: str,
    destination: Address | tuple[str, int, int],
    ud: bytes,
    udl: int | None,
    pid: int,
    dcs: int,
    udhi: bool,
) -> DeliverSm:
    if isinstance(destination, Address):
        dest = (destination.digits, int(destination.ton), int(destination.npi))
    else:
        dest = destination
    short_message, data_coding = _mo_user_data(ud, udl, dcs, udhi)
    sm, tlvs = _short_message_fields(short_message)
    return DeliverSm(
        # smpp-and-peers.md §1.4: source = subscriber MSISDN, international ISDN.
        source_addr_ton=int(Ton.INTERNATIONAL),
        source_addr_npi=int(Npi.ISDN),
        source_addr=msisdn,
        dest_addr_ton=dest[1],
        dest_addr_npi=dest[2],
        destination_addr=dest[0],
        # UDHI only; message-type bits 0x3C stay zero so Kannel never takes a PoR for a receipt.
        esm_class=ESM_CLASS_UDHI if udhi else 0,
        protocol_id=pid,
        data_coding=data_coding,
        short_message=sm,
        tlvs=tlvs,
    )


def deliver_report_to_deliver_sm(
    report: SmsDeliverReport, *, msisdn: str, original: SubmitSm
) -> DeliverSm | None:
    """A DELIVER-REPORT PoR -> deliver_sm to the submit_sm's source (smpp-and-peers.md §1.4).

    No TP-UD, no deliver_sm.  PID / DCS are the report's (TS 23.040 §9.2.3.27:
    absent means 00).
    """
    if not report.tp_ud:
        return None
    dcs = 0 if report.tp_dcs is None else report.tp_dcs
    return _deliver_sm(
        msisdn=msisdn,
        destination=(original.source_addr, original.source_addr_ton, original.source_addr_npi),
        ud=report.tp_ud,
        udl=report.tp_udl,
        pid=0 if report.tp_pid is None else report.tp_pid,
        dcs=dcs,
        udhi=report.tp_udhi,
    )


def sms_submit_to_deliver_sm(submit: SmsSubmit, *, msisdn: str) -> DeliverSm | None:
    """A phone's SMS-SUBMIT -> deliver_sm to TP-DA (smpp-and-peers.md §1.4); no TP-UD, none."""
    if not submit.tp_ud:
        return None
    return _deliver_sm(
        msisdn=msisdn,
        destination=submit.tp_da,
        ud=submit.tp_ud,
        udl=submit.tp_udl,
        pid=submit.tp_pid,
        dcs=submit.tp_dcs,
        udhi=submit.tp_udhi,
    )


def delivery_receipt(
    original: SubmitSm,
    *,
    message_id: str,
    submit_date: datetime,
    done_date: datetime,
    stat: str,
    err: int = 0,
) -> DeliverSm:
    """SMPP 3.4 Appendix B receipt for ``original`` (smpp-and-peers.md §1.6).

    Source = the subscriber (the submit_sm's destination), destination = the
    submit_sm's source, esm_class 0x04, TLVs receipted_message_id and message_state.
    """
    delivered = 1 if stat == "DELIVRD" else 0
    receipt = DeliveryReceipt(
        message_id=message_id,
        submit_date=submit_date,
        done_date=done_date,
        stat=stat,
        err=err,
        delivered=delivered,
    )
    return DeliverSm(
        source_addr_ton=original.dest_addr_ton,
        source_addr_npi=original.dest_addr_npi,
        source_addr=original.destination_addr,
        dest_addr_ton=original.source_addr_ton,
        dest_addr_npi=original.source_addr_npi,
        destination_addr=original.source_addr,
        esm_class=ESM_CLASS_RECEIPT,
        short_message=receipt.encode(),
        tlvs=receipt.tlvs(),
    )


def wants_receipt(registered_delivery: int, *, success: bool) -> bool:
    """SMPP 3.4 §5.2.17 bits 0x03: 01 receipt on success and failure, 02 on failure only."""
    mode = registered_delivery & 0x03
    return mode == 1 or (mode == 2 and not success)


# ---------------------------------------------------------------------------- validity period

_TIME_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d)(\d{2})([+\-R])$")


def expiry_seconds(validity_period: str, *, submitted: datetime, default_s: float) -> float:
    """Seconds from ``submitted`` until the message expires (SMPP 3.4 §7.1.1).

    Relative ``YYMMDDhhmmss000R`` counts years as 365 days and months as 30;
    absolute ``YYMMDDhhmmsstnn±`` is converted with its quarter-hour UTC offset.
    NULL gives ``default_s``.  Raises ESME_RINVEXPIRY on a malformed value and on an absolute
    time already past at submission (§4.4.1: the SMSC rejects an invalid validity_period; a
    message that expired before it arrived cannot be delivered, and accepting it would only
    turn into an EXPIRED receipt).
    """
    if not validity_period:
        return default_s
    m = _TIME_RE.match(validity_period)
    if m is None:
        raise SmppViolation(CommandStatus.ESME_RINVEXPIRY, f"validity_period {validity_period!r} (§7.1.1)")
    yy, mo, dd, hh, mi, ss, tenths, nn, p = m.groups()
    try:
        if p == "R":
            return float(
                ((int(yy) * 365 + int(mo) * 30 + int(dd)) * 24 + int(hh)) * 3600 + int(mi) * 60 + int(ss)
            )
        offset = timedelta(minutes=15 * int(nn)) * (1 if p == "+" else -1)
        moment = datetime(
            2000 + int(yy),
            int(mo),
            int(dd),
            int(hh),
            int(mi),
            int(ss),
            int(tenths) * 100_000,
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise SmppViolation(
            CommandStatus.ESME_RINVEXPIRY, f"validity_period {validity_period!r}: {exc}"
        ) from exc
    if submitted.tzinfo is None:
        submitted = submitted.replace(tzinfo=UTC)
    seconds = (moment - submitted).total_seconds()
    if seconds < 0:
        raise SmppViolation(
            CommandStatus.ESME_RINVEXPIRY,
            f"validity_period {validity_period!r} ended {-seconds:.1f} s before the submission (§7.1.1)",
        )
    return seconds
