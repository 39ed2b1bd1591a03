"""The card's persistent state, as immutable values, and its JSON form.

What persists (house-style §2): the 03.48 replay counters per (key set, TAR) (TS 102
225 §5.1.1, protocols.md §5), the EFs a card changed, and per application (TAR) the
action counter of docs/action-counter.md with its journal, the purse balance and
parameters, its MO counter, last request sequence and TRANSACTION REPLYs (patent claims
7-9, "Deferred reports"), and the GlobalPlatform registry (GP Card Spec §11).

Glossary: CNTR replay counter, KVN key version number, TAR toolkit application
reference, LF load file, AID application identifier.

PURE. Every change returns a new :class:`CardState` that shares what did not change
(copy-on-write dicts), so a store can keep or write a snapshot, and a power cut between
two writes leaves exactly the last one. The journal is bounded (``journal_limit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ota_protocols.errors import StoreError
from sim_emulator.profile import FilePath, path_text

CounterKey = tuple[int, bytes]  # (KVN, TAR)


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


def _thawed(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    """A new dict with ``mapping``'s items: the C copy of the dict behind a MappingProxyType (what
    this module stores) or of a dict; ``dict(mapping)`` (item by item) for any other mapping."""
    if type(mapping) is MappingProxyType or type(mapping) is dict:
        return mapping.copy()  # type: ignore[attr-defined,no-any-return]
    return dict(mapping)


_NO_FILES: Mapping[FilePath, bytes | None] = MappingProxyType({})
_NO_COUNTERS: Mapping[CounterKey, int] = MappingProxyType({})
_NO_PARAMETERS: Mapping[int, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class JournalEntry:
    counter: int  # action counter after this command
    apdu: bytes  # the counted command, T=0 form


@dataclass(frozen=True, slots=True)
class ReplyEntry:
    """A TRANSACTION REPLY the purse accepted: the request it answers and the server's verdict."""

    sequence: int
    accepted: bool


@dataclass(frozen=True, slots=True)
class LoadFileState:
    """GP load file: ``blocks`` LOAD blocks received so far, ``complete`` after the last one."""

    blocks: int = 0
    size: int = 0
    complete: bool = False


@dataclass(frozen=True, slots=True)
class InstanceState:
    load_file_aid: bytes
    module_aid: bytes


_NO_LOAD_FILES: Mapping[bytes, LoadFileState] = MappingProxyType({})
_NO_INSTANCES: Mapping[bytes, InstanceState] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AppState:
    action_counter: int
    journal: tuple[JournalEntry, ...] = ()
    balance: int | None = None  # purse
    parameters: Mapping[int, bytes] = field(default_factory=lambda: _NO_PARAMETERS)  # purse
    load_files: Mapping[bytes, LoadFileState] = field(default_factory=lambda: _NO_LOAD_FILES)  # ram
    instances: Mapping[bytes, InstanceState] = field(default_factory=lambda: _NO_INSTANCES)  # ram
    # Card-originated messages (docs/action-counter.md "Deferred reports"), purse:
    mo_cntr: int = 0  # the application's own MO CNTR, +1 per message, saved before it leaves
    request_sequence: int = 0  # sequence number of the last transaction request
    replies: tuple[ReplyEntry, ...] = ()  # TRANSACTION REPLYs received, oldest first (bounded)

    def counted(self, apdu: bytes, journal_limit: int) -> AppState:
        """One more successful counted command (docs/action-counter.md, claim 1b)."""
        after = self.action_counter + 1
        journal = (*self.journal, JournalEntry(after, apdu))
        if len(journal) > journal_limit:
            journal = journal[len(journal) - journal_limit :]
        # The constructor, not dataclasses.replace: this runs once per action (hot path).
        return AppState(
            after,
            journal,
            self.balance,
            self.parameters,
            self.load_files,
            self.instances,
            self.mo_cntr,
            self.request_sequence,
            self.replies,
        )


@dataclass(frozen=True, slots=True)
class CardState:
    applications: Mapping[bytes, AppState]
    counters: Mapping[CounterKey, int] = field(default_factory=lambda: _NO_COUNTERS)
    files: Mapping[FilePath, bytes | None] = field(default_factory=lambda: _NO_FILES)

    def with_counter(self, key: CounterKey, cntr: int) -> CardState:
        counters = _thawed(self.counters)
        counters[key] = cntr
        return CardState(self.applications, MappingProxyType(counters), self.files)

    def with_files(self, writes: tuple[tuple[FilePath, bytes], ...]) -> CardState:
        changed = _thawed(self.files)
        changed.update(writes)
        return CardState(self.applications, self.counters, MappingProxyType(changed))

    def with_app(
        self, tar: bytes, app: AppState, writes: tuple[tuple[FilePath, bytes], ...] = ()
    ) -> CardState:
        applications = _thawed(self.applications)
        applications[tar] = app
        files = self.files
        if writes:
            changed = _thawed(files)
            changed.update(writes)
            files = MappingProxyType(changed)
        return CardState(MappingProxyType(applications), self.counters, files)


# --------------------------------------------------------------------------- JSON form


def state_to_json(state: CardState) -> dict[str, Any]:
    return {
        "version": 1,
        "counters": [
            {"kvn": kvn, "tar": tar.hex(), "cntr": cntr}
            for (kvn, tar), cntr in sorted(state.counters.items())
        ],
        "files": {
            path_text(path): (None if content is None else content.hex())
            for path, content in sorted(state.files.items())
        },
        "applications": {tar.hex(): _app_to_json(app) for tar, app in sorted(state.applications.items())},
    }


def _app_to_json(app: AppState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action_counter": app.action_counter,
        "journal": [[entry.counter, entry.apdu.hex()] for entry in app.journal],
    }
    if app.balance is not None:
        out["balance"] = app.balance
    if app.parameters:
        out["parameters"] = {f"{k:02x}": v.hex() for k, v in sorted(app.parameters.items())}
    if app.load_files:
        out["load_files"] = {
            aid.hex(): {"blocks": lf.blocks, "size": lf.size, "complete": lf.complete}
            for aid, lf in sorted(app.load_files.items())
        }
    if app.mo_cntr or app.request_sequence or app.replies:
        out["mo_cntr"] = app.mo_cntr
        out["request_sequence"] = app.request_sequence
        out["replies"] = [[r.sequence, r.accepted] for r in app.replies]
    if app.instances:
        out["instances"] = {
            aid.hex(): {"load_file": i.load_file_aid.hex(), "module": i.module_aid.hex()}
            for aid, i in sorted(app.instances.items())
        }
    return out


def state_from_json(data: Any, source: str) -> CardState:
    """Raises StoreError naming ``source`` and the bad place."""
    try:
        if data.get("version") != 1:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        counters = {(int(c["kvn"]), bytes.fromhex(c["tar"])): int(c["cntr"]) for c in data["counters"]}
        files = {
            tuple(bytes.fromhex(p) for p in path.split("/")): (None if v is None else bytes.fromhex(v))
            for path, v in data["files"].items()
        }
        apps = {bytes.fromhex(tar): _app_from_json(a) for tar, a in data["applications"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{source}: card state is not readable: {exc!r}") from exc
    return CardState(_frozen(apps), _frozen(counters), _frozen(files))


def _app_from_json(a: dict[str, Any]) -> AppState:
    return AppState(
        action_counter=int(a["action_counter"]),
        journal=tuple(JournalEntry(int(c), bytes.fromhex(h)) for c, h in a["journal"]),
        balance=None if a.get("balance") is None else int(a["balance"]),
        parameters=_frozen({int(k, 16): bytes.fromhex(v) for k, v in a.get("parameters", {}).items()}),
        load_files=_frozen(
            {
                bytes.fromhex(k): LoadFileState(int(v["blocks"]), int(v["size"]), bool(v["complete"]))
                for k, v in a.get("load_files", {}).items()
            }
        ),
        instances=_frozen(
            {
                bytes.fromhex(k): InstanceState(bytes.fromhex(v["load_file"]), bytes.fromhex(v["module"]))
                for k, v in a.get("instances", {}).items()
            }
        ),
        mo_cntr=int(a.get("mo_cntr", 0)),
        request_sequence=int(a.get("request_sequence", 0)),
        replies=tuple(ReplyEntry(int(s), bool(ok)) for s, ok in a.get("replies", [])),
    )
