"""One seed's draw: every random choice of a lab run from ONE ``random.Random(seed)``.

Concept (docs/labs.md "One seed"): the generator draws, in a fixed order, the fleet size, the
handset's ``[radio] seed``, the campaign's ``--seed``, every fault of ``[faults]``, then (only when
the lab has the table) the ``[product]`` choices and the ``[infra]`` events. So a seed names the
whole run and ``ota-lab run LAB --seed N`` replays it, and a lab file without ``[product]`` or
``[infra]`` draws exactly what it drew before those tables existed. Every later decision of the
network comes from the drawn radio seed, every concatenation reference of the server from the
campaign seed, every per-card parameter of the campaign from the drawn ``params_seed``.

Glossary: MT/MO mobile terminated/originated; SPI security parameter indicator; PoR proof of receipt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ota_lab.config import (
    DIRECTIONAL_FAULTS,
    INFRA_HORIZON,
    FaultRanges,
    InfraKind,
    InfraRanges,
    Integrity,
    LabConfig,
    ProductChoices,
    Range,
    Script,
)
from ota_lab.product import RFM_ACTIONS, spi_of

__all__ = ["FaultMix", "InfraEvent", "InfraKind", "draw_mix"]

_SHORT = {
    "loss": "loss",
    "burst": "burst",
    "duplicate": "dup",
    "reorder": "reord",
    "jitter_s": "jit",
    "late": "late",
    "corrupt": "corr",
}


_INFRA_SHORT = {
    InfraKind.SMSC_RESTART: "smsc",
    InfraKind.LINK_DROP: "link",
    InfraKind.SERVER_CRASH: "crash",
    InfraKind.DB_FAILURE: "db",
    InfraKind.SECOND_RUNNER: "runner2",
}


@dataclass(frozen=True, slots=True)
class InfraEvent:
    """One infrastructure fault of a seed: ``kind`` at ``at`` seconds after the start, lasting
    ``duration`` seconds (outage, link down, restart delay; 0 for a second runner)."""

    kind: InfraKind
    at: float
    duration: float


@dataclass(frozen=True, slots=True)
class FaultMix:
    """What one seed drew: fleet size, the two application seeds, every fault value, the product
    choices (empty without ``[product]``) and the infrastructure events (empty without ``[infra]``)."""

    seed: int
    fleet_size: int | None
    radio_seed: int
    campaign_seed: int
    faults: dict[str, float]
    product: dict[str, Any] = field(default_factory=dict)
    infra: tuple[InfraEvent, ...] = ()

    def summary(self) -> str:
        """One compact line: ``n=63 mt loss .27 dup .05 | mo loss .31 | off .04 busy .02 tear .08``."""

        def fmt(v: float) -> str:
            return f"{v:.2f}".lstrip("0") if v < 1 else f"{v:.2g}"

        parts = [f"n={self.fleet_size}" if self.fleet_size is not None else "n=file"]
        for d in ("mt", "mo"):
            items = [
                f"{_SHORT[name]} {fmt(self.faults[f'{d}_{name}'])}"
                for name in DIRECTIONAL_FAULTS
                if self.faults.get(f"{d}_{name}")
            ]
            if items:
                parts.append(f"{d} " + " ".join(items))
        glob = [f"{k} {fmt(self.faults[k])}" for k in ("offline", "busy", "tear") if self.faults.get(k)]
        if glob:
            parts.append(" ".join(glob))
        if self.product:
            parts.append(_product_summary(self.product))
        if self.infra:
            counts = {kind: sum(e.kind == kind for e in self.infra) for kind in InfraKind}
            parts.append("infra " + " ".join(f"{_INFRA_SHORT[k]} {n}" for k, n in counts.items() if n))
        return " | ".join(parts)


def _product_summary(p: dict[str, Any]) -> str:
    """``rfm:3 spi 1639 ks1 submit tx 120/h info``: script, SPI, key set, PoR path, card reports."""
    script = str(p["script"])
    if script == Script.RFM:
        script += f":{p['rfm_actions']}"
    elif script == Script.MULTI_STEP:
        script += f":{round(100 * float(p['target_share']))}%:{p['run_if']}"
    words = [
        script,
        f"spi {p['spi']}",
        f"ks{p['keyset']}",
        "submit" if p["por_path"] == "sms-submit" else "dlvr",
    ]
    if p["transactions_per_hour"]:
        words.append(f"tx {p['transactions_per_hour']:.0f}/h")
    if p["information_at_power_up"]:
        words.append("info")
    return " ".join(words)


def draw_mix(lab: LabConfig, seed: int) -> FaultMix:
    """Every random choice of the run from ``random.Random(seed)``, in a fixed order."""
    rng = random.Random(seed)
    fleet_size = int(lab.fleet_size.draw(rng)) if lab.fleet_size is not None else None
    radio_seed = rng.randrange(2**31)
    campaign_seed = rng.randrange(1, 2**31)
    faults: dict[str, float] = {}
    for key in FaultRanges.names():
        faults[key] = round(lab.faults.get(key).draw(rng), 4)
    # New tables draw after everything older, so that old lab files keep their mixes.
    product = _draw_product(lab.product, rng) if lab.product is not None else {}
    infra = _draw_infra(lab.infra, lab.timing.deadline_s or 0.0, rng) if lab.infra is not None else ()
    return FaultMix(seed, fleet_size, radio_seed, campaign_seed, faults, product, infra)


def _pick(options: tuple[Any, ...], rng: random.Random) -> Any:
    return options[0] if len(options) == 1 else rng.choice(options)  # one choice draws nothing


def _draw_product(p: ProductChoices, rng: random.Random) -> dict[str, Any]:
    """The product choices, in the order of the keys below. The script's details are drawn whatever
    the script, so that a script never shifts the draws after it."""
    drawn: dict[str, Any] = {
        "por_path": str(_pick(p.por_path, rng)),
        "cipher": _pick(p.cipher, rng),
        "integrity": str(_pick(p.integrity, rng)),
        "counter": str(_pick(p.counter, rng)),
        "keyset": _pick(p.keyset, rng),
        "script": str(_pick(p.script, rng)),
    }
    if drawn["integrity"] == Integrity.RC:
        # The card echoes CNTR 0 in the PoR of a ciphered packet whose checksum is not a CC (no
        # decryption oracle, docs/sim-emulator.md), so the server could never match that PoR to its
        # job: an RC command goes unciphered. (The campaign loader accepts SPI1 15: issue #10.)
        drawn["cipher"] = False
    rfm_actions = rng.randint(1, len(RFM_ACTIONS))
    target_share = round(rng.uniform(0.3, 1.0), 3)
    target_start = round(rng.random(), 3)
    run_if = rng.choice(("confirmed", "always"))
    params_seed = rng.randrange(2**31)
    script = drawn["script"]
    if script == Script.RFM:
        drawn["rfm_actions"] = rfm_actions
    if script == Script.MULTI_STEP:
        drawn.update(target_share=target_share, target_start=target_start, run_if=run_if)
    if script in (Script.PURSE, Script.MULTI_STEP):
        drawn["params_seed"] = params_seed
    drawn["transactions_per_hour"] = round(p.transactions_per_hour.draw(rng), 2)
    drawn["information_at_power_up"] = _pick(p.information_at_power_up, rng)
    drawn["spi"] = spi_of(drawn).to_bytes().hex()
    return drawn


def _draw_infra(ranges: InfraRanges, deadline_s: float, rng: random.Random) -> tuple[InfraEvent, ...]:
    """Per kind in a fixed order: a count, then per event its time (uniform in [0, INFRA_HORIZON x
    deadline_s]) and its duration; then the second runner's probability and its coin. Sorted by time."""
    horizon = deadline_s * INFRA_HORIZON
    events: list[InfraEvent] = []
    kinds: tuple[tuple[InfraKind, Range, Range], ...] = (
        (InfraKind.SMSC_RESTART, ranges.smsc_restarts, ranges.smsc_outage_s),
        (InfraKind.LINK_DROP, ranges.link_drops, ranges.link_drop_s),
        (InfraKind.SERVER_CRASH, ranges.server_crashes, ranges.restart_delay_s),
        (InfraKind.DB_FAILURE, ranges.db_failures, ranges.restart_delay_s),
    )
    for kind, count, duration in kinds:
        for _ in range(int(count.draw(rng))):
            at = round(rng.uniform(0.0, horizon), 3)
            events.append(InfraEvent(kind, at, round(duration.draw(rng), 3)))
    probability = ranges.second_runner.draw(rng)
    if probability > 0 and rng.random() < probability:
        events.append(InfraEvent(InfraKind.SECOND_RUNNER, round(rng.uniform(0.0, horizon), 3), 0.0))
    events += [InfraEvent(kind, at, duration) for kind, at, duration in ranges.schedule]
    return tuple(sorted(events, key=lambda e: (e.at, list(InfraKind).index(e.kind))))
