"""The action counter of patent WO 00/07153: what an action is, and how the counter crosses the wire.

Not a field of any standard (protocols.md §1). The project's definitions, also
described in docs/action-counter.md:

**Action.** A script sent to an application (TAR) is a sequence of actions. An
action is zero or more *navigation* commands (SELECT, READ BINARY, READ RECORD,
STATUS, GET RESPONSE, GET DATA/STATUS) followed by exactly one *counted*,
state-changing command (UPDATE BINARY, UPDATE RECORD, INSTALL, LOAD, DELETE, an
applet's reload or parameter change). Each action is self-contained, so the
server can send "the last x actions" again on their own (claim 1c).

**Counting (claim 1b, claim 10).** The card runs the commands in order (TS 102
226 §5.1.1); after each counted command that succeeded it adds one to the
application's persistent action counter, atomically with the command's effect.
At the first failing command it stops: that action and all after it are refused
and not counted.

**Reporting (claims 2 and 4).** The PoR's additional data carries the standard
TS 102 226 response first, then this 10-octet block, under the PoR checksum::

    AC 08 | counter before the script (4 octets) | counter after (4 octets)

Tag AC is the project's own (the TS 102 226 response templates are AB / AF).
The block always ends the additional data, so a receiver reads it from the end
and the standard response is everything before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.errors import DecodeError, EncodeError

COUNTER_TAG = 0xAC
COUNTER_BLOCK_LENGTH = 10
MAX_ACTION_COUNTER = 0xFFFFFFFF

# Instructions that never change card state (ISO 7816-4 / TS 102 221 / GlobalPlatform GET STATUS).
NAVIGATION_INSTRUCTIONS = frozenset({0xA4, 0xB0, 0xB2, 0xF2, 0xC0, 0xCA, 0xCB, 0x12})


def is_counted(ins: int) -> bool:
    """Whether a command with instruction ``ins`` is an action's counted command."""
    return ins not in NAVIGATION_INSTRUCTIONS


@dataclass(frozen=True, slots=True)
class CounterReport:
    """The card's action counter before and after a script (claim 2)."""

    before: int
    after: int

    def __post_init__(self) -> None:
        for name in ("before", "after"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_ACTION_COUNTER:
                raise EncodeError(name, 0, f"action counter {value} does not fit 4 octets")

    @property
    def executed(self) -> int:
        """Actions that ran: the counter's variation (claim 3)."""
        return self.after - self.before

    def encode(self) -> bytes:
        return bytes((COUNTER_TAG, 8)) + self.before.to_bytes(4, "big") + self.after.to_bytes(4, "big")


def append_counter_report(standard_response: bytes, report: CounterReport) -> bytes:
    return standard_response + report.encode()


def split_counter_report(additional_data: bytes) -> tuple[bytes, CounterReport]:
    """(standard TS 102 226 response, counter report) of a PoR's additional data."""
    if len(additional_data) < COUNTER_BLOCK_LENGTH:
        raise DecodeError(
            "action_counter",
            0,
            f"{len(additional_data)} octets cannot end with the {COUNTER_BLOCK_LENGTH}-octet counter block",
        )
    start = len(additional_data) - COUNTER_BLOCK_LENGTH
    block = additional_data[start:]
    if block[0] != COUNTER_TAG or block[1] != 8:
        raise DecodeError("action_counter", start, f"expected AC 08, got {block[:2].hex()}")
    before = int.from_bytes(block[2:6], "big")
    after = int.from_bytes(block[6:10], "big")
    if after < before:
        raise DecodeError("action_counter", start + 6, f"counter went back from {before} to {after}")
    return additional_data[:start], CounterReport(before, after)


def missing_actions(stored: int, sent: int, reported: int) -> int:
    """Claim 1c: with ``stored`` the counter when the ``sent`` actions left, and ``reported``
    the card's counter now, the number x of *last* actions that did not run.

    Raises DecodeError when the report cannot belong to that script (ahead of
    stored + sent, or behind stored): the caller treats that as a mismatch.
    """
    if reported < stored or reported > stored + sent:
        raise DecodeError(
            "action_counter", 0, f"reported {reported} outside the script's range {stored}..{stored + sent}"
        )
    return stored + sent - reported
