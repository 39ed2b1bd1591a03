"""A test that needs a real component skips locally and fails in CI; no test skips any other way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.components import in_ci, require

TESTS = Path(__file__).resolve().parent
SKIPS = {"pytest.skip", "pytest.importorskip", "pytest.mark.skip", "pytest.mark.skipif", "pytest.mark.xfail"}
# The one place that may skip: it fails instead when CI is set.
ALLOWED = {Path("support/components.py")}


def skips_outside_require(root: Path) -> list[str]:
    """``path:line: name`` for every pytest skip (or xfail) under ``root`` outside ALLOWED."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root) in ALLOWED or "node_modules" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        for node in sorted(ast.walk(tree), key=lambda node: getattr(node, "lineno", 0)):
            name = None
            if isinstance(node, ast.Attribute) and id(node) not in inner:  # whole chains only
                name = ast.unparse(node)
            elif isinstance(node, ast.ImportFrom) and node.module in ("pytest", "pytest.mark"):
                hits = [f"{node.module}.{alias.name}" for alias in node.names]
                name = next((hit for hit in hits if hit in SKIPS), None)
            if name in SKIPS:
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}: {name}")
    return found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(None, False), ("", False), ("0", False), ("false", False), ("No", False), ("off", False)],
        *[("true", True), ("TRUE", True), ("1", True), ("yes", True), (" true ", True)],
    ],
)
def test_ci_is_a_true_value_of_the_ci_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_a_missing_component_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"^tshark is missing: apt-get install tshark$"):
        require("tshark", False, "apt-get install tshark")


def test_a_missing_component_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^tshark is missing: apt-get install tshark \(CI is"):
        require("tshark", False, "apt-get install tshark")


def test_a_present_component_neither_skips_nor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("true", "false"):
        monkeypatch.setenv("CI", value)
        assert require("tshark", True, "apt-get install tshark") is None


def test_no_test_skips_except_through_require() -> None:
    assert skips_outside_require(TESTS) == []


def test_the_skip_scan_finds_every_form(tmp_path: Path) -> None:
    (tmp_path / "support").mkdir()
    (tmp_path / "support/components.py").write_text("import pytest\npytest.skip('allowed here')\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "from pytest import importorskip\n"
        "pytestmark = pytest.mark.skipif(True, reason='r')\n"
        "lib = pytest.importorskip('lib')\n"
        "@pytest.mark.skip\n"
        "def test_a():\n"
        "    pytest.skip('no')\n"
        "def test_sequence_numbers_are_skipped():\n"  # a name, not a skip
        "    pass\n"
    )
    assert skips_outside_require(tmp_path) == [
        "test_x.py:2: pytest.importorskip",
        "test_x.py:3: pytest.mark.skipif",
        "test_x.py:4: pytest.importorskip",
        "test_x.py:5: pytest.mark.skip",
        "test_x.py:7: pytest.skip",
    ]
