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

The card itself is only reached through ``sim_emulator.api``: ``card_from_fleet(..., state=...)``
wakes it, ``SimCard.snapshot()`` puts it to sleep, ``snapshot_application`` reads a sleeping card's
journal for the invariants (the compression dictionary: ``snapshot_dictionary``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import sim_emulator.api as api
from ota_protocols.fleet import DerivedCard, FleetSpec, derive_card, luhn_digit

__all__ = ["DERIVED_CACHE", "WARM_CARDS", "CardPool"]

WARM_CARDS = 4096  # quiet phones kept awake before the oldest sleeps (part of the model: fixed)
DERIVED_CACHE = 4096  # derived identities and keys kept (a pure function's memo: speed only)


class CardPool:
    """Cards of one fleet by index: compact when asleep, a real SimCard when awake."""

    def __init__(self, spec: FleetSpec, template: api.CardTemplate) -> None:
        self.spec = spec
        self.template = template
        self.first = spec.first_index
        self._snapshots: list[bytes | None] = [None] * spec.count
        self._live: dict[int, api.SimCard] = {}
        # What every snapshot shares (keys, TARs, initial values): one dictionary per fleet.
        self._zdict = api.snapshot_dictionary(template, spec.first_index)
        self.woken = 0
        self.slept = 0
        self._derived: OrderedDict[int, DerivedCard] = OrderedDict()

    def forget_derived(self) -> None:
        self._derived.clear()

    def derived(self, index: int) -> DerivedCard:
        """``derive_card(spec, index)``, memoised for the cards in play (the server derives a
        card's keys when it admits the job, the card when it wakes: HMACs paid once)."""
        memo = self._derived
        found = memo.get(index)
        if found is not None:
            memo.move_to_end(index)
            return found
        found = memo[index] = derive_card(self.spec, index)
        if len(memo) > DERIVED_CACHE:
            memo.popitem(last=False)
        return found

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
        card = self._live.get(index)
        if card is not None:
            return card
        state = self._snapshots[index - self.first]
        card = api.card_from_fleet(
            self.spec, index, self.template, state=state, zdict=self._zdict, derived=self.derived(index)
        )
        self._live[index] = card
        self.woken += 1
        return card

    def sleep(self, index: int) -> None:
        """Put card ``index`` to sleep: its persistent state becomes a snapshot, the object goes."""
        card = self._live.pop(index, None)
        if card is None:
            return
        self._snapshots[index - self.first] = card.snapshot(self._zdict)
        self.slept += 1

    # ------------------------------------------------------------------ reading

    def application(self, index: int, tar_hex: str) -> dict[str, Any] | None:
        """The card's report entry for ``tar_hex`` (``SimCard.report`` format: action counter and
        journal), read from the live card or the snapshot without waking it."""
        card = self._live.get(index)
        if card is not None:
            return next((a for a in card.report()["applications"] if a["tar"] == tar_hex), None)
        state = self._snapshots[index - self.first]
        return api.snapshot_application(self.template, index, state, tar_hex, zdict=self._zdict)

    def touched(self) -> int:
        return len(self._live) + sum(1 for s in self._snapshots if s is not None)

    def snapshot_bytes(self) -> int:
        return sum(len(s) for s in self._snapshots if s is not None)

    def live(self) -> int:
        return len(self._live)
