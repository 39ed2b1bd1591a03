"""Replay counter rules of a receiving entity: ETSI TS 102 225 §5.1.1 (SPI1 b5b4) and §5.2.

Glossary: CNTR the 5-octet replay counter of a secured packet.

A one-shot decision, pure: (mode, stored, received) -> verdict. The caller
stores :func:`counter_after` *after* the integrity check succeeded and before
the script runs, so a script that fails still consumes the counter value and a
replay of the packet can never run twice (protocols.md §5).
"""

from __future__ import annotations

from enum import Enum

from ota_protocols.secured_packet.security_parameters import CounterMode

MAX_CNTR = (1 << 40) - 1


class CounterVerdict(Enum):
    ACCEPT = "accept"
    CNTR_LOW = "cntr_low"  # PoR status 02
    CNTR_HIGH = "cntr_high"  # PoR status 03
    BLOCKED = "blocked"  # PoR status 04

    @property
    def response_status(self) -> int | None:
        return {"accept": None, "cntr_low": 0x02, "cntr_high": 0x03, "blocked": 0x04}[self.value]


def check_counter(mode: CounterMode, stored: int, received: int) -> CounterVerdict:
    """Whether a packet with CNTR ``received`` may be processed given the ``stored`` counter."""
    if mode in (CounterMode.NO_COUNTER, CounterMode.NO_CHECK):
        return CounterVerdict.ACCEPT
    # The counter never wraps and cannot be reset: at FF..FF no value is higher (status 04).
    if stored >= MAX_CNTR:
        return CounterVerdict.BLOCKED
    if received <= stored:
        return CounterVerdict.CNTR_LOW
    if mode is CounterMode.ONE_HIGHER and received != stored + 1:
        # Mode 11 asks for exactly stored + 1; "higher than that" is reported as CNTR high
        # (the split between 02 and 03 for this mode is a project choice, protocols.md §5).
        return CounterVerdict.CNTR_HIGH
    return CounterVerdict.ACCEPT


def counter_after(mode: CounterMode, stored: int, received: int, *, update_on_no_check: bool = False) -> int:
    """The counter to store once an accepted packet passed its integrity check.

    Mode 01 ("no replay check") updates it only when ``update_on_no_check`` says so,
    since TS 102 225 leaves that open; mode 00 never does.
    """
    if mode is CounterMode.NO_COUNTER:
        return stored
    if mode is CounterMode.NO_CHECK:
        return max(stored, received) if update_on_no_check else stored
    return received
