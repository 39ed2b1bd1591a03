"""One seed's result: the drawn mix, the server's summary, the invariants, the network's counters.

Shared by both transports (:func:`ota_lab.runner.run_lab_async` over SMPP, :mod:`ota_lab.virtual`):
``LabResult.to_dict(timings=False)`` is a pure function of the lab and the seed on the virtual
transport, so two runs of one seed give byte-identical reports (docs/labs.md "Virtual time").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ota_lab.draw import FaultMix
from ota_lab.invariants import Invariants

__all__ = ["NETWORK_KEYS", "LabResult"]


@dataclass(slots=True)
class LabResult:
    lab: str
    seed: int
    mix: FaultMix
    summary: dict[str, Any] = field(default_factory=dict)
    invariants: Invariants = field(default_factory=Invariants)
    server_verification: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None
    cards: list[dict[str, Any]] = field(default_factory=list)
    network_report: dict[str, Any] | None = None  # only with keep_network_report (not in to_dict)
    # Virtual transport only (not in to_dict): per time bin, messages sent and jobs closed by state.
    timeline: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.invariants.ok

    def outcome(self) -> str:
        """The deterministic part of the result: counts and invariants (no timings)."""
        if self.error is not None:
            return f"ERROR {self.error}"
        s, inv = self.summary, self.invariants
        return (
            f"confirmed {s.get('confirmed', 0)} partial {s.get('partial', 0)} failed {s.get('failed', 0)} "
            f"pending {s.get('pending', 0)} | msgs {s.get('messages_sent', 0)} | "
            f"lost {inv.lost} dup {inv.duplicated} mismatch {inv.mismatches} stuck {inv.stuck}"
        )

    def line(self) -> str:
        return f"seed {self.seed:>5}  {self.mix.summary()}  ->  {self.outcome()}"

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        """JSON-ready. ``timings=False`` leaves out the wall time: what is left is a pure function of
        the lab and the seed on the virtual transport (reports are written with sorted keys)."""
        out = {
            "lab": self.lab,
            "seed": self.seed,
            "ok": self.ok,
            "error": self.error,
            "mix": asdict(self.mix),
            "summary": self.summary,
            "invariants": asdict(self.invariants),
            "server_verification": self.server_verification,
            "network": self.network,
            "events": self.events,
            "wall_s": round(self.wall_s, 3),
            "cards": self.cards,
            "replay": f"ota-lab run {self.lab} --seed {self.seed}",
        }
        if not timings:
            del out["wall_s"]
        return out


# The handset's SMSC counters a result keeps (both transports report the same names).
NETWORK_KEYS = (
    "mt_accepted",
    "mt_transmissions",
    "mt_rp_timeouts",
    "mt_expired",
    "pors",
    "mo_submits",
    "stale_reports",
    "restarts",
    "radio_lost",
    "radio_duplicated",
    "radio_corrupted",
    "radio_tears_armed",
    "transactions",
)
