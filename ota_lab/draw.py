"""One seed's draw: every random choice of a lab run from ONE ``random.Random(seed)``.

Concept (docs/labs.md "One seed"): the generator draws, in a fixed order, the fleet size, the
handset's ``[radio] seed``, the campaign's ``--seed`` and every fault of ``[faults]``; so a seed names
the whole run and ``ota-lab run LAB --seed N`` replays it. Every later decision of the network comes
from the drawn radio seed, every concatenation reference of the server from the campaign seed.

Glossary: MT/MO mobile terminated/originated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ota_lab.config import DIRECTIONAL_FAULTS, FaultRanges, LabConfig

__all__ = ["FaultMix", "draw_mix"]

_SHORT = {
    "loss": "loss",
    "burst": "burst",
    "duplicate": "dup",
    "reorder": "reord",
    "jitter_s": "jit",
    "late": "late",
    "corrupt": "corr",
}


@dataclass(frozen=True, slots=True)
class FaultMix:
    """What one seed drew: fleet size, the two application seeds and every fault value."""

    seed: int
    fleet_size: int | None
    radio_seed: int
    campaign_seed: int
    faults: dict[str, float]

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
        return " | ".join(parts)


def draw_mix(lab: LabConfig, seed: int) -> FaultMix:
    """Every random choice of the run from ``random.Random(seed)``, in a fixed order."""
    rng = random.Random(seed)
    fleet_size = int(lab.fleet_size.draw(rng)) if lab.fleet_size is not None else None
    radio_seed = rng.randrange(2**31)
    campaign_seed = rng.randrange(1, 2**31)
    faults: dict[str, float] = {}
    for key in FaultRanges.names():
        faults[key] = round(lab.faults.get(key).draw(rng), 4)
    return FaultMix(seed, fleet_size, radio_seed, campaign_seed, faults)
