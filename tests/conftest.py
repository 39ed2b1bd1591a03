"""Shared test configuration.

Hypothesis: the ``ci`` profile (chosen when the CI environment variable holds a true value)
derandomizes, so a CI run is reproducible; locally examples vary between runs. In CI a test that needs
a missing third-party component fails instead of skipping (``tests/support/components.py``).

``pcscd``: a session's pcscd with two vpcd readers (tests/pcsc_daemon.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.pcsc_daemon import Pcscd, start_pcscd
from tests.support.components import in_ci
from tests.support.postgres import Cluster, start_cluster

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if in_ci() else "dev")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """pcscd with two vsmartcard vpcd readers, started once per session (tests/pcsc_daemon.py)."""
    yield from start_pcscd(tmp_path_factory.mktemp("pcscd"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster on 127.0.0.1 for the whole session (tests/support/postgres.py)."""
    yield from start_cluster()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh database of the session's cluster, as a postgresql:// URL."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--db`` of a test run on both backends: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ota.sqlite")
    return str(request.getfixturevalue("pg_url"))
