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
* smpplib is imported by the OTA server's SMPP link alone.
* The virtual-time lab imports no sockets, event loop, threads or database.

The checker (``tests/support/architecture.py``) takes a root path; the negative tests at the end run it
on small package trees in ``tmp_path`` to show that each rule fires.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from tests.support.architecture import Analysis, Policy, check, configuration_errors, discover

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
    "ota_server.reconciliation",  # moving to ota_server/engine/ (issue 10): delete this line then
    "ota_server.por_matcher",
    "ota_server.report",
    "handset.network_core",
    "handset.mobile_equipment",
    "handset.smsc_router",
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
SMPPLIB_MODULES = {"ota_server.esme", "ota_server.smpp_link"}
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


# ---------------------------------------------------------------------------------------------------
# Negative tests: each rule fires on a small tree in tmp_path, checked with this repository's policy.


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return root


def fake_policy(**changes: object) -> Policy:
    """POLICY, with lists that name the fake tree's modules instead of the repository's."""
    return dataclasses.replace(POLICY, **{"pure_listed": frozenset(), "pure_opt_out": frozenset(), **changes})


def violations(root: Path, policy: Policy | None = None) -> dict[str, dict[str, str]]:
    """module -> rule key -> "path:line: detail", for the tree at ``root``."""
    found: dict[str, dict[str, str]] = {}
    for violation in check(root, policy or fake_policy()):
        found.setdefault(violation.module, {})[violation.key] = str(violation)
    return found


PACKAGES = {f"{package}/__init__.py": "" for package in ("ota_protocols", *APPLICATIONS, "ota_lab")}


def test_a_new_module_under_a_pure_package_is_pure_with_no_list_to_edit(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/sms/__init__.py": "",
            "ota_protocols/sms/new_codec.py": "import socket\n",
            # ota_server/engine/ without __init__.py: a namespace package is still pure by default
            "ota_server/engine/jobs.py": "from __future__ import annotations\n\nimport asyncio\n",
            "ota_server/shell.py": "import asyncio\nimport socket\n",  # not pure: may do I/O
        },
    )
    assert violations(root) == {
        "ota_protocols.sms.new_codec": {
            "pure: imports socket": "ota_protocols/sms/new_codec.py:1: "
            "ota_protocols.sms.new_codec is pure but imports socket"
        },
        "ota_server.engine.jobs": {
            "pure: imports asyncio": "ota_server/engine/jobs.py:3: "
            "ota_server.engine.jobs is pure but imports asyncio"
        },
    }


def test_an_opt_out_lifts_purity_and_the_lists_cannot_rot(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {**PACKAGES, "ota_protocols/pcap_file.py": "import pathlib\n"})
    assert set(violations(root)) == {"ota_protocols.pcap_file"}
    assert violations(root, fake_policy(pure_opt_out=frozenset({"ota_protocols.pcap_file"}))) == {}

    def errors(**changes: object) -> str:
        with pytest.raises(ValueError) as raised:
            check(root, fake_policy(**changes))
        return str(raised.value)

    assert errors(pure_listed=frozenset({"ota_server.reconciliation"})) == (
        "PURE_APPLICATION_MODULES lists ota_server.reconciliation, which does not exist: delete or rename"
        " the entry (a module under ota_protocols and ota_server.engine is pure by default and needs none)"
    )
    assert errors(pure_listed=frozenset({"ota_protocols.pcap_file"})) == (
        "PURE_APPLICATION_MODULES lists ota_protocols.pcap_file, which is pure by default: delete the entry"
    )
    assert errors(pure_opt_out=frozenset({"ota_protocols.gone", "ota_server"})) == (
        "PURE_OPT_OUT lists ota_protocols.gone, which does not exist: delete the entry\n"
        "PURE_OPT_OUT lists ota_server, which is not under ota_protocols and ota_server.engine:"
        " delete the entry"
    )


def test_a_listed_application_module_is_pure(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {**PACKAGES, "handset/radio_link.py": "import random\n"})
    assert violations(root) == {}
    assert violations(root, fake_policy(pure_listed=frozenset({"handset.radio_link"}))) == {
        "handset.radio_link": {
            "pure: imports random": "handset/radio_link.py:1: handset.radio_link is pure but imports random"
        }
    }


def test_a_pure_module_reaching_io_through_a_chain_fails_and_prints_the_chain(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_server/engine/__init__.py": "",
            "ota_server/engine/x.py": """
                from __future__ import annotations

                from ota_server import model  # the submodule, not an attribute of ota_server
            """,
            "ota_server/model.py": "from . import card_store\n",  # relative
            "ota_server/card_store.py": "import logging\nimport sqlite3\n",
        },
    )
    assert violations(root) == {
        "ota_server.engine.x": {
            "pure: reaches ota_server.card_store": "ota_server/engine/x.py:3: "
            "ota_server.engine.x is pure but reaches I/O: "
            "ota_server.engine.x -> ota_server.model -> ota_server.card_store"
            " (imports sqlite3 at card_store.py:2)"
        }
    }


def test_the_chain_runs_through_packages_and_lazy_imports_but_not_type_checking(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/a.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from ota_protocols import io_thing  # annotations only: not run
                else:
                    import ota_protocols.b.leaf  # runs: the else branch; and runs b/__init__.py first
            """,
            "ota_protocols/b/__init__.py": "from .deep import helper\n",
            "ota_protocols/b/leaf.py": "",
            "ota_protocols/b/deep.py": """
                def helper():
                    from ..io_thing import fetch  # lazy, relative: runs when called
                    return fetch
            """,
            "ota_protocols/io_thing.py": "def fetch(path):\n    return open(path).read()\n",
        },
    )
    found = violations(root)
    assert found["ota_protocols.a"] == {
        "pure: reaches ota_protocols.io_thing": "ota_protocols/a.py:6: "
        "ota_protocols.a is pure but reaches I/O: "
        "ota_protocols.a -> ota_protocols.b -> ota_protocols.b.deep -> ota_protocols.io_thing "
        "(uses builtins.open at io_thing.py:2)"
    }
    assert set(found) == {
        "ota_protocols.a",
        "ota_protocols.b",
        "ota_protocols.b.deep",
        "ota_protocols.io_thing",
    }


def test_io_calls_in_pure_modules_are_caught_with_file_and_line(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/calls.py": """
                import datetime as dt
                import importlib
                import io
                import logging
                import sys
                from datetime import date, datetime

                log = logging.getLogger(__name__)  # allowed: handlers are the shells'


                def everything(name):
                    importlib.import_module(name)
                    __import__(name)
                    open(name)
                    datetime.now()
                    dt.datetime.utcnow()
                    date.today()
                    print(name)
                    sys.stdout.write(name)
                    io.open(name)
                    logging.basicConfig()
                    return io.BytesIO(b""), sys.byteorder  # allowed: memory, constants
            """,
            "ota_protocols/clock.py": """
                from time import monotonic, perf_counter
                import time
                import random


                def elapsed(start):
                    return time.time() - start + monotonic() + perf_counter() + random.random()
            """,
        },
    )
    found = violations(root)
    assert sorted(found["ota_protocols.calls"].items()) == [
        (
            "pure: imports importlib",
            "ota_protocols/calls.py:2: ota_protocols.calls is pure but imports importlib",
        ),
        (
            "pure: uses builtins.__import__",
            "ota_protocols/calls.py:13: ota_protocols.calls is pure but uses builtins.__import__: "
            "dynamic import: hidden from the import graph",
        ),
        (
            "pure: uses builtins.open",
            "ota_protocols/calls.py:14: ota_protocols.calls is pure but uses builtins.open: file I/O",
        ),
        (
            "pure: uses builtins.print",
            "ota_protocols/calls.py:18: ota_protocols.calls is pure but uses builtins.print: "
            "console output: return the text, or log it",
        ),
        (
            "pure: uses datetime.date.today",
            "ota_protocols/calls.py:17: ota_protocols.calls is pure but uses datetime.date.today: "
            "the clock: take now (or a datetime) as an argument",
        ),
        (
            "pure: uses datetime.datetime.now",
            "ota_protocols/calls.py:15: ota_protocols.calls is pure but uses datetime.datetime.now: "
            "the clock: take now (or a datetime) as an argument",
        ),
        (
            "pure: uses datetime.datetime.utcnow",
            "ota_protocols/calls.py:16: ota_protocols.calls is pure but uses datetime.datetime.utcnow: "
            "the clock: take now (or a datetime) as an argument",
        ),
        (
            "pure: uses importlib.import_module",
            "ota_protocols/calls.py:12: ota_protocols.calls is pure but uses importlib.import_module: "
            "dynamic import: hidden from the import graph",
        ),
        (
            "pure: uses io.open",
            "ota_protocols/calls.py:20: ota_protocols.calls is pure but uses io.open: file I/O",
        ),
        (
            "pure: uses logging.basicConfig",
            "ota_protocols/calls.py:21: ota_protocols.calls is pure but uses logging.basicConfig: "
            "configures log handlers: the shells' cli.py does that (§9)",
        ),
        (
            "pure: uses sys.stdout.write",
            "ota_protocols/calls.py:19: "
            "ota_protocols.calls is pure but uses sys.stdout.write: console output",
        ),
    ]
    assert {key: text.split(": ")[0] for key, text in found["ota_protocols.clock"].items()} == {
        "pure: imports time": "ota_protocols/clock.py:1",  # the first import of time
        "pure: imports random": "ota_protocols/clock.py:3",
        "pure: uses time.time": "ota_protocols/clock.py:7",
        "pure: uses time.monotonic": "ota_protocols/clock.py:7",
        "pure: uses time.perf_counter": "ota_protocols/clock.py:7",
        "pure: uses random.random": "ota_protocols/clock.py:7",
    }


def test_what_pure_code_may_do_is_not_reported(tmp_path: Path) -> None:
    """The precision side of the rules above: the seeded-RNG, clock-argument and shadowing forms pass."""
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/fine.py": """
                from __future__ import annotations

                import logging
                from datetime import datetime, timedelta
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    import random
                    import time

                log = logging.getLogger(__name__)


                def draw(rng: random.Random, now: float, scts: datetime) -> tuple[int, float, datetime]:
                    log.debug("draw at %s", now)
                    return rng.randrange(256), now + 1.0, scts + timedelta(seconds=1)


                def write(open, data):  # a parameter that shadows the builtin
                    return open(data)


                class Capture:
                    def open(self, timestamp):  # a method called open
                        return [timestamp]

                    def records(self, timestamp):
                        return self.open(timestamp)
            """,
        },
    )
    assert violations(root) == {}
    # ... while the builtin in another function of a module with an ``open`` method is still caught:
    (tmp_path / "ota_protocols/fine.py").write_text(
        "class Capture:\n    def open(self):\n        return 1\n\n\ndef read(path):\n    return open(path)\n"
    )
    assert list(violations(root)["ota_protocols.fine"]) == ["pure: uses builtins.open"]


def test_the_layers_between_packages(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/codec.py": "from ota_server import model\n",
            "ota_server/model.py": "",
            "ota_server/service.py": "import ota_lab.runner\n",
            "ota_lab/runner.py": "import ota_server.model, handset.service, sim_emulator.uicc\n",
            "handset/service.py": "from sim_emulator import api\nfrom sim_emulator.uicc import Uicc\n",
            "sim_emulator/api.py": "",
            "sim_emulator/uicc.py": "import handset.service\n",
        },
    )
    assert {module: sorted(keys) for module, keys in violations(root).items()} == {
        "ota_protocols.codec": ["layers: imports ota_server"],
        "ota_server.service": ["layers: imports ota_lab"],
        "handset.service": ["layers: imports sim_emulator.uicc"],  # sim_emulator.api is the allowed crossing
        "sim_emulator.uicc": ["layers: imports handset.service"],  # the card never knows the phone
    }


def test_smpplib_stays_in_the_smpp_link_and_the_virtual_lab_has_no_sockets(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_server/smpp_link.py": "import smpplib.client\n",
            "ota_server/esme.py": "from smpplib import consts\n",
            "ota_server/service.py": "import smpplib\n",
            "ota_lab/virtual/__init__.py": "",
            "ota_lab/virtual/server.py": "import time\nfrom asyncio import Queue\n",
        },
    )
    assert {module: sorted(keys) for module, keys in violations(root).items()} == {
        "ota_server.service": ["smpplib: imports smpplib"],
        "ota_lab.virtual.server": ["virtual: imports asyncio.Queue"],
    }


def test_a_known_violation_is_tolerated_until_it_is_gone(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {**PACKAGES, "ota_protocols/legacy.py": "import os\n"})
    analysis = Analysis.of(root, fake_policy())
    known = {("ota_protocols.legacy", "pure: imports os"): "being rewritten"}
    assert unexplained("ota_protocols.legacy", analysis, {}) == [
        "ota_protocols/legacy.py:1: ota_protocols.legacy is pure but imports os"
    ]
    assert unexplained("ota_protocols.legacy", analysis, known) == []

    (root / "ota_protocols/legacy.py").write_text("")
    assert unexplained("ota_protocols.legacy", Analysis.of(root, fake_policy()), known) == [
        "ota_protocols.legacy: KNOWN_VIOLATIONS lists 'pure: imports os', "
        "which no longer occurs: delete that line"
    ]


def test_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            **PACKAGES,
            "ota_protocols/sms/__init__.py": "from . import tpdu\n",
            "ota_protocols/sms/tpdu.py": "from ..apdu import envelope\nfrom .address import Address\n",
            "ota_protocols/sms/address.py": "",
            "ota_protocols/apdu/__init__.py": "",
            "ota_protocols/apdu/envelope.py": "",
        },
    )
    project = discover(root, POLICY.packages)
    assert [i.target for i in project["ota_protocols.sms"].imports] == ["ota_protocols.sms.tpdu"]
    assert [i.target for i in project["ota_protocols.sms.tpdu"].imports] == [
        "ota_protocols.apdu.envelope",
        "ota_protocols.sms.address",
    ]
