"""Scenario labs: one small lab file per named scenario, run by ota_lab over real SMPP on loopback.

Each scenario is a lab (docs/labs.md) with DETERMINISTIC faults: ``[[network.radio.script]]``
entries (handset/radio_link.py ScriptedFault) instead of random ranges, a 1-2 card fleet of the demo
network (configs/handset.toml: issued action counter 0, so the first MT is the script itself) and
short timers, so each scenario takes about a second.  The invariants are the lab's own
(ota_lab/invariants.py), computed from the cards' journals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ota_lab.config import LabConfig, load_lab
from ota_lab.result import LabResult
from ota_lab.runner import run_lab
from ota_lab.toml_writer import dumps

ROOT = Path(__file__).resolve().parents[2]
HANDSET = ROOT / "configs" / "handset.toml"

SPN = {
    "type": "update_binary",
    "path": "3F00/7F20/6F46",
    "offset": 0,
    "data": "014f54412044656d6f204e6574776f726b",
}
ADN1 = {"type": "update_record", "path": "3F00/7F10/6F3A", "record": 1, "data": "41" * 30}
HPPLMN = {"type": "update_binary", "path": "3F00/7F20/6F31", "offset": 0, "data": "02"}
ADN2 = {"type": "update_record", "path": "3F00/7F10/6F3A", "record": 2, "data": "42" * 30}
SMSP = {"type": "update_record", "path": "3F00/7F10/6F42", "record": 1, "data": "43" * 40}
MISSING_EF = {"type": "update_binary", "path": "3F00/7F20/6FFE", "offset": 0, "data": "01"}  # 6A82
FIVE_ACTIONS = [SPN, ADN1, HPPLMN, ADN2, SMSP]
THREE_ACTIONS = [SPN, ADN1, HPPLMN]

TIMING = {
    "por_timeout_s": 0.8,  # above the SMSC's MT retry time, rp_timeout_s + retry_min_s
    "deadline_s": 30.0,
    "max_attempts": 6,
    "backoff_s": 0.05,
    "max_backoff_s": 0.2,
    "rp_timeout_s": 0.2,
    "retry_min_s": 0.1,
    "retry_max_s": 0.3,
}


def scenario_lab(
    tmp: Path,
    *,
    actions: list[dict[str, Any]],
    fleet: int = 2,
    spi: str = "1639",
    tar: str = "b00010",
    script: list[dict[str, Any]] | None = None,
    radio: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
    timing: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None,
    events: dict[str, Any] | None = None,
    name: str = "scenario",
) -> LabConfig:
    radio_table: dict[str, Any] = dict(radio or {})
    if script:
        radio_table["script"] = script
    network_table: dict[str, Any] = {
        "handset_config": str(HANDSET),
        "smsc": {"throttle_per_s": 100000.0, "throttle_burst": 100000},
    }
    for key, value in (network or {}).items():
        network_table[key] = network_table.get(key, {}) | value if isinstance(value, dict) else value
    if radio_table:
        network_table["radio"] = radio_table
    lab: dict[str, Any] = {
        "lab": {"name": name, "transport": "smpp", "fleet_size": fleet},
        "network": network_table,
        "campaign": {
            "smsc": {"system_id": "ota", "password": "secret", "source_addr": "12345", "window": 16},
            "security": {"spi": spi, "kic": "12", "kid": "12", "tar": tar},
            "actions": actions,
        },
        "timing": TIMING | (timing or {}),
    }
    if faults:
        lab["faults"] = faults
    if events:
        lab["events"] = events
    path = tmp / f"{name}.toml"
    path.write_text(dumps(lab))
    return load_lab(path)


def run(lab: LabConfig, tmp: Path, seed: int = 1) -> LabResult:
    return run_lab(lab, seed, workdir=tmp / "run", keep_network_report=True)


def application(result: LabResult, msisdn: str, tar: str) -> dict[str, Any]:
    assert result.network_report is not None
    card = next(c for c in result.network_report["cards"] if str(c.get("msisdn", "")).lstrip("+") == msisdn)
    return next(a for a in card["applications"] if a["tar"] == tar)


def assert_proved(
    result: LabResult, *, actions: int, state: str = "confirmed", executed: int | None = None
) -> None:
    """The scenario invariants: every card in ``state`` with ``executed`` actions (default: all) applied
    exactly once, in order, by the card's own journal; server counter == card counter; none stuck."""
    executed = actions if executed is None else executed
    inv = result.invariants
    assert result.error is None, result.error
    assert (inv.lost, inv.duplicated, inv.mismatches, inv.stuck, inv.missing_cards) == (0, 0, 0, 0, 0), inv
    assert result.cards, "no cards in the campaign report"
    for card in result.cards:
        assert card["state"] == state, card
        assert card["executed"] == executed, card
        app = application(result, card["msisdn"], card["tar"])
        start = card["start_counter"]
        journal = [e for e in app["journal"] if e["counter"] > start]
        assert len(journal) == executed, (card, journal)
        assert [e["counter"] for e in journal] == list(range(start + 1, start + executed + 1))
        assert app["action_counter"] == card["confirmed_counter"] == start + executed, (card, app)
