"""The import rules of the architecture (house style §1-§2), checked on the source with ``ast``.

* Pure modules do no I/O, read no clock and draw no randomness. Every module under ``ota_protocols``
  and ``ota_server.engine`` is pure by default (opt-out: PURE_OPT_OUT); elsewhere a pure module is
  listed in PURE_APPLICATION_MODULES. A pure module
  - imports nothing in FORBIDDEN_IN_PURE at run time (``if TYPE_CHECKING:`` bodies excepted),
  - uses nothing in FORBIDDEN_USES (``open``, ``print``, ``datetime.now``, ``importlib.import_module``...),
  - and reaches no I/O module through any chain of project-internal runtime imports; an I/O module is
    one that breaks either of the two rules above.
* ``ota_protocols`` imports no application; the applications never import each other, with one
  hardware-shaped exception: a phone holds a SIM, so ``handset`` may use ``sim_emulator.api``.
* Only ``ota_lab`` (and the tests) wire the three applications together: no application imports it.
* smpplib is imported by the OTA server's SMPP link alone; pyscard (``smartcard``) by handset.pcsc_card.
* The virtual-time lab imports no sockets, event loop, threads or database.

The checker (``tests/support/architecture.py``) takes a root path; ``tests/test_architecture_checker.py``
runs it on small package trees in ``tmp_path`` to show that each rule fires.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.architecture import Analysis, Policy, configuration_errors

ROOT = Path(__file__).resolve().parents[1]

# Packages whose every module is pure, present or future: a new file there is checked with no list to edit.
PURE_BY_DEFAULT = ("ota_protocols", "ota_server.engine")
# Modules under PURE_BY_DEFAULT that may do I/O, each with the reason. Empty: nothing there needs it
# (crypto.py imports pycryptodome, which computes and does no I/O).
PURE_OPT_OUT: dict[str, str] = {}
# Pure modules outside PURE_BY_DEFAULT, one per line so that a move is a one-line edit. Each must exist:
# when a module moves under ota_server/engine/, delete its line here (it is then pure by default).
PURE_APPLICATION_MODULES = {
    "ota_server.packet_tool",
    "ota_server.command_builder",
    "ota_server.report",
    "handset.network_core",
    "handset.mobile_equipment",
    "handset.smsc_router",
    "handset.smsc_limits",
    "handset.radio_link",
    "handset.activity",
    "sim_emulator.file_system",
    "sim_emulator.ota_security",
    "sim_emulator.remote_apdu_executor",
    "sim_emulator.uicc",
    "sim_emulator.applets",
    "sim_emulator.profile",
    "sim_emulator.card_state",
    "sim_emulator.card_template",
    "sim_emulator.card_messages",
    "ota_server.smpp_link_events",
    "sim_emulator.vpcd_link",
}
# A pure module imports none of these at run time (a dotted entry forbids that submodule only).
FORBIDDEN_IN_PURE = {
    # the house style's list (§2): network, event loop, database, clock, randomness, files, threads
    "asyncio",
    "socket",
    "sqlite3",
    "time",
    "random",  # a seeded random.Random comes in as an argument; import random under TYPE_CHECKING
    "os",
    "pathlib",
    "threading",
    # processes, signals, files, OS randomness, network
    "subprocess",
    "multiprocessing",
    "concurrent",
    "selectors",
    "select",
    "signal",
    "shutil",
    "tempfile",
    "glob",
    "secrets",
    "ssl",
    "urllib.request",
    "http.client",
    "http.server",
    # a dynamic import hides its target from the import graph this test walks
    "importlib",
    # handlers are the shells' business (§9: configured in cli.py only)
    "logging.handlers",
    # third-party I/O libraries
    "smpplib",
    "psycopg",
    "psycopg2",
    "rich",
    "matplotlib",
    "smartcard",  # pyscard
    "aiohttp",
    "starlette",
    "uvicorn",
    "selenium",
    "requests",
    "httpx",
}
# Not forbidden, on purpose:
# * logging: every module takes getLogger(__name__) (§9). A logger without handlers writes nothing; the
#   handlers, where the I/O happens, are configured by the shells' cli.py, and a log line is never an
#   input to a decision, so logging cannot make a pure core nondeterministic. Configuring a handler in
#   a pure module is caught below (FORBIDDEN_USES).
# * io: BytesIO and StringIO are in-memory buffers (a codec may feed csv through one); io.open and
#   io.FileIO are caught below.
# * datetime, sys: types and constants (a TP-SCTS is a datetime); their clock and streams are caught below.

# A pure module calls or references none of these at run time (a prefix forbids all under it), except
# ALLOWED_USES. Names are resolved through the module's imports: ``from datetime import datetime as dt;
# dt.now()`` is ``datetime.datetime.now``; a builtin counts unless the module binds the name itself.
FORBIDDEN_USES = {
    "builtins.open": "file I/O",
    "io.open": "file I/O",
    "io.open_code": "file I/O",
    "io.FileIO": "file I/O",
    "builtins.print": "console output: return the text, or log it",
    "builtins.input": "console input",
    "sys.stdout": "console output",
    "sys.stderr": "console output",
    "sys.stdin": "console input",
    "builtins.__import__": "dynamic import: hidden from the import graph",
    "importlib.import_module": "dynamic import: hidden from the import graph",
    "datetime.datetime.now": "the clock: take now (or a datetime) as an argument",
    "datetime.datetime.utcnow": "the clock: take now (or a datetime) as an argument",
    "datetime.datetime.today": "the clock: take now (or a datetime) as an argument",
    "datetime.date.today": "the clock: take now (or a datetime) as an argument",
    "time": "the clock: take now as an argument",
    "random": "module-level randomness: take a seeded random.Random as an argument",
    "os": "the operating system",
    "logging.basicConfig": "configures log handlers: the shells' cli.py does that (§9)",
    "logging.FileHandler": "configures log handlers: the shells' cli.py does that (§9)",
    "logging.StreamHandler": "configures log handlers: the shells' cli.py does that (§9)",
}
ALLOWED_USES = {"random.Random"}  # the type; an instance passed in is the only randomness

APPLICATIONS = ("ota_server", "handset", "sim_emulator")
ALLOWED_CROSS_IMPORTS = {("handset", "sim_emulator.api")}
# The SMPP client library stays behind the OTA server's link to the SMSC.
SMPPLIB_MODULES = {"ota_server.smpp_link", "ota_server.smpp_connection", "ota_server.smpp_fields"}
PYSCARD_MODULES = {"handset.pcsc_card"}  # the one PC/SC shell (a phone's SIM in a reader)
# The virtual-time lab: no sockets, no event loop, no threads, no database (its clock is an event
# heap; ``time`` only measures the wall time a run took, reported apart from the compared results).
FORBIDDEN_IN_VIRTUAL = {"asyncio", "socket", "selectors", "threading", "sqlite3", "subprocess"}

POLICY = Policy(
    applications=APPLICATIONS,
    lab="ota_lab",
    protocols="ota_protocols",
    pure_by_default=PURE_BY_DEFAULT,
    pure_opt_out=frozenset(PURE_OPT_OUT),
    pure_listed=frozenset(PURE_APPLICATION_MODULES),
    forbidden_in_pure=frozenset(FORBIDDEN_IN_PURE),
    forbidden_uses=FORBIDDEN_USES,
    allowed_uses=frozenset(ALLOWED_USES),
    allowed_cross_imports=frozenset(ALLOWED_CROSS_IMPORTS),
    smpplib_modules=frozenset(SMPPLIB_MODULES),
    virtual="ota_lab.virtual",
    forbidden_in_virtual=frozenset(FORBIDDEN_IN_VIRTUAL),
)

# Violations in modules being rewritten right now (issue 10), tolerated until that work lands:
# (module, rule key) -> why. A listed violation that no longer occurs fails the suite: delete its line.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}

ANALYSIS = Analysis.of(ROOT, POLICY)
MODULE_NAMES = sorted(ANALYSIS.project)


def unexplained(name: str, analysis: Analysis, known: dict[tuple[str, str], str]) -> list[str]:
    """Module ``name``'s violations not in ``known``, and ``known`` entries for it that no longer occur."""
    found = {violation.key: violation for violation in analysis.violations(name)}
    expected = {key for module, key in known if module == name}
    return [str(found[key]) for key in sorted(set(found) - expected)] + [
        f"{name}: KNOWN_VIOLATIONS lists {key!r}, which no longer occurs: delete that line"
        for key in sorted(expected - set(found))
    ]


def test_the_checker_sees_the_packages() -> None:
    assert "ota_protocols.secured_packet.command_packet" in ANALYSIS.project
    assert "ota_server.cli" in ANALYSIS.project
    assert {name for name in ANALYSIS.project if name.startswith("ota_protocols")} <= ANALYSIS.pure
    assert "ota_server.service" not in ANALYSIS.pure


def test_the_lists_name_modules_that_exist() -> None:
    errors = configuration_errors(ANALYSIS.project, POLICY)
    errors += [f"KNOWN_VIOLATIONS names {module}, which does not exist" for module, _ in KNOWN_VIOLATIONS]
    assert errors == []


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_import_rules(name: str) -> None:
    problems = unexplained(name, ANALYSIS, KNOWN_VIOLATIONS)
    assert not problems, "\n".join(problems)


def test_pyscard_stays_in_its_one_shell() -> None:
    importers = set()
    for package in (*APPLICATIONS, "ota_protocols", "ota_lab"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                )  # fmt: skip
                if any(n == "smartcard" or n.startswith("smartcard.") for n in names):
                    importers.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert importers == PYSCARD_MODULES
