"""The UICC's APDU dispatcher: file commands, T=0 GET RESPONSE, CAT, and the OTA engine.

Clauses: ISO/IEC 7816-4 §5 (APDUs, SWs), ISO/IEC 7816-3 (T=0 ``61 XX`` / ``6C XX``),
TS 102 221 §10.1.2 / §10.2 (coding of CLA/INS, SWs ``91 XX``), §11.1 (file commands),
§11.2 (TERMINAL PROFILE, ENVELOPE, FETCH, TERMINAL RESPONSE); TS 31.111 §7.1.1 (SMS-PP
data download); TS 102 223 §6.4.10 (SEND SHORT MESSAGE); TS 31.115 §4.2 / §4.3
(command and response packets over SMS); TS 23.040 §9.2.3.24 (concatenation).

Glossary: ME mobile equipment, CAT card application toolkit, PoR proof of receipt,
SW status word, UD / UDH user data / header, CPI / RPI command / response packet
identifier (IEI 70 / 71), TAR toolkit application reference, CNTR replay counter.

PURE, with persistence injected: the shell passes ``commit(state)``, which writes the
card state atomically. Theory of operation for one SMS-PP DOWNLOAD ENVELOPE:

1. decode ENVELOPE -> SMS-DELIVER -> UD; a concatenated part is kept (``90 00``, no
   data) until its set is complete; a UD without IEI 70 is not for the OTA engine;
2. ``ota_security.verify`` (pure) -> verdict; the new CNTR is committed FIRST
   (house-style §2: from here on a replay is ``CNTR low``, even after a crash);
3. the script runs; each counted action is committed with its action counter;
4. only then the PoR is built: in the ENVELOPE response (SPI2 b6 = 0 and it fits
   ``por_max_deliver_report``), else a short status-0B PoR now and the real one by
   proactive SEND SHORT MESSAGE (one per SMS-SUBMIT segment), ``91 XX`` announcing it.

Card-originated messages (patent claims 7-9, docs/action-counter.md "Deferred
reports"): an ENVELOPE (MENU SELECTION) item 1 makes the purse pay and queue a
transaction request; with ``info_message_on_power_up`` the first TERMINAL PROFILE
after a reset queues an information message per purse. Each is saved (new MO CNTR,
sequence, balance) before it is queued as SEND SHORT MESSAGE, announced by ``91 XX``.

Volatile state (selection, GET RESPONSE data, proactive queue, reassembly) is
dropped by :meth:`Uicc.reset`. ``tear_after_actions`` simulates a power cut: after
that many committed actions of the next script :class:`CardTorn` is raised, the
commits made so far stay and no PoR is built.

Every input gets a status word: ``ApduRejected`` becomes its SW, any other
:class:`OtaSimError` (a codec or store failure) ``6F 00``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ota_protocols.action_counter import CardMessage, CardMessageKind, CounterReport
from ota_protocols.apdu.apdu import CommandApdu, ResponseApdu, StatusWord
from ota_protocols.apdu.envelope import SmsPpDownload, decode_envelope
from ota_protocols.apdu.proactive import (
    DeviceIdentities,
    DeviceIdentity,
    SendShortMessage,
    TerminalResponse,
)
from ota_protocols.errors import ApduRejected, DecodeError, OtaSimError, StoreError
from ota_protocols.secured_packet.response_packet import ResponseStatus
from ota_protocols.sms.address import Address
from ota_protocols.sms.concatenation import Reassembler, split_user_data
from ota_protocols.sms.tpdu import SmsDeliver, SmsSubmit
from ota_protocols.sms.user_data_header import RPI, Iei, parse_concatenation, split_udh
from ota_protocols.tlv import BerTag, ComprehensionTag
from sim_emulator.applets import Application, purse_payment
from sim_emulator.card_messages import card_message_submit, mo_keyset, seal_card_message
from sim_emulator.card_state import AppState, CardState
from sim_emulator.card_template import CardTemplate
from sim_emulator.file_system import FileView, Selection, execute_file_command
from sim_emulator.ota_security import KeyRing, por_wanted, seal_por, verify
from sim_emulator.profile import AppKind, CardIdentity
from sim_emulator.remote_apdu_executor import run_script

ATR = bytes.fromhex("3b024f54")  # TS, T0 (2 historical octets), "OT": a minimal T=0 ATR
CLA_ISO = 0x00
CLA_CAT = 0x80
CLA_2G = 0xA0

INS_SELECT, INS_STATUS, INS_READ_BINARY, INS_UPDATE_BINARY = 0xA4, 0xF2, 0xB0, 0xD6
INS_READ_RECORD, INS_UPDATE_RECORD, INS_GET_RESPONSE = 0xB2, 0xDC, 0xC0
INS_TERMINAL_PROFILE, INS_ENVELOPE, INS_FETCH, INS_TERMINAL_RESPONSE = 0x10, 0xC2, 0x12, 0x14
_FILE_INS = {INS_SELECT, INS_STATUS, INS_READ_BINARY, INS_UPDATE_BINARY, INS_READ_RECORD, INS_UPDATE_RECORD}
_CAT_INS = {INS_TERMINAL_PROFILE, INS_ENVELOPE, INS_FETCH, INS_TERMINAL_RESPONSE}
# ISO/IEC 7816-4: P3 is Le for these (case 2) when the ME talks to the card.
_CASE2 = {INS_READ_BINARY, INS_READ_RECORD, INS_GET_RESPONSE, INS_STATUS, INS_FETCH}
_SMS_UD_MAX = 140  # TS 23.040 §9.2.3.16, 8-bit data
_PID_DATA_DOWNLOAD, _DCS_CLASS2_8BIT = 0x7F, 0xF6
_REASSEMBLY_TIMEOUT = 1e12  # the card has no clock: partial sets live until reset or eviction
_SW_OK = int(StatusWord.OK)  # compared on every response: a plain int, not the enum member lookup
MENU_ITEM_PAY = 0x01  # the purse's menu item "pay" (MENU SELECTION item identifier)
_MAX_MO_CNTR = (1 << 40) - 1  # 5-octet CNTR (TS 102 225 §5.1)


class CardTorn(Exception):
    """The simulated power cut of ``tear_after_actions`` happened: no response."""


Commit = Callable[[CardState], None]


@dataclass(slots=True)
class _Pending:
    data: bytes
    final_sw: int


@dataclass(slots=True)
class _Proactive:
    group: int  # one PoR = one group of SEND SHORT MESSAGEs
    command: bytes


class Uicc:
    __slots__ = (
        "_commit",
        "_envelopes",
        "_fetched",
        "_group",
        "_initial_files",
        "_mr",
        "_pending",
        "_power_up_report_due",
        "_proactive",
        "_reassembler",
        "_script_actions",
        "_selection",
        "identity",
        "keyring",
        "state",
        "tear_after_actions",
        "template",
        "terminal_profile",
    )

    def __init__(
        self, template: CardTemplate, identity: CardIdentity, state: CardState, commit: Commit
    ) -> None:
        self.template = template
        self.identity = identity
        self.keyring = KeyRing(identity.keysets)
        self.state = state
        self._commit = commit
        self._initial_files = template.initial_files(identity)
        self.tear_after_actions: int | None = None
        self._script_actions = 0
        self._mr = 0
        self._group = 0
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    def reset(self) -> bytes:
        """Cold reset: drop volatile state, keep persistent state; returns the ATR."""
        self._selection = Selection()
        self._pending: _Pending | None = None
        self._proactive: list[_Proactive] = []
        self._fetched = False
        self._reassembler: Reassembler | None = None
        self._envelopes = 0
        self.terminal_profile = b""
        # Claim 9: the first TERMINAL PROFILE after a reset triggers the information messages.
        self._power_up_report_due = self.template.options.info_message_on_power_up
        return ATR

    def files(self) -> FileView:
        return FileView(self.template.tree, self._initial_files, self.state.files)

    # ----------------------------------------------------------------- dispatch

    def exchange(self, raw: bytes) -> bytes:
        """One C-APDU (T=0 form ``CLA INS P1 P2 P3 [data]``) -> R-APDU; never raises
        for bad input (CardTorn is the simulated power cut, not an answer)."""
        try:
            response = self._dispatch(bytes(raw))
        except ApduRejected as exc:
            response = ResponseApdu(b"", exc.status_word)
        except StoreError:
            response = ResponseApdu(b"", StatusWord.MEMORY_FAILURE)
        except OtaSimError:
            response = ResponseApdu(b"", StatusWord.TECHNICAL_PROBLEM)
        return response.data + (response.sw & 0xFFFF).to_bytes(2, "big")  # response.encode(), inline

    def _dispatch(self, raw: bytes) -> ResponseApdu:
        if len(raw) < 4:
            raise ApduRejected(StatusWord.WRONG_LENGTH, f"{len(raw)} octets cannot hold CLA INS P1 P2")
        cla, ins, p1, p2 = raw[:4]
        if cla not in (CLA_ISO, CLA_CAT, CLA_2G):
            raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"CLA {cla:02X}")
        apdu = self._parse(raw, cla, ins, p1, p2)
        if ins != INS_GET_RESPONSE:
            self._pending = None
        if ins in _FILE_INS:
            # TS 102 221 §10.1.1: file commands use the ISO class (STATUS the CAT class 80).
            if cla == CLA_CAT and ins != INS_STATUS:
                raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"CLA 80 with INS {ins:02X}")
            return self._file_command(apdu)
        if ins == INS_GET_RESPONSE:
            return self._get_response(apdu)
        if ins in _CAT_INS:
            if cla == CLA_ISO:
                raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"CLA 00 with CAT INS {ins:02X}")
            if ins == INS_ENVELOPE:
                return self._envelope(apdu)
            if ins == INS_FETCH:
                return self._fetch(apdu)
            if ins == INS_TERMINAL_RESPONSE:
                return self._terminal_response(apdu)
            self.terminal_profile = apdu.data
            if self._power_up_report_due:
                self._power_up_report_due = False
                self._information_messages()
            return self._final(b"", _SW_OK, cla)
        raise ApduRejected(StatusWord.INS_NOT_SUPPORTED, f"INS {ins:02X}")

    @staticmethod
    def _parse(raw: bytes, cla: int, ins: int, p1: int, p2: int) -> CommandApdu:
        p3 = raw[4] if len(raw) > 4 else 0
        body = raw[5:]
        if ins in _CASE2:
            if body:
                raise ApduRejected(
                    StatusWord.WRONG_LENGTH, f"case 2 INS {ins:02X} with {len(body)} data octets"
                )
            return CommandApdu(cla, ins, p1, p2, b"", 256 if p3 == 0 else p3)
        # Case 1/3/4: P3 = Lc. A trailing Le octet (ISO short form) is tolerated.
        size = len(body)
        if size != p3 and (size != p3 + 1 or p3 == 0):
            raise ApduRejected(StatusWord.WRONG_LENGTH, f"Lc {p3} but {len(body)} octets follow")
        return CommandApdu(cla, ins, p1, p2, body if size == p3 else body[:p3])

    def _final(self, data: bytes, sw: int, cla: int) -> ResponseApdu:
        """Apply T=0 and proactive rules to a command's outcome."""
        if sw == _SW_OK and self._proactive and not self._fetched:
            sw = 0x9100 | (len(self._proactive[0].command) & 0xFF)  # TS 102 221 §10.2.1.1
        if data and self.template.options.t0_get_response:
            self._pending = _Pending(data, sw)
            sw1 = 0x9F if cla == CLA_2G else 0x61  # GSM 11.11 9F XX / ISO 7816-3 61 XX
            return ResponseApdu(b"", (sw1 << 8) | (len(data) & 0xFF))
        return ResponseApdu(data, sw)

    def _get_response(self, apdu: CommandApdu) -> ResponseApdu:
        pending = self._pending
        if pending is None:
            raise ApduRejected(StatusWord.CONDITIONS_NOT_SATISFIED, "GET RESPONSE without pending data")
        if apdu.p1 or apdu.p2:
            raise ApduRejected(StatusWord.WRONG_P1_P2, "GET RESPONSE P1 P2 must be 00 00")
        le = apdu.le or 256
        if le != 256 and le > len(pending.data):
            raise ApduRejected(0x6C00 | len(pending.data), "Le larger than the data")
        chunk, rest = pending.data[:le], pending.data[le:]
        if rest:
            self._pending = _Pending(rest, pending.final_sw)
            return ResponseApdu(chunk, 0x6100 | (len(rest) & 0xFF))
        self._pending = None
        return ResponseApdu(chunk, pending.final_sw)

    def _file_command(self, apdu: CommandApdu) -> ResponseApdu:
        outcome = execute_file_command(self.files(), self._selection, apdu)
        if outcome.writes:
            # An UPDATE from the ME is committed like an OTA one (no action counter: not a script).
            new = self.state.with_files(outcome.writes)
            self._commit(new)
            self.state = new
        self._selection = outcome.selection
        if apdu.ins == INS_SELECT:
            return self._final(outcome.response.data, outcome.response.sw, apdu.cla)
        return self._final_direct(outcome.response)

    def _final_direct(self, response: ResponseApdu) -> ResponseApdu:
        """Case 2 commands return their data at once (Le already given)."""
        sw = response.sw
        if sw == StatusWord.OK and self._proactive and not self._fetched:
            sw = 0x9100 | (len(self._proactive[0].command) & 0xFF)
        return ResponseApdu(response.data, sw)

    # ----------------------------------------------------------------- CAT

    def _fetch(self, apdu: CommandApdu) -> ResponseApdu:
        if not self._proactive:
            raise ApduRejected(StatusWord.CONDITIONS_NOT_SATISFIED, "FETCH without pending proactive command")
        command = self._proactive[0].command
        if apdu.le not in (256, len(command)):
            raise ApduRejected(0x6C00 | (len(command) & 0xFF), "FETCH Le differs from 91 XX")
        self._fetched = True
        return ResponseApdu(command, StatusWord.OK)

    def _terminal_response(self, apdu: CommandApdu) -> ResponseApdu:
        if not self._proactive or not self._fetched:
            raise ApduRejected(
                StatusWord.CONDITIONS_NOT_SATISFIED, "TERMINAL RESPONSE without a fetched command"
            )
        try:
            result = TerminalResponse.decode(apdu.data, base_offset=5)
        except DecodeError as exc:
            raise ApduRejected(StatusWord.WRONG_DATA, f"TERMINAL RESPONSE: {exc}") from exc
        done = self._proactive.pop(0)
        self._fetched = False
        if result.general_result >= 0x10:
            # TS 102 223 §8.12: not performed; the later segments of that PoR are useless alone.
            self._proactive = [p for p in self._proactive if p.group != done.group]
        return self._final(b"", StatusWord.OK, apdu.cla)

    # ----------------------------------------------------------------- SMS-PP download

    def _envelope(self, apdu: CommandApdu) -> ResponseApdu:
        cla = apdu.cla
        if apdu.data and apdu.data[0] == BerTag.MENU_SELECTION:
            return self._menu_selection(apdu)
        if not apdu.data or apdu.data[0] != 0xD1:
            return self._final(b"", _SW_OK, cla)  # other ENVELOPEs: accepted, nothing to do
        try:
            download = SmsPpDownload.decode(apdu.data, base_offset=5)
            deliver = SmsDeliver.decode(download.tpdu)
            if not deliver.tp_udhi:
                return self._final(b"", _SW_OK, cla)  # no UDH, no CPI: not OTA (TS 31.115 §4.2)
            ud = deliver.tp_ud
            header, rest = split_udh(ud)
            info = parse_concatenation(header)
            if info is not None and info.total > 1:
                self._envelopes += 1
                if self._reassembler is None:
                    self._reassembler = Reassembler(timeout_s=_REASSEMBLY_TIMEOUT, max_pending=4)
                # The segment is handed over as already split and read (no second parse).
                whole = self._reassembler.add_parsed(
                    deliver.tp_oa.digits, header, rest, info, float(self._envelopes)
                )
                if whole is None:
                    return self._final(b"", _SW_OK, cla)  # TS 31.115 §4.2: wait for the rest
                header, rest = whole
        except DecodeError as exc:
            raise ApduRejected(StatusWord.WRONG_DATA, f"SMS-PP DOWNLOAD: {exc}") from exc
        # protocols.md §2.5 step 1 and §14.1: IEI 70 anywhere in the (first segment's) UDH.
        if not header.has(Iei.COMMAND_PACKET):
            return self._final(b"", _SW_OK, cla)
        data, sw = self._ota(rest, deliver.tp_oa)
        return self._final(data, sw, cla)

    def _ota(self, packet: bytes, originator: Address) -> tuple[bytes, int]:
        options = self.template.options
        verdict = verify(
            packet,
            applications=self.template.applications,
            keyring=self.keyring,
            counters=self.state.counters,
            options=options,
        )
        tear_after, self.tear_after_actions = self.tear_after_actions, None
        if verdict.new_cntr is not None and verdict.counter_key is not None:
            # house-style §2 step 2: persist the CNTR before anything runs.
            state = self.state.with_counter(verdict.counter_key, verdict.new_cntr)
            self._commit(state)
            self.state = state
        if not verdict.accepted:
            if por_wanted(verdict.spi, verdict.status, False, options):
                return seal_por(verdict, verdict.status, b"", options), StatusWord.OK
            return b"", StatusWord.OK
        if tear_after == 0:
            self._tear()
        assert verdict.application is not None and verdict.opened is not None and verdict.spi is not None
        self._script_actions = 0

        def commit_action(state: CardState) -> None:
            self._commit(state)
            self.state = state
            self._script_actions += 1
            if tear_after is not None and self._script_actions >= tear_after:
                self._tear()

        def save(state: CardState) -> None:  # a non-counted change (TRANSACTION REPLY): no tear point
            self._commit(state)
            self.state = state

        outcome = run_script(
            verdict.opened.data,
            verdict.application.profile.format,
            verdict.application,
            self.state,
            self.template.tree,
            self._initial_files,
            options,
            commit_action,
            save,
        )
        self.state = outcome.state
        if not por_wanted(verdict.spi, ResponseStatus.POR_OK, outcome.stopped_on_error, options):
            return b"", StatusWord.OK
        additional = outcome.response + CounterReport(outcome.counter_before, outcome.counter_after).encode()
        por = seal_por(verdict, ResponseStatus.POR_OK, additional, options)
        if not verdict.spi.por_via_sms_submit and len(por) <= options.por_max_deliver_report:
            return por, StatusWord.OK  # protocols.md §7.1
        # protocols.md §7.2: status 0B now, the real PoR by SEND SHORT MESSAGE.
        self._queue_sms(por, originator)
        short = seal_por(verdict, ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT, b"", options)
        return short, StatusWord.OK

    def _tear(self) -> None:
        self.reset()
        raise CardTorn("simulated power cut (tear_after_actions)")

    def _queue_sms(self, por: bytes, destination: Address) -> None:
        """One SEND SHORT MESSAGE per SMS-SUBMIT segment (TS 31.115 §4.3, protocols.md §7.2):
        ``00 03 ref total seq`` in every UDH, ``71 00`` in the first only."""
        self._group += 1
        segments = split_user_data(
            por[3:], first_ies=(RPI,), reference=self._group & 0xFF, max_ud=_SMS_UD_MAX
        )
        for segment in segments:
            tpdu = SmsSubmit(
                tp_mr=self._mr,
                tp_da=destination,
                tp_pid=_PID_DATA_DOWNLOAD,
                tp_dcs=_DCS_CLASS2_8BIT,
                tp_ud=segment,
                tp_udhi=True,
            ).encode()
            self._mr = (self._mr + 1) & 0xFF
            self._proactive.append(_Proactive(self._group, SendShortMessage(tpdu).encode()))

    # ----------------------------------------------------------------- card-originated messages

    def _menu_selection(self, apdu: CommandApdu) -> ResponseApdu:
        """ENVELOPE (MENU SELECTION), TS 102 223 §7.3 / TS 31.111: ``D3 L 82 02 01 81 90 01 item``
        (keypad -> UICC). Item 1 ("pay") starts a purse payment: claim 8's transaction request."""
        try:
            envelope = decode_envelope(apdu.data, base_offset=5)
            identities = envelope.find(ComprehensionTag.DEVICE_IDENTITIES)
            item = envelope.find(ComprehensionTag.ITEM_IDENTIFIER)
            if identities is None or item is None or len(item.value) != 1:
                raise DecodeError(
                    "menu_selection", 7, "needs device identities and a 1-octet item identifier"
                )
            DeviceIdentities.from_tlv(identities, 7).expect(
                DeviceIdentity.KEYPAD, DeviceIdentity.UICC, 7, "TS 102 223 §7.3"
            )
        except DecodeError as exc:
            raise ApduRejected(StatusWord.WRONG_DATA, f"MENU SELECTION: {exc}") from exc
        if item.value[0] == MENU_ITEM_PAY:
            purse = self._purses()[:1]
            for application in purse:
                paid = purse_payment(application.profile, self.state.applications[application.tar])
                if paid is not None:  # balance too low: refused locally, no message
                    amount = application.profile.payment_amount.to_bytes(4, "big")
                    self._card_message(application, paid, CardMessageKind.TRANSACTION_REQUEST, amount)
        return self._final(b"", StatusWord.OK, apdu.cla)

    def _information_messages(self) -> None:
        for application in self._purses():
            app = self.state.applications[application.tar]
            self._card_message(application, app, CardMessageKind.INFORMATION, b"")

    def _purses(self) -> list[Application]:
        return [a for a in self.template.applications if a.profile.kind is AppKind.PURSE]

    def _card_message(
        self, application: Application, app: AppState, kind: CardMessageKind, payload: bytes
    ) -> None:
        """Save the application's new state with its next MO CNTR FIRST (house-style §2), then
        queue the SEND SHORT MESSAGE (docs/action-counter.md "Deferred reports")."""
        keyset = mo_keyset(self.identity.keysets)
        if keyset is None or app.mo_cntr >= _MAX_MO_CNTR:
            return  # no keys, or the MO counter is exhausted: the card stays silent
        keys = self.keyring.keys(keyset.kvn)
        assert keys is not None
        cntr = app.mo_cntr + 1
        app = replace(app, mo_cntr=cntr)
        message = CardMessage(kind, app.request_sequence, app.action_counter, payload)
        try:
            packet = seal_card_message(message, tar=application.tar, cntr=cntr, keyset=keyset, keys=keys)
            tpdu = card_message_submit(
                packet, destination=self.template.options.ota_platform_address, mr=self._mr
            )
        except OtaSimError:
            return  # a key set that cannot cipher + MAC (e.g. CRC KID): nothing to send
        state = self.state.with_app(application.tar, app)
        self._commit(state)
        self.state = state
        self._mr = (self._mr + 1) & 0xFF
        self._group += 1
        self._proactive.append(_Proactive(self._group, SendShortMessage(tpdu).encode()))
