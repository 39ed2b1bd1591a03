"""Proactive UICC commands, TERMINAL RESPONSE and the CAT housekeeping APDUs.

Clauses: TS 102 223 §6.6 (structure of proactive commands), §6.8 (TERMINAL RESPONSE),
§8.6 command details, §8.7 device identities, §8.12 result, §8.13 SMS TPDU; TS 31.111
§6.4.10 / TS 102 223 §6.4.10 SEND SHORT MESSAGE; TS 102 221 §10.1.2 for FETCH (``12``),
TERMINAL PROFILE (``10``) and TERMINAL RESPONSE (``14``); ISO/IEC 7816-4 GET RESPONSE.

A proactive command is the BER-TLV ``D0 L`` holding COMPREHENSION-TLVs, the first two
being command details and device identities; the ME fetches it after a ``91 XX`` and
answers with a TERMINAL RESPONSE, which is the bare TLV list with no ``D0`` wrapper.

Glossary: CAT card application toolkit; ME mobile equipment (the terminal); TR
TERMINAL RESPONSE; CR comprehension-required flag; SSM SEND SHORT MESSAGE.

Decoders find each known TLV wherever it stands and keep every other TLV, in order, in
``other_tlvs``, so a receiver can still answer "command data not understood" (``32``)
for a CR object it cannot handle. Encoders write the canonical order with CR set.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.tlv import (
    BerTag,
    ComprehensionTag,
    ComprehensionTlv,
    ComprehensionTlvIndex,
    encode_ber,
    encode_comprehension,
    short_ber_value_at,
    short_comprehension_items,
    unwrap_ber,
)

INS_FETCH = 0x12
INS_TERMINAL_PROFILE = 0x10
INS_TERMINAL_RESPONSE = 0x14
INS_GET_RESPONSE = 0xC0


class CommandType(IntEnum):
    """Type of command (TS 102 223 §9.4), the subset this simulator names."""

    REFRESH = 0x01
    MORE_TIME = 0x02
    POLL_INTERVAL = 0x03
    POLLING_OFF = 0x04
    SET_UP_EVENT_LIST = 0x05
    SET_UP_CALL = 0x10
    SEND_SS = 0x11
    SEND_USSD = 0x12
    SEND_SHORT_MESSAGE = 0x13
    SEND_DTMF = 0x14
    LAUNCH_BROWSER = 0x15
    PLAY_TONE = 0x20
    DISPLAY_TEXT = 0x21
    GET_INKEY = 0x22
    GET_INPUT = 0x23
    SELECT_ITEM = 0x24
    SET_UP_MENU = 0x25
    PROVIDE_LOCAL_INFORMATION = 0x26
    TIMER_MANAGEMENT = 0x27
    SET_UP_IDLE_MODE_TEXT = 0x28
    OPEN_CHANNEL = 0x40
    CLOSE_CHANNEL = 0x41
    RECEIVE_DATA = 0x42
    SEND_DATA = 0x43


class DeviceIdentity(IntEnum):
    """Device identity codes (TS 102 223 §8.7); channels 1-7 are ``21``-``27``."""

    KEYPAD = 0x01
    DISPLAY = 0x02
    EARPIECE = 0x03
    UICC = 0x81
    TERMINAL = 0x82
    NETWORK = 0x83


class GeneralResult(IntEnum):
    """General result of a TERMINAL RESPONSE (TS 102 223 §8.12)."""

    PERFORMED_SUCCESSFULLY = 0x00
    PERFORMED_WITH_PARTIAL_COMPREHENSION = 0x01
    PERFORMED_WITH_MISSING_INFORMATION = 0x02
    TERMINAL_UNABLE = 0x20
    NETWORK_UNABLE = 0x21
    BEYOND_TERMINAL_CAPABILITIES = 0x30
    COMMAND_TYPE_NOT_UNDERSTOOD = 0x31
    COMMAND_DATA_NOT_UNDERSTOOD = 0x32
    COMMAND_NUMBER_NOT_KNOWN = 0x33
    SMS_RP_ERROR = 0x35
    REQUIRED_VALUES_MISSING = 0x36


_GENERAL_RESULTS = frozenset(int(result) for result in GeneralResult)


def _check_octet(field: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(field, 0, f"{value} does not fit one octet")


def _check_tlv_value(field: str, value: bytes) -> None:
    if len(value) > 0xFF:
        raise EncodeError(field, 0, f"{len(value)} octets exceed a COMPREHENSION-TLV (TS 101 220 §7.1.1)")


@dataclass(frozen=True, slots=True)
class CommandDetails:
    """Command details object ``81 03 number type qualifier`` (TS 102 223 §8.6)."""

    number: int
    type: int
    qualifier: int = 0

    def __post_init__(self) -> None:
        if not (self.number | self.type | self.qualifier) >> 8:
            return  # all three are octets (the usual case, one test)
        for name in ("number", "type", "qualifier"):
            _check_octet(f"command_details.{name}", getattr(self, name))

    def encode(self) -> bytes:
        value = bytes((self.number, self.type, self.qualifier))
        return encode_comprehension(ComprehensionTag.COMMAND_DETAILS, value, True)

    @classmethod
    def from_tlv(cls, tlv: ComprehensionTlv, offset: int = 0) -> CommandDetails:
        if len(tlv.value) != 3:
            raise DecodeError(
                "command_details", offset, f"length {len(tlv.value)}, expected 3 (TS 102 223 §8.6)"
            )
        number, command_type, qualifier = tlv.value
        return cls(number, command_type, qualifier)


@dataclass(frozen=True, slots=True)
class DeviceIdentities:
    """Device identities object ``82 02 source destination`` (TS 102 223 §8.7)."""

    source: int
    destination: int

    def __post_init__(self) -> None:
        _check_octet("device_identities.source", self.source)
        _check_octet("device_identities.destination", self.destination)

    def encode(self) -> bytes:
        value = bytes((self.source, self.destination))
        return encode_comprehension(ComprehensionTag.DEVICE_IDENTITIES, value, True)

    @classmethod
    def from_tlv(cls, tlv: ComprehensionTlv, offset: int = 0) -> DeviceIdentities:
        if len(tlv.value) != 2:
            raise DecodeError(
                "device_identities", offset, f"length {len(tlv.value)}, expected 2 (TS 102 223 §8.7)"
            )
        return cls(tlv.value[0], tlv.value[1])

    def expect(self, source: int, destination: int, offset: int, clause: str) -> None:
        """Raise :class:`DecodeError` unless this is ``source -> destination``."""
        if (self.source, self.destination) != (source, destination):
            raise DecodeError(
                "device_identities",
                offset,
                f"expected {source:02X} -> {destination:02X}, got "
                f"{self.source:02X} -> {self.destination:02X} ({clause})",
            )


# --------------------------------------------------------------------------- proactive commands


@dataclass(frozen=True, slots=True)
class ProactiveCommand:
    """Any proactive command: the two mandatory objects plus the others in order."""

    command_details: CommandDetails
    device_identities: DeviceIdentities
    tlvs: tuple[ComprehensionTlv, ...] = ()

    def encode(self) -> bytes:
        body = self.command_details.encode() + self.device_identities.encode()
        body += b"".join(tlv.encode() for tlv in self.tlvs)
        return encode_ber(BerTag.PROACTIVE_COMMAND, body)

    def find(self, tag: int) -> ComprehensionTlv | None:
        """First remaining TLV with one-octet tag ``tag`` (CR flag ignored)."""
        return next((tlv for tlv in self.tlvs if tlv.matches(tag)), None)


def decode_proactive(data: bytes, *, base_offset: int = 0) -> ProactiveCommand:
    """Decode ``D0 L ...`` as returned by FETCH (TS 102 223 §6.6); unknown types still parse."""
    body, body_offset = unwrap_ber(
        data, BerTag.PROACTIVE_COMMAND, base_offset, "proactive", "TS 102 223 §6.6"
    )
    index = ComprehensionTlvIndex(
        body,
        body_offset,
        (ComprehensionTag.COMMAND_DETAILS, ComprehensionTag.DEVICE_IDENTITIES),
        "proactive",
    )
    details_tlv = index.require(ComprehensionTag.COMMAND_DETAILS, "command_details", "TS 102 223 §6.6")
    identities_tlv = index.require(ComprehensionTag.DEVICE_IDENTITIES, "device_identities", "TS 102 223 §6.6")
    return ProactiveCommand(
        CommandDetails.from_tlv(details_tlv, index.offset(ComprehensionTag.COMMAND_DETAILS)),
        DeviceIdentities.from_tlv(identities_tlv, index.offset(ComprehensionTag.DEVICE_IDENTITIES)),
        tuple(index.other),
    )


@dataclass(frozen=True, slots=True)
class SendShortMessage:
    """SEND SHORT MESSAGE (TS 102 223 §6.4.10, TS 31.111): the card asks the ME to send an SMS.

    ``tpdu`` is an SMS-SUBMIT starting at its first octet; ``address`` the CAT address value
    (TON/NPI octet + BCD) of the SMSC to use, ``None`` for the ME's default; ``alpha`` the
    alpha identifier value, ``None`` when absent (an empty one means "say nothing").
    """

    tpdu: bytes
    address: bytes | None = None
    alpha: bytes | None = None
    command_number: int = 1
    qualifier: int = 0
    other_tlvs: tuple[ComprehensionTlv, ...] = ()

    def __post_init__(self) -> None:
        if (
            0 <= self.command_number <= 0xFF
            and 0 <= self.qualifier <= 0xFF
            and len(self.tpdu) <= 0xFF
            and (self.address is None or len(self.address) <= 0xFF)
            and (self.alpha is None or len(self.alpha) <= 0xFF)
        ):
            return  # octets and short values (the usual case, one test)
        _check_octet("send_short_message.command_number", self.command_number)
        _check_octet("send_short_message.qualifier", self.qualifier)
        _check_tlv_value("send_short_message.tpdu", self.tpdu)
        if self.address is not None:
            _check_tlv_value("send_short_message.address", self.address)
        if self.alpha is not None:
            _check_tlv_value("send_short_message.alpha", self.alpha)

    def to_proactive(self) -> ProactiveCommand:
        tlvs: list[ComprehensionTlv] = []
        if self.alpha is not None:
            tlvs.append(ComprehensionTlv(ComprehensionTag.ALPHA_IDENTIFIER, self.alpha, True))
        if self.address is not None:
            tlvs.append(ComprehensionTlv(ComprehensionTag.ADDRESS, self.address, True))
        tlvs.append(ComprehensionTlv(ComprehensionTag.SMS_TPDU, self.tpdu, True))
        tlvs.extend(self.other_tlvs)
        return ProactiveCommand(
            CommandDetails(self.command_number, CommandType.SEND_SHORT_MESSAGE, self.qualifier),
            DeviceIdentities(DeviceIdentity.UICC, DeviceIdentity.NETWORK),
            tuple(tlvs),
        )

    def encode(self) -> bytes:
        """``D0 L 81 03 nn 13 qq 82 02 81 83 [85 ..] [86 ..] 8B L tpdu [others]``.

        The bytes of ``self.to_proactive().encode()``, written without the intermediate objects
        (``__post_init__`` already checked every field those objects would check again)."""
        body = (
            bytes((0x81, 3, self.command_number, CommandType.SEND_SHORT_MESSAGE, self.qualifier))
            + _UICC_TO_NETWORK
        )
        if self.alpha is not None:
            body += encode_comprehension(ComprehensionTag.ALPHA_IDENTIFIER, self.alpha, True)
        if self.address is not None:
            body += encode_comprehension(ComprehensionTag.ADDRESS, self.address, True)
        body += encode_comprehension(ComprehensionTag.SMS_TPDU, self.tpdu, True)
        if self.other_tlvs:
            body += b"".join(tlv.encode() for tlv in self.other_tlvs)
        return encode_ber(BerTag.PROACTIVE_COMMAND, body)

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> SendShortMessage:
        return cls.from_proactive(decode_proactive(data, base_offset=base_offset), base_offset)

    @classmethod
    def from_proactive(cls, command: ProactiveCommand, offset: int = 0) -> SendShortMessage:
        details = command.command_details
        if details.type != CommandType.SEND_SHORT_MESSAGE:
            raise DecodeError(
                "send_short_message.command_details.type",
                offset,
                f"expected 13, got {details.type:02X} (TS 102 223 §9.4)",
            )
        # TS 102 223 §6.4.10: the UICC asks the network side, through the ME, to send.
        command.device_identities.expect(
            DeviceIdentity.UICC, DeviceIdentity.NETWORK, offset, "TS 102 223 §6.4.10"
        )
        tpdu: bytes | None = None
        address: bytes | None = None
        alpha: bytes | None = None
        others: list[ComprehensionTlv] = []
        for tlv in command.tlvs:
            if tlv.tag == ComprehensionTag.SMS_TPDU and tpdu is None:
                tpdu = tlv.value
            elif tlv.tag == ComprehensionTag.ADDRESS and address is None:
                address = tlv.value
            elif tlv.tag == ComprehensionTag.ALPHA_IDENTIFIER and alpha is None:
                alpha = tlv.value
            elif tlv.tag in (
                ComprehensionTag.SMS_TPDU,
                ComprehensionTag.ADDRESS,
                ComprehensionTag.ALPHA_IDENTIFIER,
            ):
                raise DecodeError(
                    f"send_short_message.tlv[{tlv.tag:02X}]", offset, f"tag {tlv.tag:02X} appears twice"
                )
            else:
                others.append(tlv)
        if tpdu is None:
            raise DecodeError("send_short_message.sms_tpdu", offset, "mandatory SMS TPDU TLV (8B) missing")
        return cls(tpdu, address, alpha, details.number, details.qualifier, tuple(others))


# --------------------------------------------------------------------------- TERMINAL RESPONSE


@dataclass(frozen=True, slots=True)
class TerminalResponse:
    """TERMINAL RESPONSE (TS 102 223 §6.8): ``81 03 .. | 82 02 82 81 | 83 L result [info]``."""

    command_details: CommandDetails
    general_result: int
    additional_info: bytes = b""
    other_tlvs: tuple[ComprehensionTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_octet("terminal_response.general_result", self.general_result)
        if len(self.additional_info) > 0xFE:
            raise EncodeError(
                "terminal_response.additional_info", 0, f"{len(self.additional_info)} octets exceed 254"
            )

    def encode(self) -> bytes:
        # TS 102 223 §6.8: the ME copies the command details it answers, then ME -> UICC.
        return (
            self.command_details.encode()
            + _TERMINAL_TO_UICC
            + encode_comprehension(
                ComprehensionTag.RESULT, bytes((self.general_result,)) + self.additional_info, True
            )
            + b"".join(tlv.encode() for tlv in self.other_tlvs)
        )

    def to_apdu(self, cla: int = 0x80) -> CommandApdu:
        """``80 14 00 00 Lc <TLVs>`` (TS 102 221 §10.1.2; 2G: CLA ``A0``)."""
        return CommandApdu(cla, INS_TERMINAL_RESPONSE, 0x00, 0x00, self.encode())

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> TerminalResponse:
        if type(data) is bytes and cls is TerminalResponse:
            fast = _decode_terminal_response_common_shape(data)
            if fast is not None:
                return fast
        return cls._decode_checked(data, base_offset=base_offset)

    @classmethod
    def _decode_checked(cls, data: bytes, *, base_offset: int = 0) -> TerminalResponse:
        """The general reader: every shape, and the error that names what is wrong."""
        known = (
            ComprehensionTag.COMMAND_DETAILS,
            ComprehensionTag.DEVICE_IDENTITIES,
            ComprehensionTag.RESULT,
        )
        index = ComprehensionTlvIndex(data, base_offset, known, "terminal_response")
        details_tlv = index.require(ComprehensionTag.COMMAND_DETAILS, "command_details", "TS 102 223 §6.8")
        identities_tlv = index.require(
            ComprehensionTag.DEVICE_IDENTITIES, "device_identities", "TS 102 223 §6.8"
        )
        result_tlv = index.require(ComprehensionTag.RESULT, "result", "TS 102 223 §6.8")
        details = CommandDetails.from_tlv(details_tlv, index.offset(ComprehensionTag.COMMAND_DETAILS))
        identities_offset = index.offset(ComprehensionTag.DEVICE_IDENTITIES)
        DeviceIdentities.from_tlv(identities_tlv, identities_offset).expect(
            DeviceIdentity.TERMINAL, DeviceIdentity.UICC, identities_offset, "TS 102 223 §6.8"
        )
        if not result_tlv.value:
            raise DecodeError(
                "terminal_response.result",
                index.offset(ComprehensionTag.RESULT),
                "empty result, expected at least the general result octet (TS 102 223 §8.12)",
            )
        code = result_tlv.value[0]
        general: int = GeneralResult(code) if code in _GENERAL_RESULTS else code
        return cls(details, general, result_tlv.value[1:], tuple(index.other))

    @classmethod
    def from_apdu(cls, apdu: CommandApdu) -> TerminalResponse:
        if apdu.ins != INS_TERMINAL_RESPONSE:
            raise DecodeError("c_apdu.ins", 1, f"expected 14 (TERMINAL RESPONSE), got {apdu.ins:02X}")
        # The data field starts after CLA INS P1 P2 Lc.
        return cls.decode(apdu.data, base_offset=5)


_UICC_TO_NETWORK = b"\x82\x02\x81\x83"  # DeviceIdentities(UICC, NETWORK).encode()
_TERMINAL_TO_UICC = b"\x82\x02\x82\x81"  # DeviceIdentities(TERMINAL, UICC).encode()


def _decode_terminal_response_common_shape(data: bytes) -> TerminalResponse | None:
    """``81 03 nn tt qq 82 02 82 81 83 L result [info]`` (CR set, short lengths, nothing else): the
    TerminalResponse the general reader returns for it. None for any other shape, valid or not,
    which the general reader then judges (so errors stay its own)."""
    n = len(data)
    if n < 12 or data[:2] != b"\x81\x03" or data[5:9] != _TERMINAL_TO_UICC or data[9] != 0x83:
        return None
    size = data[10]
    if size == 0 or size >= 0x80 or 11 + size != n:
        return None
    code = data[11]
    general: int = GeneralResult(code) if code in _GENERAL_RESULTS else code
    return TerminalResponse(CommandDetails(data[2], data[3], data[4]), general, data[12:])


def send_short_message_common_shape(data: bytes) -> tuple[CommandDetails, bytes, bytes | None] | None:
    """FETCH data ``D0 L 81 03 nn 13 qq 82 02 81 83 [86 L address] 8B L tpdu`` (tags with or
    without CR, short lengths, nothing else) -> (command details, tpdu, address): what
    ``SendShortMessage.from_proactive(decode_proactive(data))`` reads from it. None for any other
    shape, valid or not, which the general readers then judge (so errors stay theirs)."""
    pos = short_ber_value_at(data, BerTag.PROACTIVE_COMMAND)
    items = None if pos is None else short_comprehension_items(data, pos)
    if items is None or not 3 <= len(items) <= 4:
        return None
    (details_tag, details), (identities_tag, identities), *rest = items
    if details_tag != 0x01 or len(details) != 3 or details[1] != 0x13:
        return None
    if identities_tag != 0x02 or identities != b"\x81\x83":
        return None
    address: bytes | None = None
    if len(rest) == 2:
        if rest[0][0] != 0x06:
            return None
        address = rest[0][1]
    tpdu_tag, tpdu = rest[-1]
    if tpdu_tag != 0x0B:
        return None
    return CommandDetails(details[0], 0x13, details[2]), tpdu, address


# --------------------------------------------------------------------------- housekeeping APDUs


def _check_le(field: str, length: int) -> None:
    # 91 XX / 61 XX announce 1..256 octets (XX = 00 means 256); Le 0 would read as 256.
    if not 1 <= length <= 256:
        raise EncodeError(field, 4, f"length {length} outside 1..256")


def fetch_apdu(length: int, cla: int = 0x80) -> CommandApdu:
    """FETCH ``80 12 00 00 XX`` with XX from ``91 XX`` (TS 102 221 §10.1.2; 2G: CLA ``A0``)."""
    _check_le("fetch.le", length)
    return CommandApdu(cla, INS_FETCH, 0x00, 0x00, b"", length)


def get_response_apdu(length: int, cla: int = 0x00) -> CommandApdu:
    """GET RESPONSE ``00 C0 00 00 XX`` after ``61 XX`` (2G: ``A0 C0 00 00 XX`` after ``9F XX``)."""
    _check_le("get_response.le", length)
    return CommandApdu(cla, INS_GET_RESPONSE, 0x00, 0x00, b"", length)


def terminal_response_t0(details: CommandDetails, result: int, info: bytes = b"", cla: int = 0x80) -> bytes:
    """``TerminalResponse(details, result, info).to_apdu(cla).encode_t0()``: the same octets (and
    the same :class:`EncodeError`), without the intermediate objects for the usual short case."""
    if 0 <= result <= 0xFF and len(info) < 0x7F and 0 <= cla <= 0xFF:
        return (
            bytes((cla, INS_TERMINAL_RESPONSE, 0x00, 0x00, 12 + len(info), 0x81, 3))
            + bytes((details.number, details.type, details.qualifier))
            + _TERMINAL_TO_UICC
            + bytes((0x83, 1 + len(info), result))
            + info
        )
    return TerminalResponse(details, result, info).to_apdu(cla).encode_t0()


def terminal_profile_apdu(profile: bytes, cla: int = 0x80) -> CommandApdu:
    """TERMINAL PROFILE ``80 10 00 00 Lc <profile>`` (TS 102 223 §5.2)."""
    if not 1 <= len(profile) <= 255:
        raise EncodeError("terminal_profile", 4, f"{len(profile)} octets, expected 1..255")
    return CommandApdu(cla, INS_TERMINAL_PROFILE, 0x00, 0x00, bytes(profile))
