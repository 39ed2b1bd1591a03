"""Shared test configuration.

Hypothesis: the ``ci`` profile (chosen when the CI environment variable is set)
derandomizes, so a CI run is reproducible; locally examples vary between runs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
