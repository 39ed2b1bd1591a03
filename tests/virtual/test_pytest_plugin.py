"""The pytest plugin as a user repository sees it: a fresh pytest (pytester, in a subprocess) that
loads ``ota_lab.pytest_plugin`` through its ``pytest11`` entry point, builds labs from a TOML file and
from a dict, runs them under a named fault schedule and seed, asserts the invariants, and on failure
prints the seed and the replay command."""

from __future__ import annotations

from pathlib import Path

import pytest

from ota_lab.draw import FaultMix
from ota_lab.invariants import Invariants
from ota_lab.pytest_plugin import LabRun
from ota_lab.result import LabResult

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]

USER_TESTS = f"""
import pytest

SMOKE = {str(ROOT / "configs" / "labs" / "smoke.toml")!r}
HANDSET = {str(ROOT / "configs" / "handset.toml")!r}


def test_from_a_file_under_a_named_schedule(ota_lab_run):
    run = ota_lab_run(SMOKE, seed=7, faults="loss-20")
    run.assert_invariants()
    assert run.summary["cards"] >= 3 and run.summary["pending"] == 0
    assert run.result.mix.faults["mt_loss"] == 0.2


def test_from_python(ota_lab_run, ota_lab_seed):
    run = ota_lab_run(
        {{
            "lab": {{"name": "mine", "fleet_size": 2}},
            "network": {{"handset_config": HANDSET}},
            "campaign": {{
                "security": {{"spi": "1639", "kic": "12", "kid": "12", "tar": "b00010"}},
                "actions": [{{"type": "update_binary", "path": "3F00/7F20/6F31", "offset": 0, "data": "01"}}],
            }},
            "timing": {{"deadline_s": 60.0, "por_timeout_s": 1.5, "max_attempts": 8, "rp_timeout_s": 0.4,
                        "retry_min_s": 0.2, "retry_max_s": 0.8}},
        }},
        faults={{"mt_loss": 0.3}},
    )
    run.assert_invariants(allow_stuck=False)
    assert run.seed == ota_lab_seed and run.summary["confirmed"] == 2


def test_fails_and_names_its_seed(ota_lab_run):
    run = ota_lab_run(SMOKE, seed=11, faults="light")
    assert run.summary["confirmed"] == -1
"""


def test_a_user_repository_loads_the_plugin_by_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ota-lab-seed", "4")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ota-lab runs (seed, outcome, replay)*",
            "seed 11: confirmed *",
            "*replay: ota-lab run *lab-1.toml --seed 11",
        ]
    )


def test_seeds_option_parametrizes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeds="def test_seed(ota_lab_seed):\n    assert ota_lab_seed in (3, 4, 5)\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ota-lab-seeds", "3-5", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_seed?seed3?*PASSED*"])


def test_assert_invariants_names_seed_and_replay(tmp_path: Path) -> None:
    mix = FaultMix(9, 3, 1, 2, {})
    bad = LabResult("lab.toml", 9, mix, invariants=Invariants(lost=1, problems=({"iccid": "89"},)))
    run = LabRun(tmp_path / "lab.toml", 9, bad)
    with pytest.raises(
        AssertionError, match=r"lost 1\) at seed 9.*\nreplay: ota-lab run .*lab.toml --seed 9"
    ):
        run.assert_invariants()
    LabRun(tmp_path / "lab.toml", 9, LabResult("lab.toml", 9, mix)).assert_invariants()
