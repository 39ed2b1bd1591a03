"""Hex text -> bytes for configs, CSV, JSON and stdin, with the reason when the text is not hex.

Values travel as ``bytes``; hex appears only at the edges (house-style §6), and every edge reads
it through :func:`parse_hex` so that every command says the same thing about the same mistake.
ASCII whitespace between digits is ignored.  The reason never repeats the text, which may be a
key: it gives the first character that is not a hex digit and its place (counting from 1), or
says that the number of hex digits is odd.

Glossary: octet 8 bits, two hex digits.
"""

from __future__ import annotations

__all__ = ["hex_problem", "parse_hex"]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_IGNORED = frozenset(" \t\n\r\x0b\x0c")  # what bytes.fromhex skips: ASCII whitespace


def hex_problem(text: str) -> str | None:
    """Why ``text`` is not hex (one short clause), or ``None`` when it is."""
    digits = 0
    for place, char in enumerate(text, start=1):
        if char in _HEX_DIGITS:
            digits += 1
        elif char not in _IGNORED:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            return f"character {place} ({shown}) is not a hex digit"
    if digits % 2:
        return f"odd number of hex digits ({digits}): each octet takes two"
    return None


def parse_hex(text: str) -> bytes:
    """``text`` as bytes; ``ValueError`` carrying :func:`hex_problem`'s reason otherwise."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    problem = hex_problem(text)
    if problem is None:  # hex digits split by a space inside an octet ("0 1"): joined
        return bytes.fromhex("".join(c for c in text if c not in _IGNORED))
    raise ValueError(problem)
