"""Tests that need a real third-party component: skipped where it is missing, failed in CI.

A developer without Kannel or tshark can still run the suite; CI (``.ci/run`` installs every component)
must never turn a missing component into a quiet skip, or an interop test could stop running unnoticed.
Every such test calls :func:`require` (in an autouse fixture of its module) instead of ``skipif``.
"""

from __future__ import annotations

import os
import shutil

import pytest

FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})


def in_ci() -> bool:
    """True when the CI environment variable holds a true value (``true``, ``1``, ``yes``...)."""
    return os.environ.get("CI", "").strip().lower() not in FALSE_VALUES


def require(component: str, available: bool, why: str) -> None:
    """Skip the running test when ``component`` is not ``available``; in CI, fail it instead.

    ``why`` says what the test needs and how to install it; it is the skip reason and the failure text.
    """
    if available:
        return
    message = f"{component} is missing: {why}"
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing component fails, never skips)", pytrace=False)
    pytest.skip(message)


def on_path(*programs: str) -> bool:
    """Every program is an executable on PATH."""
    return all(shutil.which(program) is not None for program in programs)
