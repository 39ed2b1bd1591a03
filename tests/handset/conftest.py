"""Handset test configuration: the ``smsc`` marker passes SmscConfig overrides to the ``network`` fixture."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "smsc(**overrides): SmscConfig fields (and radio=) for the network fixture"
    )
    config.addinivalue_line(
        "markers", "fake_cards: the network fixture uses tests' FakeOtaCard, not sim_emulator"
    )
