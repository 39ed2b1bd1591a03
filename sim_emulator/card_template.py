"""A card template: what every card of a profile or fleet shares, and its per-card variation.

Clauses: TS 102 221 §13.2 (EF.ICCID), GSM 11.11 §10.3.2 (EF.IMSI); per-card variation
by fleet index is the project's (docs/sim-emulator.md).

Glossary: EF elementary file, TAR toolkit application reference, MSL minimum security
level.

PURE. One :class:`CardTemplate` is shared by all the cards built from it (10,000 in a
handset): the file tree with its default contents, the TAR table and the options.
A card adds only its identity, its keys, the two EFs that hold its identity, the EFs
absent on it and its persistent state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sim_emulator.applets import ApplicationTable
from sim_emulator.card_state import CardState
from sim_emulator.file_system import FileTree, iccid_content, imsi_content
from sim_emulator.profile import ApplicationProfile, CardIdentity, CardOptions, FilePath, FileProfile

EF_ICCID: FilePath = (b"\x3f\x00", b"\x2f\xe2")
EF_IMSI: FilePath = (b"\x3f\x00", b"\x7f\x20", b"\x6f\x07")


@dataclass(frozen=True, slots=True, eq=False)
class CardTemplate:
    tree: FileTree
    applications: ApplicationTable
    app_profiles: tuple[ApplicationProfile, ...]
    files: tuple[FileProfile, ...]
    options: CardOptions
    source: str = ""

    def initial_files(self, identity: CardIdentity) -> Mapping[FilePath, bytes | None]:
        files: dict[FilePath, bytes | None] = {
            EF_ICCID: iccid_content(identity.iccid),
            EF_IMSI: imsi_content(identity.imsi),
        }
        for spec in self.files:
            if spec.absent_when is not None and spec.absent_when.applies(identity.index):
                files[spec.path] = None
        return MappingProxyType(files)

    def initial_state(self, index: int) -> CardState:
        apps = self.applications.initial_states(index)
        return CardState(MappingProxyType(apps))

    def complete_state(self, state: CardState, index: int) -> CardState:
        """A loaded state with the applications the profile added since it was written."""
        missing = [app for app in self.applications if app.tar not in state.applications]
        for app in missing:
            state = state.with_app(app.tar, app.initial_state(index))
        return state
