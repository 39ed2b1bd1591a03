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

import contextlib
import csv
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ota_protocols.apdu import card_commands as cc
from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.errors import CodecError, ConfigError
from ota_protocols.fleet import FleetSpec, KeysetTemplate
from ota_protocols.hex_text import parse_hex
from ota_protocols.secured_packet.security_parameters import CounterMode, PorRequest, Spi
from ota_server.engine.campaign_spec import (
    CampaignConfig,
    CampaignSection,
    NetworkSection,
    NumberRange,
    PacingSection,
    RetrySection,
    SmscSection,
    StepConfig,
    TargetCsv,
    TargetsSection,
)
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
            raw = parse_hex(value)
        except ValueError as exc:
            raise self.error(name, f"not hex: {exc}") from None
        if length is not None and len(raw) != length:
            raise self.error(name, f"expected {length} octet(s) of hex, got {len(raw)}")
        return raw

    def table(self, name: str) -> _Table:
        return _Table(self.source, self.key(name), self._get(name, {}))

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


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
                apdus.append(CommandApdu.decode(parse_hex(text)))
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
    por_mode = t.string("por_mode", None)
    unsafe_counter_mode = t.boolean("unsafe_counter_mode", False)
    try:
        script_format = ScriptFormat(fmt)
    except ValueError:
        raise t.error("script_format", f"expected 'compact' or 'expanded', got {fmt!r}") from None
    spi = Spi.from_bytes(spi_raw)
    if por_mode is not None:
        # TS 102 225 §5.1.1 SPI2: b2b1 = 01 (PoR required: reconciliation reads every PoR's counter),
        # b6 = PoR by SMS-SUBMIT (1) or in the SMS-DELIVER-REPORT (0).
        if por_mode not in POR_MODES:
            raise t.error("por_mode", f"expected one of {', '.join(POR_MODES)}, got {por_mode!r}")
        spi2 = (spi.spi2 & ~0x23) | int(PorRequest.ALWAYS) | (0x20 if por_mode == "sms_submit" else 0)
        spi = Spi(spi.spi1, spi2)
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


POR_MODES = ("sms_submit", "deliver_report")
_PLACEHOLDER = re.compile(r"^\{csv\.([A-Za-z_][A-Za-z0-9_]*)\}$")
_INTEGER_KEYS = frozenset({"amount", "offset", "record", "parameter", "block_size"})
_CSV_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


def _datetime(t: _Table, name: str) -> datetime | None:
    value = t._get(name, None)
    if value is None:
        return None
    if isinstance(value, str):  # the JSON form of a campaign has no date-time type
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise t.error(
                name, f"expected a TOML date-time or an RFC 3339 string (2026-05-01T02:00:00Z), got {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise t.error(name, f"expected a TOML date-time (2026-05-01T02:00:00Z), got {value!r}")
    return value if value.tzinfo is not None else value.astimezone()  # no offset: local time


def _ranges(t: _Table, name: str) -> tuple[NumberRange, ...]:
    raw = t._get(name, [])
    if not isinstance(raw, list):
        raise t.error(name, 'expected a list of ["first", "last"] pairs')
    out = []
    for i, pair in enumerate(raw):
        where = f"{name}[{i}]"
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
            raise t.error(where, f'expected ["first", "last"] (two strings of digits), got {pair!r}')
        first, last = pair
        if not (first.isdigit() and last.isdigit()):
            raise t.error(where, f"expected digits, got {first!r}, {last!r}")
        if len(first) != len(last):
            raise t.error(where, f"{first} and {last} differ in length ({len(first)} and {len(last)} digits)")
        if int(first) > int(last):
            raise t.error(where, f"{first} is above {last}")
        out.append(NumberRange(first, last))
    return tuple(out)


def read_text_file(path: Path) -> str:
    """A UTF-8 text file (a BOM is dropped); unreadable or undecodable is a ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8: {exc.reason}", source=str(path)) from None


def read_target_csv(path: Path) -> TargetCsv:
    """A targets/parameters CSV: header with ``iccid`` or ``msisdn``; errors name file:line:column."""
    source = str(path)
    text = read_text_file(path)
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    key = ""
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            for i, column in enumerate(header):
                if not _CSV_COLUMN.match(column):
                    raise ConfigError(
                        "", f"column {i + 1} name {column!r} is not a-z, 0-9, _", source=f"{source}:{line}"
                    )
                if column in header[:i]:
                    raise ConfigError("", f"column {column!r} appears twice", source=f"{source}:{line}")
            key = "iccid" if "iccid" in header else "msisdn" if "msisdn" in header else ""
            if not key:
                raise ConfigError("", "header needs an iccid or msisdn column", source=f"{source}:{line}")
            continue
        if len(cells) != len(header):
            raise ConfigError(
                "", f"expected {len(header)} columns, got {len(cells)}", source=f"{source}:{line}"
            )
        row = {column: cell.strip() for column, cell in zip(header, cells, strict=True)}
        value = row[key]
        if not value.isdigit():
            raise ConfigError("", f"expected digits, got {value!r}", source=f"{source}:{line}:{key}")
        if value in rows:
            raise ConfigError(
                "", f"{value} already listed on line {lines[value]}", source=f"{source}:{line}:{key}"
            )
        rows[value] = row
        lines[value] = line
    if header is None or not rows:
        raise ConfigError("", "no rows: expected a header and at least one card", source=source)
    return TargetCsv(path=path, key=key, columns=tuple(header), rows=rows, lines=lines)


def _targets(t: _Table, base: Path, network: NetworkSection, n: _Table) -> TargetsSection:
    everything = t.boolean("all", False)
    fleet = t.boolean("fleet", not everything)
    tags_raw = t._get("tags", [])
    if not isinstance(tags_raw, list) or not all(isinstance(x, str) and x for x in tags_raw):
        raise t.error("tags", "expected a list of non-empty strings")
    csv_name = t.string("csv", None)
    targets = TargetsSection(
        fleet=fleet,
        all=everything,
        iccid_ranges=_ranges(t, "iccid_ranges"),
        msisdn_ranges=_ranges(t, "msisdn_ranges"),
        tags=tuple(tags_raw),
        csv=read_target_csv(base / csv_name) if csv_name else None,
    )
    t.done()
    if fleet and everything:
        raise t.error("all", "all = true takes every card of the store: not with fleet = true")
    selectors = targets.iccid_ranges or targets.msisdn_ranges or targets.tags or targets.csv
    if not (fleet or everything or selectors):
        raise t.error("fleet", "no targets: set fleet = true, all = true, or a selector")
    if fleet and network.handset_config is None:
        raise n.error("handset_config", "targets.fleet needs the fleet of [network].handset_config")
    return targets


def _placeholders(t: _Table) -> dict[str, str]:
    return {k: m.group(1) for k, v in t.raw.items() if isinstance(v, str) and (m := _PLACEHOLDER.match(v))}


def _substituted(entry: dict[str, Any], refs: dict[str, str], row: dict[str, str]) -> dict[str, Any]:
    out = dict(entry)
    for k, column in refs.items():
        value: Any = row[column]
        if k in _INTEGER_KEYS:
            with contextlib.suppress(ValueError):  # else the action's own check names the problem
                value = int(value, 0)
        out[k] = value
    return out


def _step_actions(
    source: str, prefix: str, raw_actions: Any, targets: TargetsSection, where: _Table, name: str
) -> tuple[tuple[Action, ...], dict[str, tuple[Action, ...]] | None]:
    if not isinstance(raw_actions, list) or not raw_actions:
        raise where.error(name, f"expected at least one [[{where.key(name)}]] table")
    tables = [_Table(source, f"{prefix}[{i}]", entry) for i, entry in enumerate(raw_actions)]
    refs = [_placeholders(t) for t in tables]
    for t, ref in zip(tables, refs, strict=True):
        for k, column in ref.items():
            if targets.csv is None:
                raise t.error(k, f"uses {{csv.{column}}} but [targets] has no csv file")
            if column not in targets.csv.columns:
                raise t.error(
                    k,
                    f"column {column!r} not in {targets.csv.path} "
                    f"(columns: {', '.join(targets.csv.columns)})",
                )

    def build(row: dict[str, str] | None) -> tuple[Action, ...]:
        actions: list[Action] = []
        for t, ref in zip(tables, refs, strict=True):
            table = t if row is None else _Table(source, t.path, _substituted(t.raw, ref, row))
            actions.extend(_actions_of(table))
            table.done()
        return tuple(actions)

    if not any(refs):
        return build(None), None
    assert targets.csv is not None
    csv_data = targets.csv
    per_card: dict[str, tuple[Action, ...]] = {}
    columns = {
        f"{t.path}.{k}": column for t, ref in zip(tables, refs, strict=True) for k, column in ref.items()
    }
    for value, row in csv_data.rows.items():
        try:
            per_card[value] = build(row)
        except ConfigError as exc:
            column = columns.get(exc.key_path)
            if column is None:
                raise  # a key of the campaign file itself: named there
            raise ConfigError(
                "", exc.detail, source=f"{csv_data.path}:{csv_data.lines[value]}:{column}"
            ) from None
    first = next(iter(per_card.values()))
    return first, per_card


def _step(source: str, t: _Table, index: int | None, targets: TargetsSection, top: _Table) -> StepConfig:
    if index is None:  # the one-step form: [security] + [[actions]] at the top level
        security = _security(top.table("security"))
        actions, per_card = _step_actions(
            source, "actions", top._get("actions", _MISSING), targets, top, "actions"
        )
        return StepConfig(name="step1", security=security, actions=actions, per_card=per_card)
    name = t.string("name", f"step{index + 1}")
    run_if = t.string("run_if", "confirmed")
    if run_if not in ("confirmed", "always"):
        raise t.error("run_if", f"expected 'confirmed' or 'always', got {run_if!r}")
    security = _security(t.table("security"))
    actions, per_card = _step_actions(
        source, t.key("actions"), t._get("actions", _MISSING), targets, t, "actions"
    )
    t.done()
    return StepConfig(name=name, security=security, actions=actions, per_card=per_card, run_if=run_if)


def load_campaign(path: Path | str) -> CampaignConfig:
    """Read and check a campaign file; every problem is a ConfigError naming file and key."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read campaign file: {exc.strerror}", source=str(path)) from None
    return campaign_from_toml(text, path)


def campaign_from_toml(text: bytes | str, path: Path) -> CampaignConfig:
    """A campaign from TOML text; ``path`` names it in errors and anchors its relative paths
    (``[network].handset_config``, ``[targets].csv``)."""
    try:
        raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=str(path)) from None
    return campaign_from_mapping(raw, path)


def campaign_from_mapping(raw: object, path: Path) -> CampaignConfig:
    """The one campaign loader: a TOML document's tables, or the same structure as JSON (the HTTP
    API's ``POST /api/campaigns``); date-times may then be RFC 3339 strings."""
    path = Path(path)
    source = str(path)
    top = _Table(source, "", raw)

    c = top.table("campaign")
    validity = c.number("validity_period_s", None, positive=True)
    if validity is not None and validity > 63 * 7 * 86400:
        raise c.error(
            "validity_period_s", f"{validity:g} s is above 63 weeks (SMPP 3.4 §7.1.1 relative time)"
        )
    campaign = CampaignSection(
        name=c.string("name"),
        deadline_s=c.number("deadline_s", 3600.0, positive=True),
        concurrency=c.integer("concurrency", 1000, low=1, high=10_000_000),
        validity_period_s=validity,
        deadline=_datetime(c, "deadline"),
        start_at=_datetime(c, "start_at"),
    )
    if not campaign.name:
        raise c.error("name", "must not be empty")
    if campaign.start_at and campaign.deadline and campaign.deadline <= campaign.start_at:
        raise c.error("deadline", f"{campaign.deadline.isoformat()} is not after start_at")
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
        reconnect_backoff_s=s.number("reconnect_backoff_s", 0.5, positive=True),
        reconnect_window_s=s.number("reconnect_window_s", 30.0, positive=True),
        bind_timeout_s=s.number("bind_timeout_s", 5.0, positive=True),
    )
    if s.has("reconnect_attempts"):
        raise s.error("reconnect_attempts", "replaced by reconnect_window_s (seconds without a bind)")

    p = top.table("pacing")
    if p.raw:
        for old in ("window", "max_messages_per_second"):
            if s.has(old):
                raise s.error(old, "pacing is set in [pacing]: remove it here")
    pacing = PacingSection(
        messages_per_second=p.number("messages_per_second", smsc.max_messages_per_second),
        window=p.integer("window", smsc.window, low=1, high=100_000),
        binds=p.integer("binds", 1, low=1, high=64),
    )
    s.done()
    p.done()

    targets = _targets(top.table("targets"), path.parent, network, n)

    r = top.table("retry")
    retry = RetrySection(
        por_timeout_s=r.number("por_timeout_s", 5.0, positive=True),
        max_attempts=r.integer("max_attempts", 4, low=1, high=1000),
        backoff_s=r.number("backoff_s", 1.0),
        max_backoff_s=r.number("max_backoff_s", 30.0),
    )
    r.done()

    steps: list[StepConfig] = []
    if top.has("steps"):
        for old in ("security", "actions"):
            if top.has(old):
                raise top.error(
                    old,
                    "use [[steps]] (each with its security and actions) or top-level "
                    "[security] + [[actions]], not both",
                )
        raw_steps = top._get("steps", _MISSING)
        if not isinstance(raw_steps, list) or not raw_steps:
            raise top.error("steps", "expected at least one [[steps]] table")
        for i, entry in enumerate(raw_steps):
            steps.append(_step(source, _Table(source, f"steps[{i}]", entry), i, targets, top))
        names = [st.name for st in steps]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise top.error(f"steps[{i}].name", f"{name!r} used by an earlier step")
    else:
        steps.append(_step(source, top, None, targets, top))
    top.done()
    return CampaignConfig(
        source=path,
        campaign=campaign,
        network=network,
        smsc=smsc,
        targets=targets,
        pacing=pacing,
        retry=retry,
        steps=tuple(steps),
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


def _keyset_templates(raw: object, source: str) -> tuple[KeysetTemplate, ...]:
    """``[[fleet.keysets]]``: each value of the type :class:`KeysetTemplate` declares, named by its
    key path (``fleet.keysets[1].kvn: expected an integer, got '1'``)."""
    if not isinstance(raw, list):
        raise ConfigError("fleet.keysets", "expected an array of tables ([[fleet.keysets]])", source=source)
    templates = []
    for i, entry in enumerate(raw):
        t = _Table(source, f"fleet.keysets[{i}]", entry)
        templates.append(
            KeysetTemplate(
                kvn=t.integer("kvn", low=1, high=15),
                kic_algorithm=t.string("kic_algorithm"),
                kid_algorithm=t.string("kid_algorithm"),
                key_length=t.integer("key_length"),
            )
        )  # other keys are the handset's (module docstring of load_network_inventory)
    return tuple(templates)


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
    for name in ("seed", "count"):
        if name not in fleet_raw:
            raise ConfigError(f"fleet.{name}", "required key missing", source=source)
    kwargs: dict[str, Any] = {k: fleet_raw[k] for k in _FLEET_FIELDS if k in fleet_raw}
    if "keysets" in fleet_raw:
        kwargs["keysets"] = _keyset_templates(fleet_raw["keysets"], source)
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
