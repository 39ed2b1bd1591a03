"""pytest plugin: run OTA labs from your own tests (loaded by the ``pytest11`` entry point ``ota_lab``).

    def test_campaign_survives_20_percent_loss(ota_lab_run):
        run = ota_lab_run("labs/my-lab.toml", seed=7, faults="lossy")
        run.assert_invariants()                 # lost = duplicated = mismatches = 0
        assert run.summary["pending"] == 0

Fixtures:

* ``ota_lab_run(lab, *, seed=None, faults=None, transport=None, **tables)`` -> :class:`LabRun`.
  ``lab`` is a lab file (str / Path, docs/labs.md) or the same tables as a Python dict (relative
  paths in it are taken from the pytest rootdir). ``faults`` is a named schedule
  (:data:`FAULT_SCHEDULES`, or one added with the ``ota_lab_fault_schedules`` fixture) or a
  ``[faults]`` dict; it replaces the lab's ``[faults]``. ``tables`` are merged over the lab, table
  by table (``timing={"deadline_s": 60}``, ``lab={"fleet_size": 500}``). ``seed`` defaults to
  ``ota_lab_seed``. The lab actually run is written to the test's ``tmp_path``, so the replay
  command names a file that exists.
* ``ota_lab_seed``: 1, or ``--ota-lab-seed N``; ``--ota-lab-seeds A-B`` parametrizes every test that
  uses it over those seeds (a sweep inside your test suite).
* ``ota_lab_fault_schedules``: the named schedules; override it in your conftest to add yours.

Every run a test makes is remembered; when the test fails, its report gets an "ota-lab runs" section
with each run's seed, outcome and the command that replays it (``ota-lab run FILE --seed N``).
Runs use the lab's transport: virtual time by default (deterministic, milliseconds per small lab).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ota_lab.result import LabResult

# The lab itself (ota_lab.runner and the applications) is imported by the fixtures, not at pytest
# start-up: a session that uses no lab fixture pays nothing for the plugin.

__all__ = ["FAULT_SCHEDULES", "LabRun"]

# Named fault schedules ([faults] tables, docs/labs.md): ranges are drawn per seed.
FAULT_SCHEDULES: dict[str, dict[str, Any]] = {
    "none": {},
    "light": {"mt_loss": [0.0, 0.15], "mo_loss": [0.0, 0.15], "mt_duplicate": [0.0, 0.1]},
    "loss-20": {"mt_loss": 0.2, "mo_loss": 0.2},
    "lossy": {
        "mt_loss": [0.2, 0.4],
        "mo_loss": [0.2, 0.4],
        "mt_burst": [0.0, 0.05],
        "mo_burst": [0.0, 0.05],
        "mt_duplicate": [0.0, 0.1],
        "mo_duplicate": [0.0, 0.1],
        "mt_reorder": [0.0, 0.2],
        "mo_reorder": [0.0, 0.2],
        "mt_jitter_s": [0.0, 0.05],
        "mo_jitter_s": [0.0, 0.05],
        "mt_late": [0.0, 0.05],
        "mo_late": [0.0, 0.05],
        "mt_corrupt": [0.0, 0.05],
        "mo_corrupt": [0.0, 0.05],
        "offline": [0.0, 0.1],
        "busy": [0.0, 0.1],
        "tear": [0.0, 0.1],
        "burst_p_bad_to_good": 0.5,
        "reorder_extra_s": 0.5,
        "late_min_s": 1.0,
        "late_max_s": 4.0,
        "mean_offline_s": 0.5,
    },
}

_RUNS = pytest.StashKey[list["LabRun"]]()
_PATH_KEYS = (("network", "handset_config"), ("campaign", "path"))


class LabRun:
    """One seed of one lab, run: the :class:`~ota_lab.result.LabResult` and how to replay it."""

    def __init__(self, lab_file: Path, seed: int, result: LabResult) -> None:
        self.lab_file = lab_file
        self.seed = seed
        self.result = result

    @property
    def replay(self) -> str:
        return f"ota-lab run {self.lab_file} --seed {self.seed}"

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    @property
    def invariants(self) -> Any:
        return self.result.invariants

    @property
    def ok(self) -> bool:
        return self.result.ok

    def describe(self) -> str:
        return f"seed {self.seed}: {self.result.outcome()}\n  replay: {self.replay}"

    def assert_invariants(self, *, allow_stuck: bool = True) -> None:
        """No action lost or duplicated, no counter mismatch, no card missing, no run error (and none
        stuck pending at the deadline unless ``allow_stuck``); the message names seed and replay."""
        inv = self.result.invariants
        problems = []
        if self.result.error is not None:
            problems.append(f"the run failed: {self.result.error}")
        for name, value in (
            ("lost", inv.lost),
            ("duplicated", inv.duplicated),
            ("counter mismatches", inv.mismatches),
            ("cards missing", inv.missing_cards),
        ):
            if value:
                problems.append(f"{name} {value}")
        if not allow_stuck and inv.stuck:
            problems.append(f"stuck {inv.stuck}")
        if problems:
            first = f"; first problem card: {inv.problems[0]}" if inv.problems else ""
            raise AssertionError(
                f"ota-lab invariants violated ({', '.join(problems)}) at seed {self.seed}{first}\n"
                f"replay: {self.replay}"
            )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _absolute(tables: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative file paths of a lab (handset config, campaign, card template) made absolute."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tables.items()}
    for table, key in _PATH_KEYS:
        section = out.get(table)
        if (
            isinstance(section, dict)
            and isinstance(section.get(key), str)
            and not Path(section[key]).is_absolute()
        ):
            section[key] = str((base / section[key]).resolve())
    network = out.get("network")
    if isinstance(network, dict) and isinstance(network.get("fleet"), dict):
        fleet = dict(network["fleet"])
        template = fleet.get("card_template")
        if isinstance(template, str) and not Path(template).is_absolute():
            fleet["card_template"] = str((base / template).resolve())
        network["fleet"] = fleet
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ota-lab", "OTA labs (ota_lab.pytest_plugin)")
    group.addoption("--ota-lab-seed", type=int, default=None, help="seed of ota_lab_seed (default 1)")
    group.addoption(
        "--ota-lab-seeds", default=None, help="parametrize tests using ota_lab_seed over these seeds (1-100)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    spec = metafunc.config.getoption("--ota-lab-seeds", default=None)
    if spec and "ota_lab_seed" in metafunc.fixturenames:
        from ota_lab.cli import parse_seeds

        seeds = parse_seeds(spec)
        metafunc.parametrize("ota_lab_seed", seeds, ids=[f"seed{s}" for s in seeds], indirect=True)


@pytest.fixture
def ota_lab_seed(request: pytest.FixtureRequest) -> int:
    param = getattr(request, "param", None)
    if param is not None:
        return int(param)
    chosen = request.config.getoption("--ota-lab-seed", default=None)
    return 1 if chosen is None else int(chosen)


@pytest.fixture
def ota_lab_fault_schedules() -> dict[str, dict[str, Any]]:
    return dict(FAULT_SCHEDULES)


@pytest.fixture
def ota_lab_run(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    ota_lab_seed: int,
    ota_lab_fault_schedules: dict[str, dict[str, Any]],
) -> Iterator[Callable[..., LabRun]]:
    from ota_lab.config import Transport, load_lab
    from ota_lab.runner import run_lab
    from ota_lab.toml_writer import dumps

    runs: list[LabRun] = request.node.stash.setdefault(_RUNS, [])
    counter = iter(range(1, 1 << 30))

    def run(
        lab: str | Path | dict[str, Any],
        *,
        seed: int | None = None,
        faults: str | dict[str, Any] | None = None,
        transport: str | None = None,
        **tables: dict[str, Any],
    ) -> LabRun:
        if isinstance(lab, dict):
            raw = _absolute(lab, request.config.rootpath)
            name = str(raw.get("lab", {}).get("name", request.node.name))
        else:
            path = Path(lab)
            if not path.is_absolute():
                path = (request.config.rootpath / path) if not path.exists() else path.resolve()
            raw = _absolute(tomllib.loads(path.read_text(encoding="utf-8")), path.parent)
            name = str(raw.get("lab", {}).get("name", path.stem))
        if faults is not None:
            if isinstance(faults, str):
                if faults not in ota_lab_fault_schedules:
                    known = ", ".join(sorted(ota_lab_fault_schedules))
                    raise pytest.UsageError(f"ota_lab_run: no fault schedule {faults!r} (known: {known})")
                faults = ota_lab_fault_schedules[faults]
            raw = {k: v for k, v in raw.items() if k != "faults"} | (
                {"faults": dict(faults)} if faults else {}
            )
        raw = _merge(raw, tables)
        raw.setdefault("lab", {}).setdefault("name", name)
        lab_file = tmp_path / f"lab-{next(counter)}.toml"
        lab_file.write_text(dumps(raw))
        config = load_lab(lab_file)
        if transport is not None:
            config = replace(config, transport=Transport(transport))
        chosen = ota_lab_seed if seed is None else seed
        result = run_lab(config, chosen)
        done = LabRun(lab_file, chosen, result)
        runs.append(done)
        return done

    yield run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    runs = item.stash.get(_RUNS, None)
    if runs and report.failed:
        text = "\n".join(r.describe() for r in runs)
        report.sections.append(("ota-lab runs (seed, outcome, replay)", text))
    return report
