"""ENVELOPE (SMS-PP DOWNLOAD): how the ME hands an OTA SMS to the card.

Clauses: TS 31.111 §7.1.1 (SMS-PP data download, formerly TS 51.014 / GSM 11.14), TS 102 223
§7.1 (ENVELOPE structure), TS 101 220 §7.2 (BER tag ``D1``), TS 102 221 §10.1.2 (ENVELOPE
instruction ``C2``), TS 102 223 §8.1 / §8.7 / §8.13 (address, device identities, SMS TPDU).

``80 C2 00 00 Lc  D1 L  82 02 83 81  [86 L TON/NPI BCD]  8B L <SMS-DELIVER TPDU>  [Le 00]``

Glossary: ME mobile equipment; SMSC service centre, whose address is the RP originating
address; TON/NPI type of number / numbering plan octet; BCD binary-coded decimal digits;
CR comprehension-required flag of a COMPREHENSION-TLV tag; Lc/Le command/expected length.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.proactive import DeviceIdentities, DeviceIdentity
from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError
from ota_protocols.tlv import (
    BerTag,
    ComprehensionTag,
    ComprehensionTlv,
    ComprehensionTlvIndex,
    decode_ber,
    decode_comprehension_all,
    encode_ber,
    encode_comprehension,
    short_ber_value_at,
    short_comprehension_items,
    unwrap_ber,
)

INS_ENVELOPE = 0xC2
CLA_UICC = 0x80
CLA_2G = 0xA0

_APDU_DATA_OFFSET = 5  # CLA INS P1 P2 Lc
_SMS_PP_TAGS = (ComprehensionTag.DEVICE_IDENTITIES, ComprehensionTag.ADDRESS, ComprehensionTag.SMS_TPDU)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Any ENVELOPE payload: its BER tag and COMPREHENSION-TLVs, in order."""

    tag: int
    tlvs: tuple[ComprehensionTlv, ...]

    def find(self, tag: int) -> ComprehensionTlv | None:
        """First TLV with one-octet tag ``tag``, CR flag ignored (``86`` finds ``06``)."""
        return next((tlv for tlv in self.tlvs if tlv.matches(tag)), None)


def decode_envelope(data: bytes, *, base_offset: int = 0) -> Envelope:
    """Split an ENVELOPE data field ``tag L <COMPREHENSION-TLVs>`` (TS 102 223 §7.1)."""
    reader = ByteReader(data, base_offset=base_offset)
    tlv = decode_ber(reader)
    reader.expect_end("envelope")
    value_offset = reader.offset - len(tlv.value)
    return Envelope(tlv.tag, tuple(decode_comprehension_all(tlv.value, value_offset)))


@dataclass(frozen=True, slots=True)
class SmsPpDownload:
    """The SMS-PP DOWNLOAD ENVELOPE (TS 31.111 §7.1.1).

    ``tpdu`` is the SMS-DELIVER from its first octet (no SC address inside);
    ``smsc_address`` the CAT address value (TON/NPI octet + BCD, ``91 94 71 ...``) or
    ``None`` when the ME omits the optional Address TLV. ``other_tlvs`` holds objects this
    codec does not know, kept in order so the card can judge their CR flag itself.
    """

    tpdu: bytes
    smsc_address: bytes | None = None
    other_tlvs: tuple[ComprehensionTlv, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= len(self.tpdu) <= 0xFF:
            raise EncodeError("sms_pp_download.tpdu", 0, f"{len(self.tpdu)} octets, expected 1..255")
        if self.smsc_address is not None and not 1 <= len(self.smsc_address) <= 0xFF:
            # TS 102 223 §8.1: the TON/NPI octet is always present.
            raise EncodeError(
                "sms_pp_download.smsc_address", 0, f"{len(self.smsc_address)} octets, expected 1..255"
            )

    def encode(self) -> bytes:
        """The ENVELOPE data field ``D1 L 82 02 83 81 [86 ..] 8B L tpdu``."""
        body = _NETWORK_TO_UICC
        if self.smsc_address is not None:
            body += encode_comprehension(ComprehensionTag.ADDRESS, self.smsc_address, True)
        body += encode_comprehension(ComprehensionTag.SMS_TPDU, self.tpdu, True)
        body += b"".join(tlv.encode() for tlv in self.other_tlvs)
        return encode_ber(BerTag.SMS_PP_DOWNLOAD, body)

    def to_apdu(self, cla: int = CLA_UICC, *, with_le: bool | None = None) -> CommandApdu:
        """``CLA C2 00 00 Lc <D1 ...> [Le]``.

        ``with_le`` defaults to Le ``00`` for a UICC and none for the 2G class ``A0``
        (a 2G SIM sends response data through ``9F XX`` and GET RESPONSE instead).
        """
        if with_le is None:
            with_le = cla != CLA_2G
        data = self.encode()
        if len(data) > 0xFF:
            raise EncodeError("envelope.lc", 4, f"{len(data)} octets exceed a short APDU (Lc <= 255)")
        return CommandApdu(cla, INS_ENVELOPE, 0x00, 0x00, data, 256 if with_le else None)

    @classmethod
    def decode(cls, data: bytes, *, base_offset: int = 0) -> SmsPpDownload:
        """Read the ENVELOPE data field; tags with or without CR are accepted (``86``/``06``)."""
        if type(data) is bytes and cls is SmsPpDownload:
            fast = _decode_common_shape(data)
            if fast is not None:
                return fast
        return cls._decode_checked(data, base_offset=base_offset)

    @classmethod
    def _decode_checked(cls, data: bytes, *, base_offset: int = 0) -> SmsPpDownload:
        """The general reader: every shape, and the error that names what is wrong."""
        body, body_offset = unwrap_ber(
            data, BerTag.SMS_PP_DOWNLOAD, base_offset, "sms_pp_download", "TS 31.111 §7.1.1"
        )
        index = ComprehensionTlvIndex(body, body_offset, _SMS_PP_TAGS, "sms_pp_download")
        identities_tlv = index.require(
            ComprehensionTag.DEVICE_IDENTITIES, "device_identities", "TS 31.111 §7.1.1"
        )
        identities_offset = index.offset(ComprehensionTag.DEVICE_IDENTITIES)
        # TS 31.111 §7.1.1: the SMS comes from the network (83) for the UICC (81).
        DeviceIdentities.from_tlv(identities_tlv, identities_offset).expect(
            DeviceIdentity.NETWORK, DeviceIdentity.UICC, identities_offset, "TS 31.111 §7.1.1"
        )
        tpdu_tlv = index.require(ComprehensionTag.SMS_TPDU, "sms_tpdu", "TS 31.111 §7.1.1")
        if not tpdu_tlv.value:
            raise DecodeError(
                "sms_pp_download.sms_tpdu",
                index.offset(ComprehensionTag.SMS_TPDU),
                "empty SMS TPDU, expected an SMS-DELIVER (TS 102 223 §8.13)",
            )
        address_tlv = index.get(ComprehensionTag.ADDRESS)
        if address_tlv is not None and not address_tlv.value:
            raise DecodeError(
                "sms_pp_download.address",
                index.offset(ComprehensionTag.ADDRESS),
                "empty address, expected at least the TON/NPI octet (TS 102 223 §8.1)",
            )
        return cls(
            tpdu_tlv.value,
            None if address_tlv is None else address_tlv.value,
            tuple(index.other),
        )

    @classmethod
    def from_apdu(cls, apdu: CommandApdu) -> SmsPpDownload:
        """Read an ENVELOPE command APDU (any class; INS ``C2``, P1 P2 ``00 00``)."""
        if apdu.ins != INS_ENVELOPE:
            raise DecodeError(
                "c_apdu.ins", 1, f"expected C2 (ENVELOPE), got {apdu.ins:02X} (TS 102 221 §10.1.2)"
            )
        if (apdu.p1, apdu.p2) != (0, 0):
            raise DecodeError(
                "c_apdu.p1p2", 2, f"expected 00 00, got {apdu.p1:02X} {apdu.p2:02X} (TS 102 221 §10.1.2)"
            )
        return cls.decode(apdu.data, base_offset=_APDU_DATA_OFFSET)


_NETWORK_TO_UICC = DeviceIdentities(DeviceIdentity.NETWORK, DeviceIdentity.UICC).encode()  # 82 02 83 81
_SHORT_LENGTHS = tuple(bytes((n,)) if n < 0x80 else bytes((0x81, n)) for n in range(256))  # TS 101 220 §7.1


def sms_pp_download_t0(tpdu: bytes, smsc_address: bytes | None, cla: int = CLA_UICC) -> bytes:
    """``SmsPpDownload(tpdu, smsc_address).to_apdu(cla).encode_t0()``: the same octets (and the
    same :class:`EncodeError` for what does not fit), written without the intermediate objects."""
    n = len(tpdu)
    if 0 < n <= 0xFF and 0 <= cla <= 0xFF:
        lengths = _SHORT_LENGTHS
        if smsc_address is None:
            body = b"".join((_NETWORK_TO_UICC, b"\x8b", lengths[n], tpdu))
        elif 0 < len(smsc_address) <= 0xFF:
            body = b"".join(
                (
                    _NETWORK_TO_UICC,
                    b"\x86",
                    lengths[len(smsc_address)],
                    smsc_address,
                    b"\x8b",
                    lengths[n],
                    tpdu,
                )
            )
        else:
            body = b""
        size = len(body)
        if body and size <= 0xFF:
            data = b"\xd1" + lengths[size] + body
            if len(data) <= 0xFF:
                return bytes((cla, INS_ENVELOPE, 0x00, 0x00, len(data))) + data
    return SmsPpDownload(tpdu, smsc_address).to_apdu(cla).encode_t0()


_DEVICE_IDENTITIES, _ADDRESS, _SMS_TPDU = 0x02, 0x06, 0x0B


def _decode_common_shape(data: bytes) -> SmsPpDownload | None:
    """``D1 L`` with one-octet tags and short lengths, holding device identities 83 -> 81, an
    optional non-empty address and a non-empty TPDU, each at most once and nothing else: the
    SmsPpDownload that the general reader returns for it. None for any other shape, valid or
    not, which the general reader then judges (so errors stay its own)."""
    pos = short_ber_value_at(data, BerTag.SMS_PP_DOWNLOAD)
    items = None if pos is None else short_comprehension_items(data, pos)
    if items is None:
        return None
    found: dict[int, bytes] = {}
    for tag, value in items:
        if tag in found or tag not in (_DEVICE_IDENTITIES, _ADDRESS, _SMS_TPDU):
            return None
        found[tag] = value
    tpdu = found.get(_SMS_TPDU)
    address = found.get(_ADDRESS)
    if found.get(_DEVICE_IDENTITIES) != b"\x83\x81" or not tpdu or (address is not None and not address):
        return None
    return SmsPpDownload(tpdu, address)
