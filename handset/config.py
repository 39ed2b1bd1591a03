"""The handset configuration: TOML -> frozen dataclasses (house-style §4).

One generic loader (:func:`build`) turns each table into its dataclass: it
rejects unknown keys, checks every value against the field's annotation
(``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[X, ...]``, nested
dataclasses) and reports ``ConfigError`` naming the file and the key path::

    ConfigError: configs/handset.toml: radio.mt.loss_probability: probability 1.5 outside 0..1

Tables: ``[smsc]`` (+ ``[[smsc.esmes]]``), ``[fleet]``, ``[[cards]]``,
``[radio]`` (+ ``[radio.mt]``, ``[radio.mo]``, ``[radio.offline]``, ``[[radio.script]]``), ``[me]``,
``[activity]``.
File paths in ``[fleet] card_template`` and ``[[cards]]`` are resolved against
the config file's directory first, then the current directory. A ``[[cards]]`` entry may name a card
in a PC/SC reader instead of a profile: ``sim = "pcsc:READER NAME"`` with ``msisdn``.

Glossary: ESME external short message entity; SMSC short message service
centre; ME mobile equipment; MT/MO mobile terminated/originated.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handset.activity import ActivityConfig
from handset.mobile_equipment import MeOptions
from handset.radio_link import RadioConfig
from ota_protocols.errors import ConfigError
from ota_protocols.fleet import FleetSpec
from ota_protocols.hex_text import parse_hex
from ota_protocols.smpp.framing import DEFAULT_MAX_PDU_LENGTH

__all__ = [
    "CardProfileConfig",
    "EsmeConfig",
    "FleetConfig",
    "HandsetConfig",
    "SmscConfig",
    "build",
    "load_config",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EsmeConfig:
    """``[[smsc.esmes]]``: who may bind, and which MO destination addresses it owns."""

    system_id: str
    password: str = field(repr=False)
    addresses: tuple[str, ...] = ()


# SMPP 3.4 §4.1.1: header 16 + system_id 16 + password 9 + system_type 13 + 3 octets + address_range 41.
MIN_BIND_OCTETS = 98


@dataclass(frozen=True, slots=True, kw_only=True)
class SmscConfig:
    """``[smsc]``; times in seconds, rates per second."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "HANDSET"
    # The SC address the phones see (RP originating address, ENVELOPE TLV 86), TON 1 NPI 1.
    smsc_address: str = "4917000000"
    throttle_per_s: float = 0.0  # per bind; 0 = unlimited
    throttle_burst: int = 0  # bucket size; 0 = max(1, throttle_per_s)
    max_queued_mt: int = 100_000  # MT accepted and not yet final; above -> ESME_RMSGQFUL
    mo_window: int = 256  # deliver_sm awaiting deliver_sm_resp per bind
    max_stored_mo: int = 100_000  # MO kept while no receiver is bound
    mo_validity_s: float = 3600.0
    deliver_sm_retry_s: float = 5.0
    deliver_sm_max_tries: int = 5
    default_validity_s: float = 86_400.0
    rp_timeout_s: float = 30.0  # no RP-ACK/RP-ERROR from the phone -> retry the MT
    retry_min_s: float = 5.0  # MT store-and-forward back-off, doubling
    retry_max_s: float = 600.0
    response_timeout_s: float = 30.0
    # Limits on peers (house-style §2.3; docs/handset.md "Limits"). SMPP 3.4 §7.2 timers, 0 = off:
    enquire_link_interval_s: float = 30.0  # enquire_link_timer: bound and quiet this long -> enquire_link
    session_init_timeout_s: float = 10.0  # session_init_timer: not bound this long after connecting -> closed
    inactivity_timeout_s: float = 300.0  # inactivity_timer: bound, nothing received this long -> unbind
    max_connections: int = 1000  # in total; beyond, the oldest unbound one is closed, else the new one
    max_connections_per_peer: int = 100  # per remote IP address; beyond, the new connection is closed
    max_pdu_octets: int = DEFAULT_MAX_PDU_LENGTH  # command_length above -> generic_nack RINVCMDLEN, close
    max_pdu_octets_before_bind: int = 1024  # the same before a bind (the longest bind is 98 octets)
    bind_failures_allowed: int = 5  # failed binds per peer address before its binds are throttled ...
    bind_throttle_min_s: float = 1.0  # ... refused (ESME_RBINDFAIL, password unchecked) this long,
    bind_throttle_max_s: float = 60.0  # ... doubling per further failure up to this
    bind_failure_memory_s: float = 600.0  # a peer's failed binds are forgotten this long after the last
    warning_interval_s: float = 10.0  # repeated warnings: at most 5 lines per kind per interval, then a count
    traffic_log_interval_s: float = 30.0  # INFO traffic line (SMS/s, queued, delivered, PoRs); 0 = off
    submit_times_per_bind: int = 1000  # submit_sm arrival times kept per bind (newest) for pacing checks
    submit_times_binds: int = 64  # binds whose arrival times are kept (newest)
    force_dcs: int | None = None  # e.g. 0xF6 for pySim compatibility
    require_pid_7f: bool = False
    require_8bit_dcs: bool = False
    # SMSC restart (SIGUSR1, HandsetService.restart_smsc): down this long, then the same port.
    restart_outage_s: float = 5.0
    restart_every_s: float = 0.0  # > 0: restart periodically (soak labs); 0 = only on demand
    esmes: tuple[EsmeConfig, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"{self.port} outside 0..65535")
        if not self.smsc_address.isdigit():
            raise ConfigError("smsc_address", f"{self.smsc_address!r} must be digits")
        if self.force_dcs is not None and not 0 <= self.force_dcs <= 0xFF:
            raise ConfigError("force_dcs", f"{self.force_dcs} does not fit one octet")
        for name in (
            "max_queued_mt",
            "mo_window",
            "max_stored_mo",
            "deliver_sm_max_tries",
            "max_connections",
            "max_connections_per_peer",
            "submit_times_per_bind",
            "submit_times_binds",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be at least 1")
        for name in (
            "throttle_per_s",
            "mo_validity_s",
            "deliver_sm_retry_s",
            "default_validity_s",
            "rp_timeout_s",
            "retry_min_s",
            "retry_max_s",
            "response_timeout_s",
            "enquire_link_interval_s",
            "restart_outage_s",
            "restart_every_s",
            "session_init_timeout_s",
            "inactivity_timeout_s",
            "bind_failures_allowed",
            "bind_throttle_min_s",
            "bind_throttle_max_s",
            "bind_failure_memory_s",
            "warning_interval_s",
            "traffic_log_interval_s",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must not be negative")
        # SMPP 3.4 §4.1.1: a bind with every field at its maximum is 98 octets; §3.2: command_length
        # counts the whole PDU, and a 64 KiB message_payload (§5.3.2.32) needs about 66,560.
        if not MIN_BIND_OCTETS <= self.max_pdu_octets_before_bind <= self.max_pdu_octets:
            raise ConfigError(
                "max_pdu_octets_before_bind",
                f"{self.max_pdu_octets_before_bind} outside {MIN_BIND_OCTETS}..max_pdu_octets "
                f"({self.max_pdu_octets}): a bind needs up to {MIN_BIND_OCTETS} octets (SMPP 3.4 §4.1.1)",
            )
        if self.bind_throttle_max_s < self.bind_throttle_min_s:
            raise ConfigError("bind_throttle_max_s", "below bind_throttle_min_s")
        seen: set[str] = set()
        for i, esme in enumerate(self.esmes):
            if esme.system_id in seen:
                raise ConfigError(f"esmes[{i}].system_id", f"{esme.system_id!r} appears twice")
            seen.add(esme.system_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """``[fleet]``: the :class:`~ota_protocols.fleet.FleetSpec` fields and the card template."""

    seed: str
    count: int
    card_template: str
    first_index: int = 0
    iccid_prefix: str = "8988211"
    imsi_prefix: str = "00101"
    msisdn_prefix: str = "4917"
    msisdn_digits: int = 12
    issued_action_counter: int | None = None  # issuer knowledge for the OTA server; cards use the template

    def spec(self) -> FleetSpec:
        return FleetSpec(
            seed=self.seed,
            count=self.count,
            first_index=self.first_index,
            iccid_prefix=self.iccid_prefix,
            imsi_prefix=self.imsi_prefix,
            msisdn_prefix=self.msisdn_prefix,
            msisdn_digits=self.msisdn_digits,
            issued_action_counter=self.issued_action_counter,
        )


PCSC_SCHEME = "pcsc:"


@dataclass(frozen=True, slots=True, kw_only=True)
class CardProfileConfig:
    """``[[cards]]``: one phone's SIM. Either ``profile``, an emulated card from a profile file
    (``sim_emulator.api.load_card``; its state beside it or in ``state``), or ``sim =
    "pcsc:READER NAME"``, the card in that PC/SC reader (:mod:`handset.pcsc_card`) with the phone's
    ``msisdn`` (a real card's MSISDN is the network's, not the card's: it must be given)."""

    profile: str | None = None
    state: str | None = None
    sim: str | None = None
    msisdn: str | None = None

    def __post_init__(self) -> None:
        if (self.profile is None) == (self.sim is None):
            raise ConfigError("profile", "give exactly one of profile (a card file) and sim (pcsc:READER)")
        if self.sim is None:
            if self.msisdn is not None:
                raise ConfigError("msisdn", "only with sim: an emulated card's MSISDN is in its profile")
            return
        if not self.sim.startswith(PCSC_SCHEME) or not self.sim[len(PCSC_SCHEME) :].strip():
            raise ConfigError("sim", f"expected 'pcsc:READER NAME', got {self.sim!r}")
        if self.state is not None:
            raise ConfigError("state", "only with profile: a card in a reader keeps its own state")
        if self.msisdn is None:
            raise ConfigError("msisdn", "required with sim: the phone's number routes its SMS")
        if not self.msisdn.isdigit() or not 3 <= len(self.msisdn) <= 15:
            raise ConfigError("msisdn", f"expected 3 to 15 digits (E.164), got {self.msisdn!r}")

    @property
    def reader(self) -> str | None:
        """The PC/SC reader name of a ``sim = "pcsc:..."`` card, else None."""
        return None if self.sim is None else self.sim[len(PCSC_SCHEME) :].strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class HandsetConfig:
    smsc: SmscConfig = field(default_factory=SmscConfig)
    fleet: FleetConfig | None = None
    cards: tuple[CardProfileConfig, ...] = ()
    radio: RadioConfig = field(default_factory=RadioConfig)
    me: MeOptions = field(default_factory=MeOptions)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    # Where relative paths are resolved; set by load_config, not a TOML key.
    base_dir: str = field(default=".", metadata={"toml": False})
    source: str = field(default="", metadata={"toml": False})

    def resolve(self, path: str) -> Path:
        """A path from the config: the config file's directory first, then the current directory."""
        p = Path(path)
        if p.is_absolute():
            return p
        beside = Path(self.base_dir) / p
        return beside if beside.exists() or not p.exists() else p


# ---------------------------------------------------------------------------- generic loader


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(path, f"expected {_describe(tp)}, got {value!r}")
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, f"expected an array, got {type(value).__name__}")
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        return build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is bytes:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a hex string, got {value!r}")
        try:
            return parse_hex(value)
        except ValueError as exc:
            raise ConfigError(path, f"not hex: {exc}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported type {_describe(tp)}")  # pragma: no cover - a bug in a dataclass


def build(cls: type, table: dict[str, Any], path: str = "") -> Any:
    """``cls(**table)`` with every key checked; ``path`` prefixes key paths in errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)}
    prefix = f"{path}." if path else ""
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(hints[name], value, f"{prefix}{name}") for name, value in table.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}", "required key missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc.key_path}", exc.detail) from None


def load_config(path: str | Path) -> HandsetConfig:
    """Read and check a handset TOML file; every problem is a ``ConfigError`` naming the file."""
    p = Path(path)
    source = str(path)
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("", "no such file", source=source) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("", f"cannot read: {exc}", source=source) from None
    try:
        config: HandsetConfig = build(HandsetConfig, raw)
        if config.fleet is not None:
            try:
                config.fleet.spec()
            except ConfigError as exc:
                raise ConfigError(f"fleet.{exc.key_path}", exc.detail) from None
    except ConfigError as exc:
        raise ConfigError(exc.key_path, exc.detail, source=source) from None
    return dataclasses.replace(config, base_dir=str(p.parent), source=source)
