"""A small TOML writer for the configs a lab generates (tomllib reads, the standard library has no writer).

Scope: what handset and campaign files hold: tables, arrays of tables, strings, booleans, integers,
floats and arrays of those (TOML 1.0 §Table, §Array of Tables).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps"]


def _key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key)
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value} has no TOML form here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(table: dict[str, Any], path: list[str], out: list[str]) -> None:
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            out.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        name = ".".join(_key(p) for p in [*path, key])
        if isinstance(value, dict):
            out.append(f"\n[{name}]")
            _emit(value, [*path, key], out)
        elif _is_table_array(value):
            for item in value:
                out.append(f"\n[[{name}]]")
                _emit(item, [*path, key], out)


def dumps(data: dict[str, Any]) -> str:
    out: list[str] = []
    _emit(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"
