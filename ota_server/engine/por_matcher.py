"""PURE: which deliver_sm is a PoR, reassembly of concatenated PoRs, and PoR -> job.

Clauses: smpp-and-peers.md §1.4-§1.6 (deliver_sm of a PoR: esm_class UDHI 0x40, PID
7F, DCS F6; a delivery receipt is ``(esm_class & 0x3C) == 0x04``), TS 31.115 §4.3 /
protocols.md §7.2 (a PoR too big for one SMS-SUBMIT: ``00 03 ref total seq`` in every
UDH, ``71 00`` in the first only), protocols.md §6.4 (match by subscriber + TAR +
CNTR; error PoRs may carry CNTR zero: fall back to the oldest outstanding command).

Glossary: PoR proof of receipt, UDH user data header, RPI response packet
identifier (IEI 71), TAR toolkit application reference, CNTR replay counter.

The CNTR of a ciphered PoR is only readable with the job's keys, so matching is in
two stages: :class:`OutstandingIndex` gives the candidate jobs of (MSISDN, TAR),
oldest first; the caller verifies the PoR with each candidate's keys, and
:func:`choose` picks the job whose outstanding CNTRs contain the PoR's CNTR, or,
for an error PoR with CNTR zero, the oldest candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from ota_protocols.errors import DecodeError
from ota_protocols.sms.concatenation import Reassembler, SegmentsExpired
from ota_protocols.sms.user_data_header import Iei, parse_concatenation, split_udh

ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04
RPI_UDH = b"\x02\x71\x00"
CPI_UDH = b"\x02\x70\x00"  # TS 31.115 §4.2: a command packet, here one sent BY a card (claims 7-9)

_K = TypeVar("_K")
_R = TypeVar("_R")


class DeliverKind(Enum):
    RECEIPT = "receipt"  # SMSC delivery receipt: recorded, never a PoR
    POR = "por"  # a whole PoR TP-UD (02 71 00 ...)
    POR_SEGMENT = "por_segment"  # one part of a concatenated PoR or card-message SMS-SUBMIT
    CARD_MESSAGE = "card_message"  # a whole card-originated command packet (02 70 00 ...)
    OTHER = "other"


def classify_deliver(esm_class: int, user_data: bytes) -> DeliverKind:
    """What a deliver_sm carries (test bits with ``&``, never ``==``: Kannel sends 0x43)."""
    if esm_class & ESM_TYPE_MASK == ESM_DELIVERY_RECEIPT:
        return DeliverKind.RECEIPT
    if esm_class & ESM_TYPE_MASK:
        return DeliverKind.OTHER  # SME ack, intermediate notification, ...
    if not esm_class & ESM_UDHI:
        return DeliverKind.OTHER
    if user_data.startswith(RPI_UDH):
        return DeliverKind.POR
    if user_data.startswith(CPI_UDH):
        return DeliverKind.CARD_MESSAGE
    try:
        header, _ = split_udh(user_data)
        info = parse_concatenation(header)
    except DecodeError:
        return DeliverKind.OTHER
    if info is None:
        if header.has(Iei.RESPONSE_PACKET):
            return DeliverKind.POR
        return DeliverKind.CARD_MESSAGE if header.has(Iei.COMMAND_PACKET) else DeliverKind.OTHER
    return DeliverKind.POR_SEGMENT


class PorAssembler:
    """Concatenated parts per subscriber -> the whole TP-UD: ``02 71 00`` + a PoR, or ``02 70 00`` +
    a card-originated command packet (IEI 70 in the first UDH, the same §14.1 layout)."""

    __slots__ = ("_held", "_reassembler")

    def __init__(self, *, timeout_s: float = 60.0, max_pending: int = 4096) -> None:
        self._reassembler = Reassembler(timeout_s=timeout_s, max_pending=max_pending)
        # False: no part was added since the reassembler was last seen empty (nothing pending, nothing
        # evicted): next_deadline and expire have nothing to ask it (the engine asks them per event).
        self._held = False

    def add(self, msisdn: str, user_data: bytes, now: float) -> bytes | None:
        """The whole message once every part is in, else None. Raises DecodeError on a bad UDH."""
        self._held = True
        whole = self._reassembler.add(msisdn, user_data, now)
        if whole is None:
            return None
        header, rest = split_udh(whole)
        # TS 31.115 §4.2 / §4.3: read as one SMS would carry it, RPI (or CPI) alone in the UDH.
        if header.has(Iei.RESPONSE_PACKET):
            return RPI_UDH + rest
        if header.has(Iei.COMMAND_PACKET):
            return CPI_UDH + rest
        raise DecodeError("udh", 0, "reassembled message carries no RPI (71) nor CPI (70)")

    def next_deadline(self) -> float | None:
        if not self._held:
            return None
        at = self._reassembler.next_deadline()
        if at is None:
            self._held = False  # nothing pending, nothing evicted
        return at

    def expire(self, now: float) -> list[SegmentsExpired]:
        if not self._held:
            return []
        expired = self._reassembler.expire(now)  # reports (and forgets) every evicted set too
        self._held = self._reassembler.pending_count > 0
        return expired


class OutstandingIndex(Generic[_K]):
    """(MSISDN, TAR) -> the jobs with an unresolved message, in the order they were registered."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, bytes], list[_K]] = {}

    def register(self, msisdn: str, tar: bytes, job: _K) -> None:
        jobs = self._by_key.setdefault((msisdn, tar), [])
        if job not in jobs:
            jobs.append(job)

    def unregister(self, msisdn: str, tar: bytes, job: _K) -> None:
        jobs = self._by_key.get((msisdn, tar))
        if jobs and job in jobs:
            jobs.remove(job)
            if not jobs:
                del self._by_key[(msisdn, tar)]

    def candidates(self, msisdn: str, tar: bytes) -> tuple[_K, ...]:
        return tuple(self._by_key.get((msisdn, tar), ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())


@dataclass(frozen=True, slots=True)
class Candidate(Generic[_K, _R]):
    """One job that may own the PoR: its outstanding CNTRs and the PoR as read with its keys."""

    job: _K
    cntrs: frozenset[int]
    cntr: int | None  # the PoR's CNTR as read with this job's keys; None: unreadable
    status: int | None
    report: _R


def choose(candidates: Sequence[Candidate[_K, _R]]) -> Candidate[_K, _R] | None:
    """Exact (MSISDN, TAR, CNTR) first; an error PoR with CNTR zero goes to the oldest job."""
    for c in candidates:
        if c.cntr is not None and c.cntr in c.cntrs:
            return c
    for c in candidates:
        if c.status not in (None, 0) and c.cntr == 0:
            return c
    return None


def claims_alone(outstanding: tuple[int, ...], cntr: int, status: int) -> bool:
    """:func:`choose` for a lone candidate whose keys read the PoR (``cntr``, ``status``): the
    exact CNTR, or an error PoR with CNTR zero (the engine's path when one job is on the key)."""
    return cntr in outstanding or (status != 0 and cntr == 0)
