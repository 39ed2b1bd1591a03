"""The lab's import graph: the SMPP runner and the virtual-time lab do not import each other.

``ota_lab.runner`` (loopback SMPP) may load :mod:`ota_lab.virtual` to run a virtual lab, so nothing
under ``ota_lab/virtual/`` may reach ``ota_lab.runner`` by any path: the draw, the seed's files, the
invariants and the result live in modules of their own. Imports inside functions count (a lazy import
is still an edge). Read with ``ast``, as tests/test_architecture.py does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ota_lab"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _edges(path: Path) -> set[str]:
    """The ota_lab modules ``path`` imports anywhere in its body (``from P import name`` counts as P,
    or as P.name when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in MODULES)
    return found


GRAPH = {name: _edges(path) for name, path in MODULES.items()}


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(GRAPH[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(GRAPH[name])
    return seen


def test_the_graph_sees_both_transports() -> None:
    assert "ota_lab.virtual.driver" in GRAPH["ota_lab.virtual"]
    assert "ota_lab.virtual" in GRAPH["ota_lab.runner"]  # run_lab's lazy import of the virtual lab
    assert {"ota_lab.draw", "ota_lab.seed_files", "ota_lab.invariants"} <= GRAPH["ota_lab.virtual.driver"]


def test_no_virtual_module_reaches_the_smpp_runner() -> None:
    virtual = [name for name in GRAPH if name == "ota_lab.virtual" or name.startswith("ota_lab.virtual.")]
    assert len(virtual) >= 5
    for name in virtual:
        assert "ota_lab.runner" not in _reachable(name), f"{name} reaches ota_lab.runner"


def test_the_shared_lab_modules_import_neither_transport() -> None:
    for name in ("ota_lab.draw", "ota_lab.seed_files", "ota_lab.invariants", "ota_lab.result"):
        reached = _reachable(name)
        assert "ota_lab.runner" not in reached and "ota_lab.virtual" not in reached, (name, reached)


def test_no_import_cycle_in_the_lab() -> None:
    for name in GRAPH:
        assert name not in _reachable(name), f"{name} imports itself through {sorted(_reachable(name))}"
