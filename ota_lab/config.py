"""Lab files: TOML -> frozen dataclasses (house-style §4), docs/labs.md.

A *lab* is a network, a campaign, fault RANGES and scheduled events; each seed of a sweep draws one
concrete fault mix from the ranges (:mod:`ota_lab.draw`). Unknown keys are errors; every error is
a ``ConfigError`` naming the file and the key path::

    ConfigError: configs/labs/lossy.toml: faults.mt_loss: range [0.4, 0.2]: low above high

Tables: ``[lab]`` (name, transport, fleet_size), ``[network]`` (``handset_config`` + inline
handset tables merged over it), ``[campaign]`` (``path`` + inline campaign tables merged over it),
``[faults]`` (ranges), ``[timing]`` (timeouts written into both configs), ``[events]``,
``[product]`` (choices of what the campaign and the cards do, one drawn per seed) and ``[infra]``
(ranges of infrastructure faults: SMSC restarts, link drops, server crashes, database failures,
a second runner).
``[lab] transport``: ``virtual`` (default, :mod:`ota_lab.virtual`) or ``smpp`` (loopback TCP).

Glossary: MT/MO mobile terminated/originated; SMSC short message service centre; PoR proof of receipt.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError

__all__ = [
    "DIRECTIONAL_FAULTS",
    "INFRA_HORIZON",
    "CounterChoice",
    "Events",
    "FaultRanges",
    "InfraKind",
    "InfraRanges",
    "Integrity",
    "LabConfig",
    "PorPath",
    "ProductChoices",
    "Range",
    "Script",
    "Timing",
    "Transport",
    "load_lab",
]


class Transport(Enum):
    """How the server meets the network. ``virtual`` (the default): the same protocol code in one
    process on a virtual clock, no sockets, fully determined by the seed (:mod:`ota_lab.virtual`).
    ``smpp``: real SMPP over loopback TCP in wall-clock time (:func:`ota_lab.runner.run_lab_async`)."""

    VIRTUAL = "virtual"
    SMPP = "smpp"


@dataclass(frozen=True, slots=True)
class Range:
    """A closed interval a seed draws one value from (uniform; integers for integer ranges)."""

    low: float
    high: float
    integer: bool = False

    def draw(self, rng: random.Random) -> float:
        if self.low == self.high:
            return self.low  # a fixed value draws nothing, so adding one keeps the other draws
        if self.integer:
            return float(rng.randint(int(self.low), int(self.high)))
        return rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"[{self.low:g}, {self.high:g}]"


# Faults drawn separately for each direction: mt_<name> and mo_<name> in [faults].
DIRECTIONAL_FAULTS = ("loss", "burst", "duplicate", "reorder", "jitter_s", "late", "corrupt")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRanges:
    """``[faults]``: per-seed ranges, and the fixed shape of the faults they switch on.

    Directional (``mt_`` / ``mo_`` prefix): ``loss`` (independent), ``burst`` (Gilbert-Elliott
    GOOD->BAD per message, loss 1 in BAD), ``duplicate``, ``reorder``, ``jitter_s`` (uniform delay),
    ``late`` (a "hours late" copy, scaled to the lab's clock), ``corrupt``.  Global: ``offline``
    (fraction of time out of coverage), ``busy`` (SIM answers 93 00), ``tear`` (card loses power
    mid-script).
    """

    ranges: dict[str, Range] = field(default_factory=dict)
    burst_p_bad_to_good: float = 0.5
    reorder_extra_s: float = 1.0
    late_min_s: float = 2.0
    late_max_s: float = 8.0
    mean_offline_s: float = 1.0

    @staticmethod
    def names() -> tuple[str, ...]:
        directional = tuple(f"{d}_{name}" for d in ("mt", "mo") for name in DIRECTIONAL_FAULTS)
        return (*directional, "offline", "busy", "tear")

    def get(self, key: str) -> Range:
        return self.ranges.get(key, Range(0.0, 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """``[timing]``: written into the campaign (``por_timeout_s``, ``deadline_s``, ``max_attempts``,
    ``backoff_s``, ``max_backoff_s``) and the network's SMSC (``rp_timeout_s``, ``retry_min_s``,
    ``retry_max_s``, ``validity_s``). None keeps the file's value."""

    por_timeout_s: float | None = None
    deadline_s: float | None = None
    max_attempts: int | None = None
    backoff_s: float | None = None
    max_backoff_s: float | None = None
    rp_timeout_s: float | None = None
    retry_min_s: float | None = None
    retry_max_s: float | None = None
    validity_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Events:
    """``[events]``: scheduled during the run, seconds after the campaign starts."""

    smsc_restart_at_s: tuple[float, ...] = ()
    smsc_outage_s: float = 1.0


class PorPath(StrEnum):
    """How the card returns its PoR (TS 102 225 §5.1.1 SPI2 b6, TS 31.115 §4.1): in an MO
    SMS-SUBMIT, or as the TP-UD of the RP-ACK's SMS-DELIVER-REPORT."""

    SMS_SUBMIT = "sms-submit"
    DELIVER_REPORT = "deliver-report"


class Integrity(StrEnum):
    """The command's (and its PoR's) integrity, SPI1 b2b1 / SPI2 b4b3: a cryptographic checksum with
    the key set's KID algorithm, or a CRC-32 redundancy check (TS 102 225 §5.1.3)."""

    CC = "cc"
    RC = "rc"


class CounterChoice(StrEnum):
    """SPI1 b5b4 counter modes a lab may draw: only those the campaign loader accepts without
    ``unsafe_counter_mode``, i.e. "higher" (10). docs/campaigns.md §6 "Fences": with no counter or
    no check a late script can run after the fence; "exactly one higher" blocks a key set on one lost
    packet."""

    HIGHER = "higher"


_UNSAFE_COUNTERS = {
    "no-counter": "mode 00: nothing refuses a replayed or late script (docs/campaigns.md §6 Fences)",
    "no-check": "mode 01: a late script can run after the fence (docs/campaigns.md §6 Fences)",
    "one-higher": "mode 11: one lost packet blocks the key set (the server burns CNTRs on a crash)",
}


class Script(StrEnum):
    """The campaign a seed runs (docs/labs.md ``[product]``)."""

    RFM = "rfm"  # 1..4 RFM file updates on TAR b00010 (the demo's kind): single or concatenated
    RAM = "ram"  # INSTALL [for load], LOAD blocks, INSTALL [for install] on TAR 000000: concatenated
    PURSE = "purse"  # set the reload ceiling, then RELOAD a per-card amount from a CSV (TAR bfff01)
    MULTI_STEP = "multi-step"  # RFM then purse steps, [targets] an MSISDN range, per-card CSV values


class InfraKind(StrEnum):
    """Infrastructure faults (issue #10, house-style §2.2), drawn per seed from ``[infra]``."""

    SMSC_RESTART = "smsc_restart"  # the SMSC restarts: every SMPP link cut for ``duration`` s
    LINK_DROP = "link_drop"  # the ESME's link is cut; it reconnects after ``duration`` s
    SERVER_CRASH = "server_crash"  # the OTA server is killed; restarted after ``duration`` s
    DB_FAILURE = "db_failure"  # a database write fails: the run stops, restarted after ``duration`` s
    SECOND_RUNNER = "second_runner"  # a second runner starts on the same campaign (``duration`` 0)


# Infrastructure events happen in [0, INFRA_HORIZON x deadline_s]: late enough to hit running jobs,
# early enough that the campaign can still finish after the last one.
INFRA_HORIZON = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductChoices:
    """``[product]``: per key, the choices a seed draws one of (docs/labs.md). The defaults are the
    demo campaign's: RFM, ciphered, CC, counter "higher", key set 1, PoR by SMS-SUBMIT, no card
    reports."""

    por_path: tuple[PorPath, ...] = (PorPath.SMS_SUBMIT,)
    cipher: tuple[bool, ...] = (True,)
    integrity: tuple[Integrity, ...] = (Integrity.CC,)
    counter: tuple[CounterChoice, ...] = (CounterChoice.HIGHER,)
    keyset: tuple[int, ...] = (1,)
    script: tuple[Script, ...] = (Script.RFM,)
    transactions_per_hour: Range = Range(0.0, 0.0)  # per phone (claim 8), a range
    information_at_power_up: tuple[bool, ...] = (False,)  # claim 9


@dataclass(frozen=True, slots=True, kw_only=True)
class InfraRanges:
    """``[infra]``: how many of each infrastructure fault a seed draws (integer ranges), how long each
    lasts (ranges in seconds) and the probability of a second runner (a range drawn, then a coin)."""

    smsc_restarts: Range = Range(0.0, 0.0, True)
    smsc_outage_s: Range = Range(1.0, 1.0)
    link_drops: Range = Range(0.0, 0.0, True)
    link_drop_s: Range = Range(1.0, 1.0)
    server_crashes: Range = Range(0.0, 0.0, True)
    db_failures: Range = Range(0.0, 0.0, True)
    restart_delay_s: Range = Range(1.0, 1.0)  # after a server crash or a database failure
    second_runner: Range = Range(0.0, 0.0)
    # [[infra.schedule]]: events at fixed times, every seed (named scenarios); nothing drawn for them.
    schedule: tuple[tuple[InfraKind, float, float], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LabConfig:
    source: str
    name: str
    transport: Transport
    fleet_size: Range | None
    handset_config: Path | None
    network: dict[str, Any]
    campaign_path: Path | None
    campaign: dict[str, Any]
    faults: FaultRanges
    timing: Timing
    events: Events
    product: ProductChoices | None = None  # None: no [product] table (the campaign file's script)
    infra: InfraRanges | None = None  # None: no [infra] table (nothing drawn)


# --------------------------------------------------------------------------- loading


class _Table:
    """One TOML table with its key path; every read is checked, ``done`` rejects the rest."""

    def __init__(self, source: str, path: str, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path, f"expected a table, got {type(raw).__name__}", source=source)
        self.source, self.path, self.raw, self.used = source, path, raw, set[str]()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.key(name), message, source=self.source)

    def get(self, name: str) -> Any:
        self.used.add(name)
        return self.raw.get(name)

    def number(self, name: str, default: float | None, *, positive: bool = False) -> float | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(name, f"expected a number, got {value!r}")
        if value < 0 or (positive and value == 0):
            raise self.error(name, f"{value} must be {'> 0' if positive else '>= 0'}")
        return float(value)

    def integer(self, name: str, default: int | None, *, low: int = 0) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if value < low:
            raise self.error(name, f"{value} must be at least {low}")
        return value

    def string(self, name: str, default: str | None) -> str | None:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(name, f"expected a non-empty string, got {value!r}")
        return value

    def range(self, name: str, *, probability: bool, integer: bool = False) -> Range | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            low = high = value
        elif (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            low, high = value
        else:
            raise self.error(name, f"expected a number or a range [low, high], got {value!r}")
        if integer and not (float(low).is_integer() and float(high).is_integer()):
            raise self.error(name, f"range {value!r}: expected integers")
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0:
            raise self.error(name, f"range {value!r}: values must be finite and >= 0")
        if low > high:
            raise self.error(name, f"range {value!r}: low above high")
        if probability and high > 1.0:
            raise self.error(name, f"range {value!r}: a probability is at most 1")
        if name == "offline" and high >= 1.0:
            raise self.error(name, f"range {value!r}: offline all the time never delivers")
        return Range(float(low), float(high), integer)

    def choices(
        self, name: str, default: tuple[Any, ...], what: str, parse: Callable[[Any], Any | None]
    ) -> tuple[Any, ...]:
        """A non-empty list of distinct choices; ``parse`` turns one into its value (None: not one)."""
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise self.error(name, f"expected a non-empty list of {what}, got {value!r}")
        out: list[Any] = []
        for i, item in enumerate(value):
            parsed = parse(item)
            if parsed is None:
                raise self.error(f"{name}[{i}]", f"expected {what}, got {item!r}")
            if parsed in out:
                raise self.error(f"{name}[{i}]", f"{item!r} listed twice")
            out.append(parsed)
        return tuple(out)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _path(base: Path, t: _Table, name: str) -> Path | None:
    value = t.string(name, None)
    if value is None:
        return None
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise t.error(name, f"no such file {str(p)!r}")
    return p


def _enum_parser(kind: type[StrEnum]) -> Callable[[Any], Any | None]:
    values = {member.value: member for member in kind}
    return lambda v: values.get(v) if isinstance(v, str) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _keyset(v: Any) -> int | None:
    # TS 102 225 §5.1.2: the key set is KIc/KID b8..b5, 1..15 (0 names no key set here).
    return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 15 else None


def _product(t: _Table) -> ProductChoices:
    for i, value in enumerate(t.raw.get("counter") or []):
        if isinstance(value, str) and value in _UNSAFE_COUNTERS:
            raise t.error(
                f"counter[{i}]",
                f"{value!r} is not safe for resends ({_UNSAFE_COUNTERS[value]}); only 'higher' is drawn",
            )
    defaults = ProductChoices()
    product = ProductChoices(
        por_path=t.choices(
            "por_path", defaults.por_path, "'sms-submit' or 'deliver-report'", _enum_parser(PorPath)
        ),
        cipher=t.choices("cipher", defaults.cipher, "true or false", _bool),
        integrity=t.choices("integrity", defaults.integrity, "'cc' or 'rc'", _enum_parser(Integrity)),
        counter=t.choices("counter", defaults.counter, "'higher'", _enum_parser(CounterChoice)),
        keyset=t.choices("keyset", defaults.keyset, "key set numbers 1..15", _keyset),
        script=t.choices(
            "script", defaults.script, "'rfm', 'ram', 'purse' or 'multi-step'", _enum_parser(Script)
        ),
        transactions_per_hour=t.range("transactions_per_hour", probability=False)
        or defaults.transactions_per_hour,
        information_at_power_up=t.choices(
            "information_at_power_up", defaults.information_at_power_up, "true or false", _bool
        ),
    )
    t.done()
    return product


# The campaign tables a [product] draw writes (the base campaign's are replaced, not merged).
_PRODUCT_DRAWN = ("security", "actions", "steps", "targets")
_INFRA_COUNTS = ("smsc_restarts", "link_drops", "server_crashes", "db_failures")
_INFRA_DURATIONS = ("smsc_outage_s", "link_drop_s", "restart_delay_s")
_INFRA_MAX_COUNT = 20  # per kind and seed: more is a soak test, not a seed of a sweep


def _schedule(t: _Table) -> tuple[tuple[InfraKind, float, float], ...]:
    """``[[infra.schedule]]``: ``kind`` (an InfraKind), ``at_s`` and ``duration_s`` (0 for a
    second runner), in the order given."""
    raw = t.get("schedule")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise t.error("schedule", "expected an array of tables [[infra.schedule]]")
    out = []
    for i, entry in enumerate(raw):
        e = _Table(t.source, t.key(f"schedule[{i}]"), entry)
        kind_name = e.string("kind", None)
        kinds = ", ".join(k.value for k in InfraKind)
        if kind_name not in {k.value for k in InfraKind}:
            raise e.error("kind", f"expected one of {kinds}, got {kind_name!r}")
        at = e.number("at_s", None)
        if at is None:
            raise e.error("at_s", "required: seconds after the start")
        duration = e.number("duration_s", 0.0)
        e.done()
        out.append((InfraKind(kind_name), at, duration or 0.0))
    return tuple(out)


def _infra(t: _Table, timing: Timing) -> InfraRanges:
    values: dict[str, Range] = {}
    for name in _INFRA_COUNTS:
        r = t.range(name, probability=False, integer=True)
        if r is not None:
            if r.high > _INFRA_MAX_COUNT:
                raise t.error(name, f"range {r}: at most {_INFRA_MAX_COUNT} per seed")
            values[name] = r
    for name in _INFRA_DURATIONS:
        r = t.range(name, probability=False)
        if r is not None:
            values[name] = r
    r = t.range("second_runner", probability=True)
    if r is not None:
        values["second_runner"] = r
    schedule = _schedule(t)
    t.done()
    infra = InfraRanges(**values, schedule=schedule)
    if any(getattr(infra, name).high > 0 for name in (*_INFRA_COUNTS, "second_runner")):
        deadline = timing.deadline_s
        if deadline is None:
            raise ConfigError(
                "timing.deadline_s",
                f"required by [infra]: event times are drawn in [0, {INFRA_HORIZON:g} x deadline_s]",
                source=t.source,
            )
        for name in _INFRA_DURATIONS:
            if getattr(infra, name).high >= deadline:
                raise t.error(
                    name, f"range {getattr(infra, name)}: not below timing.deadline_s = {deadline:g}"
                )
    return infra


def load_lab(path: str | Path) -> LabConfig:
    """Read and check a lab file; every problem is a ``ConfigError`` naming the file and key."""
    p = Path(path)
    source = str(path)
    try:
        raw = tomllib.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "no such file", source=source) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}", source=source) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=source) from None
    base = p.parent
    top = _Table(source, "", raw)

    lab = _Table(source, "lab", top.get("lab"))
    name = lab.string("name", p.stem) or p.stem
    transport_name = lab.string("transport", Transport.VIRTUAL.value)
    try:
        transport = Transport(transport_name)
    except ValueError:
        known = ", ".join(t.value for t in Transport)
        raise lab.error("transport", f"{transport_name!r} unknown (known: {known})") from None
    fleet_size = lab.range("fleet_size", probability=False, integer=True)
    if fleet_size is not None and fleet_size.low < 1:
        raise lab.error("fleet_size", "at least one card")
    lab.done()

    net = _Table(source, "network", top.get("network"))
    handset_config = _path(base, net, "handset_config")
    network = {k: v for k, v in net.raw.items() if k != "handset_config"}
    for key, value in network.items():
        if not isinstance(value, dict):
            raise net.error(
                key, "expected a table of the handset config ([network.smsc], [network.radio], …)"
            )
    if handset_config is None and "fleet" not in network:
        raise net.error("handset_config", "required (or an inline [network.fleet] table)")

    product_raw = top.get("product")
    product = None if product_raw is None else _product(_Table(source, "product", product_raw))

    camp = _Table(source, "campaign", top.get("campaign"))
    campaign_path = _path(base, camp, "path")
    campaign = {k: v for k, v in camp.raw.items() if k != "path"}
    if campaign_path is None and "actions" not in campaign and product is None:
        raise camp.error("path", "required (or inline [[campaign.actions]], or a [product] table)")
    if product is not None:
        for key in _PRODUCT_DRAWN:
            if key in campaign:
                raise camp.error(key, "[product] draws the security, the script and the targets: remove it")
    if "network" in campaign:
        raise camp.error("network", "the lab's [network] is the campaign's network")

    f = _Table(source, "faults", top.get("faults"))
    ranges: dict[str, Range] = {}
    for key in FaultRanges.names():
        r = f.range(key, probability=not key.endswith("_s"))
        if r is not None:
            ranges[key] = r
    shape: dict[str, float] = {}
    for fld in fields(FaultRanges):
        if fld.name == "ranges":
            continue
        value = f.number(fld.name, None, positive=fld.name in ("mean_offline_s", "burst_p_bad_to_good"))
        if value is not None:
            shape[fld.name] = value
    if shape.get("burst_p_bad_to_good", 0.5) > 1.0:
        raise f.error("burst_p_bad_to_good", "a probability is at most 1")
    if shape.get("late_max_s", 8.0) < shape.get("late_min_s", 2.0):
        raise f.error("late_max_s", "below late_min_s")
    f.done()
    faults = FaultRanges(ranges=ranges, **shape)

    t = _Table(source, "timing", top.get("timing"))
    timing = Timing(
        por_timeout_s=t.number("por_timeout_s", None, positive=True),
        deadline_s=t.number("deadline_s", None, positive=True),
        max_attempts=t.integer("max_attempts", None, low=1),
        backoff_s=t.number("backoff_s", None),
        max_backoff_s=t.number("max_backoff_s", None),
        rp_timeout_s=t.number("rp_timeout_s", None, positive=True),
        retry_min_s=t.number("retry_min_s", None),
        retry_max_s=t.number("retry_max_s", None),
        validity_s=t.number("validity_s", None, positive=True),
    )
    t.done()

    e = _Table(source, "events", top.get("events"))
    restarts = e.get("smsc_restart_at_s")
    if restarts is None:
        restart_at: tuple[float, ...] = ()
    elif isinstance(restarts, int | float) and not isinstance(restarts, bool) and restarts >= 0:
        restart_at = (float(restarts),)
    elif isinstance(restarts, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in restarts
    ):
        restart_at = tuple(float(v) for v in restarts)
    else:
        raise e.error("smsc_restart_at_s", f"expected seconds >= 0 or a list of them, got {restarts!r}")
    events = Events(smsc_restart_at_s=restart_at, smsc_outage_s=e.number("smsc_outage_s", 1.0) or 0.0)
    e.done()
    infra_raw = top.get("infra")
    infra = None if infra_raw is None else _infra(_Table(source, "infra", infra_raw), timing)
    top.done()
    return LabConfig(
        source=source,
        name=name,
        transport=transport,
        fleet_size=fleet_size,
        handset_config=handset_config,
        network=network,
        campaign_path=campaign_path,
        campaign=campaign,
        faults=faults,
        timing=timing,
        events=events,
        product=product,
        infra=infra,
    )
