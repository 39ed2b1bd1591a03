"""The applications a command packet can address, by TAR, and what their commands do.

Clauses: TS 102 226 §7 (remote file management: ISO/IEC 7816-4 / TS 102 221 §11 file
commands), TS 102 226 §8 with GlobalPlatform Card Spec 2.x §11.2 (DELETE), §11.5
(INSTALL), §11.6 (LOAD) for remote application management; the e-purse of patent
WO 00/07153 (RELOAD, SET PARAMETER, GET DATA balance; payment and TRANSACTION REPLY of
claims 7-9, docs/action-counter.md "Deferred reports"); ISO/IEC 7816-4 §5.6 SWs and
GET RESPONSE (T=0 ``61 XX``).

Glossary: TAR toolkit application reference, RFM/RAM remote file/application
management, GP GlobalPlatform, LF load file, AID application identifier, MSL minimum
security level, SW status word.

PURE. The TAR -> application table is explicit (:class:`ApplicationTable`). An
:class:`Application` executes one command against (its state, the file view, the
volatile :class:`Session` of the script run, which it updates) and returns a
:data:`CommandResult`: the response, the new application state and the EF writes. It
never commits anything: the executor counts the action and commits effect + action
counter in one write (docs/action-counter.md). Rejections (``ApduRejected``) become the
response SW here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu, StatusWord
from ota_protocols.apdu.card_commands import (
    INS_DELETE,
    INS_GET_DATA,
    INS_INSTALL,
    INS_LOAD,
    INS_PURSE_RELOAD,
    INS_PURSE_SET_PARAMETER,
    INS_PURSE_TRANSACTION_REPLY,
    INSTALL_FOR_LOAD,
    LOAD_LAST_BLOCK,
    PURSE_BALANCE_TAG,
    parse_delete,
    parse_install,
)
from ota_protocols.errors import ApduRejected, DecodeError
from sim_emulator.card_state import AppState, InstanceState, LoadFileState, ReplyEntry
from sim_emulator.file_system import (
    FILE_INSTRUCTIONS,
    INS_SELECT,
    FilePath,
    FileView,
    Selection,
    execute_file_command,
)
from sim_emulator.profile import AppKind, ApplicationProfile, CardOptions

INS_GET_RESPONSE = 0xC0
MF_SELECTION = Selection()  # TS 102 226 §7: an RFM script starts at the MF
INS_GET_STATUS = 0xF2
# GP GET STATUS (80 F2 40 02 02 4F 00) is case 4 on the RAM TAR (protocols.md §12.1).
RAM_CASE2_INSTRUCTIONS = CASE2_INSTRUCTIONS - {INS_GET_STATUS}


class Session:
    """Volatile state of one script run: file selection and data awaiting GET RESPONSE.

    One per run, owned by the executor and updated in place by each command (a new value per
    command cost more than most commands): nothing else holds it, and it dies with the run."""

    __slots__ = ("pending_response", "selection")

    def __init__(self, selection: Selection = MF_SELECTION, pending_response: bytes | None = None) -> None:
        self.selection = selection
        self.pending_response = pending_response

    def __repr__(self) -> str:
        return f"Session({self.selection!r}, pending={self.pending_response!r})"


Writes = tuple[tuple[FilePath, bytes], ...]
# One command's outcome: (response, the application's new state, the EF writes). A plain tuple:
# every command of every script returns one.
CommandResult = tuple[ResponseApdu, AppState, Writes]
_NO_WRITES: Writes = ()


_OK = ResponseApdu(b"", StatusWord.OK)  # immutable: one instance for every plain 90 00


def _sw(sw: int) -> ResponseApdu:
    return ResponseApdu(b"", sw)


def get_response(session: Session, apdu: CommandApdu) -> ResponseApdu:
    """ISO/IEC 7816-4 GET RESPONSE on data a previous command left (``61 XX``)."""
    pending = session.pending_response
    if pending is None:
        return _sw(StatusWord.CONDITIONS_NOT_SATISFIED)
    if apdu.p1 or apdu.p2:
        return _sw(StatusWord.WRONG_P1_P2)
    le = 256 if apdu.le is None else apdu.le
    if le != 256 and le > len(pending):
        return _sw(0x6C00 | len(pending))  # T=0: wrong Le, XX = what there is
    chunk, rest = pending[:le], pending[le:]
    if rest:
        session.pending_response = rest
        return ResponseApdu(chunk, 0x6100 | (len(rest) & 0xFF))
    session.pending_response = None
    return ResponseApdu(chunk, StatusWord.OK)


def _offer(data: bytes, session: Session, options: CardOptions) -> ResponseApdu:
    """Response data of a case-4 command: ``61 XX`` + GET RESPONSE (no_auto_get_response, SJA5)
    or the data directly."""
    if not data or not options.no_auto_get_response:
        session.pending_response = None
        return ResponseApdu(data, StatusWord.OK) if data else _OK
    session.pending_response = data
    return _sw(0x6100 | (len(data) & 0xFF))


@dataclass(frozen=True, slots=True)
class Application:
    profile: ApplicationProfile
    # Compact scripts already read for this application, script -> its commands: a campaign sends
    # every card the same script, and reading it is a pure function of the octets and of
    # ``case2_instructions`` (immutable values; bounded by the executor, which fills it).
    decoded_scripts: dict[bytes, tuple[CommandApdu | None, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def tar(self) -> bytes:
        return self.profile.tar

    @property
    def case2_instructions(self) -> frozenset[int]:
        return RAM_CASE2_INSTRUCTIONS if self.profile.kind is AppKind.RAM else CASE2_INSTRUCTIONS

    @property
    def initial_state_varies(self) -> bool:
        """Whether :meth:`initial_state` depends on the fleet index (a purse's balance step)."""
        p = self.profile
        return p.kind is AppKind.PURSE and p.balance_modulo > 1 and p.balance_step != 0

    def initial_state(self, index: int = 0) -> AppState:
        p = self.profile
        if p.kind is AppKind.PURSE:
            balance = p.balance + (index % p.balance_modulo) * p.balance_step
            return AppState(action_counter=p.action_counter, balance=min(balance, p.max_balance))
        return AppState(action_counter=p.action_counter)

    def start_session(self) -> Session:
        # TS 102 226 §7: each RFM script starts with the MF selected.
        return Session()

    def execute(
        self, apdu: CommandApdu, app: AppState, files: FileView, session: Session, options: CardOptions
    ) -> CommandResult:
        """Run one command; updates ``session`` (selection, pending response) in place."""
        try:
            if apdu.ins == INS_GET_RESPONSE:
                return get_response(session, apdu), app, _NO_WRITES
            session.pending_response = None
            kind = self.profile.kind
            if kind is AppKind.RFM:
                return _rfm(apdu, app, files, session, options)
            if kind is AppKind.RAM:
                return _ram(apdu, app)
            return _purse(self.profile, apdu, app, options)
        except ApduRejected as exc:
            return _sw(exc.status_word), app, _NO_WRITES


# --------------------------------------------------------------------------- RFM


def _rfm(
    apdu: CommandApdu, app: AppState, files: FileView, session: Session, options: CardOptions
) -> CommandResult:
    if apdu.cla not in (0x00, 0x80, 0xA0):
        raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"RFM: CLA {apdu.cla:02X}")
    if apdu.ins not in FILE_INSTRUCTIONS:
        raise ApduRejected(StatusWord.INS_NOT_SUPPORTED, f"RFM: INS {apdu.ins:02X}")
    outcome = execute_file_command(files, session.selection, apdu)
    session.selection = outcome.selection
    response = outcome.response
    if apdu.ins == INS_SELECT and response.data:  # no data: 90 00 as it is (execute cleared pending)
        response = _offer(response.data, session, options)
    return response, app, outcome.writes


# --------------------------------------------------------------------------- RAM (GP registry)


def _frozen(mapping: dict[bytes, object]) -> Mapping[bytes, object]:
    return MappingProxyType(mapping)


def _ram(apdu: CommandApdu, app: AppState) -> CommandResult:
    if apdu.cla not in (0x80, 0x00):
        raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"RAM: CLA {apdu.cla:02X}")
    ok = ResponseApdu(b"", StatusWord.OK)
    if apdu.ins == INS_SELECT:
        return ok, app, _NO_WRITES  # the ISD is always selected
    if apdu.ins == INS_GET_STATUS:
        return _get_status(apdu, app), app, _NO_WRITES
    try:
        if apdu.ins == INS_INSTALL:
            app = _install(apdu, app)
        elif apdu.ins == INS_LOAD:
            app = _load(apdu, app)
        elif apdu.ins == INS_DELETE:
            app = _delete(apdu, app)
        else:
            raise ApduRejected(StatusWord.INS_NOT_SUPPORTED, f"RAM: INS {apdu.ins:02X}")
    except DecodeError as exc:
        raise ApduRejected(StatusWord.WRONG_DATA, f"RAM: {exc}") from exc
    return ok, app, _NO_WRITES


def _install(apdu: CommandApdu, app: AppState) -> AppState:
    request = parse_install(apdu)
    load_files = dict(app.load_files)
    if request.p1 == INSTALL_FOR_LOAD:
        existing = load_files.get(request.load_file_aid)
        if existing is not None and existing.complete:
            raise ApduRejected(
                StatusWord.CONDITIONS_NOT_SATISFIED,
                f"load file {request.load_file_aid.hex()} already loaded (GP §11.5)",
            )
        if not request.load_file_aid:
            raise ApduRejected(StatusWord.WRONG_DATA, "empty load file AID")
        # One load at a time (GP §11.6): a new INSTALL [for load] abandons an unfinished one.
        load_files = {aid: lf for aid, lf in load_files.items() if lf.complete}
        load_files[request.load_file_aid] = LoadFileState()
        return replace(app, load_files=_frozen(load_files))  # type: ignore[arg-type]
    # INSTALL [for install (and make selectable)], GP §11.5.2.3.2
    lf = load_files.get(request.load_file_aid)
    if lf is None or not lf.complete:
        raise ApduRejected(
            StatusWord.REFERENCED_DATA_NOT_FOUND,
            f"load file {request.load_file_aid.hex()} not loaded (GP §11.5)",
        )
    if not request.application_aid:
        raise ApduRejected(StatusWord.WRONG_DATA, "empty application AID")
    if request.application_aid in app.instances or request.application_aid in load_files:
        raise ApduRejected(
            StatusWord.CONDITIONS_NOT_SATISFIED,
            f"AID {request.application_aid.hex()} already in the registry",
        )
    instances = dict(app.instances)
    instances[request.application_aid] = InstanceState(request.load_file_aid, request.module_aid)
    return replace(app, instances=_frozen(instances))  # type: ignore[arg-type]


def _load(apdu: CommandApdu, app: AppState) -> AppState:
    pending = [(aid, lf) for aid, lf in app.load_files.items() if not lf.complete]
    if not pending:
        raise ApduRejected(StatusWord.CONDITIONS_NOT_SATISFIED, "LOAD without INSTALL [for load] (GP §11.6)")
    if not apdu.data:
        raise ApduRejected(StatusWord.WRONG_LENGTH, "LOAD block without data")
    aid, lf = pending[0]
    if apdu.p2 != lf.blocks % 256:
        raise ApduRejected(
            StatusWord.CONDITIONS_NOT_SATISFIED,
            f"LOAD block {apdu.p2}, expected {lf.blocks % 256} (GP §11.6.2.2)",
        )
    last = bool(apdu.p1 & LOAD_LAST_BLOCK)
    load_files = dict(app.load_files)
    load_files[aid] = LoadFileState(lf.blocks + 1, lf.size + len(apdu.data), last)
    return replace(app, load_files=_frozen(load_files))  # type: ignore[arg-type]


def _delete(apdu: CommandApdu, app: AppState) -> AppState:
    aid = parse_delete(apdu)
    if aid in app.instances:
        instances = dict(app.instances)
        del instances[aid]
        return replace(app, instances=_frozen(instances))  # type: ignore[arg-type]
    if aid in app.load_files:
        if any(i.load_file_aid == aid for i in app.instances.values()):
            raise ApduRejected(
                StatusWord.CONDITIONS_NOT_SATISFIED, f"load file {aid.hex()} still has instances (GP §11.2)"
            )
        load_files = dict(app.load_files)
        del load_files[aid]
        return replace(app, load_files=_frozen(load_files))  # type: ignore[arg-type]
    raise ApduRejected(
        StatusWord.REFERENCED_DATA_NOT_FOUND, f"AID {aid.hex()} not in the registry (GP §11.2)"
    )


def _get_status(apdu: CommandApdu, app: AppState) -> ResponseApdu:
    """GP §11.4: P1 40 applications, 20/10 load files; ``len AID lifecycle privileges``."""
    if apdu.p1 == 0x40:
        aids = sorted(app.instances)
        life_cycle = 0x07  # SELECTABLE
    elif apdu.p1 in (0x20, 0x10):
        aids = sorted(aid for aid, lf in app.load_files.items() if lf.complete)
        life_cycle = 0x01  # LOADED
    else:
        return _sw(StatusWord.INCORRECT_P1_P2)
    if not aids:
        return _sw(StatusWord.REFERENCED_DATA_NOT_FOUND)
    data = b"".join(bytes((len(aid),)) + aid + bytes((life_cycle, 0x00)) for aid in aids)
    return ResponseApdu(data[:256], StatusWord.OK)


# --------------------------------------------------------------------------- purse


def purse_payment(profile: ApplicationProfile, app: AppState) -> AppState | None:
    """The purse state after one "pay" (the patent's transaction request, claim 8): the balance
    debited by ``payment_amount`` and the next request sequence number; None when the balance is
    too low (refused locally, no message). The caller adds the MO CNTR and commits it all at once."""
    balance = app.balance or 0
    amount = profile.payment_amount
    if balance < amount or app.request_sequence >= 0xFFFFFFFF:
        return None
    return replace(app, balance=balance - amount, request_sequence=app.request_sequence + 1)


def _transaction_reply(apdu: CommandApdu, app: AppState, options: CardOptions) -> AppState:
    """TRANSACTION REPLY ``80 36 P1 00 04 sequence`` (docs/action-counter.md; not counted):
    P1 01 accepted, 00 refused. Known sequences are those of requests this purse sent."""
    if apdu.p1 not in (0x00, 0x01) or apdu.p2 != 0x00:
        raise ApduRejected(StatusWord.INCORRECT_P1_P2, f"TRANSACTION REPLY P1P2 {apdu.p1:02X}{apdu.p2:02X}")
    if len(apdu.data) != 4:
        raise ApduRejected(StatusWord.WRONG_LENGTH, f"TRANSACTION REPLY needs 4 octets, got {len(apdu.data)}")
    sequence = int.from_bytes(apdu.data, "big")
    if not 1 <= sequence <= app.request_sequence:
        raise ApduRejected(
            StatusWord.REFERENCED_DATA_NOT_FOUND,
            f"TRANSACTION REPLY for sequence {sequence}; last request was {app.request_sequence}",
        )
    replies = (*app.replies, ReplyEntry(sequence, apdu.p1 == 0x01))
    if len(replies) > options.journal_limit:
        replies = replies[len(replies) - options.journal_limit :]
    return replace(app, replies=replies)


def _purse(profile: ApplicationProfile, apdu: CommandApdu, app: AppState, options: CardOptions) -> CommandResult:
    if apdu.cla != 0x80:
        raise ApduRejected(StatusWord.CLA_NOT_SUPPORTED, f"purse: CLA {apdu.cla:02X}")
    balance = app.balance or 0
    ok = ResponseApdu(b"", StatusWord.OK)
    if apdu.ins == INS_PURSE_RELOAD:
        if len(apdu.data) != 4:
            raise ApduRejected(StatusWord.WRONG_LENGTH, f"RELOAD needs 4 octets, got {len(apdu.data)}")
        amount = int.from_bytes(apdu.data, "big")
        if amount == 0:
            raise ApduRejected(StatusWord.WRONG_DATA, "RELOAD of 0")
        if balance + amount > profile.max_balance:
            raise ApduRejected(
                StatusWord.CONDITIONS_NOT_SATISFIED,
                f"RELOAD {amount}: balance {balance} would exceed {profile.max_balance}",
            )
        return ok, replace(app, balance=balance + amount), _NO_WRITES
    if apdu.ins == INS_PURSE_SET_PARAMETER:
        if not 1 <= len(apdu.data) <= 32:
            raise ApduRejected(StatusWord.WRONG_LENGTH, f"SET PARAMETER value of {len(apdu.data)} octets")
        parameters = dict(app.parameters)
        parameters[apdu.p1] = apdu.data
        return ok, replace(app, parameters=MappingProxyType(parameters)), _NO_WRITES
    if apdu.ins == INS_GET_DATA:
        if (apdu.p1 << 8 | apdu.p2) != PURSE_BALANCE_TAG:
            raise ApduRejected(StatusWord.REFERENCED_DATA_NOT_FOUND, f"GET DATA {apdu.p1:02X}{apdu.p2:02X}")
        return ResponseApdu(balance.to_bytes(4, "big"), StatusWord.OK), app, _NO_WRITES
    if apdu.ins == INS_PURSE_TRANSACTION_REPLY:
        return ok, _transaction_reply(apdu, app, options), _NO_WRITES
    raise ApduRejected(StatusWord.INS_NOT_SUPPORTED, f"purse: INS {apdu.ins:02X}")


class ApplicationTable:
    """Explicit TAR -> application table (TS 102 226 §8.2.1.3.2.4: TARs set at install)."""

    __slots__ = ("_by_tar", "_initial")

    def __init__(self, profiles: tuple[ApplicationProfile, ...]) -> None:
        self._by_tar = {p.tar: Application(p) for p in profiles}
        # Initial states that are the same on every card, built once (immutable values); None for
        # those that vary with the fleet index, built per card.
        self._initial = {
            tar: None if app.initial_state_varies else app.initial_state(0) for tar, app in self._by_tar.items()
        }

    def initial_states(self, index: int) -> dict[bytes, AppState]:
        """Every application's initial state on card ``index``, by TAR."""
        by_tar = self._by_tar
        return {
            tar: by_tar[tar].initial_state(index) if state is None else state
            for tar, state in self._initial.items()
        }

    def get(self, tar: bytes) -> Application | None:
        return self._by_tar.get(tar)

    def __iter__(self) -> Iterator[Application]:
        return iter(self._by_tar.values())
