"""Shared test configuration.

Hypothesis: the ``ci`` profile (chosen when the CI environment variable holds a true value)
derandomizes, so a CI run is reproducible; locally examples vary between runs. In CI a test that needs
a missing third-party component fails instead of skipping (``tests/support/components.py``).

``pcscd``: a session's pcscd with two vpcd readers (tests/pcsc_daemon.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.pcsc_daemon import Pcscd, start_pcscd
from tests.support.components import in_ci

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if in_ci() else "dev")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """pcscd with two vsmartcard vpcd readers, started once per session (tests/pcsc_daemon.py)."""
    yield from start_pcscd(tmp_path_factory.mktemp("pcscd"))
