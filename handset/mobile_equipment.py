"""The mobile equipment (ME): hands OTA SMS to its SIM and returns what the network must see (PURE).

Concept: an SMS-DELIVER with TP-PID 7F and a class-2 DCS is "SMS-PP data
download": the ME wraps it in an ENVELOPE for the (U)SIM and answers the
network with RP-ACK or RP-ERROR carrying an SMS-DELIVER-REPORT whose TP-UD is
the card's response data (the PoR).  If the card then has a proactive command
pending, the ME fetches it; SEND SHORT MESSAGE becomes an MO SMS-SUBMIT, and
the ME sends TERMINAL RESPONSE once that SMS is handed to the network.
Clauses: TS 31.111 §7.1.1 (SMS-PP download, status word handling), TS 102 223
§6.4.10 / §6.8 (SEND SHORT MESSAGE, TERMINAL RESPONSE), TS 102 221 §10.1.2 /
§10.2.1 (FETCH, GET RESPONSE, status words), TS 23.040 §9.2.2.1a / §9.2.3.22
(DELIVER-REPORT, TP-FCS), TS 31.124 §27.22.5.1 (Rel-11 62/63 XX); the project's
table is protocols.md §10.2.

Status word of the ENVELOPE (final, after GET RESPONSE) -> outcome::

    90 00            RP-ACK, response data (if any) in the DELIVER-REPORT
    91 XX            RP-ACK with the data, then FETCH XX, loop while 91 XX
    61 XX / 9F XX    GET RESPONSE 00/A0 C0 00 00 XX, then act on the final SW
    62 XX / 63 XX    RP-ACK with data (Rel-11+); RP-ERROR D5 with data when pre_rel11_me
    9E XX            GET RESPONSE, RP-ERROR D5 with the data (2G download error)
    93 00            RetryEnvelopeAt(now + backoff); after busy_max_tries RP-ERROR D4
    6X XX, other     RP-ERROR D5 without data
    (not PID 7F + class 2)   stored: RP-ACK without TP-UD, no ENVELOPE
    card loses power (ConnectionLost)   no RP answer; reset + TERMINAL PROFILE (+ its 91 XX)
    card unreachable (CardUnavailable)  RP-ERROR D2 "error in MS"; reset + TERMINAL PROFILE
                                        before the card is next needed

A card in a PC/SC reader (:mod:`handset.pcsc_card`) can leave its reader while the phone stays on:
then the phone is alive and answers the network RP-ERROR with TP-FCS D2 (TS 23.040 §9.2.3.22: the
(U)SIM could not be reached, an error in the MS, not a download error the card reported). Before
the next SMS-PP download or menu selection the ME resets the card (which reconnects it) and sends
TERMINAL PROFILE, as a phone does with a newly inserted card; while the card stays away every
download gets RP-ERROR D2. The OTA server's job sees no PoR (and an UNDELIV receipt when it asked
for one) and learns from its status query what ran: nothing is lost or repeated.

Subscriber activity: :meth:`MobileEquipment.menu_selection` sends ENVELOPE (MENU
SELECTION, TS 102 223 §7.3) and runs the proactive session it opens (the purse's
transaction request, patent claim 8, comes back as a :class:`MoSubmit`).

Outcomes are data (:class:`RpAck`, :class:`RpError`, :class:`MoSubmit`,
:class:`RetryEnvelopeAt`); the caller transmits them.  Nothing the card
answers can raise out of here: a malformed answer becomes RP-ERROR D5 (or
ends the proactive session) with a WARNING.

Glossary: ME mobile equipment; SW status word; PoR proof of receipt; RP-ACK /
RP-ERROR relay-layer answers; TP-FCS failure cause; TP-MR message reference;
TR TERMINAL RESPONSE; SSM SEND SHORT MESSAGE; CLA class byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.envelope import CLA_2G, CLA_UICC, INS_ENVELOPE, sms_pp_download_t0
from ota_protocols.apdu.proactive import (
    CommandDetails,
    CommandType,
    DeviceIdentities,
    DeviceIdentity,
    GeneralResult,
    ProactiveCommand,
    SendShortMessage,
    decode_proactive,
    get_response_apdu,
    send_short_message_common_shape,
    terminal_profile_apdu,
    terminal_response_t0,
)
from ota_protocols.errors import (
    CardUnavailable,
    ConnectionLost,
    DecodeError,
    EncodeError,
    LocalProtocolViolation,
)
from ota_protocols.sms.tpdu import (
    FailureCause,
    SmsDeliverReport,
    SmsSubmit,
    deliver_pid_dcs,
    encode_report_with_data,
    is_sim_data_download,
)
from ota_protocols.sms.user_data_header import split_udh
from ota_protocols.tlv import BerTag, ComprehensionTag, encode_ber, encode_comprehension

__all__ = [
    "Card",
    "MeOptions",
    "MoSubmit",
    "MobileEquipment",
    "Outcome",
    "RetryEnvelopeAt",
    "RpAck",
    "RpError",
    "describe",
]

log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG

_SW_OK = 0x9000
_TP_FCS_BUSY = int(FailureCause.SIM_APPLICATION_TOOLKIT_BUSY)  # D4
_TP_FCS_DOWNLOAD_ERROR = int(FailureCause.SIM_DATA_DOWNLOAD_ERROR)  # D5
_TP_FCS_UNSPECIFIED = int(FailureCause.UNSPECIFIED)  # FF
_TP_FCS_ERROR_IN_MS = int(FailureCause.ERROR_IN_MS)  # D2
_TECHNICAL_PROBLEM = b"\x6f\x00"
_EMPTY_REPORT = SmsDeliverReport().encode()  # RP-ACK without TP-UD: 00 00
_INS_FETCH = 0x12
_INS_GET_RESPONSE = 0xC0


class Card(Protocol):
    """What the ME needs of a SIM: ``sim_emulator.api.SimCard.exchange`` (T=0 semantics).

    Optional, looked up with ``getattr``: ``reset()`` (power cycle) and
    ``stop_after_actions(k)`` (the tearing hook of ``sim_emulator.api.SimCard``).
    ``exchange`` and ``reset`` may raise ``ConnectionLost`` (power lost with the card) or
    ``CardUnavailable`` (a card in a reader that cannot be reached).
    """

    def exchange(self, c_apdu: bytes) -> bytes: ...


class _CardLost(Exception):
    """The card lost power during an APDU (``ConnectionLost``): the phone stops what it was doing."""


class _CardAbsent(Exception):
    """The card cannot be reached (``CardUnavailable``): the phone answers RP-ERROR D2."""


@dataclass(frozen=True, slots=True)
class RpAck:
    """RP-ACK carrying this SMS-DELIVER-REPORT TPDU (TS 24.011 §7.3.3, TS 23.040 §9.2.2.1a)."""

    report_tpdu: bytes


@dataclass(frozen=True, slots=True)
class RpError:
    """RP-ERROR with TP-FCS ``fcs``; ``report_tpdu`` is the RP-ERROR form of the report."""

    fcs: int
    report_tpdu: bytes


@dataclass(frozen=True, slots=True)
class MoSubmit:
    """An SMS-SUBMIT for the network; ``smsc_address`` None = the ME's default SMSC."""

    tpdu: bytes
    smsc_address: bytes | None = None


@dataclass(frozen=True, slots=True)
class RetryEnvelopeAt:
    """The card was busy (93 00): offer the same SMS again at ``at`` as attempt ``attempt``."""

    at: float
    attempt: int


Outcome = RpAck | RpError | MoSubmit | RetryEnvelopeAt


@dataclass(frozen=True, slots=True, kw_only=True)
class MeOptions:
    """``[me]`` config.  ``legacy_2g``: CLA A0 (GSM 11.11) instead of 80."""

    pre_rel11_me: bool = False
    busy_retry_s: float = 2.0
    busy_backoff: float = 2.0
    busy_max_tries: int = 3
    legacy_2g: bool = False
    max_proactive_commands: int = 16
    max_get_response: int = 8
    # TS 102 223 §5.2: sent at power-on, all FF as in onomondo's tests and pySim-smpp2sim ("" = none).
    terminal_profile: bytes = field(default=b"\xff" * 20, repr=False)


def _has_udh(ud: bytes) -> bool:
    """Whether response data opens with a non-empty UDH (a PoR's ``02 71 00``).

    The card returns the TP-UD it wants sent; it does not say whether TP-UDHI
    applies, so the ME sets it when the data parse as a UDH with at least one IE.
    A UDH-less PoR starts with RPL, whose high octet is 00 (an empty "UDH").
    """
    if len(ud) < 3:
        return False
    try:
        header, _ = split_udh(ud)
    except DecodeError:
        return False
    return bool(header.elements)


class MobileEquipment:
    """One phone's ME in front of one card.  See the module docstring."""

    def __init__(
        self,
        card: Card,
        *,
        smsc_address: bytes | None = None,
        options: MeOptions | None = None,
        phone_id: str = "",
    ) -> None:
        self.card = card
        self.smsc_address = smsc_address  # CAT Address value (TON/NPI + BCD) for the ENVELOPE
        self.options = options or MeOptions()
        self.phone_id = phone_id
        self._cla = CLA_2G if self.options.legacy_2g else CLA_UICC
        self._mr = 0
        self._pending: CommandDetails | None = None  # SSM awaiting its TERMINAL RESPONSE
        self._card_absent = False  # the card was unreachable: reset it before it is next needed
        self._reoffered = False  # the SMS comes back after a re-power (counted once)
        self.stats = {
            "sms_received": 0,
            "envelopes": 0,
            "stored": 0,
            "busy": 0,
            "rp_ack": 0,
            "rp_error": 0,
            "mo_submits": 0,
            "proactive": 0,
            "card_errors": 0,
            "card_torn": 0,
            "card_unavailable": 0,
            "menu_selections": 0,
        }

    @property
    def awaiting_terminal_response(self) -> bool:
        return self._pending is not None

    def power_on(self) -> list[Outcome]:
        """Reset the card if it can be, then TERMINAL PROFILE (TS 102 223 §5.2), as a phone at boot.

        A card may answer the TERMINAL PROFILE ``91 XX`` (e.g. a purse's information message on
        power-up, patent claim 9): the proactive session runs and its SEND SHORT MESSAGEs come back
        as :class:`MoSubmit` outcomes for the caller to transmit (then :meth:`mo_sent`).
        """
        self._pending = None
        reset = getattr(self.card, "reset", None)
        if callable(reset):
            try:
                reset()
            except CardUnavailable as exc:  # still not in its reader: try again when next needed
                log.warning("phone %s: card reset failed: %s", self.phone_id, exc)
                self._card_absent = True
                return []
            except Exception:  # a card that cannot even reset stays as it is; the next APDU will tell
                log.warning("phone %s: card reset failed", self.phone_id, exc_info=True)
        self._card_absent = False
        profile = self.options.terminal_profile
        if not profile:
            return []
        try:
            _, sw = self._exchange(terminal_profile_apdu(profile, self._cla).encode_t0())
            if sw >> 8 == 0x91:
                return self._proactive_session(sw & 0xFF)
        except _CardLost:
            log.warning("phone %s: card lost power again during power-on; left off", self.phone_id)
        except _CardAbsent:
            pass  # logged by _exchange; reset again when next needed
        return []

    def _card_lost(self) -> list[Outcome]:
        """The card lost power: no answer to what was in progress (no RP answer for an MT: the
        SMSC's RP timer retries it), power-cycle the card, TERMINAL PROFILE, handle its 91 XX."""
        self.stats["card_torn"] += 1
        return self.power_on()

    # ------------------------------------------------------------------ card access

    def _exchange(self, apdu: bytes) -> tuple[bytes, int]:
        debug = log.isEnabledFor(_DEBUG)
        if debug:
            log.debug("-> apdu phone=%s %s", self.phone_id, apdu.hex())
        try:
            r = self.card.exchange(apdu)
        except ConnectionLost as exc:
            # The card lost power mid-APDU (sim_emulator's tearing hook): the caller power-cycles it.
            log.warning("phone %s: card lost power on %s (%s)", self.phone_id, apdu[:5].hex(), exc)
            self._pending = None
            raise _CardLost(str(exc)) from None
        except CardUnavailable as exc:
            log.warning("phone %s: card unavailable on %s: %s", self.phone_id, apdu[:5].hex(), exc)
            self._pending = None
            self._card_absent = True
            self.stats["card_unavailable"] += 1
            raise _CardAbsent(str(exc)) from None
        except Exception:  # the card is another team's code: a crash there is a card failure, not ours
            log.warning(
                "phone %s: card raised on %s; treated as SW 6F00",
                self.phone_id,
                apdu[:5].hex(),
                exc_info=True,
            )
            r = _TECHNICAL_PROBLEM
        if type(r) is bytes and len(r) >= 2 and not debug:
            return r[:-2], (r[-2] << 8) | r[-1]
        if not isinstance(r, bytes | bytearray) or len(r) < 2:
            log.warning("phone %s: card answer %r has no status word; treated as 6F00", self.phone_id, r)
            r = _TECHNICAL_PROBLEM
        if debug:
            log.debug(
                "<- apdu phone=%s data=%s sw=%s", self.phone_id, bytes(r[:-2]).hex(), bytes(r[-2:]).hex()
            )
        return bytes(r[:-2]), (r[-2] << 8) | r[-1]

    def _get_response(self, data: bytes, sw: int) -> tuple[bytes, int]:
        """TS 102 221 §7.3.1.1.4 (T=0): collect 61 XX / 9F XX / 9E XX data with GET RESPONSE."""
        for _ in range(self.options.max_get_response):
            sw1 = sw >> 8
            if sw1 not in (0x61, 0x9F, 0x9E):
                return data, sw
            cla = CLA_2G if sw1 in (0x9F, 0x9E) else 0x00
            # GET RESPONSE XX (ISO 7816-4 / TS 102 221 §10.1.2): XX from 61/9F XX, 00 = 256.
            more, final = self._exchange(bytes((cla, _INS_GET_RESPONSE, 0x00, 0x00, sw & 0xFF)))
            if final >> 8 == 0x6C:
                # ISO 7816-4: wrong Le, the card tells the right one; ask again with it.
                more, final = self._exchange(get_response_apdu(final & 0xFF or 256, cla).encode_t0())
            data += more
            if sw1 == 0x9E:
                # GSM 11.14: 9E XX is a data download error; the data collected is its answer.
                return data, 0x9E00 if final == _SW_OK else final
            sw = final
        log.warning(
            "phone %s: GET RESPONSE chain longer than %d", self.phone_id, self.options.max_get_response
        )
        return data, 0x6F00

    # ------------------------------------------------------------------ MT SMS

    def receive_sms(
        self,
        tpdu: bytes,
        now: float,
        *,
        attempt: int = 1,
        tear: Callable[[], int | None] | None = None,
    ) -> list[Outcome]:
        """An SMS-DELIVER arrives over the air (``attempt`` > 1: retry after 93 00).

        ``tear`` (fault injection): called once before an SMS-PP download's ENVELOPE; a number
        ``k`` arms the card's ``stop_after_actions(k)``. If the card then loses power the result
        has no RP answer, only what the power-on brings (:meth:`power_on`).
        """
        try:
            return self._receive_sms(tpdu, now, attempt, tear)
        except _CardLost:
            return self._card_lost()
        except _CardAbsent:
            return [self._rp_error(_TP_FCS_ERROR_IN_MS)]

    def _receive_sms(
        self, tpdu: bytes, now: float, attempt: int, tear: Callable[[], int | None] | None
    ) -> list[Outcome]:
        if self._pending is not None:
            raise LocalProtocolViolation(
                f"phone {self.phone_id}: SMS delivered while a SEND SHORT MESSAGE awaits mo_sent()"
            )
        if attempt == 1 and not self._reoffered:
            self.stats["sms_received"] += 1
        self._reoffered = False
        try:
            pid, dcs = deliver_pid_dcs(tpdu)  # SmsDeliver.decode's verdict, its PID and DCS
        except (DecodeError, ValueError) as exc:
            # Not a data download error: the SMS itself is unreadable (TS 23.040 §9.2.3.22 FF).
            log.warning("phone %s: undecodable SMS-DELIVER %s: %s", self.phone_id, tpdu.hex(), exc)
            return [self._rp_error(_TP_FCS_UNSPECIFIED)]
        # TS 31.111 §7.1.1 / TS 23.038 §4: only PID 7F with message class 2 goes to the SIM.
        if not is_sim_data_download(pid, dcs):
            self.stats["stored"] += 1
            self.stats["rp_ack"] += 1
            return [RpAck(_EMPTY_REPORT)]
        try:
            envelope = sms_pp_download_t0(tpdu, self.smsc_address, self._cla)
        except EncodeError as exc:
            log.warning("phone %s: SMS-DELIVER does not fit an ENVELOPE: %s", self.phone_id, exc)
            return [self._rp_error(_TP_FCS_DOWNLOAD_ERROR)]
        if self._card_absent:
            boot = self._power_on_again()
            if boot:
                # The re-inserted card opened a proactive session (a SEND SHORT MESSAGE awaits
                # mo_sent): the SMS is offered again once the network has taken that one.
                self._reoffered = True
                return [*boot, RetryEnvelopeAt(now, attempt)]
        self.stats["envelopes"] += 1
        armed = self._arm_tear(tear)
        data, sw = self._exchange(envelope)
        if armed:
            # One-shot hook, meant for this packet only: disarm it if the card did not use it.
            self._stop_after_actions(None)
        if sw >> 8 in (0x61, 0x9F, 0x9E):
            data, sw = self._get_response(data, sw)
        return self._after_envelope(pid, dcs, data, sw, now, attempt)

    def _power_on_again(self) -> list[Outcome]:
        """Reset + TERMINAL PROFILE for a card that was unreachable; raises _CardAbsent if it still is."""
        boot = self.power_on()
        if self._card_absent:
            raise _CardAbsent("card still unavailable")
        return boot

    def _arm_tear(self, tear: Callable[[], int | None] | None) -> bool:
        if tear is None:
            return False
        k = tear()
        if k is None:
            return False
        return self._stop_after_actions(k)

    def _stop_after_actions(self, k: int | None) -> bool:
        hook = getattr(self.card, "stop_after_actions", None)
        if not callable(hook):
            return False
        hook(k)
        return True

    # ------------------------------------------------------------------ subscriber activity

    def menu_selection(self, item: int = 1) -> list[Outcome]:
        """The user picks ``item`` of the card's menu: ENVELOPE (MENU SELECTION) ``D3 L 82 02 01 81
        90 01 item`` (TS 102 223 §7.3, keypad -> UICC). ``91 XX`` -> the proactive session (a purse's
        transaction request by SEND SHORT MESSAGE, patent claim 8); anything else ends it."""
        if self._pending is not None:
            raise LocalProtocolViolation(
                f"phone {self.phone_id}: menu selection while a SEND SHORT MESSAGE awaits mo_sent()"
            )
        self.stats["menu_selections"] += 1
        body = DeviceIdentities(DeviceIdentity.KEYPAD, DeviceIdentity.UICC).encode()
        body += encode_comprehension(ComprehensionTag.ITEM_IDENTIFIER, bytes((item & 0xFF,)), True)
        envelope = CommandApdu(
            self._cla, INS_ENVELOPE, 0x00, 0x00, encode_ber(BerTag.MENU_SELECTION, body)
        ).encode_t0()
        try:
            if self._card_absent:
                boot = self._power_on_again()
                if boot:
                    return boot  # the re-inserted card's own session first; the user may pick again
            data, sw = self._exchange(envelope)
            if sw >> 8 in (0x61, 0x9F):
                data, sw = self._get_response(data, sw)
            if sw >> 8 == 0x91:
                return self._proactive_session(sw & 0xFF)
        except _CardLost:
            return self._card_lost()
        except _CardAbsent:
            return []
        if sw != _SW_OK:
            log.info("phone %s: MENU SELECTION item %d answered %04X", self.phone_id, item, sw)
        return []

    def _after_envelope(
        self, pid: int, dcs: int, data: bytes, sw: int, now: float, attempt: int
    ) -> list[Outcome]:
        """The network's answer to an SMS-PP download the card answered ``data`` ``sw``
        (``pid``/``dcs``: the SMS-DELIVER's, copied into a report that carries data)."""
        sw1 = sw >> 8
        options = self.options
        if sw == _SW_OK:
            return [self._rp_ack(pid, dcs, data)]
        if sw1 == 0x91:
            # TS 31.111 §7.1.1: RP-ACK with the data, then the proactive session (TS 102 221 §10.2.1.1).
            outcomes: list[Outcome] = [self._rp_ack(pid, dcs, data)]
            outcomes += self._proactive_session(sw & 0xFF)
            return outcomes
        if sw1 in (0x62, 0x63):
            # TS 31.124 §27.22.5.1: a Rel-11+ ME acknowledges warnings with the data.
            if options.pre_rel11_me:
                return [self._rp_error(_TP_FCS_DOWNLOAD_ERROR, (pid, dcs), data)]
            return [self._rp_ack(pid, dcs, data)]
        if sw1 == 0x9E:
            return [self._rp_error(_TP_FCS_DOWNLOAD_ERROR, (pid, dcs), data)]
        if sw == 0x9300:
            # TS 31.111 §7.1.1: toolkit busy; the ME may retry later, else RP-ERROR "SAT busy" (D4).
            self.stats["busy"] += 1
            if attempt < options.busy_max_tries:
                return [
                    RetryEnvelopeAt(
                        now + options.busy_retry_s * options.busy_backoff ** (attempt - 1), attempt + 1
                    )
                ]
            return [self._rp_error(_TP_FCS_BUSY)]
        if sw1 >> 4 != 0x6:
            log.warning("phone %s: unexpected ENVELOPE status word %04X", self.phone_id, sw)
        # protocols.md §10.2: 6F XX technical problem and every other 6X XX -> D5 without data.
        self.stats["card_errors"] += 1
        return [self._rp_error(_TP_FCS_DOWNLOAD_ERROR)]

    def _rp_ack(self, pid: int, dcs: int, data: bytes) -> Outcome:
        if not data:
            # protocols.md §7.1 (3): no PoR, RP-ACK without TP-UD.
            self.stats["rp_ack"] += 1
            return RpAck(_EMPTY_REPORT)
        try:
            report = encode_report_with_data(None, _has_udh(data), pid, dcs, data)
        except EncodeError as exc:
            log.warning("phone %s: response data does not fit a DELIVER-REPORT: %s", self.phone_id, exc)
            return self._rp_error(_TP_FCS_DOWNLOAD_ERROR)
        self.stats["rp_ack"] += 1
        # TS 51.014 §7.1.1: TP-PID / TP-DCS as in the original message -> 40 07 7F F6 UDL UD.
        return RpAck(report)

    def _rp_error(self, fcs: int, pid_dcs: tuple[int, int] | None = None, data: bytes = b"") -> RpError:
        self.stats["rp_error"] += 1
        try:
            if data and pid_dcs is not None:
                return RpError(fcs, encode_report_with_data(fcs, _has_udh(data), *pid_dcs, data))
            return RpError(fcs, SmsDeliverReport(tp_fcs=fcs).encode())
        except EncodeError:
            return RpError(fcs, SmsDeliverReport(tp_fcs=fcs).encode())

    # ------------------------------------------------------------------ proactive session

    def _proactive_session(self, length: int) -> list[Outcome]:
        """FETCH while the card has a command (91 XX); stop at a SEND SHORT MESSAGE (TS 102 223 §6.4.10)."""
        for _ in range(self.options.max_proactive_commands):
            # FETCH XX (TS 102 221 §10.1.2): XX from 91 XX, 00 = 256.
            data, sw = self._exchange(bytes((self._cla, _INS_FETCH, 0x00, 0x00, length & 0xFF)))
            if sw != _SW_OK:
                log.warning("phone %s: FETCH answered %04X; proactive session ends", self.phone_id, sw)
                return []
            ssm = send_short_message_common_shape(data)
            if ssm is not None:
                # The usual SEND SHORT MESSAGE, read by index (the general readers below for the rest).
                self.stats["proactive"] += 1
                outcome = self._mo_submit(*ssm[1:], data)
                if outcome is not None:
                    self._pending = ssm[0]
                    return [outcome]
                sw = self._terminal_response(ssm[0], GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD)
                if sw >> 8 != 0x91:
                    return []
                length = sw & 0xFF
                continue
            try:
                command = decode_proactive(data)
            except (DecodeError, ValueError) as exc:
                log.warning("phone %s: undecodable proactive command %s: %s", self.phone_id, data.hex(), exc)
                return []
            self.stats["proactive"] += 1
            details = command.command_details
            if details.type == CommandType.SEND_SHORT_MESSAGE:
                outcome = self._send_short_message(command, data)
                if outcome is not None:
                    self._pending = details
                    return [outcome]
                sw = self._terminal_response(details, GeneralResult.COMMAND_DATA_NOT_UNDERSTOOD)
            else:
                # The simulated ME runs no UI, calls or channels: MORE TIME is "done", the rest beyond us.
                result = (
                    GeneralResult.PERFORMED_SUCCESSFULLY
                    if details.type == CommandType.MORE_TIME
                    else GeneralResult.BEYOND_TERMINAL_CAPABILITIES
                )
                sw = self._terminal_response(details, result)
            if sw >> 8 != 0x91:
                return []
            length = sw & 0xFF
        log.warning(
            "phone %s: more than %d proactive commands in a row",
            self.phone_id,
            self.options.max_proactive_commands,
        )
        return []

    def _send_short_message(self, command: ProactiveCommand, raw: bytes) -> MoSubmit | None:
        try:
            ssm = SendShortMessage.from_proactive(command)
        except (DecodeError, ValueError) as exc:
            log.warning("phone %s: unusable SEND SHORT MESSAGE %s: %s", self.phone_id, raw.hex(), exc)
            return None
        return self._mo_submit(ssm.tpdu, ssm.address, raw)

    def _mo_submit(self, tpdu: bytes, address: bytes | None, raw: bytes) -> MoSubmit | None:
        try:
            SmsSubmit.decode(tpdu)  # TS 23.040 §9.2.2.2: must be an SMS-SUBMIT to be sent
        except (DecodeError, ValueError) as exc:
            log.warning("phone %s: unusable SEND SHORT MESSAGE %s: %s", self.phone_id, raw.hex(), exc)
            return None
        # TS 23.040 §9.2.3.6: the ME numbers its own submissions (the card's TP-MR is replaced).
        self._mr = (self._mr + 1) & 0xFF
        tpdu = tpdu[:1] + bytes((self._mr,)) + tpdu[2:]
        self.stats["mo_submits"] += 1
        # No Address TLV (onomondo): the default SMSC, never a crash (protocols.md §7.2 (5)).
        return MoSubmit(tpdu, address)

    def _terminal_response(self, details: CommandDetails, result: int, info: bytes = b"") -> int:
        _, sw = self._exchange(terminal_response_t0(details, result, info, self._cla))
        return sw

    def mo_sent(self, *, rp_cause: int | None = None) -> list[Outcome]:
        """The SMS-SUBMIT of the last :class:`MoSubmit` was handed to the network.

        Sends TERMINAL RESPONSE ``83 01 00`` (or ``35`` + RP cause when
        ``rp_cause`` is given, TS 102 223 §8.12) and continues while the card
        has more proactive commands (e.g. the next part of a long PoR).
        """
        details = self._pending
        if details is None:
            return []
        self._pending = None
        try:
            if rp_cause is None:
                sw = self._terminal_response(details, GeneralResult.PERFORMED_SUCCESSFULLY)
            else:
                sw = self._terminal_response(details, GeneralResult.SMS_RP_ERROR, bytes((rp_cause & 0xFF,)))
            if sw >> 8 == 0x91:
                return self._proactive_session(sw & 0xFF)
        except _CardLost:
            return self._card_lost()
        except _CardAbsent:
            return []  # the card left before its TERMINAL RESPONSE; it is reset when next needed
        if sw != _SW_OK:
            log.warning("phone %s: TERMINAL RESPONSE answered %04X", self.phone_id, sw)
        return []


def describe(outcome: Outcome) -> str:
    """One short line for logs."""
    if isinstance(outcome, RpAck):
        return f"RP-ACK {outcome.report_tpdu.hex()}"
    if isinstance(outcome, RpError):
        return f"RP-ERROR fcs={outcome.fcs:02x} {outcome.report_tpdu.hex()}"
    if isinstance(outcome, MoSubmit):
        return f"SMS-SUBMIT {outcome.tpdu.hex()}"
    return f"retry envelope at {outcome.at:.3f} (attempt {outcome.attempt})"
