"""The fleet's SIMs, stored compactly: a shared template plus, per card, ``None`` (never touched) or
its persistent state as compressed bytes; a bounded set of live :class:`~sim_emulator.api.SimCard`.

Memory is proportional to the work, not the fleet (docs/labs.md "Virtual time"): a card that was
never touched costs one list slot; a card that was touched costs its persistent state (the card
state JSON of ``sim_emulator``'s file store, the same format ``sim-emulator``/``load_card`` restore
from) deflated against a dictionary made of the template's own initial state, typically 100-200
octets. Identity and TEST keys are derived again from the fleet seed and the ICCID when a card is
woken (``ota_protocols.fleet.derive_card``), never stored.

A live card is the real ``sim_emulator.api.SimCard`` built from the template, the derived identity
and an in-memory state store that starts from the stored snapshot; the simulation talks to it only
through ``exchange`` / ``reset`` / ``stop_after_actions`` / ``report`` like the handset does. When a
phone goes quiet its card joins a warm set of fixed size (:data:`WARM_CARDS`, deterministic FIFO); the
oldest warm card is put to sleep: its persistent state is written back as a snapshot and the object
dropped. Waking a card is a power cycle (volatile state - selected file, partial concatenations - is
gone), which is what a real phone idle for that long would show too.

Hook wanted from ``sim_emulator.api`` (docs/labs.md): ``card_from_fleet(spec, index, template,
state=...)`` and ``SimCard.snapshot() -> bytes``; until then this module builds the identity with
``sim_emulator.profile`` and keeps the state with its own store, both of which are plain data.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import sim_emulator.api as api
from ota_protocols.fleet import FleetSpec, derive_card, luhn_digit
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from sim_emulator.card_state import CardState, state_from_json, state_to_json
from sim_emulator.profile import CardIdentity, KeysetProfile

__all__ = ["WARM_CARDS", "CardPool"]

WARM_CARDS = 4096  # quiet phones kept awake before the oldest sleeps (part of the model: fixed)


class _Store:
    """``sim_emulator`` CardStateStore in memory: the card saves every new state here (write-ahead)."""

    __slots__ = ("state",)

    def __init__(self, state: CardState | None) -> None:
        self.state = state

    def load(self) -> CardState | None:
        return self.state

    def save(self, state: CardState) -> None:
        self.state = state


class CardPool:
    """Cards of one fleet by index: compact when asleep, a real SimCard when awake."""

    def __init__(self, spec: FleetSpec, template: api.CardTemplate) -> None:
        self.spec = spec
        self.template = template
        self.first = spec.first_index
        self._snapshots: list[bytes | None] = [None] * spec.count
        self._live: dict[int, tuple[api.SimCard, _Store]] = {}
        sample = json.dumps(state_to_json(template.initial_state(spec.first_index)), sort_keys=True)
        # The dictionary: what every snapshot shares (keys, TARs, initial values); zlib uses its tail.
        self._zdict = (sample * 2).encode()[-32768:]
        self.woken = 0
        self.slept = 0

    # ------------------------------------------------------------------ identity

    def msisdn(self, index: int) -> str:
        s = self.spec
        return s.msisdn_prefix + str(index).rjust(s.msisdn_digits - len(s.msisdn_prefix), "0")

    def iccid(self, index: int) -> str:
        base = self.spec.iccid_prefix + str(index).rjust(18 - len(self.spec.iccid_prefix), "0")
        return base + luhn_digit(base)

    # ------------------------------------------------------------------ wake / sleep

    def card(self, index: int) -> api.SimCard:
        """Wake card ``index``: a real SimCard restored from its snapshot (or the template)."""
        entry = self._live.get(index)
        if entry is not None:
            return entry[0]
        derived = derive_card(self.spec, index)
        identity = CardIdentity(
            iccid=derived.iccid,
            imsi=derived.imsi,
            msisdn=derived.msisdn,
            keysets=tuple(
                KeysetProfile(
                    kvn=k.kvn,
                    kic_algorithm=CipherAlgorithm(k.kic_algorithm),
                    kid_algorithm=IntegrityAlgorithm(k.kid_algorithm),
                    kic=k.kic,
                    kid=k.kid,
                    kik=k.kik,
                )
                for k in derived.keysets
            ),
            index=index,
        )
        store = _Store(self._load(index))
        card = api.SimCard(self.template, identity, store)
        self._live[index] = (card, store)
        self.woken += 1
        return card

    def sleep(self, index: int) -> None:
        """Put card ``index`` to sleep: its persistent state becomes a snapshot, the object goes."""
        entry = self._live.pop(index, None)
        if entry is None:
            return
        state = entry[1].state
        if state is not None:
            self._snapshots[index - self.first] = self._dump(state)
        self.slept += 1

    # ------------------------------------------------------------------ snapshots

    def _dump(self, state: CardState) -> bytes:
        text = json.dumps(state_to_json(state), separators=(",", ":"), sort_keys=True).encode()
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, self._zdict)
        return c.compress(text) + c.flush()

    def _json(self, blob: bytes) -> dict[str, Any]:
        d = zlib.decompressobj(-15, self._zdict)
        return json.loads(d.decompress(blob) + d.flush())

    def _load(self, index: int) -> CardState | None:
        blob = self._snapshots[index - self.first]
        return None if blob is None else state_from_json(self._json(blob), f"snapshot of card {index}")

    def application(self, index: int, tar_hex: str) -> dict[str, Any] | None:
        """The card's report entry for ``tar_hex`` (``SimCard.report`` format: action counter and
        journal), read from the live card or the snapshot without waking it."""
        entry = self._live.get(index)
        if entry is not None:
            report = entry[0].report()
            return next((a for a in report["applications"] if a["tar"] == tar_hex), None)
        blob = self._snapshots[index - self.first]
        data = state_to_json(self.template.initial_state(index)) if blob is None else self._json(blob)
        app = data["applications"].get(tar_hex)
        if app is None:
            return None
        journal = [{"counter": c, "apdu": h} for c, h in app["journal"]]
        return {"tar": tar_hex, "action_counter": app["action_counter"], "journal": journal}

    def touched(self) -> int:
        return len(self._live) + sum(1 for s in self._snapshots if s is not None)

    def snapshot_bytes(self) -> int:
        return sum(len(s) for s in self._snapshots if s is not None)

    def live(self) -> int:
        return len(self._live)
