"""The import rules of the architecture (docs/architecture.md), checked on the source with ``ast``.

* ``ota_protocols`` and the modules marked PURE import no I/O, clock or randomness
  (outside ``if TYPE_CHECKING:``), and no application.
* The applications never import each other; the one hardware-shaped exception is
  the phone holding a SIM: ``handset`` may use ``sim_emulator.api`` and nothing else.
* Only ``ota_lab`` (and the tests) wire the three applications together.
* smpplib is imported by the OTA server's ESME alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPLICATIONS = ("ota_server", "handset", "sim_emulator")
FORBIDDEN_IN_PURE = {
    "asyncio",
    "socket",
    "sqlite3",
    "time",
    "random",
    "os",
    "pathlib",
    "threading",
    "subprocess",
    "selectors",
    "signal",
}
# Modules of the applications that are pure, as the house style requires.
PURE_APPLICATION_MODULES = {
    "ota_server.packet_tool",
    "ota_server.command_builder",
    "ota_server.reconciliation",
    "ota_server.por_matcher",
    "ota_server.report",
    "handset.network_core",
    "handset.mobile_equipment",
    "handset.smsc_router",
    "handset.radio_link",
    "sim_emulator.file_system",
    "sim_emulator.ota_security",
    "sim_emulator.remote_apdu_executor",
    "sim_emulator.uicc",
    "sim_emulator.applets",
    "sim_emulator.profile",
    "sim_emulator.card_state",
    "sim_emulator.card_template",
    "sim_emulator.card_messages",
    "handset.activity",
    "ota_server.smpp_link_events",
}
ALLOWED_CROSS_IMPORTS = {("handset", "sim_emulator.api")}
# The virtual-time lab: no sockets, no event loop, no threads, no database (its clock is an event
# heap; ``time`` only measures the wall time a run took, reported apart from the compared results).
FORBIDDEN_IN_VIRTUAL = {"asyncio", "socket", "selectors", "threading", "sqlite3", "subprocess"}
# The SMPP link: smpp_connection drives smpplib, smpp_fields maps fields to its PDU objects and
# smpp_link is its face (smpp_stream and smpp_link_events, beside them, need no smpplib).
SMPPLIB_MODULES = {
    "ota_server.esme",
    "ota_server.smpp_link",
    "ota_server.smpp_connection",
    "ota_server.smpp_fields",
}


def modules() -> Iterator[tuple[str, Path]]:
    for package in ("ota_protocols", *APPLICATIONS, "ota_lab"):
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            yield ".".join(parts), path


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def runtime_imports(path: Path) -> set[str]:
    """Absolute module names imported at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


ALL_MODULES = list(modules())


def test_the_checker_sees_the_packages() -> None:
    names = {name for name, _ in ALL_MODULES}
    assert "ota_protocols.secured_packet.command_packet" in names
    assert "ota_server.cli" in names


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random\n"
        "def f():\n    import socket\n"
    )
    assert runtime_imports(sample) == {"os", "typing", "typing.TYPE_CHECKING", "socket"}


@pytest.mark.parametrize(("name", "path"), ALL_MODULES, ids=[n for n, _ in ALL_MODULES])
def test_import_rules(name: str, path: Path) -> None:
    imports = runtime_imports(path)
    roots = {imported.split(".")[0] for imported in imports}
    package = name.split(".")[0]

    if package == "ota_protocols" or name in PURE_APPLICATION_MODULES:
        assert not roots & FORBIDDEN_IN_PURE, (
            f"{name} is pure but imports {sorted(roots & FORBIDDEN_IN_PURE)}"
        )
    if package == "ota_protocols":
        assert not roots & {*APPLICATIONS, "ota_lab"}, f"{name} imports an application"
    if package in APPLICATIONS:
        assert "ota_lab" not in roots, f"{name} imports the lab runner"
        for other in APPLICATIONS:
            if other == package:
                continue
            crossing = {i for i in imports if i == other or i.startswith(other + ".")}
            allowed = {
                i
                for i in crossing
                if any(
                    package == src and (i == target or i.startswith(target + "."))
                    for src, target in ALLOWED_CROSS_IMPORTS
                )
            }
            assert crossing <= allowed, f"{name} imports {sorted(crossing - allowed)}"
    if name.startswith("ota_lab.virtual"):
        assert not roots & FORBIDDEN_IN_VIRTUAL, (
            f"{name} is virtual-time but imports {sorted(roots & FORBIDDEN_IN_VIRTUAL)}"
        )
    if "smpplib" in roots:
        assert name in SMPPLIB_MODULES, f"{name} imports smpplib; only {sorted(SMPPLIB_MODULES)} may"
