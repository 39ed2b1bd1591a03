"""The card's file system: MF, DFs and EFs, selection and the file commands.

Clauses: TS 102 221 §8 (file types, selection §8.4.1), §11.1.1 (SELECT, FCP §11.1.1.3),
§11.1.2 (STATUS), §11.1.3 / §11.1.4 (READ / UPDATE BINARY), §11.1.5 / §11.1.6 (READ /
UPDATE RECORD); ISO/IEC 7816-4 §5.6 status words; GSM 11.11 §10 for the 2G EFs.

Glossary: MF master file 3F00, DF dedicated file, EF elementary file, FID file
identifier, FCP file control parameters, SW status word.

Data model (PURE): a :class:`FileTree` (structure and default contents, shared by
every card of a template) plus, per card, a small ``initial`` mapping (ICCID, IMSI)
and the persistent ``overlay`` of EFs written so far (copy-on-write: only the EFs a
card changed are held by that card). A ``None`` in either mapping means "absent on
this card". :func:`execute_file_command` is a pure function of (view, selection,
command) that returns the response, the new selection and the writes; the caller
commits the writes, so a command's effect is applied atomically or not at all.
Errors are raised as :class:`ApduRejected` carrying the SW.

Simplifications: no access conditions beyond a read-only flag (6982), no SFI
referencing, no logical channels, no cyclic or BER-TLV EFs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from ota_protocols.apdu.apdu import CommandApdu, ResponseApdu, StatusWord
from ota_protocols.errors import ApduRejected
from sim_emulator.profile import EfStructure, FilePath, FileProfile, path_text

MF: FilePath = (b"\x3f\x00",)
INS_SELECT = 0xA4
INS_STATUS = 0xF2
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
INS_READ_RECORD = 0xB2
INS_UPDATE_RECORD = 0xDC
FILE_INSTRUCTIONS = frozenset(
    {INS_SELECT, INS_STATUS, INS_READ_BINARY, INS_UPDATE_BINARY, INS_READ_RECORD, INS_UPDATE_RECORD}
)
_EMPTY: Mapping[FilePath, bytes | None] = MappingProxyType({})
_MISSING = object()


@dataclass(frozen=True, slots=True)
class DedicatedFile:
    path: FilePath


@dataclass(frozen=True, slots=True)
class ElementaryFile:
    path: FilePath
    structure: EfStructure
    size: int = 0  # transparent
    record_length: int = 0  # linear fixed
    record_count: int = 0
    read_only: bool = False

    @property
    def total_size(self) -> int:
        if self.structure is EfStructure.TRANSPARENT:
            return self.size
        return self.record_length * self.record_count


Node = DedicatedFile | ElementaryFile


class FileTree:
    """Structure and default contents; immutable once built, shared by many cards."""

    __slots__ = ("_children", "_selected", "_selected_quietly", "defaults", "nodes")

    def __init__(self, nodes: Mapping[FilePath, Node], defaults: Mapping[FilePath, bytes]) -> None:
        self.nodes = MappingProxyType(dict(nodes))
        self.defaults = MappingProxyType(dict(defaults))
        children: dict[FilePath, dict[bytes, FilePath]] = {}
        for path in self.nodes:
            if len(path) > 1:
                children.setdefault(path[:-1], {})[path[-1]] = path
        self._children = children
        # What a SELECT of each file leaves selected (TS 102 221 §8.4.1: a DF becomes the current
        # DF, an EF the current EF under its parent), and the outcome of a SELECT that returns no
        # FCP (P2 0C): immutable values, built once per tree instead of once per SELECT.
        self._selected = {
            path: Selection(path) if isinstance(node, DedicatedFile) else Selection(path[:-1], path)
            for path, node in self.nodes.items()
        }
        self._selected_quietly = {path: FileOutcome(_OK, sel) for path, sel in self._selected.items()}

    def child(self, df: FilePath, fid: bytes) -> FilePath | None:
        children = self._children.get(df)
        return None if children is None else children.get(fid)

    def with_files(self, files: tuple[FileProfile, ...]) -> FileTree:
        """A tree with EFs added or overridden (TOML ``[[files]]``); raises ValueError."""
        nodes = dict(self.nodes)
        defaults = dict(self.defaults)
        for spec in files:
            parent = spec.path[:-1]
            if not isinstance(nodes.get(parent), DedicatedFile):
                raise ValueError(
                    f"{path_text(spec.path)}: parent {path_text(parent)} is not a DF of the tree"
                )
            old = nodes.get(spec.path)
            if isinstance(old, DedicatedFile):
                raise ValueError(f"{path_text(spec.path)} is a DF, not an EF")
            structure = spec.structure or (old.structure if old else None)
            if structure is None:
                raise ValueError(f"{path_text(spec.path)}: new EF needs a structure")
            if structure is EfStructure.TRANSPARENT:
                size = (
                    spec.size
                    if spec.size is not None
                    else (old.size if old and old.structure is structure else len(spec.content or b""))
                )
                ef = ElementaryFile(spec.path, structure, size=size)
            else:
                rl = spec.record_length or (old.record_length if old and old.structure is structure else 0)
                rc = spec.record_count or (old.record_count if old and old.structure is structure else 0)
                if not (1 <= rl <= 255 and 1 <= rc <= 254):
                    raise ValueError(
                        f"{path_text(spec.path)}: linear fixed EF needs record_length 1..255 "
                        "and record_count 1..254"
                    )
                ef = ElementaryFile(spec.path, structure, record_length=rl, record_count=rc)
            if ef.total_size < 1:
                raise ValueError(f"{path_text(spec.path)}: EF size must be at least 1")
            content = spec.content if spec.content is not None else defaults.get(spec.path, b"")
            if len(content) > ef.total_size:
                raise ValueError(
                    f"{path_text(spec.path)}: content of {len(content)} octets exceeds "
                    f"the EF size {ef.total_size}"
                )
            nodes[spec.path] = ef
            defaults[spec.path] = content + b"\xff" * (ef.total_size - len(content))
        return FileTree(nodes, defaults)


def _p(text: str) -> FilePath:
    return tuple(bytes.fromhex(part) for part in text.split("/"))


def standard_tree() -> FileTree:
    """MF with EF.ICCID; DF.TELECOM (ADN, SMS, MSISDN, SMSP); DF.GSM (IMSI, SPN, ...)."""
    nodes: dict[FilePath, Node] = {}
    defaults: dict[FilePath, bytes] = {}

    def df(text: str) -> None:
        nodes[_p(text)] = DedicatedFile(_p(text))

    def transparent(text: str, size: int, content: bytes = b"", *, read_only: bool = False) -> None:
        nodes[_p(text)] = ElementaryFile(_p(text), EfStructure.TRANSPARENT, size=size, read_only=read_only)
        defaults[_p(text)] = content + b"\xff" * (size - len(content))

    def linear(text: str, record_length: int, record_count: int) -> None:
        nodes[_p(text)] = ElementaryFile(
            _p(text), EfStructure.LINEAR_FIXED, record_length=record_length, record_count=record_count
        )
        defaults[_p(text)] = b"\xff" * (record_length * record_count)

    df("3F00")
    transparent("3F00/2FE2", 10, read_only=True)  # EF.ICCID (TS 102 221 §13.2)
    df("3F00/7F10")  # DF.TELECOM
    linear("3F00/7F10/6F3A", 30, 10)  # EF.ADN
    linear("3F00/7F10/6F3C", 176, 10)  # EF.SMS
    linear("3F00/7F10/6F40", 28, 2)  # EF.MSISDN
    linear("3F00/7F10/6F42", 40, 2)  # EF.SMSP
    df("3F00/7F20")  # DF.GSM
    transparent("3F00/7F20/6F07", 9)  # EF.IMSI (GSM 11.11 §10.3.2)
    transparent("3F00/7F20/6F46", 17, b"\x00" + b"OTA SIM")  # EF.SPN: display condition + name
    transparent("3F00/7F20/6F30", 24)  # EF.PLMNsel
    transparent("3F00/7F20/6F31", 1, b"\x05")  # EF.HPPLMN
    transparent("3F00/7F20/6F78", 2, b"\x00\x01")  # EF.ACC
    transparent("3F00/7F20/6F7E", 11)  # EF.LOCI
    transparent("3F00/7F20/6F50", 10)  # EF.CBMI
    return FileTree(nodes, defaults)


_SWAP_NIBBLES = bytes(((octet & 0x0F) << 4) | (octet >> 4) for octet in range(256))


def iccid_content(iccid: str) -> bytes:
    """EF.ICCID: 10 octets of swapped BCD, F-padded (TS 102 221 §13.2)."""
    digits = iccid.ljust(20, "f")
    if digits.isascii() and digits.isalnum():  # every card's identity: hex read at once, nibbles swapped
        return bytes.fromhex(digits[:20]).translate(_SWAP_NIBBLES)
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def imsi_content(imsi: str) -> bytes:
    """EF.IMSI: length, then parity nibble + digits in swapped BCD (GSM 11.11 §10.3.2)."""
    if imsi.isascii() and imsi.isdigit():  # every card's identity: the nibbles as hex, swapped
        text = ("9" if len(imsi) % 2 else "1") + imsi
        body = bytes.fromhex(text if len(text) % 2 == 0 else text + "f").translate(_SWAP_NIBBLES)
    else:
        nibbles = [9 if len(imsi) % 2 else 1] + [int(d) for d in imsi]
        if len(nibbles) % 2:
            nibbles.append(0xF)
        body = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    return (bytes((len(body),)) + body).ljust(9, b"\xff")[:9]


class FileView:
    """What a card's files contain now: tree defaults < per-card initial < overlay."""

    __slots__ = ("initial", "overlay", "tree")

    def __init__(
        self,
        tree: FileTree,
        initial: Mapping[FilePath, bytes | None],
        overlay: Mapping[FilePath, bytes | None] = _EMPTY,
    ) -> None:
        self.tree = tree
        self.initial = initial
        self.overlay = overlay

    def node(self, path: FilePath) -> Node | None:
        node = self.tree.nodes.get(path)
        if node.__class__ is ElementaryFile and self.content(path) is None:
            return None  # absent on this card (fleet variation)
        return node

    def content(self, path: FilePath) -> bytes | None:
        value = self.overlay.get(path, _MISSING)
        if value is _MISSING:
            value = self.initial.get(path, _MISSING)
            if value is _MISSING:
                return self.tree.defaults.get(path)
        return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Selection:
    """Volatile: current DF, current EF and record pointer (TS 102 221 §8.4)."""

    df: FilePath = MF
    ef: FilePath | None = None
    record: int | None = None


@dataclass(frozen=True, slots=True)
class FileOutcome:
    response: ResponseApdu
    selection: Selection
    writes: tuple[tuple[FilePath, bytes], ...] = ()


_OK = ResponseApdu(b"", StatusWord.OK)  # immutable, so one instance serves every plain 90 00


def _reject(sw: int, message: str) -> ApduRejected:
    return ApduRejected(sw, message)


def fcp(view: FileView, path: FilePath) -> bytes:
    """A minimal FCP template (TS 102 221 §11.1.1.3): descriptor, FID, life cycle, size."""
    node = view.tree.nodes[path]
    if isinstance(node, DedicatedFile):
        body = b"\x82\x02\x78\x21" + b"\x83\x02" + path[-1] + b"\x8a\x01\x05"
    elif node.structure is EfStructure.TRANSPARENT:
        body = (
            b"\x82\x02\x41\x21"
            + b"\x83\x02"
            + path[-1]
            + b"\x8a\x01\x05"
            + b"\x80\x02"
            + node.size.to_bytes(2, "big")
        )
    else:
        body = (
            b"\x82\x05\x42\x21\x00"
            + bytes((node.record_length, node.record_count))
            + b"\x83\x02"
            + path[-1]
            + b"\x8a\x01\x05"
            + b"\x80\x02"
            + node.total_size.to_bytes(2, "big")
        )
    return b"\x62" + bytes((len(body),)) + body


def _resolve_fid(view: FileView, selection: Selection, fid: bytes) -> FilePath | None:
    """TS 102 221 §8.4.1: a FID is searched among the current DF's children, the
    current DF itself, its parent and the parent's children, and the MF."""
    df = selection.df
    if fid == MF[0]:
        return MF
    # Candidates in that order, each looked up only when the previous ones did not match.
    tree = view.tree
    children = tree._children.get(df)
    path = None if children is None else children.get(fid)
    if path is not None and view.node(path) is not None:
        return path
    if df[-1] == fid and view.node(df) is not None:
        return df
    if len(df) > 1:
        parent = df[:-1]
        if parent[-1] == fid and view.node(parent) is not None:
            return parent
        path = tree.child(parent, fid)
        if path is not None and view.node(path) is not None:
            return path
    return None


def _select(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    # TS 102 221 §11.1.1.2: P2 04 returns the FCP, 0C returns nothing.
    p2 = apdu.p2
    if p2 != 0x0C and p2 != 0x04 and p2 != 0x00:
        raise _reject(StatusWord.INCORRECT_P1_P2, f"SELECT P2 {apdu.p2:02X} not supported")
    if apdu.p1 == 0x00:
        if len(apdu.data) != 2:
            raise _reject(StatusWord.WRONG_LENGTH, f"SELECT by FID needs 2 octets, got {len(apdu.data)}")
        path = _resolve_fid(view, selection, apdu.data)
    elif apdu.p1 in (0x08, 0x09):  # by path from the MF / from the current DF
        if not apdu.data or len(apdu.data) % 2:
            raise _reject(StatusWord.WRONG_LENGTH, "SELECT by path needs an even, non-zero length")
        fids = [apdu.data[i : i + 2] for i in range(0, len(apdu.data), 2)]
        base = MF if apdu.p1 == 0x08 else selection.df
        path = base
        for fid in fids:
            path = view.tree.child(path, fid)  # type: ignore[assignment]
            if path is None or view.node(path) is None:
                path = None  # type: ignore[assignment]
                break
    else:
        raise _reject(StatusWord.INCORRECT_P1_P2, f"SELECT P1 {apdu.p1:02X} not supported (00, 08, 09)")
    if path is None:
        raise _reject(
            StatusWord.FILE_NOT_FOUND,
            f"file {apdu.data.hex().upper()} not found from {path_text(selection.df)}",
        )
    tree = view.tree
    if p2 == 0x0C:
        return tree._selected_quietly[path]
    return FileOutcome(ResponseApdu(fcp(view, path), StatusWord.OK), tree._selected[path])


def _current_ef(view: FileView, selection: Selection, structure: EfStructure) -> ElementaryFile:
    if selection.ef is None:
        raise _reject(StatusWord.COMMAND_NOT_ALLOWED, "no EF selected")
    node = view.node(selection.ef)
    if not isinstance(node, ElementaryFile):
        raise _reject(StatusWord.COMMAND_NOT_ALLOWED, "no EF selected")
    if node.structure is not structure:
        raise _reject(
            StatusWord.COMMAND_INCOMPATIBLE_WITH_FILE,
            f"{path_text(node.path)} is {node.structure.value}, command needs {structure.value}",
        )
    return node


def _binary_offset(apdu: CommandApdu) -> int:
    if apdu.p1 & 0x80:
        # TS 102 221 §11.1.3: b8 of P1 set means SFI referencing, not supported here.
        raise _reject(StatusWord.INCORRECT_P1_P2, "SFI referencing not supported")
    return (apdu.p1 << 8) | apdu.p2


def _read_binary(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    ef = _current_ef(view, selection, EfStructure.TRANSPARENT)
    offset = _binary_offset(apdu)
    content = view.content(ef.path) or b""
    if offset >= ef.size:
        raise _reject(StatusWord.WRONG_P1_P2, f"offset {offset} beyond EF of {ef.size} octets")
    le = apdu.le if apdu.le is not None else 256
    if le == 256:
        le = min(256, ef.size - offset)  # P3 = 00: as much as there is (TS 102 221 §11.1.3)
    if offset + le > ef.size:
        raise _reject(StatusWord.WRONG_LENGTH, f"{le} octets at offset {offset} exceed EF of {ef.size}")
    return FileOutcome(ResponseApdu(content[offset : offset + le], StatusWord.OK), selection)


def _update_binary(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    ef = _current_ef(view, selection, EfStructure.TRANSPARENT)
    offset = _binary_offset(apdu)
    if ef.read_only:
        raise _reject(StatusWord.SECURITY_STATUS_NOT_SATISFIED, f"{path_text(ef.path)} is read-only")
    if offset >= ef.size:
        raise _reject(StatusWord.WRONG_P1_P2, f"offset {offset} beyond EF of {ef.size} octets")
    if not apdu.data or offset + len(apdu.data) > ef.size:
        raise _reject(
            StatusWord.WRONG_LENGTH, f"{len(apdu.data)} octets at offset {offset} do not fit EF of {ef.size}"
        )
    content = view.content(ef.path) or b"\xff" * ef.size
    new = content[:offset] + apdu.data + content[offset + len(apdu.data) :]
    return FileOutcome(_OK, selection, ((ef.path, new),))


def _record_number(ef: ElementaryFile, selection: Selection, apdu: CommandApdu) -> int:
    """TS 102 221 §11.1.5: P2 04 absolute (P1 = 0: current), 02 next, 03 previous."""
    if apdu.p2 & 0xF8:
        raise _reject(StatusWord.INCORRECT_P1_P2, "SFI referencing not supported")
    mode = apdu.p2 & 0x07
    current = selection.record
    if mode == 0x04:
        number = apdu.p1 if apdu.p1 else (current or 0)
    elif mode == 0x02:
        if apdu.p1:
            raise _reject(StatusWord.INCORRECT_P1_P2, "P1 must be 00 in next/previous mode")
        number = 1 if current is None else current + 1
    elif mode == 0x03:
        if apdu.p1:
            raise _reject(StatusWord.INCORRECT_P1_P2, "P1 must be 00 in next/previous mode")
        number = ef.record_count if current is None else current - 1
    else:
        raise _reject(StatusWord.INCORRECT_P1_P2, f"record mode P2 {apdu.p2:02X} not supported")
    if not 1 <= number <= ef.record_count:
        raise _reject(StatusWord.RECORD_NOT_FOUND, f"record {number} outside 1..{ef.record_count}")
    return number


def _read_record(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    ef = _current_ef(view, selection, EfStructure.LINEAR_FIXED)
    number = _record_number(ef, selection, apdu)
    le = apdu.le if apdu.le is not None else 256
    if le not in (256, ef.record_length):
        raise _reject(StatusWord.WRONG_LENGTH, f"Le {le}, record length is {ef.record_length}")
    content = view.content(ef.path) or b""
    start = (number - 1) * ef.record_length
    return FileOutcome(
        ResponseApdu(content[start : start + ef.record_length], StatusWord.OK),
        replace(selection, record=number),
    )


def _update_record(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    ef = _current_ef(view, selection, EfStructure.LINEAR_FIXED)
    number = _record_number(ef, selection, apdu)
    if ef.read_only:
        raise _reject(StatusWord.SECURITY_STATUS_NOT_SATISFIED, f"{path_text(ef.path)} is read-only")
    if len(apdu.data) != ef.record_length:
        raise _reject(
            StatusWord.WRONG_LENGTH, f"{len(apdu.data)} octets, record length is {ef.record_length}"
        )
    content = view.content(ef.path) or b"\xff" * ef.total_size
    start = (number - 1) * ef.record_length
    new = content[:start] + apdu.data + content[start + ef.record_length :]
    return FileOutcome(ResponseApdu(b"", StatusWord.OK), replace(selection, record=number), ((ef.path, new),))


def _status(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    # TS 102 221 §11.1.2: P2 00 FCP of the current DF, 0C no data.
    if apdu.p2 == 0x0C:
        return FileOutcome(ResponseApdu(b"", StatusWord.OK), selection)
    data = fcp(view, selection.df)
    if apdu.le is not None and apdu.le != 256:
        data = data[: apdu.le]
    return FileOutcome(ResponseApdu(data, StatusWord.OK), selection)


_HANDLERS = {
    INS_SELECT: _select,
    INS_READ_BINARY: _read_binary,
    INS_UPDATE_BINARY: _update_binary,
    INS_READ_RECORD: _read_record,
    INS_UPDATE_RECORD: _update_record,
    INS_STATUS: _status,
}


def execute_file_command(view: FileView, selection: Selection, apdu: CommandApdu) -> FileOutcome:
    """Run one file command; raises ApduRejected (6D00 for an instruction not handled here)."""
    handler = _HANDLERS.get(apdu.ins)
    if handler is None:
        raise _reject(StatusWord.INS_NOT_SUPPORTED, f"INS {apdu.ins:02X} is not a file command")
    return handler(view, selection, apdu)
