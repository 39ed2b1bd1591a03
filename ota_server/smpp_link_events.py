"""PURE: what the SMPP link is given (settings, submit requests) and what it reports (events).

Clauses: SMPP 3.4 §4.1.1 (bind fields), §4.4 (submit_sm and its _resp), §4.6 (deliver_sm and
its _resp), §5.1.3 (command_status), §7.1.1 (relative time). The link itself is
:mod:`ota_server.smpp_link`, which re-exports everything here.

Every token given to ``EsmeLink.submit_many`` is answered exactly once: by
:class:`SubmitAccepted`, :class:`SubmitRejected`, :class:`SubmitUnknown`, or as one of
:attr:`LinkDown.unsent`.

Glossary: ESME external short message entity (us); SMSC short message service centre; TON/NPI
type of number / numbering plan indicator; UDH user data header; seq sequence_number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import SubmitSm

__all__ = [
    "DeliverHandle",
    "DeliverReceived",
    "LinkDown",
    "LinkEvent",
    "LinkFailed",
    "LinkSettings",
    "LinkUp",
    "RoundTrips",
    "SubmitAccepted",
    "SubmitRejected",
    "SubmitRequest",
    "SubmitUnknown",
    "fits_cstring",
    "relative_validity",
    "status_text",
]


def fits_cstring(value: str, max_octets: int) -> bool:
    """SMPP 3.4 §3.1: a C-Octet String of ``max_octets`` counts its NUL; latin-1, no NUL inside."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return len(raw) < max_octets and b"\x00" not in raw


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    connect_timeout_s: float = 5.0  # TCP connect
    bind_timeout_s: float = 5.0  # no bind_resp in time: not an SMSC, or a dead one
    response_timeout_s: float = 10.0  # submit_sm without submit_sm_resp -> SubmitUnknown
    enquire_link_s: float = 30.0  # §4.11 enquire_link while idle; no answer in response_timeout_s: down
    reconnect_backoff_s: float = 0.5
    max_reconnect_backoff_s: float = 10.0
    reconnect_window_s: float = 30.0  # no bind for this long (from start, or the loss) -> LinkFailed

    def __post_init__(self) -> None:
        # SMPP 3.4 §4.1.1: C-strings of at most 16, 9 and 13 octets with their NUL; smpplib would
        # cut longer ones silently and the SMSC would refuse a password we never typed.
        for name, max_octets in (("system_id", 16), ("password", 9), ("system_type", 13)):
            if not fits_cstring(getattr(self, name), max_octets):
                shown = "" if name == "password" else f" {getattr(self, name)!r}"
                raise ValueError(
                    f"LinkSettings.{name}{shown}: at most {max_octets - 1} latin-1 characters, "
                    "no NUL (SMPP 3.4 §4.1.1)"
                )
        if not 0 < self.port <= 0xFFFF:
            raise ValueError(f"LinkSettings.port {self.port} outside 1..65535")
        for name in ("connect_timeout_s", "bind_timeout_s", "response_timeout_s", "enquire_link_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LinkSettings.{name} must be above 0, got {getattr(self, name)}")
        if not 0 < self.reconnect_backoff_s <= self.max_reconnect_backoff_s:
            raise ValueError(
                f"LinkSettings: need 0 < reconnect_backoff_s ({self.reconnect_backoff_s}) "
                f"<= max_reconnect_backoff_s ({self.max_reconnect_backoff_s})"
            )
        if not self.reconnect_window_s >= 0:
            raise ValueError(f"LinkSettings.reconnect_window_s {self.reconnect_window_s} is negative")


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    token: object  # the caller's, given back in the one event that answers this submit_sm
    pdu: SubmitSm  # every field is sent; sequence_number is ignored (smpplib numbers what it sends)


@dataclass(frozen=True, slots=True)
class DeliverHandle:
    """Names one deliver_sm for ``EsmeLink.acknowledge``: the connection it came on and its seq."""

    connection: int
    sequence_number: int


@dataclass(frozen=True, slots=True)
class LinkUp:
    their_system_id: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The bind is gone (lost, unbound by the SMSC, or closed). ``unsent``: tokens never written.

    Also handed out, with the reason, for tokens still queued when the link fails or closes
    while not bound, and for tokens given to ``submit_many`` after the link has stopped.
    """

    reason: str
    unsent: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """No bind for ``reconnect_window_s``: the link has stopped for good."""

    reason: str


@dataclass(frozen=True, slots=True)
class SubmitAccepted:
    token: object
    message_id: str


@dataclass(frozen=True, slots=True)
class SubmitRejected:
    """Any non-zero command_status, throttling (0x58, 0x14) included: the caller decides."""

    token: object
    command_status: int


@dataclass(frozen=True, slots=True)
class SubmitUnknown:
    """Written, but no submit_sm_resp (timeout, or link lost): the SMSC may have taken it."""

    token: object
    reason: str


@dataclass(frozen=True, slots=True)
class DeliverReceived:
    handle: object  # a DeliverHandle: acknowledge it once what it carries is durable (§4.6.2)
    source_addr: str
    destination_addr: str
    esm_class: int
    protocol_id: int
    data_coding: int
    user_data: bytes  # short_message (UDH included), else message_payload (§5.3.2.32)
    receipted_message_id: str | None = None
    message_state: int | None = None


LinkEvent = LinkUp | LinkDown | LinkFailed | SubmitAccepted | SubmitRejected | SubmitUnknown | DeliverReceived


class RoundTrips:
    """submit_sm -> submit_sm_resp times of a link, in buckets 5 % wide from 10 µs (bounded memory).

    Written by the link thread only; read (:meth:`percentile`, :meth:`merge`) once it has stopped,
    or as a snapshot that may miss the last few answers.
    """

    _FIRST_S = 1e-5
    _STEP = math.log(1.05)
    _BUCKETS = 400  # 10 µs .. about 3 days

    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = [0] * self._BUCKETS
        self.count = 0

    def add(self, seconds: float) -> None:
        index = int(math.log(seconds / self._FIRST_S) / self._STEP) + 1 if seconds > self._FIRST_S else 0
        self.counts[min(index, self._BUCKETS - 1)] += 1
        self.count += 1

    def merge(self, other: RoundTrips) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.count += other.count

    def percentile(self, fraction: float) -> float | None:
        """The upper edge of the bucket holding that fraction of the samples (seconds); None if empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return self._FIRST_S * math.exp(i * self._STEP)
        return None  # pragma: no cover - rank <= count


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 §7.1.1 relative time ``YYMMDDhhmmss000R`` (a year 365 days, a month 30; whole s)."""
    total = int(seconds)
    if not 0 <= total < 100 * 365 * 86400:
        raise ValueError(f"relative validity {seconds} s outside 0 s .. 99 years (SMPP 3.4 §7.1.1)")
    years, rest = divmod(total, 365 * 86400)
    days, rest = divmod(rest, 86400)
    months, days = divmod(days, 30)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def status_text(status: int) -> str:
    """``ESME_RINVPASWD (0x0000000e)``: the SMPP 3.4 §5.1.3 name and the hex of a command_status."""
    try:
        name = CommandStatus(status).name
    except ValueError:
        name = "unknown status"
    return f"{name} ({status:#010x})"
