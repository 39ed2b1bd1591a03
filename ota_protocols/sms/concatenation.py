"""Concatenated short messages (3GPP TS 23.040 §9.2.3.24.1 / §9.2.3.24.8) in the
03.48 layout of TS 31.115 §4.2 / TS 102 225 (protocols.md §14.1).

Glossary: UD user data, UDH user data header, IE information element, CPI / RPI
command / response packet identifier (IEI 70 / 71), ref the concatenation reference,
seq the 1-based segment number.

Splitting (:func:`split_user_data`): a payload that fits one UD together with the
header IEs goes out as one segment. Otherwise every segment starts with a UDH whose
first IE is the concatenation IE; the first segment's UDH also carries the caller's
IEs (the CPI for a command packet), later segments carry only the concatenation IE:

    first:  UDHL | 00 03 ref total 01 | 70 00 | part 1
    later:  UDHL | 00 03 ref total seq | part seq

Reassembly (:class:`Reassembler`) is a pure state machine. Theory of operation:

* State: partial sets keyed by (originator, reference, 8/16-bit), each remembering
  its total, the parts received so far and a deadline.
* ``add`` stores a part and returns the full UD once every part is there. Parts may
  arrive in any order; a repeated seq is ignored (the first copy wins). A part for a
  set that already completed starts a new set: the caller's replay protection (the
  OTA counter) decides what a repeated message means, not this layer.
* The deadline is ``timeout_s`` after the last new part of the set. The caller asks
  :meth:`Reassembler.next_deadline` and calls :meth:`Reassembler.expire` once it has
  passed; that drops the stale sets and reports each as :class:`SegmentsExpired`.
* At most ``max_pending`` sets are kept; opening one more evicts the oldest, which is
  reported by the next ``expire`` call (its deadline becomes the eviction time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ota_protocols.errors import DecodeError, EncodeError, LocalProtocolViolation
from ota_protocols.sms.user_data_header import (
    ConcatenationInfo,
    Iei,
    InformationElement,
    UserDataHeader,
    concat_8bit,
    concat_16bit,
    parse_concatenation,
    split_udh,
)

__all__ = ["MAX_SEGMENTS", "Reassembler", "SegmentsExpired", "split_user_data"]

# TS 23.040 §9.2.3.24.1: the total is one octet.
MAX_SEGMENTS = 255

_CONCAT_IEIS = (int(Iei.CONCAT_8BIT), int(Iei.CONCAT_16BIT))


def split_user_data(
    payload: bytes,
    *,
    first_ies: tuple[InformationElement, ...],
    reference: int,
    max_ud: int = 140,
    ref16: bool = False,
) -> list[bytes]:
    """Cut ``payload`` into TP-UD segments, UDH included.

    One segment when ``UDH(first_ies) + payload`` fits ``max_ud``; with ``first_ies``
    empty that segment has no UDH at all, so its TP-UDHI is 0. Every other segment
    has a UDH and needs TP-UDHI = 1. ``reference`` is 0..255 (0..65535 with
    ``ref16``); callers draw it from their seeded ``random.Random``.
    """
    for ie in first_ies:
        if ie.iei in _CONCAT_IEIS:
            raise EncodeError(
                "first_ies",
                0,
                f"IEI {ie.iei:#04x} is the concatenation IE, which split_user_data adds itself",
            )
    max_reference = 0xFFFF if ref16 else 0xFF
    if not 0 <= reference <= max_reference:
        raise EncodeError("concat.reference", 0, f"reference {reference} outside 0..{max_reference}")

    first_header = UserDataHeader(first_ies)
    single_header = first_header.encode() if first_ies else b""
    if len(single_header) + len(payload) <= max_ud:
        return [single_header + payload]

    concat_ie_length = 6 if ref16 else 5
    # UDHL + concatenation IE (+ the caller's IEs in the first segment).
    first_capacity = max_ud - (1 + concat_ie_length + first_header.encoded_length - 1)
    later_capacity = max_ud - (1 + concat_ie_length)
    if first_capacity < 1 or later_capacity < 1:
        raise EncodeError("max_ud", 0, f"max_ud {max_ud} leaves no room for payload after the UDH")
    rest = max(0, len(payload) - first_capacity)
    total = 1 + -(-rest // later_capacity)
    if total > MAX_SEGMENTS:
        raise EncodeError(
            "payload",
            0,
            f"{len(payload)} octets need {total} segments, at most {MAX_SEGMENTS} (TS 23.040 §9.2.3.24.1)",
        )
    first_body = single_header[1:]
    if len(first_body) + concat_ie_length + 2 > 0xFF:
        return _segments(payload, first_ies, reference, total, first_capacity, later_capacity, ref16)
    # The octets _segments writes, without header and IE objects per segment:
    # UDHL | 00 03 ref total seq (08 04 refH refL total seq) | the caller's IEs (first only).
    # reference and total are checked above; seq runs 1..total.
    concat = b"\x08\x04" + reference.to_bytes(2, "big") if ref16 else bytes((0x00, 0x03, reference))
    head = bytes((concat_ie_length + len(first_body),)) + concat
    segments = [head + bytes((total, 1)) + first_body + payload[:first_capacity]]
    later_head = bytes((concat_ie_length,)) + concat
    for seq in range(2, total + 1):
        start = first_capacity + (seq - 2) * later_capacity
        segments.append(later_head + bytes((total, seq)) + payload[start : start + later_capacity])
    return segments


def _segments(
    payload: bytes,
    first_ies: tuple[InformationElement, ...],
    reference: int,
    total: int,
    first_capacity: int,
    later_capacity: int,
    ref16: bool,
) -> list[bytes]:
    """The segments of :func:`split_user_data` built from header objects (every UDH size)."""
    make_ie = concat_16bit if ref16 else concat_8bit
    segments = [
        UserDataHeader((make_ie(reference, total, 1), *first_ies)).encode() + payload[:first_capacity]
    ]
    for seq in range(2, total + 1):
        start = first_capacity + (seq - 2) * later_capacity
        part = payload[start : start + later_capacity]
        segments.append(UserDataHeader((make_ie(reference, total, seq),)).encode() + part)
    return segments


@dataclass(frozen=True, slots=True)
class SegmentsExpired:
    """A partial set dropped before completion: timed out, or evicted to bound memory."""

    originator: str
    reference: int
    total: int
    received_seqs: tuple[int, ...]
    evicted: bool = False


@dataclass(slots=True)
class _PartialSet:
    originator: str
    info: ConcatenationInfo
    deadline: float
    # seq -> (UDH of that segment, octets after the UDH)
    parts: dict[int, tuple[UserDataHeader, bytes]] = field(default_factory=dict)

    def expired_event(self, *, evicted: bool) -> SegmentsExpired:
        return SegmentsExpired(
            self.originator, self.info.reference, self.info.total, tuple(sorted(self.parts)), evicted
        )


_Key = tuple[str, int, bool]


class Reassembler:
    """Collects concatenated segments per originator and hands back whole user data.

    What :meth:`add` returns, for a concatenated message, is the UD as one SMS would
    carry it: the first segment's UDH without the concatenation IE (re-encoded; a bare
    ``00`` UDHL if nothing else was in it) followed by the payloads of all parts in seq
    order. The result therefore always has TP-UDHI = 1. A UD without concatenation IE,
    or with TP-UDHI = 0, is returned unchanged at once.
    """

    __slots__ = ("_evicted", "_max_pending", "_pending", "_timeout_s")

    def __init__(self, *, timeout_s: float, max_pending: int = 64) -> None:
        if timeout_s <= 0:
            raise LocalProtocolViolation(f"reassembly timeout_s must be positive, got {timeout_s}")
        if max_pending < 1:
            raise LocalProtocolViolation(f"reassembly max_pending must be at least 1, got {max_pending}")
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        # Insertion order is creation order, so the first entry is the oldest set.
        self._pending: dict[_Key, _PartialSet] = {}
        self._evicted: list[tuple[float, SegmentsExpired]] = []

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def add(self, originator: str, segment_ud: bytes, now: float, *, udhi: bool = True) -> bytes | None:
        """Feed one TP-UD (UDH included). Returns the whole UD when complete, else None.

        Raises DecodeError for a malformed UDH, a seq outside ``1..total``, or a total
        that differs from the one already recorded for this originator and reference
        (the recorded set is kept).
        """
        if not udhi:
            return segment_ud
        header, payload = split_udh(segment_ud)
        info = parse_concatenation(header)
        if info is None:
            return segment_ud
        whole = self.add_parsed(originator, header, payload, info, now)
        if whole is None:
            return None
        return whole[0].encode() + whole[1]

    def add_parsed(
        self,
        originator: str,
        header: UserDataHeader,
        payload: bytes,
        info: ConcatenationInfo,
        now: float,
    ) -> tuple[UserDataHeader, bytes] | None:
        """:meth:`add` for a segment its caller has already split and read: ``header, payload``
        as :func:`split_udh` returns them and ``info`` as :func:`parse_concatenation` reads
        ``header`` (never None). Same rules and errors as :meth:`add`; when complete it returns
        what :meth:`add` would encode, still apart: the first segment's UDH without the
        concatenation IE, and the payloads of all parts in seq order (no header encoded here
        for the caller to split again)."""
        if info.total == 1:
            return self._rebuild({1: (header, payload)})

        key: _Key = (originator, info.reference, info.ref16)
        partial = self._pending.get(key)
        if partial is None:
            partial = _PartialSet(originator, info, now + self._timeout_s)
            self._pending[key] = partial
            self._evict_over_limit(now)
        elif partial.info.total != info.total:
            raise DecodeError(
                "udh.concat.total",
                0,
                f"originator {originator} reference {info.reference}: total {info.total}, expected "
                f"{partial.info.total} as in the parts already received (TS 23.040 §9.2.3.24.1)",
            )
        if info.seq in partial.parts:
            return None  # duplicate: the first copy is kept
        partial.parts[info.seq] = (header, payload)
        partial.deadline = now + self._timeout_s
        if len(partial.parts) < info.total:
            return None
        del self._pending[key]
        return self._rebuild(partial.parts)

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`expire` has something to report, or None."""
        if not self._pending and not self._evicted:
            return None  # the usual answer, asked at every turn of the server's engine
        deadlines = [partial.deadline for partial in self._pending.values()]
        deadlines.extend(at for at, _ in self._evicted)
        return min(deadlines)

    def expire(self, now: float) -> list[SegmentsExpired]:
        """Drop the sets whose deadline is at or before ``now``, and report them and evicted sets."""
        if not self._pending and not self._evicted:
            return []  # the usual answer, asked whenever the server's engine looks for timeouts
        events = [event for _, event in self._evicted]
        self._evicted.clear()
        for key in [k for k, partial in self._pending.items() if partial.deadline <= now]:
            events.append(self._pending.pop(key).expired_event(evicted=False))
        return events

    def _evict_over_limit(self, now: float) -> None:
        while len(self._pending) > self._max_pending:
            oldest_key = next(iter(self._pending))
            self._evicted.append((now, self._pending.pop(oldest_key).expired_event(evicted=True)))

    @staticmethod
    def _rebuild(parts: dict[int, tuple[UserDataHeader, bytes]]) -> tuple[UserDataHeader, bytes]:
        # Only the first segment's other IEs count: in the 03.48 layout that is where
        # the CPI / RPI travels (protocols.md §14.1), later UDHs carry only the concat IE.
        first_header = parts[1][0].without(*_CONCAT_IEIS)
        return first_header, b"".join([parts[seq][1] for seq in sorted(parts)])
