"""The architecture checker bites: each rule of ``tests/test_architecture.py`` fires on a small package tree.

The trees are written to ``tmp_path`` and checked with the repository's own POLICY (only its lists of
module names are emptied, as they name the repository's modules), so a weakened rule fails here.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from tests.support.architecture import Analysis, Policy, check, discover
from tests.test_architecture import APPLICATIONS, POLICY, unexplained


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
            "ota_server/smpp_connection.py": "from smpplib import consts\n",
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
