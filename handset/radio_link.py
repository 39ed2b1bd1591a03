"""The radio link between the SMSC and the phones: a seeded fault model (PURE).

Concept: every TPDU crossing the air interface, MT (SMSC -> phone) or MO
(phone -> SMSC), goes through :meth:`RadioLink.transmit`, which decides from
one ``random.Random`` passed in whether it is lost, when it arrives, whether it
arrives twice and whether a bit of it is flipped.  The same seed and the same
sequence of calls give the same decisions, so a faulty run replays exactly.

Faults per direction (:class:`DirectionFaults`), drawn in this fixed order:

1. loss: independent with ``loss_probability``, or-ed with a two-state
   Gilbert-Elliott chain (per phone and direction) that moves GOOD->BAD with
   ``p_good_to_bad`` and BAD->GOOD with ``p_bad_to_good`` once per message
   and loses with ``loss_in_good`` / ``loss_in_bad`` in the state reached;
2. delay: ``delay_s`` + jitter (``jitter = "exponential"`` with mean
   ``jitter_s``, or ``"uniform"`` in [0, ``jitter_s``]), plus with
   ``late_probability`` a uniform extra in [``late_min_s``, ``late_max_s``]
   (the "hours late" SMS);
3. reordering: with ``reorder_probability`` an extra uniform delay in
   [0, ``reorder_extra_s``], so later messages overtake this one;
4. corruption: with ``corrupt_probability`` one random bit of the TP-UD *after
   the UDH* is flipped (TS 23.040 §9.2.3.24), so the TPDU still decodes and the
   card sees a bad RC/CC/DS (TS 102 225 §5.1: status 01);
5. duplication: with ``duplicate_probability`` a second copy arrives after its
   own delay draw (steps 2-3).

Besides: phone offline periods (:class:`OfflineModel`, an alternating renewal
process per phone: offline a fraction ``offline_probability`` of the time, in
periods of mean ``mean_offline_s``, both exponential), and SIM busy injection
(``sim_busy_probability``: the card answers ``93 00`` to an SMS-PP download
ENVELOPE, TS 102 221 §10.2.1.1), and card tearing (``tear_probability``: before an
SMS-PP download the ME arms ``stop_after_actions(k)``, k uniform in 0..3; the card
loses power after its CNTR and k actions, house-style §2).  The default
configuration has no faults and draws no numbers.

Scripted faults (:class:`ScriptedFault`, ``[[radio.script]]``) make a named
scenario deterministic: "drop the 1st MT to 491700000001", "duplicate the 2nd
MO SMS-SUBMIT whose TP-UD starts 02 71 00".  Each entry counts the
transmissions it matches (direction, phone, TPDU type, TP-UD prefix) per phone;
the ``nth`` .. ``nth + count - 1`` matches get its action.  A scripted hit
replaces the random model for that transmission (the random draws are skipped);
the first matching entry with a hit wins, every matching entry counts.  No
script: nothing changes, no extra work.

Glossary: MT/MO mobile terminated/originated; TPDU transfer protocol data
unit; TP-UD user data; UDH user data header; RC/CC/DS redundancy check,
cryptographic checksum, digital signature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from ota_protocols.errors import ConfigError, DecodeError
from ota_protocols.sms.tpdu import SmsDeliver, SmsDeliverReport, SmsSubmit

if TYPE_CHECKING:
    import random

__all__ = [
    "Delivery",
    "Direction",
    "DirectionFaults",
    "OfflineModel",
    "RadioConfig",
    "RadioLink",
    "ScriptedFault",
    "corrupt_user_data",
]


MAX_TEAR_ACTIONS = 3  # k of stop_after_actions(k) is drawn uniformly in 0..3


class Direction(Enum):
    MT = "mt"  # SMSC -> phone
    MO = "mo"  # phone -> SMSC

    __hash__ = object.__hash__  # members are singletons: identity hash in C (Enum hashes its name in Python)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy of a transmitted payload arriving at loop time ``at``."""

    at: float
    payload: bytes


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(name, f"probability {value} outside 0..1")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0.0 or math.isinf(value):
        raise ConfigError(name, f"{value} must be a finite number >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectionFaults:
    """Faults of one direction; every default means "no fault"."""

    loss_probability: float = 0.0
    # Gilbert-Elliott burst loss; p_good_to_bad = 0 disables it.
    p_good_to_bad: float = 0.0
    p_bad_to_good: float = 1.0
    loss_in_good: float = 0.0
    loss_in_bad: float = 1.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    reorder_extra_s: float = 5.0
    delay_s: float = 0.0
    jitter: str = "none"  # "none" | "exponential" | "uniform"
    jitter_s: float = 0.0
    late_probability: float = 0.0
    late_min_s: float = 3600.0
    late_max_s: float = 4 * 3600.0
    corrupt_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "loss_probability",
            "p_good_to_bad",
            "p_bad_to_good",
            "loss_in_good",
            "loss_in_bad",
            "duplicate_probability",
            "reorder_probability",
            "late_probability",
            "corrupt_probability",
        ):
            _check_probability(name, getattr(self, name))
        for name in ("reorder_extra_s", "delay_s", "jitter_s", "late_min_s", "late_max_s"):
            _check_non_negative(name, getattr(self, name))
        if self.jitter not in ("none", "exponential", "uniform"):
            raise ConfigError("jitter", f"{self.jitter!r}, expected 'none', 'exponential' or 'uniform'")
        if self.late_max_s < self.late_min_s:
            raise ConfigError("late_max_s", f"{self.late_max_s} below late_min_s {self.late_min_s}")

    @property
    def is_perfect(self) -> bool:
        return self == _PERFECT


_PERFECT = DirectionFaults()


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineModel:
    """Phone offline periods; ``offline_probability`` 0 keeps every phone online."""

    offline_probability: float = 0.0
    mean_offline_s: float = 60.0

    def __post_init__(self) -> None:
        _check_probability("offline_probability", self.offline_probability)
        if self.offline_probability == 1.0:
            raise ConfigError("offline_probability", "1.0 would keep every phone offline forever")
        if not self.mean_offline_s > 0:
            raise ConfigError("mean_offline_s", f"{self.mean_offline_s} must be > 0")


SCRIPT_ACTIONS = ("drop", "duplicate", "corrupt", "delay")
SCRIPT_TPDUS = ("any", "sms-deliver", "sms-submit", "deliver-report")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedFault:
    """``[[radio.script]]``: one deterministic fault, applied before the random model.

    ``action``: ``drop`` (lost), ``duplicate`` (a second copy ``delay_s`` after the first),
    ``corrupt`` (one bit of the TP-UD after the UDH, as the random model's corruption),
    ``delay`` (arrives ``delay_s`` late).  ``msisdn`` "" = every phone (counted per phone).
    ``tpdu``: MT is always an SMS-DELIVER; MO is a DELIVER-REPORT (the RP answer to an MT) or an
    SMS-SUBMIT (TS 23.040 §9.2.3.1 TP-MTI).  ``ud_prefix``: hex the TP-UD must start with
    (``027100``: a PoR, ``027000``: a command or a card's own message, TS 31.115 §4).
    ``count`` 0 = every match from ``nth`` on.
    """

    direction: str  # "mt" | "mo"
    action: str  # "drop" | "duplicate" | "corrupt" | "delay"
    msisdn: str = ""
    nth: int = 1
    count: int = 1
    delay_s: float = 0.0
    tpdu: str = "any"
    ud_prefix: bytes = b""

    def __post_init__(self) -> None:
        if self.direction not in ("mt", "mo"):
            raise ConfigError("direction", f"{self.direction!r}, expected 'mt' or 'mo'")
        if self.action not in SCRIPT_ACTIONS:
            raise ConfigError("action", f"{self.action!r}, expected one of {', '.join(SCRIPT_ACTIONS)}")
        if self.tpdu not in SCRIPT_TPDUS:
            raise ConfigError("tpdu", f"{self.tpdu!r}, expected one of {', '.join(SCRIPT_TPDUS)}")
        if self.nth < 1:
            raise ConfigError("nth", f"{self.nth} must be at least 1 (the first match is 1)")
        if self.count < 0:
            raise ConfigError("count", f"{self.count} must be >= 0 (0 = every match from nth on)")
        _check_non_negative("delay_s", self.delay_s)

    def hits(self, match_number: int) -> bool:
        """Whether the ``match_number``-th (1-based) matching transmission gets the action."""
        return match_number >= self.nth and (self.count == 0 or match_number < self.nth + self.count)


@dataclass(frozen=True, slots=True, kw_only=True)
class RadioConfig:
    """``[radio]``: seed, ``[radio.mt]``, ``[radio.mo]``, ``[radio.offline]``, busy injection."""

    seed: int = 0
    mt: DirectionFaults = field(default_factory=DirectionFaults)
    mo: DirectionFaults = field(default_factory=DirectionFaults)
    offline: OfflineModel = field(default_factory=OfflineModel)
    sim_busy_probability: float = 0.0
    # Card tearing: per MT SMS-PP download, the card loses power after k in 0..3 actions.
    tear_probability: float = 0.0
    # Deterministic faults for named scenarios, applied before the random model.
    script: tuple[ScriptedFault, ...] = ()

    def __post_init__(self) -> None:
        _check_probability("sim_busy_probability", self.sim_busy_probability)
        _check_probability("tear_probability", self.tear_probability)


def _tp_mti_name(direction: Direction, tpdu: bytes) -> str:
    """TS 23.040 §9.2.3.1: TP-MTI (b1b0 of the first octet) 00 = SMS-DELIVER (MT) or
    SMS-DELIVER-REPORT (MO), 01 = SMS-SUBMIT (MO)."""
    if direction is Direction.MT:
        return "sms-deliver"
    mti = tpdu[0] & 0x03 if tpdu else 0
    return "sms-submit" if mti == 0x01 else "deliver-report"


def _user_data(tpdu: bytes) -> bytes | None:
    """The TP-UD of a TPDU we carry (UDH included), or None when it does not decode."""
    for decode in (SmsDeliver.decode, SmsSubmit.decode, SmsDeliverReport.decode):
        try:
            return decode(tpdu).tp_ud
        except (DecodeError, ValueError):
            continue
    return None


def corrupt_user_data(tpdu: bytes, rng: random.Random) -> bytes:
    """Flip one random bit of the TP-UD after the UDH (the whole TPDU when it does not decode).

    The TP-UD ends every TPDU we carry (TS 23.040 §9.2.2), so its offset is
    ``len(tpdu) - len(tp_ud)`` whatever the TPDU type.
    """
    ud: bytes | None = None
    udhi = False
    for decode in (SmsDeliver.decode, SmsSubmit.decode, SmsDeliverReport.decode):
        try:
            decoded = decode(tpdu)
        except (DecodeError, ValueError):
            continue
        ud, udhi = decoded.tp_ud, decoded.tp_udhi
        break
    start = 0
    if ud:
        start = len(tpdu) - len(ud)
        if udhi:
            start += ud[0] + 1
    if start >= len(tpdu):
        start = 0  # nothing after the UDH: flip anywhere rather than not at all
    if not tpdu:
        return tpdu
    bit = rng.randrange((len(tpdu) - start) * 8)
    pos = start + bit // 8
    out = bytearray(tpdu)
    out[pos] ^= 1 << (bit % 8)
    return bytes(out)


class _Schedule:
    """One phone's alternating online/offline periods, extended lazily."""

    __slots__ = ("offline", "until")

    def __init__(self, offline: bool, until: float) -> None:
        self.offline = offline
        self.until = until


def _fixed_delay(faults: DirectionFaults) -> float | None:
    if faults.jitter_s or faults.late_probability or faults.reorder_probability:
        return None
    return faults.delay_s


class RadioLink:
    """Stateful only in the Gilbert-Elliott states and offline schedules; see the module docstring."""

    def __init__(self, config: RadioConfig) -> None:
        self.config = config
        self._bad: dict[tuple[Direction, str], bool] = {}
        self._schedules: dict[str, _Schedule] = {}
        self.lost = {Direction.MT: 0, Direction.MO: 0}
        self.duplicated = {Direction.MT: 0, Direction.MO: 0}
        self.corrupted = {Direction.MT: 0, Direction.MO: 0}
        self.tears_armed = 0
        self._faults = {Direction.MT: config.mt, Direction.MO: config.mo}
        self._perfect = {Direction.MT: config.mt.is_perfect, Direction.MO: config.mo.is_perfect}
        # The delay of a direction whose _delay draws nothing (no jitter, late or reorder), else None.
        self._fixed_delay = {d: _fixed_delay(f) for d, f in self._faults.items()}
        self._script = config.script
        self._script_matches: dict[tuple[int, str], int] = {}
        self.scripted_hits = 0

    # -------------------------------------------------------------- transmit

    def transmit(
        self, direction: Direction, phone_id: str, payload: bytes, now: float, rng: random.Random
    ) -> list[Delivery]:
        """The copies of ``payload`` that arrive, with their times; empty = lost."""
        if self._script:
            scripted = self._scripted(direction, phone_id, payload, now, rng)
            if scripted is not None:
                return scripted
        if self._perfect[direction]:
            return [Delivery(now, payload)]
        faults = self._faults[direction]
        if faults.p_good_to_bad:
            lost = self._lost(faults, direction, phone_id, rng)
        else:  # no burst model: _lost's first draw only
            lost = bool(faults.loss_probability) and rng.random() < faults.loss_probability
        if lost:
            self.lost[direction] += 1
            return []
        if faults.corrupt_probability and rng.random() < faults.corrupt_probability:
            payload = corrupt_user_data(payload, rng)
            self.corrupted[direction] += 1
        fixed = self._fixed_delay[direction]  # None: _delay draws
        deliveries = [Delivery(now + (self._delay(faults, rng) if fixed is None else fixed), payload)]
        if faults.duplicate_probability and rng.random() < faults.duplicate_probability:
            self.duplicated[direction] += 1
            deliveries.append(Delivery(now + (self._delay(faults, rng) if fixed is None else fixed), payload))
        return deliveries

    def _scripted(
        self, direction: Direction, phone_id: str, payload: bytes, now: float, rng: random.Random
    ) -> list[Delivery] | None:
        """The deliveries of the first ``[[radio.script]]`` entry that hits, else None."""
        hit: ScriptedFault | None = None
        ud: bytes | None = None
        for i, entry in enumerate(self._script):
            if entry.direction != direction.value or (entry.msisdn and entry.msisdn != phone_id):
                continue
            if entry.tpdu != "any" and entry.tpdu != _tp_mti_name(direction, payload):
                continue
            if entry.ud_prefix:
                if ud is None:
                    ud = _user_data(payload) or b""
                if not ud.startswith(entry.ud_prefix):
                    continue
            key = (i, phone_id)
            number = self._script_matches.get(key, 0) + 1
            self._script_matches[key] = number
            if hit is None and entry.hits(number):
                hit = entry
        if hit is None:
            return None
        self.scripted_hits += 1
        if hit.action == "drop":
            self.lost[direction] += 1
            return []
        if hit.action == "corrupt":
            self.corrupted[direction] += 1
            return [Delivery(now, corrupt_user_data(payload, rng))]
        if hit.action == "duplicate":
            self.duplicated[direction] += 1
            return [Delivery(now, payload), Delivery(now + hit.delay_s, payload)]
        return [Delivery(now + hit.delay_s, payload)]  # "delay"

    def _lost(self, faults: DirectionFaults, direction: Direction, phone_id: str, rng: random.Random) -> bool:
        lost = bool(faults.loss_probability) and rng.random() < faults.loss_probability
        if faults.p_good_to_bad:
            key = (direction, phone_id)
            bad = self._bad.get(key, False)
            # Gilbert-Elliott: one state transition per message, then loss in the new state.
            bad = rng.random() >= faults.p_bad_to_good if bad else rng.random() < faults.p_good_to_bad
            self._bad[key] = bad
            p = faults.loss_in_bad if bad else faults.loss_in_good
            if p and rng.random() < p:
                lost = True
        return lost

    @staticmethod
    def _delay(faults: DirectionFaults, rng: random.Random) -> float:
        delay = faults.delay_s
        if faults.jitter_s:
            if faults.jitter == "exponential":
                delay += rng.expovariate(1.0 / faults.jitter_s)
            elif faults.jitter == "uniform":
                delay += rng.uniform(0.0, faults.jitter_s)
        if faults.late_probability and rng.random() < faults.late_probability:
            delay += rng.uniform(faults.late_min_s, faults.late_max_s)
        if faults.reorder_probability and rng.random() < faults.reorder_probability:
            delay += rng.uniform(0.0, faults.reorder_extra_s)
        return delay

    # -------------------------------------------------------------- offline, busy

    def is_offline(self, phone_id: str, now: float, rng: random.Random | None) -> bool:
        """Whether ``phone_id`` is out of coverage at ``now`` (non-decreasing per phone).

        ``rng`` should be the phone's own generator, so its schedule does not
        depend on other phones' traffic (None only where there is no offline model, which
        draws nothing).  The schedule starts at the first call.
        """
        model = self.config.offline
        p = model.offline_probability
        if not p:
            return False
        assert rng is not None, "an offline model needs the phone's generator"
        schedule = self._schedules.get(phone_id)
        mean_online = model.mean_offline_s * (1.0 - p) / p
        if schedule is None:
            # Start in the stationary distribution: offline with probability p.
            offline = rng.random() < p
            mean = model.mean_offline_s if offline else mean_online
            schedule = _Schedule(offline, now + rng.expovariate(1.0 / mean))
            self._schedules[phone_id] = schedule
        while schedule.until <= now:
            schedule.offline = not schedule.offline
            mean = model.mean_offline_s if schedule.offline else mean_online
            schedule.until += rng.expovariate(1.0 / mean)
        return schedule.offline

    def online_again_at(self, phone_id: str) -> float | None:
        """When the current offline period of ``phone_id`` ends (None if not known offline)."""
        schedule = self._schedules.get(phone_id)
        return schedule.until if schedule is not None and schedule.offline else None

    def forget(self, phone_id: str) -> None:
        """Drop the radio state of ``phone_id`` (its Gilbert-Elliott states and offline schedule), as
        for a phone switched off: when it is used again its channel starts GOOD and its offline
        schedule starts afresh in the stationary distribution (:meth:`is_offline`). The counts of
        ``[[radio.script]]`` matches are configuration-driven and kept. Used by the virtual-time
        lab so that sleeping phones cost nothing here."""
        self._schedules.pop(phone_id, None)
        if self._bad:
            self._bad.pop((Direction.MT, phone_id), None)
            self._bad.pop((Direction.MO, phone_id), None)

    def draw_tear(self, rng: random.Random) -> int | None:
        """Card tearing for one SMS-PP download: with ``tear_probability`` the number ``k`` of
        actions (0..3) after which the card loses power (``SimCard.stop_after_actions``), else None."""
        p = self.config.tear_probability
        if not p or rng.random() >= p:
            return None
        self.tears_armed += 1
        return rng.randint(0, MAX_TEAR_ACTIONS)

    def inject_busy(self, rng: random.Random) -> bool:
        """Whether this ENVELOPE is answered ``93 00`` (toolkit busy) instead of reaching the card."""
        p = self.config.sim_busy_probability
        return bool(p) and rng.random() < p
