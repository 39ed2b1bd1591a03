"""Campaign files: TOML to frozen dataclasses (house-style §4; format in docs/campaigns.md).

Clauses: TS 102 225 §5.1.1-§5.1.3 (SPI, KIc, KID), TS 101 220 Annex D (TAR),
TS 102 226 §5 (script formats), docs/action-counter.md (actions).

Glossary: SPI security parameter indicator, KIc/KID key identifiers, TAR toolkit
application reference, FID file identifier, AID application identifier, ESME the
SMPP client (the platform), SMSC short message service centre.

Every table is read by :class:`_Table`, which pops typed values, rejects unknown
keys and names the file and key path on every error::

    configs/campaigns/x.toml: actions[2].path: file identifier '6F4' is not 4 hex digits

Actions are turned into APDUs here (``ota_protocols.apdu.card_commands``), so a
campaign that loads is a campaign whose scripts can be built.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ota_protocols.apdu import card_commands as cc
from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.errors import CodecError, ConfigError
from ota_protocols.fleet import FleetSpec, KeysetTemplate
from ota_protocols.secured_packet.security_parameters import CounterMode, Spi
from ota_server.model import Action, ScriptFormat, Security

_MISSING: Any = object()


class _Table:
    """Typed reads from one TOML table; ``done()`` rejects the keys nobody read."""

    def __init__(self, source: str, path: str, raw: object) -> None:
        self.source = source
        self.path = path
        if not isinstance(raw, dict):
            raise ConfigError(
                path or "(top level)", f"expected a table, got {type(raw).__name__}", source=source
            )
        self.raw: dict[str, Any] = dict(raw)
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.key(name), message, source=self.source)

    def _get(self, name: str, default: Any) -> Any:
        self.seen.add(name)
        if name in self.raw:
            return self.raw[name]
        if default is _MISSING:
            raise self.error(name, "required key missing")
        return default

    def has(self, name: str) -> bool:
        return name in self.raw

    def string(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise self.error(name, f"expected a string, got {value!r}")
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def integer(self, name: str, default: Any = _MISSING, *, low: int = 0, high: int = 2**63) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(name, f"{value} outside {low}..{high}")
        return value

    def number(self, name: str, default: Any = _MISSING, *, low: float = 0.0, positive: bool = False) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {value!r}")
        if value < low or (positive and value <= 0):
            raise self.error(name, f"{value} must be {'positive' if positive else f'at least {low}'}")
        return float(value)

    def hex(self, name: str, default: Any = _MISSING, *, length: int | None = None) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"expected a hex string, got {value!r}")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise self.error(name, f"{value!r} is not hex") from None
        if length is not None and len(raw) != length:
            raise self.error(name, f"expected {length} octet(s) of hex, got {len(raw)}")
        return raw

    def table(self, name: str) -> _Table:
        return _Table(self.source, self.key(name), self._get(name, {}))

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSection:
    name: str
    deadline_s: float = 3600.0  # jobs still open then end as "pending"
    concurrency: int = 1000  # jobs with a message in flight at once


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSection:
    handset_config: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SmscSection:
    system_id: str | None = None  # None: the first [[smsc.esmes]] of the embedded network
    password: str | None = field(default=None, repr=False)
    system_type: str = ""
    source_addr: str = "12345"
    source_addr_ton: int = 1
    source_addr_npi: int = 1
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    registered_delivery: bool = False
    window: int = 64
    max_messages_per_second: float = 0.0  # 0 = unlimited; segments count
    response_timeout_s: float = 10.0
    enquire_link_s: float = 30.0
    reconnect_attempts: int = 5
    reconnect_backoff_s: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetsSection:
    fleet: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySection:
    por_timeout_s: float = 5.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignConfig:
    source: Path
    campaign: CampaignSection
    network: NetworkSection
    smsc: SmscSection
    targets: TargetsSection
    security: Security
    retry: RetrySection
    actions: tuple[Action, ...]


# --------------------------------------------------------------------------- actions


def _fids(t: _Table, name: str) -> tuple[CommandApdu, ...]:
    path = t.string(name)
    parts = path.strip("/").split("/")
    out = []
    for part in parts:
        try:
            ok = len(part) == 4 and bytes.fromhex(part) is not None
        except ValueError:
            ok = False
        if not ok:
            raise t.error(name, f"file identifier {part!r} is not 4 hex digits")
        out.append(cc.select_fid(bytes.fromhex(part)))
    return tuple(out)


def _codec(t: _Table, name: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except CodecError as exc:
        raise t.error(name, exc.detail) from None


def _actions_of(t: _Table) -> list[Action]:
    kind = t.string("type")
    if kind == "update_binary":
        nav = _fids(t, "path")
        offset = t.integer("offset", 0, high=0x7FFF)
        data = t.hex("data")
        apdu = _codec(t, "data", lambda: cc.update_binary(offset, data))
        return [Action(f"update_binary {t.raw['path']}", (*nav, apdu))]
    if kind == "update_record":
        nav = _fids(t, "path")
        record = t.integer("record", low=1, high=254)
        data = t.hex("data")
        apdu = _codec(t, "data", lambda: cc.update_record(record, data))
        return [Action(f"update_record {t.raw['path']} #{record}", (*nav, apdu))]
    if kind == "purse_reload":
        amount = t.integer("amount", low=1, high=0xFFFFFFFF)
        return [Action(f"purse_reload {amount}", (cc.purse_reload(amount),))]
    if kind == "set_parameter":
        parameter = t.integer("parameter", high=0xFF)
        value = t.hex("value")
        apdu = _codec(t, "value", lambda: cc.purse_set_parameter(parameter, value))
        return [Action(f"set_parameter {parameter:#04x}", (apdu,))]
    if kind == "ram_install":
        lf = t.hex("load_file_aid")
        module = t.hex("module_aid")
        app = t.hex("application_aid")
        load_file = t.hex("load_file")
        block_size = t.integer("block_size", 64, low=1, high=240)
        blocks = _codec(t, "load_file", lambda: cc.load_blocks(load_file, block_size=block_size))
        first = _codec(t, "load_file_aid", lambda: cc.install_for_load(lf))
        last = _codec(t, "application_aid", lambda: cc.install_for_install(lf, module, app))
        # docs/action-counter.md: INSTALL, each LOAD and INSTALL are counted commands, one action each.
        return [
            Action(f"install_for_load {lf.hex()}", (first,)),
            *(Action(f"load {lf.hex()} block {i}", (b,)) for i, b in enumerate(blocks)),
            Action(f"install_for_install {app.hex()}", (last,)),
        ]
    if kind == "ram_delete":
        aid = t.hex("aid")
        return [Action(f"delete {aid.hex()}", (_codec(t, "aid", lambda: cc.delete_aid(aid)),))]
    if kind == "raw":
        raw = t._get("apdus", _MISSING)
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
            raise t.error("apdus", "expected a non-empty list of hex APDUs")
        apdus = []
        for i, text in enumerate(raw):
            try:
                apdus.append(CommandApdu.decode(bytes.fromhex(text)))
            except (ValueError, CodecError) as exc:
                raise t.error(f"apdus[{i}]", f"not an APDU in hex: {exc}") from None
        return [Action("raw " + apdus[-1].header.hex(), tuple(apdus))]
    raise t.error(
        "type",
        f"unknown action type {kind!r} (update_binary, update_record, purse_reload, set_parameter, "
        "ram_install, ram_delete, raw)",
    )


# --------------------------------------------------------------------------- loader


def _security(t: _Table) -> Security:
    spi_raw = t.hex("spi", bytes.fromhex("1639"), length=2)
    kic = t.hex("kic", b"\x12", length=1)[0]
    kid = t.hex("kid", b"\x12", length=1)[0]
    tar = t.hex("tar", bytes.fromhex("b00010"), length=3)
    length = t.integer("checksum_length", None, low=1, high=8)
    fmt = t.string("script_format", "compact")
    unsafe_counter_mode = t.boolean("unsafe_counter_mode", False)
    try:
        script_format = ScriptFormat(fmt)
    except ValueError:
        raise t.error("script_format", f"expected 'compact' or 'expanded', got {fmt!r}") from None
    spi = Spi.from_bytes(spi_raw)
    if spi.counter_mode is not CounterMode.HIGHER and not unsafe_counter_mode:
        # docs/campaigns.md §4 "Fences": a query's PoR proves older scripts dead only when the card
        # refuses every lower CNTR (TS 102 225 §5.1.1 SPI1 b5b4 = 10). Mode 11 is refused too: a
        # lost packet would block the key set (the server burns CNTR values on a crash).
        raise t.error(
            "spi",
            f"SPI1 {spi.spi1:02X} has counter mode {int(spi.counter_mode):02b}, not 10 (higher): "
            "resends would not be safe; set unsafe_counter_mode = true to run anyway",
        )
    t.done()
    return Security(
        spi=spi,
        kic=kic,
        kid=kid,
        tar=tar,
        checksum_length=length,
        script_format=script_format,
    )


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and check a campaign file; every problem is a ConfigError naming file and key."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read campaign file: {exc.strerror}", source=source) from None
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=source) from None
    top = _Table(source, "", raw)

    c = top.table("campaign")
    campaign = CampaignSection(
        name=c.string("name"),
        deadline_s=c.number("deadline_s", 3600.0, positive=True),
        concurrency=c.integer("concurrency", 1000, low=1, high=10_000_000),
    )
    if not campaign.name:
        raise c.error("name", "must not be empty")
    c.done()

    n = top.table("network")
    handset = n.string("handset_config", None)
    network = NetworkSection(handset_config=(path.parent / handset) if handset else None)
    n.done()

    s = top.table("smsc")
    source_addr = s.string("source_addr", "12345")
    if not source_addr or len(source_addr) > 20:
        raise s.error("source_addr", "expected 1..20 characters (SMPP 3.4 §5.2.8)")
    smsc = SmscSection(
        system_id=s.string("system_id", None),
        password=s.string("password", None),
        system_type=s.string("system_type", ""),
        source_addr=source_addr,
        source_addr_ton=s.integer("source_addr_ton", 1, high=6),
        source_addr_npi=s.integer("source_addr_npi", 1, high=18),
        dest_addr_ton=s.integer("dest_addr_ton", 1, high=6),
        dest_addr_npi=s.integer("dest_addr_npi", 1, high=18),
        registered_delivery=s.boolean("registered_delivery", False),
        window=s.integer("window", 64, low=1, high=100_000),
        max_messages_per_second=s.number("max_messages_per_second", 0.0),
        response_timeout_s=s.number("response_timeout_s", 10.0, positive=True),
        enquire_link_s=s.number("enquire_link_s", 30.0, positive=True),
        reconnect_attempts=s.integer("reconnect_attempts", 5, high=1000),
        reconnect_backoff_s=s.number("reconnect_backoff_s", 0.5, positive=True),
    )
    s.done()

    tg = top.table("targets")
    targets = TargetsSection(fleet=tg.boolean("fleet", True))
    tg.done()
    if not targets.fleet:
        raise tg.error("fleet", "no targets: only fleet = true is supported so far")
    if targets.fleet and network.handset_config is None:
        raise n.error("handset_config", "targets.fleet needs the fleet of [network].handset_config")

    security = _security(top.table("security"))

    r = top.table("retry")
    retry = RetrySection(
        por_timeout_s=r.number("por_timeout_s", 5.0, positive=True),
        max_attempts=r.integer("max_attempts", 4, low=1, high=1000),
        backoff_s=r.number("backoff_s", 1.0),
        max_backoff_s=r.number("max_backoff_s", 30.0),
    )
    r.done()

    raw_actions = top._get("actions", _MISSING)
    if not isinstance(raw_actions, list) or not raw_actions:
        raise top.error("actions", "expected at least one [[actions]] table")
    actions: list[Action] = []
    for i, entry in enumerate(raw_actions):
        t = _Table(source, f"actions[{i}]", entry)
        actions.extend(_actions_of(t))
        t.done()
    top.done()
    return CampaignConfig(
        source=path,
        campaign=campaign,
        network=network,
        smsc=smsc,
        targets=targets,
        security=security,
        retry=retry,
        actions=tuple(actions),
    )


# --------------------------------------------------------------------------- handset file

_FLEET_FIELDS = (
    "seed",
    "count",
    "first_index",
    "iccid_prefix",
    "imsi_prefix",
    "msisdn_prefix",
    "msisdn_digits",
    "issued_action_counter",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkInventory:
    """What the server reads from the embedded network's handset config: fleet and credentials."""

    fleet: FleetSpec
    esmes: tuple[tuple[str, str], ...]  # (system_id, password)

    def __repr__(self) -> str:
        return f"NetworkInventory(cards={self.fleet.count}, esmes={[e[0] for e in self.esmes]})"


def load_network_inventory(path: Path) -> NetworkInventory:
    """The [fleet] table (FleetSpec fields) and [[smsc.esmes]] of a handset config.

    The handset owns that format, so keys this server does not need are ignored.
    """
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("network.handset_config", f"cannot read {source}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=source) from None
    fleet_raw = raw.get("fleet")
    if not isinstance(fleet_raw, dict):
        raise ConfigError("fleet", "no [fleet] table: cannot derive the card inventory", source=source)
    kwargs: dict[str, Any] = {k: fleet_raw[k] for k in _FLEET_FIELDS if k in fleet_raw}
    if "keysets" in fleet_raw:
        try:
            kwargs["keysets"] = tuple(
                KeysetTemplate(
                    kvn=int(k["kvn"]),
                    kic_algorithm=str(k["kic_algorithm"]),
                    kid_algorithm=str(k["kid_algorithm"]),
                    key_length=int(k["key_length"]),
                )
                for k in fleet_raw["keysets"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                "fleet.keysets", f"cannot read key set templates: {exc}", source=source
            ) from None
    try:
        fleet = FleetSpec(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"fleet.{exc.key_path}", exc.detail, source=source) from None
    except TypeError as exc:
        raise ConfigError("fleet", str(exc), source=source) from None
    esmes: list[tuple[str, str]] = []
    smsc = raw.get("smsc", {})
    for entry in smsc.get("esmes", []) if isinstance(smsc, dict) else []:
        if isinstance(entry, dict) and "system_id" in entry:
            esmes.append((str(entry["system_id"]), str(entry.get("password", ""))))
    return NetworkInventory(fleet=fleet, esmes=tuple(esmes))
