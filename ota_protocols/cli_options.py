"""PURE: the command-line options every ota-sim command spells the same way (argparse only).

``--log-level`` takes one of :data:`LOG_LEVELS` (case-insensitive). Given on a subcommand's parser
with ``default=None`` it is left out of the namespace when absent (``argparse.SUPPRESS``), so it
does not undo one given before the subcommand; each command passes its own default for the top.
"""

from __future__ import annotations

import argparse

__all__ = ["LOG_LEVELS", "add_log_level"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level(parser: argparse.ArgumentParser, *, default: str | None, shown_default: str) -> None:
    """``--log-level LEVEL``: ``default`` None on a subcommand's parser (see the module docstring)."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default=argparse.SUPPRESS if default is None else default,
        help=f"{', '.join(LOG_LEVELS)} (default {shown_default})",
    )
