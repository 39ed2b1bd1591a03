"""Where a card's persistent state lives: in memory (fleets) or in a JSON file (CLI).

House-style §2 (write-ahead order): the card hands every new state to
:meth:`CardStateStore.save` before it acts on it; a save is atomic, so after a crash
the card restarts from exactly one of the states it saved. The file store writes a
temporary file, ``fsync``s it and ``os.replace``s the target (POSIX rename is atomic),
then ``fsync``s the directory so the rename itself survives a power cut.

Glossary: CNTR replay counter (TS 102 225 §5.1.1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from ota_protocols.errors import StoreError
from sim_emulator.card_state import CardState, state_from_json, state_to_json


class CardStateStore(Protocol):
    def load(self) -> CardState | None:
        """The last saved state, or None if nothing was ever saved."""

    def save(self, state: CardState) -> None:
        """Replace the saved state atomically; raises StoreError."""


class MemoryCardStateStore:
    """Keeps a reference to the last saved state (states are immutable values)."""

    __slots__ = ("_state",)

    def __init__(self, state: CardState | None = None) -> None:
        self._state = state

    def load(self) -> CardState | None:
        return self._state

    def save(self, state: CardState) -> None:
        self._state = state


class FileCardStateStore:
    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> CardState | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read card state: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self.path}: card state is not JSON: {exc}") from exc
        return state_from_json(data, str(self.path))

    def save(self, state: CardState) -> None:
        data = json.dumps(state_to_json(state), separators=(",", ":")).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write card state: {exc}") from exc
