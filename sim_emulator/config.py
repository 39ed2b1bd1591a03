"""Card profiles and fleet templates: TOML -> frozen dataclasses (house-style §4).

A **profile** describes one card: identity (``iccid``, ``imsi``, ``msisdn``), its
``[[keysets]]``, ``[[applications]]``, optional ``[[files]]`` and ``[options]``. A
**fleet template** has no identity and no keys (they come from
``ota_protocols.fleet.derive_card``) and may vary per card by fleet index:
``files[].absent_when = {modulo, remainder}`` and the purse's
``balance + (index % balance_modulo) * balance_step``. Format: docs/sim-emulator.md.

Clauses: TS 102 225 §5.1.2-§5.1.3 (algorithms per key set), TS 102 226 §8.2.1.3.2.4
(TAR and MSL), TS 102 226 §5.1/§5.2 (script format per TAR).

Glossary: KVN key version number, KIc/KID/KIK keys, TAR toolkit application reference,
MSL minimum security level (coded like SPI1), EF elementary file.

Unknown keys are rejected; every error is a ConfigError naming the file and the key
path (``cards/x.toml: keysets[0].kic: expected 16, 24 or 32 bytes of hex, got 15``).
"""

from __future__ import annotations

import os
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from ota_protocols.errors import ConfigError
from ota_protocols.hex_text import parse_hex
from ota_protocols.secured_packet.security_parameters import KEY_LENGTHS, CipherAlgorithm, IntegrityAlgorithm
from sim_emulator.applets import ApplicationTable
from sim_emulator.card_template import CardTemplate
from sim_emulator.file_system import MF, standard_tree
from sim_emulator.profile import (
    AbsentWhen,
    AppKind,
    ApplicationProfile,
    CardIdentity,
    CardOptions,
    EfStructure,
    ErrorPorStyle,
    FileProfile,
    KeysetProfile,
    ScriptFormat,
)

E = TypeVar("E", bound=Enum)
_MISSING = object()


class _Table:
    """One TOML table being read: tracks the key path and rejects unknown keys."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {type(data).__name__}", source=source)
        self.data = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.where(key), message, source=self.source)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "missing")
            return default
        return self.data[key]

    def str(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def digits(self, key: str) -> str:
        value: str = self.str(key)
        if not value.isdigit():
            raise self.error(key, f"expected digits, got {value!r}")
        return value

    def int(self, key: str, default: Any = _MISSING, *, low: int = 0, high: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise self.error(key, f"{value} outside {low}..{high if high is not None else 'inf'}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def hex(self, key: str, default: Any = _MISSING, *, lengths: tuple[int, ...] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a hex string, got {value!r}")
        try:
            raw = parse_hex(value)
        except ValueError as exc:
            raise self.error(key, f"not hex: {exc}") from None
        if lengths is not None and len(raw) not in lengths:
            raise self.error(key, f"expected {_or(lengths)} bytes of hex, got {len(raw)}")
        return raw

    def octet(self, key: str, default: Any = _MISSING) -> Any:
        """An octet written as hex text (``"16"``) or an integer."""
        value = self.raw(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            raw = self.hex(key, lengths=(1,))
            return raw[0]
        return self.int(key, low=0, high=0xFF)

    def enum(self, key: str, kind: type[E], default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default:
            return value
        try:
            return kind(value)
        except ValueError:
            names = ", ".join(repr(m.value) for m in kind)
            raise self.error(key, f"expected one of {names}, got {value!r}") from None

    def tables(self, key: str) -> list[_Table]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.error(key, "expected an array of tables ([[...]])")
        return [_Table(item, f"{self.where(key)}[{i}]", self.source) for i, item in enumerate(value)]

    def table(self, key: str) -> _Table:
        return _Table(self.raw(key, {}), self.where(key), self.source)

    def done(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown key")


def _or(lengths: tuple[int, ...]) -> str:
    parts = [str(n) for n in lengths]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _read(path: str | os.PathLike[str]) -> tuple[_Table, str]:
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", source=source) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=source) from exc
    return _Table(data, "", source), source


def _keyset(t: _Table) -> KeysetProfile:
    kic_algorithm = t.enum("kic_algorithm", CipherAlgorithm)
    kid_algorithm = t.enum("kid_algorithm", IntegrityAlgorithm)
    kic = t.hex("kic", lengths=KEY_LENGTHS[kic_algorithm])
    kid_lengths = KEY_LENGTHS.get(kid_algorithm)
    kid = t.hex("kid", b"" if kid_lengths is None else _MISSING, lengths=kid_lengths)
    kik = t.hex("kik", b"", lengths=(0, 8, 16, 24, 32))
    profile = KeysetProfile(
        kvn=t.int("kvn", low=1, high=15),
        kic_algorithm=kic_algorithm,
        kid_algorithm=kid_algorithm,
        kic=kic,
        kid=kid,
        kik=kik,
    )
    t.done()
    return profile


def _application(t: _Table) -> ApplicationProfile:
    kind = t.enum("kind", AppKind)
    purse = kind is AppKind.PURSE
    values: dict[str, Any] = dict(
        tar=t.hex("tar", lengths=(3,)),
        kind=kind,
        msl=t.octet("msl", 0),
        format=t.enum("format", ScriptFormat, ScriptFormat.COMPACT),
        action_counter=t.int("action_counter", 0, high=0xFFFFFFFF),
    )
    if purse:
        values["max_balance"] = t.int("max_balance", high=0xFFFFFFFF)
        values["balance"] = t.int("balance", 0, high=values["max_balance"])
        values["balance_step"] = t.int("balance_step", 0, high=0xFFFFFFFF)
        values["balance_modulo"] = t.int("balance_modulo", 1, low=1)
        values["payment_amount"] = t.int("payment_amount", 100, low=1, high=0xFFFFFFFF)
    if values["msl"] & 0xE0:
        raise t.error("msl", f"{values['msl']:02x} sets reserved SPI1 bits b8..b6")
    t.done()
    return ApplicationProfile(**values)


def _file(t: _Table) -> FileProfile:
    text = t.str("path")
    try:
        path = tuple(bytes.fromhex(part) for part in text.strip("/").split("/"))
        if any(len(fid) != 2 for fid in path) or path[0] != MF[0] or len(path) < 2:
            raise ValueError
    except ValueError:
        raise t.error("path", f'expected FIDs from the MF like "3F00/7F20/6F46", got {text!r}') from None
    absent = None
    if "absent_when" in t.data:
        a = t.table("absent_when")
        absent = AbsentWhen(modulo=a.int("modulo", low=1), remainder=a.int("remainder"))
        if absent.remainder >= absent.modulo:
            raise a.error("remainder", f"{absent.remainder} must be below modulo {absent.modulo}")
        a.done()
    spec = FileProfile(
        path=path,
        structure=t.enum("structure", EfStructure, None),
        size=t.int("size", None, low=1, high=0x7FFF),
        record_length=t.int("record_length", None, low=1, high=255),
        record_count=t.int("record_count", None, low=1, high=254),
        content=t.hex("content", None),
        absent_when=absent,
    )
    t.done()
    return spec


def _options(t: _Table) -> CardOptions:
    defaults = CardOptions()
    options = CardOptions(
        por_max_deliver_report=t.int(
            "por_max_deliver_report", defaults.por_max_deliver_report, low=16, high=255
        ),
        error_por_style=t.enum("error_por_style", ErrorPorStyle, defaults.error_por_style),
        t0_get_response=t.bool("t0_get_response", defaults.t0_get_response),
        no_auto_get_response=t.bool("no_auto_get_response", defaults.no_auto_get_response),
        por_on_error_includes_script_failure=t.bool(
            "por_on_error_includes_script_failure", defaults.por_on_error_includes_script_failure
        ),
        counter_update_on_no_check=t.bool("counter_update_on_no_check", defaults.counter_update_on_no_check),
        por_padding=t.octet("por_padding", defaults.por_padding),
        journal_limit=t.int("journal_limit", defaults.journal_limit, low=1),
        ota_platform_address=t.str("ota_platform_address", defaults.ota_platform_address),
        info_message_on_power_up=t.bool("info_message_on_power_up", defaults.info_message_on_power_up),
    )
    address = options.ota_platform_address
    if not address.isdigit() or not 1 <= len(address) <= 20:
        raise t.error("ota_platform_address", f"{address!r}: expected 1 to 20 digits (TS 23.040 §9.1.2.5)")
    t.done()
    return options


def _template(top: _Table, source: str) -> CardTemplate:
    apps = tuple(_application(t) for t in top.tables("applications"))
    seen: dict[bytes, int] = {}
    for i, app in enumerate(apps):
        if app.tar in seen:
            raise ConfigError(
                f"applications[{i}].tar",
                f"TAR {app.tar.hex()} already used by applications[{seen[app.tar]}]",
                source=source,
            )
        seen[app.tar] = i
    files_tables = top.tables("files")
    files = tuple(_file(t) for t in files_tables)
    tree = standard_tree()
    for i, spec in enumerate(files):
        try:
            tree = tree.with_files((spec,))
        except ValueError as exc:
            raise ConfigError(f"files[{i}]", str(exc), source=source) from None
    options = _options(top.table("options"))
    return CardTemplate(tree, ApplicationTable(apps), apps, files, options, source)


def load_card_template(path: str | os.PathLike[str]) -> CardTemplate:
    """A fleet template: applications, files, options; no identity, no keys."""
    top, source = _read(path)
    template = _template(top, source)
    top.done()
    return template


def load_card_profile(path: str | os.PathLike[str]) -> tuple[CardTemplate, CardIdentity]:
    """A single card: the template part plus identity and key sets."""
    top, source = _read(path)
    keysets = tuple(_keyset(t) for t in top.tables("keysets"))
    kvns = [k.kvn for k in keysets]
    if len(set(kvns)) != len(kvns):
        raise ConfigError("keysets", f"duplicate KVN in {kvns}", source=source)
    identity = CardIdentity(
        iccid=top.digits("iccid"), imsi=top.digits("imsi"), msisdn=top.digits("msisdn"), keysets=keysets
    )
    if not 18 <= len(identity.iccid) <= 20:
        raise ConfigError("iccid", f"expected 18 to 20 digits, got {len(identity.iccid)}", source=source)
    if not 6 <= len(identity.imsi) <= 15:
        raise ConfigError("imsi", f"expected 6 to 15 digits, got {len(identity.imsi)}", source=source)
    template = _template(top, source)
    top.done()
    return template, identity


def default_state_path(profile_path: str | os.PathLike[str]) -> Path:
    """``<profile>.state.json`` beside the profile (``cards/x.toml`` -> ``cards/x.state.json``)."""
    return Path(profile_path).with_suffix(".state.json")
