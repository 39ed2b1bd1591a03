"""A short run of the decoder fuzzer (benchmarks/fuzz.py); the closing note gives the big count."""

from __future__ import annotations

import random

import pytest

from benchmarks.fuzz import all_targets, run_target

TARGETS = all_targets()


@pytest.mark.fuzz
@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_decoder_survives_random_and_mutated_inputs(target) -> None:  # type: ignore[no-untyped-def]
    crashes = run_target(target, 2000, random.Random(f"ci:{target.name}"))
    assert crashes == [], crashes[0][1] if crashes else ""
