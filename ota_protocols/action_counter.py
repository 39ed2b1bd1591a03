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

**Deferred reports (claims 7, 8 and 9).** A card application also reports its
counter in messages it originates: a *transaction request* (e.g. an e-purse
payment; the patent's message 1, secured by MAC1) or an *information message*
(e.g. on power-up). Such a message is a secured packet in the MO direction:
an SMS-SUBMIT to the platform's address whose TP-UD is ``02 70 00`` + a command
packet (TS 102 225 §5.1) from the card, with the application's TAR, the card's
own MO counter as CNTR (mode "higher": the server refuses replays), KIc/KID of
the card's key set, and as secured data a :class:`CardMessage`::

    E1 L | 80 01 kind | 81 04 sequence | 82 04 action counter | [83 L payload]

The server answers a transaction request (message 2) with a secured command
to the same TAR whose script starts with the TRANSACTION REPLY command (see
card_commands.transaction_reply; not counted) followed by exactly the missing
actions, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import DecodeError, EncodeError

COUNTER_TAG = 0xAC
COUNTER_BLOCK_LENGTH = 10
MAX_ACTION_COUNTER = 0xFFFFFFFF

# Instructions that are never an action's counted command: navigation (ISO 7816-4 / TS 102 221 /
# GlobalPlatform GET STATUS) and the e-purse TRANSACTION REPLY (36), which answers a card's request.
NAVIGATION_INSTRUCTIONS = frozenset({0xA4, 0xB0, 0xB2, 0xF2, 0xC0, 0xCA, 0xCB, 0x12, 0x36})
CARD_MESSAGE_TAG = 0xE1


def is_counted(ins: int) -> bool:
    """Whether a command with instruction ``ins`` is an action's counted command."""
    return ins not in NAVIGATION_INSTRUCTIONS


@dataclass(frozen=True, slots=True)
class CounterReport:
    """The card's action counter before and after a script (claim 2)."""

    before: int
    after: int

    def __post_init__(self) -> None:
        if 0 <= self.before <= MAX_ACTION_COUNTER and 0 <= self.after <= MAX_ACTION_COUNTER:
            return
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


class CardMessageKind(IntEnum):
    TRANSACTION_REQUEST = 0x01  # claim 8: the counter travels in a new transaction request
    INFORMATION = 0x02  # claim 9: an information message sent by the card


@dataclass(frozen=True, slots=True)
class CardMessage:
    """A card-originated message carrying the action counter (claims 7-9); secured data of an MO packet."""

    kind: CardMessageKind
    sequence: int  # the application's own message number, echoed by the server's reply
    counter: int  # the action counter now
    payload: bytes = b""  # application data, e.g. the payment amount

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= 0xFFFFFFFF or not 0 <= self.counter <= MAX_ACTION_COUNTER:
            raise EncodeError("card_message", 0, "sequence and counter are 4 octets each")
        if len(self.payload) > 100:
            raise EncodeError("card_message.payload", 0, f"{len(self.payload)} octets exceed 100")

    def encode(self) -> bytes:
        body = (
            bytes((0x80, 1, int(self.kind)))
            + b"\x81\x04"
            + self.sequence.to_bytes(4, "big")
            + b"\x82\x04"
            + self.counter.to_bytes(4, "big")
        )
        if self.payload:
            body += bytes((0x83, len(self.payload))) + self.payload
        return bytes((CARD_MESSAGE_TAG, len(body))) + body

    @classmethod
    def decode(cls, data: bytes) -> CardMessage:
        reader = ByteReader(data)
        if reader.u8("card_message.tag") != CARD_MESSAGE_TAG:
            raise DecodeError("card_message.tag", 0, f"expected E1, got {data[:1].hex()}")
        length = reader.u8("card_message.length")
        body = ByteReader(reader.take(length, "card_message.body"), base_offset=2)
        reader.expect_end("card_message")
        fields: dict[int, bytes] = {}
        while not body.at_end():
            offset = body.offset
            tag = body.u8("card_message.field_tag")
            value = body.take(body.u8("card_message.field_length"), "card_message.field")
            if tag in fields:
                raise DecodeError("card_message.field_tag", offset, f"tag {tag:02x} repeated")
            fields[tag] = value
        try:
            kind = CardMessageKind(int.from_bytes(fields[0x80], "big"))
            sequence, counter = fields[0x81], fields[0x82]
        except (KeyError, ValueError):
            raise DecodeError("card_message", 2, "needs 80 (known kind), 81 and 82 fields") from None
        if len(fields[0x80]) != 1 or len(sequence) != 4 or len(counter) != 4:
            raise DecodeError("card_message", 2, "80 takes 1 octet, 81 and 82 take 4")
        return cls(
            kind, int.from_bytes(sequence, "big"), int.from_bytes(counter, "big"), fields.get(0x83, b"")
        )
