"""Subscriber activity: when each phone's user starts a purse transaction (PURE).

Concept: the users of a fleet pay with their e-purse at random, independent moments: a
Poisson process per phone with rate ``transactions_per_hour``, so the gaps between two
transactions are exponential with mean ``3600 / transactions_per_hour`` seconds. A
transaction is the patent's message 1 (WO 00/07153 claim 8): the ME sends ENVELOPE (MENU
SELECTION, TS 102 223 §7.3) item 1 to the card, whose purse answers with a secured
transaction request by SEND SHORT MESSAGE (docs/action-counter.md "Deferred reports").

Each phone draws from its own ``random.Random`` (seeded from ``[activity] seed`` or the radio
seed, and the MSISDN), so its schedule does not depend on other phones' traffic and the same
seed gives the same times. The service turns the times into ``loop.call_at`` callbacks.

Glossary: ME mobile equipment; MO mobile originated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ota_protocols.errors import ConfigError

if TYPE_CHECKING:
    import random

__all__ = ["ActivityConfig", "next_transaction_at", "phone_seed", "transaction_times"]

MENU_ITEM_PAY = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityConfig:
    """``[activity]``: ``transactions_per_hour`` per phone (0 = off); ``seed`` (None: the radio seed)."""

    transactions_per_hour: float = 0.0
    seed: int | None = None
    menu_item: int = MENU_ITEM_PAY

    def __post_init__(self) -> None:
        rate = self.transactions_per_hour
        if not 0.0 <= rate < float("inf"):
            raise ConfigError("transactions_per_hour", f"{rate} must be a finite number >= 0")
        if not 1 <= self.menu_item <= 0xFF:
            raise ConfigError("menu_item", f"{self.menu_item} outside 1..255 (one-octet item identifier)")

    @property
    def enabled(self) -> bool:
        return self.transactions_per_hour > 0


def phone_seed(seed: int, msisdn: str) -> str:
    """The seed of one phone's activity generator (string seeds are stable across runs)."""
    return f"{seed}/activity/{msisdn}"


def next_transaction_at(rng: random.Random, now: float, transactions_per_hour: float) -> float | None:
    """When the next transaction starts after ``now``: an exponential gap; None when off."""
    if transactions_per_hour <= 0:
        return None
    return now + rng.expovariate(transactions_per_hour / 3600.0)


def transaction_times(
    rng: random.Random, start: float, end: float, transactions_per_hour: float
) -> list[float]:
    """Every start time in ``[start, end)``, as the service would schedule them one by one."""
    times: list[float] = []
    at = next_transaction_at(rng, start, transactions_per_hour)
    while at is not None and at < end:
        times.append(at)
        at = next_transaction_at(rng, at, transactions_per_hour)
    return times
