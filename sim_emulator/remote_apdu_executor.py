"""Runs a remote APDU script against one application and builds its TS 102 226 response.

Clauses: TS 102 226 §5.1.1 / §5.1.2 (compact command list and ``NN SW1 SW2 [data]``
response), §5.2.1 / §5.2.2 (expanded ``AA``/``AE`` command and ``AB`` response
templates); protocols.md §12.3 (execution rule), docs/action-counter.md (counting).

Glossary: NN number of executed commands (the failing one included), SW status
word, R-APDU response APDU, CNTR replay counter.

Theory of operation (PURE): commands run in order; execution stops at the first SW
that is not a success SW (``is_success_sw``: 90 00, 91 XX, 61 XX, 62 XX, 63 XX).
After every counted command that succeeded (``action_counter.is_counted``), the
application's action counter goes up by one and the new card state (the command's
effect and the counter together) is handed to ``commit`` as ONE value, which the
shell writes atomically before the next command runs (house-style §2 step 3). A
non-counted command that changes state (the purse's TRANSACTION REPLY) is handed to
``save`` instead: written the same way, never counted. A
``commit`` may raise to simulate a power cut: what was committed stays, the rest
never happened. No GET RESPONSE is issued automatically: the script must contain it
(``no_auto_get_response``, SJA5 behaviour, protocols.md §8).

A compact command that cannot be decoded (truncated) counts as an executed command
that failed with ``67 00``. An expanded template that cannot be decoded, or that
carries TLVs this card does not support (immediate action, script chaining, unknown
tags), runs nothing and is answered with bad format ``90 01 01``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ota_protocols.action_counter import is_counted
from ota_protocols.apdu.apdu import CommandApdu, ResponseApdu, StatusWord, is_success_sw
from ota_protocols.apdu.remote_commands import (
    BAD_FORMAT_UNKNOWN_TAG,
    CompactResponse,
    ExpandedCommandScript,
    ExpandedResponse,
)
from ota_protocols.errors import DecodeError
from sim_emulator.applets import Application
from sim_emulator.card_state import CardState
from sim_emulator.file_system import FileTree, FileView
from sim_emulator.profile import CardOptions, FilePath, ScriptFormat

MAX_NN = 0xFF  # NN is one octet (TS 102 226 §5.1.2)
MAX_DECODED_SCRIPTS = 16  # per application (of a template): the scripts of the campaigns in flight

Commit = Callable[[CardState], None]


@dataclass(frozen=True, slots=True)
class ScriptOutcome:
    response: bytes  # the standard TS 102 226 response (compact or expanded)
    executed: int
    last_sw: int
    stopped_on_error: bool
    counter_before: int
    counter_after: int
    state: CardState


@dataclass(frozen=True, slots=True)
class _Run:
    executed: int
    responses: tuple[ResponseApdu, ...]
    stopped_on_error: bool
    state: CardState


def _execute(
    commands: Sequence[CommandApdu | None],
    application: Application,
    state: CardState,
    tree: FileTree,
    initial: Mapping[FilePath, bytes | None],
    options: CardOptions,
    commit: Commit,
    save: Commit | None = None,
) -> _Run:
    """``None`` in ``commands`` stands for an undecodable command (SW 67 00)."""
    tar = application.tar
    session = application.start_session()
    responses: list[ResponseApdu] = []
    files = state.files
    view = FileView(tree, initial, files)  # rebuilt only when a command changed the files
    app = state.applications[tar]  # changes below only with ``state``
    execute = application.execute
    for apdu in commands[:MAX_NN]:
        if apdu is None:
            responses.append(ResponseApdu(b"", StatusWord.WRONG_LENGTH))
            return _Run(len(responses), tuple(responses), True, state)
        if state.files is not files:
            files = state.files
            view = FileView(tree, initial, files)
        response, new_app, writes = execute(apdu, app, view, session, options)
        responses.append(response)
        sw = response.sw
        if sw != 0x9000 and not is_success_sw(sw):
            # TS 102 226 §5.1.1: stop; this action and every later one are not applied.
            return _Run(len(responses), tuple(responses), True, state)
        if is_counted(apdu.ins):
            app = new_app.counted(apdu.encode_t0(), options.journal_limit)
            state = state.with_app(tar, app, writes)
            commit(state)  # effect + action counter in one atomic write
        elif new_app is not app or writes:
            # Not an action, yet a state change (the purse's TRANSACTION REPLY record): saved, not counted.
            app = new_app
            state = state.with_app(tar, app, writes)
            if save is not None:
                save(state)
    return _Run(len(responses), tuple(responses), False, state)


def run_script(
    script: bytes,
    script_format: ScriptFormat,
    application: Application,
    state: CardState,
    tree: FileTree,
    initial: Mapping[FilePath, bytes | None],
    options: CardOptions,
    commit: Commit,
    save: Commit | None = None,
) -> ScriptOutcome:
    before = state.applications[application.tar].action_counter
    if script_format is ScriptFormat.COMPACT:
        commands = _compact_commands(application, script)
        run = _execute(commands, application, state, tree, initial, options, commit, save)
        last = run.responses[-1] if run.responses else ResponseApdu(b"", StatusWord.OK)
        response = CompactResponse(run.executed, last.sw, last.data).encode()
    else:
        try:
            template = ExpandedCommandScript.decode(script)
        except DecodeError:
            template = None
        if (
            template is None
            or template.unknown
            or template.immediate_action is not None
            or template.script_chaining is not None
        ):
            response = ExpandedResponse(0, bad_format=BAD_FORMAT_UNKNOWN_TAG).encode()
            return ScriptOutcome(response, 0, StatusWord.OK, True, before, before, state)
        run = _execute(list(template.apdus), application, state, tree, initial, options, commit, save)
        last = run.responses[-1] if run.responses else ResponseApdu(b"", StatusWord.OK)
        response = ExpandedResponse(run.executed, run.responses, indefinite=template.indefinite).encode()
    after = run.state.applications[application.tar].action_counter
    return ScriptOutcome(response, run.executed, last.sw, run.stopped_on_error, before, after, run.state)


def _compact_commands(application: Application, script: bytes) -> tuple[CommandApdu | None, ...]:
    """``_decode_compact`` of ``script`` for this application, read once per distinct script."""
    memo = application.decoded_scripts
    commands = memo.get(script)
    if commands is None:
        commands = tuple(_decode_compact(script, application.case2_instructions))
        if len(memo) >= MAX_DECODED_SCRIPTS:
            memo.clear()  # bounded: a sender varying its scripts cannot grow it
        memo[bytes(script)] = commands
    return commands


def _decode_compact(script: bytes, case2: frozenset[int]) -> list[CommandApdu | None]:
    """TS 102 226 §5.1.1: T=0 commands back to back (``CommandApdu.decode_t0`` read in place:
    P3 is Le for the ``case2`` instructions, else Lc). A command that runs past the end is
    ``None`` and ends the list."""
    commands: list[CommandApdu | None] = []
    end = len(script)
    pos = 0
    while pos < end:
        if end - pos < 5:  # header or P3 missing
            commands.append(None)
            break
        cla, ins, p1, p2, p3 = script[pos : pos + 5]
        pos += 5
        if ins in case2:
            commands.append(CommandApdu(cla, ins, p1, p2, b"", 256 if p3 == 0 else p3))
        elif p3 == 0:
            commands.append(CommandApdu(cla, ins, p1, p2))  # case 1 written with P3 = 00
        elif pos + p3 > end:
            commands.append(None)  # Lc longer than what is left
            break
        else:
            commands.append(CommandApdu(cla, ins, p1, p2, script[pos : pos + p3]))
            pos += p3
    return commands
