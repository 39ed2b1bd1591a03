"""The commands OTA scripts carry, built by the server and parsed by the card.

* Remote file management (TS 102 226 §7 with ISO/IEC 7816-4 / TS 102 221 §11):
  SELECT by file identifier, UPDATE BINARY, UPDATE RECORD (absolute mode).
* Remote application management (TS 102 226 §8 with GlobalPlatform Card Spec
  2.x §11): INSTALL [for load], LOAD, INSTALL [for install and make selectable],
  DELETE. The card keeps a registry only (no Java Card VM).
* The project's e-purse applet (the patent's example of a value reload and a
  parameter change): RELOAD, SET PARAMETER, and GET DATA for the balance.

Glossary: AID application identifier, SD security domain, LF load file, EF/DF
elementary/dedicated file, FID file identifier.

Every builder returns :class:`CommandApdu`s; an *action* (docs/action-counter.md)
is the navigation list plus its one counted command, see :func:`action`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError

CLA_UICC = 0x00
CLA_GP = 0x80
CLA_PURSE = 0x80

INS_SELECT = 0xA4
INS_UPDATE_BINARY = 0xD6
INS_UPDATE_RECORD = 0xDC
INS_INSTALL = 0xE6
INS_LOAD = 0xE8
INS_DELETE = 0xE4
INS_PURSE_RELOAD = 0x30
INS_PURSE_SET_PARAMETER = 0x32
INS_GET_DATA = 0xCA
INS_PURSE_TRANSACTION_REPLY = 0x36

INSTALL_FOR_LOAD = 0x02
INSTALL_FOR_INSTALL_AND_SELECTABLE = 0x0C
LOAD_LAST_BLOCK = 0x80
PURSE_BALANCE_TAG = 0x0050  # GET DATA P1P2 of the balance


def parse_path(path: str) -> tuple[bytes, ...]:
    """``"3F00/7F20/6F46"`` -> FIDs. Raises EncodeError naming the bad part."""
    fids = []
    for part in path.strip("/").split("/"):
        if len(part) != 4:
            raise EncodeError("path", 0, f"file identifier {part!r} in {path!r} is not 4 hex digits")
        try:
            fids.append(bytes.fromhex(part))
        except ValueError:
            raise EncodeError("path", 0, f"file identifier {part!r} in {path!r} is not hex") from None
    return tuple(fids)


def select_fid(fid: bytes, *, cla: int = CLA_UICC) -> CommandApdu:
    # TS 102 221 §11.1.1: P1 00 select by FID, P2 0C no data returned.
    return CommandApdu(cla, INS_SELECT, 0x00, 0x0C, fid)


def select_path(path: str, *, cla: int = CLA_UICC) -> list[CommandApdu]:
    return [select_fid(fid, cla=cla) for fid in parse_path(path)]


def update_binary(offset: int, data: bytes, *, cla: int = CLA_UICC) -> CommandApdu:
    if not 0 <= offset <= 0x7FFF:
        raise EncodeError("offset", 0, f"UPDATE BINARY offset {offset} outside 0..32767 (ISO 7816-4 §11.2.3)")
    if not 1 <= len(data) <= 255:
        raise EncodeError("data", 0, f"UPDATE BINARY data of {len(data)} octets outside 1..255")
    return CommandApdu(cla, INS_UPDATE_BINARY, offset >> 8, offset & 0xFF, data)


def update_record(record: int, data: bytes, *, cla: int = CLA_UICC) -> CommandApdu:
    if not 1 <= record <= 254:
        raise EncodeError("record", 0, f"record number {record} outside 1..254")
    if not 1 <= len(data) <= 255:
        raise EncodeError("data", 0, f"UPDATE RECORD data of {len(data)} octets outside 1..255")
    # P2 = 04: absolute mode, record number in P1 (TS 102 221 §11.1.6).
    return CommandApdu(cla, INS_UPDATE_RECORD, record, 0x04, data)


def _lv(value: bytes) -> bytes:
    if len(value) > 255:
        raise EncodeError("lv", 0, f"{len(value)} octets do not fit a one-octet length")
    return bytes((len(value),)) + value


def install_for_load(load_file_aid: bytes, security_domain_aid: bytes = b"") -> CommandApdu:
    # GP Card Spec §11.5.2.3.1: LF AID, SD AID, hash, load parameters, token (empty here).
    data = _lv(load_file_aid) + _lv(security_domain_aid) + b"\x00\x00\x00"
    return CommandApdu(CLA_GP, INS_INSTALL, INSTALL_FOR_LOAD, 0x00, data)


def load_blocks(load_file: bytes, *, block_size: int = 64) -> list[CommandApdu]:
    """LOAD commands for a load file: P1 80 on the last block, P2 = block number (GP §11.6.2)."""
    if not load_file:
        raise EncodeError("load_file", 0, "empty load file")
    blocks = [load_file[i : i + block_size] for i in range(0, len(load_file), block_size)]
    if len(blocks) > 256:
        raise EncodeError("load_file", 0, f"{len(blocks)} LOAD blocks exceed the 256 a P2 can number")
    return [
        CommandApdu(CLA_GP, INS_LOAD, LOAD_LAST_BLOCK if n == len(blocks) - 1 else 0x00, n, block)
        for n, block in enumerate(blocks)
    ]


def install_for_install(
    load_file_aid: bytes,
    module_aid: bytes,
    application_aid: bytes,
    privileges: bytes = b"\x00",
    parameters: bytes = b"\xc9\x00",
) -> CommandApdu:
    # GP Card Spec §11.5.2.3.2: LF AID, module AID, application AID, privileges, parameters, token.
    data = (
        _lv(load_file_aid)
        + _lv(module_aid)
        + _lv(application_aid)
        + _lv(privileges)
        + _lv(parameters)
        + b"\x00"
    )
    return CommandApdu(CLA_GP, INS_INSTALL, INSTALL_FOR_INSTALL_AND_SELECTABLE, 0x00, data)


def delete_aid(aid: bytes) -> CommandApdu:
    # GP Card Spec §11.2.2: tag 4F with the AID to delete.
    return CommandApdu(CLA_GP, INS_DELETE, 0x00, 0x00, b"\x4f" + _lv(aid))


@dataclass(frozen=True, slots=True)
class InstallRequest:
    p1: int
    load_file_aid: bytes
    module_aid: bytes = b""
    application_aid: bytes = b""


def parse_install(apdu: CommandApdu) -> InstallRequest:
    reader = ByteReader(apdu.data, base_offset=5)
    load_file_aid = reader.take(reader.u8("install.lf_aid_length"), "install.lf_aid")
    if apdu.p1 & 0x04:  # GP §11.5.2.1: b3 = for install (0C adds make selectable)
        module = reader.take(reader.u8("install.module_aid_length"), "install.module_aid")
        application = reader.take(reader.u8("install.app_aid_length"), "install.app_aid")
        return InstallRequest(apdu.p1, load_file_aid, module, application)
    if apdu.p1 == INSTALL_FOR_LOAD:
        reader.take(reader.u8("install.sd_aid_length"), "install.sd_aid")
        return InstallRequest(apdu.p1, load_file_aid)
    raise DecodeError(
        "install.p1", 2, f"INSTALL P1 {apdu.p1:02x} not supported (02 for load, 0C for install)"
    )


def parse_delete(apdu: CommandApdu) -> bytes:
    reader = ByteReader(apdu.data, base_offset=5)
    if reader.u8("delete.tag") != 0x4F:
        raise DecodeError("delete.tag", 5, "DELETE data must start with tag 4F (GP §11.2.2)")
    return reader.take(reader.u8("delete.aid_length"), "delete.aid")


def purse_reload(amount: int) -> CommandApdu:
    if not 1 <= amount <= 0xFFFFFFFF:
        raise EncodeError("amount", 0, f"reload amount {amount} outside 1..4294967295")
    return CommandApdu(CLA_PURSE, INS_PURSE_RELOAD, 0x00, 0x00, amount.to_bytes(4, "big"))


def purse_set_parameter(parameter: int, value: bytes) -> CommandApdu:
    if not 0 <= parameter <= 0xFF:
        raise EncodeError("parameter", 0, f"parameter id {parameter} outside 0..255")
    if not 1 <= len(value) <= 32:
        raise EncodeError("value", 0, f"parameter value of {len(value)} octets outside 1..32")
    return CommandApdu(CLA_PURSE, INS_PURSE_SET_PARAMETER, parameter, 0x00, value)


def purse_get_balance() -> CommandApdu:
    return CommandApdu(CLA_PURSE, INS_GET_DATA, PURSE_BALANCE_TAG >> 8, PURSE_BALANCE_TAG & 0xFF, b"", 4)


def transaction_reply(sequence: int, accepted: bool) -> CommandApdu:
    """The server's answer to a card's transaction request (docs/action-counter.md): not an action.

    P1 = 01 accepted, 00 refused; data = the request's sequence number.
    """
    if not 0 <= sequence <= 0xFFFFFFFF:
        raise EncodeError("sequence", 0, f"sequence {sequence} does not fit 4 octets")
    return CommandApdu(
        CLA_PURSE, INS_PURSE_TRANSACTION_REPLY, 0x01 if accepted else 0x00, 0x00, sequence.to_bytes(4, "big")
    )


def action(navigation: Sequence[CommandApdu], counted: CommandApdu) -> tuple[CommandApdu, ...]:
    """One action: navigation commands, then exactly one counted command."""
    return (*navigation, counted)
