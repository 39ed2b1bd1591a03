"""Run one seed of a lab: draw the fault mix, start the network, run the campaign, prove the outcome.

Concept (docs/labs.md): ONE ``random.Random(seed)`` draws, in a fixed order, the fleet size, the
handset's ``[radio] seed``, the campaign's ``--seed`` and every fault of ``[faults]``; so a seed
names the whole run and ``ota-lab run LAB --seed N`` replays it.  The handset network runs in this
event loop on 127.0.0.1 port 0 (:class:`handset.service.HandsetService`), the OTA server's
:class:`~ota_server.service.CampaignRunner` talks to it over real SMPP, scheduled events (SMSC
restarts) fire at their times, and the invariants are computed from the cards' own reports:

* **lost**: actions the server believes applied (the first ``applied`` of the script) that are not
  in the card's journal;
* **duplicated**: journal entries (after the campaign's start counter) that break "the script's
  actions, in order, each once": the journal must be a prefix of the script's counted commands
  (WO 00/07153 claim 1c resends exactly the missing suffix), anything after the first divergence or
  beyond the script counts;
* **counter mismatch**: a job the server closed (confirmed/partial) whose counter differs from the
  card's, or an open/failed one whose card counter lies outside [CA, CA + actions not yet proven];
* **stuck**: jobs still pending at the campaign deadline.

Glossary: CA confirmed action counter; MT/MO mobile terminated/originated; PoR proof of receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from handset.config import load_config
from handset.service import HandsetService
from ota_lab.config import DIRECTIONAL_FAULTS, FaultRanges, LabConfig, Transport
from ota_lab.toml_writer import dumps
from ota_protocols.errors import ConfigError, OtaSimError
from ota_server.config import load_campaign
from ota_server.report import REPORT_STATES, verification
from ota_server.service import CampaignRunner

__all__ = [
    "FaultMix",
    "Invariants",
    "JobView",
    "LabResult",
    "check_invariants",
    "draw_mix",
    "run_lab",
    "run_lab_async",
    "write_configs",
]

log = logging.getLogger(__name__)

_SHORT = {
    "loss": "loss",
    "burst": "burst",
    "duplicate": "dup",
    "reorder": "reord",
    "jitter_s": "jit",
    "late": "late",
    "corrupt": "corr",
}


# --------------------------------------------------------------------------- the fault mix


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


def _radio_table(base: dict[str, Any], lab: LabConfig, mix: FaultMix) -> dict[str, Any]:
    """The handset's ``[radio]``: the network's own, with the faults the lab ranges name replaced."""
    radio = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    radio["seed"] = mix.radio_seed
    shape = lab.faults
    named = lab.faults.ranges
    for d in ("mt", "mo"):
        table = radio.setdefault(d, {})

        def value(name: str, d: str = d) -> float | None:
            key = f"{d}_{name}"
            return mix.faults[key] if key in named else None

        if (v := value("loss")) is not None:
            table["loss_probability"] = v
        if (v := value("burst")) is not None:
            table.update(
                p_good_to_bad=v, p_bad_to_good=shape.burst_p_bad_to_good, loss_in_good=0.0, loss_in_bad=1.0
            )
        if (v := value("duplicate")) is not None:
            table["duplicate_probability"] = v
        if (v := value("reorder")) is not None:
            table.update(reorder_probability=v, reorder_extra_s=shape.reorder_extra_s)
        if (v := value("jitter_s")) is not None:
            table.update(jitter="uniform", jitter_s=v)
        if (v := value("late")) is not None:
            table.update(late_probability=v, late_min_s=shape.late_min_s, late_max_s=shape.late_max_s)
        if (v := value("corrupt")) is not None:
            table["corrupt_probability"] = v
    if "offline" in named:
        radio["offline"] = {
            "offline_probability": mix.faults["offline"],
            "mean_offline_s": shape.mean_offline_s,
        }
    if "busy" in named:
        radio["sim_busy_probability"] = mix.faults["busy"]
    if "tear" in named:
        radio["tear_probability"] = mix.faults["tear"]
    return radio


# --------------------------------------------------------------------------- config files


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (arrays of tables included) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path, lab: LabConfig, key: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(key, f"{path}: {exc}", source=lab.source) from None


def _absolute(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def write_configs(lab: LabConfig, mix: FaultMix, workdir: Path) -> tuple[Path, Path]:
    """The handset and campaign files of this seed, written into ``workdir`` (paths made absolute)."""
    handset: dict[str, Any] = {}
    if lab.handset_config is not None:
        handset = _read_toml(lab.handset_config, lab, "network.handset_config")
        base = lab.handset_config.parent
        fleet = handset.get("fleet")
        if isinstance(fleet, dict) and isinstance(fleet.get("card_template"), str):
            fleet["card_template"] = _absolute(fleet["card_template"], base)
        for card in handset.get("cards", []) if isinstance(handset.get("cards"), list) else []:
            for key in ("profile", "state"):
                if isinstance(card, dict) and isinstance(card.get(key), str):
                    card[key] = _absolute(card[key], base)
    inline = dict(lab.network)
    lab_dir = Path(lab.source).parent
    fleet_inline = inline.get("fleet")
    if isinstance(fleet_inline, dict) and isinstance(fleet_inline.get("card_template"), str):
        inline["fleet"] = fleet_inline | {"card_template": _absolute(fleet_inline["card_template"], lab_dir)}
    handset = _merge(handset, inline)
    smsc = handset.setdefault("smsc", {})
    smsc.update(host="127.0.0.1", port=0)
    t = lab.timing
    for key, value in (
        ("rp_timeout_s", t.rp_timeout_s),
        ("retry_min_s", t.retry_min_s),
        ("retry_max_s", t.retry_max_s),
        ("default_validity_s", t.validity_s),
    ):
        if value is not None:
            smsc[key] = value
    if mix.fleet_size is not None:
        handset.setdefault("fleet", {})["count"] = mix.fleet_size
    handset["radio"] = _radio_table(handset.get("radio", {}), lab, mix)
    handset_path = workdir / "handset.toml"
    handset_path.write_text(dumps(handset))

    campaign: dict[str, Any] = {}
    if lab.campaign_path is not None:
        campaign = _read_toml(lab.campaign_path, lab, "campaign.path")
    campaign = _merge(campaign, lab.campaign)
    section = campaign.setdefault("campaign", {})
    section["name"] = f"{lab.name}-seed-{mix.seed}"
    if t.deadline_s is not None:
        section["deadline_s"] = t.deadline_s
    campaign["network"] = {"handset_config": str(handset_path)}
    retry = campaign.setdefault("retry", {})
    for key, value in (
        ("por_timeout_s", t.por_timeout_s),
        ("max_attempts", t.max_attempts),
        ("backoff_s", t.backoff_s),
        ("max_backoff_s", t.max_backoff_s),
    ):
        if value is not None:
            retry[key] = value
    smpp = campaign.setdefault("smsc", {})
    if "system_id" not in smpp:
        esmes = handset.get("smsc", {}).get("esmes", [])
        if esmes and isinstance(esmes[0], dict):
            smpp["system_id"] = esmes[0].get("system_id", "")
            smpp["password"] = esmes[0].get("password", "")
    campaign_path = workdir / "campaign.toml"
    campaign_path.write_text(dumps(campaign))
    return handset_path, campaign_path


# --------------------------------------------------------------------------- invariants


@dataclass(frozen=True, slots=True)
class Invariants:
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    stuck: int = 0
    missing_cards: int = 0
    problems: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.mismatches == self.missing_cards == 0


@dataclass(frozen=True, slots=True)
class JobView:
    """What the invariants need of one job: the server's belief about one (card, TAR)."""

    iccid: str
    msisdn: str
    state: str  # confirmed | partial | failed | pending
    applied: int
    confirmed: int | None
    start_counter: int | None
    reason: str = ""

    @classmethod
    def of(cls, card: Any, job: Any) -> JobView:
        """From :meth:`CampaignRunner.outcomes` (a card and its reconciliation job)."""
        state = REPORT_STATES.get(job.phase, "pending")
        return cls(card.iccid, card.msisdn, state, job.applied, job.confirmed, job.start_counter, job.reason)

    @classmethod
    def from_report(cls, row: dict[str, Any]) -> JobView:
        """From one ``cards[]`` row of an ``ota-server campaign run --report`` file."""
        return cls(
            str(row["iccid"]),
            str(row["msisdn"]),
            str(row["state"]),
            int(row["executed"]),
            row.get("confirmed_counter"),
            row.get("start_counter"),
            str(row.get("reason", "")),
        )


def check_invariants(
    jobs: Sequence[JobView], actions: Sequence[Any], tar_hex: str, network_report: dict[str, Any]
) -> Invariants:
    """lost / duplicated / counter mismatches / stuck from the cards' reports (module docstring)."""
    by_key: dict[str, dict[str, Any]] = {}
    for entry in network_report.get("cards", []):
        for key in ("iccid", "msisdn"):
            if entry.get(key):
                by_key[str(entry[key])] = entry
    counted = [a.counted.encode_t0().hex() for a in actions]
    n = len(counted)
    lost = duplicated = mismatches = stuck = missing = 0
    problems: list[dict[str, Any]] = []
    for job in jobs:
        entry = by_key.get(job.iccid) or by_key.get(job.msisdn) or {}
        app = next(
            (a for a in entry.get("applications", []) if str(a.get("tar", "")).lower() == tar_hex), None
        )
        if app is None:
            missing += 1
            continue
        start = job.start_counter
        journal = [
            str(e["apdu"]).lower()
            for e in sorted(app.get("journal", []), key=lambda e: int(e.get("counter", -1)))
            if start is not None and int(e.get("counter", -1)) > start
        ]
        prefix = 0
        while prefix < min(len(journal), n) and journal[prefix] == counted[prefix]:
            prefix += 1
        card_dup = len(journal) - prefix
        card_lost = sum((Counter(counted[: job.applied]) - Counter(journal[:prefix])).values())
        card_counter = app.get("action_counter")
        if job.confirmed is None or card_counter is None:
            mismatch = False
        elif job.state in ("confirmed", "partial"):
            mismatch = card_counter != job.confirmed
        else:
            mismatch = not job.confirmed <= card_counter <= job.confirmed + (n - job.applied)
        stuck += int(job.state == "pending")
        lost += card_lost
        duplicated += card_dup
        mismatches += int(mismatch)
        if card_lost or card_dup or mismatch:
            problems.append(
                {
                    "iccid": job.iccid,
                    "msisdn": job.msisdn,
                    "state": job.state,
                    "lost": card_lost,
                    "duplicated": card_dup,
                    "server_counter": job.confirmed,
                    "card_counter": card_counter,
                    "applied": job.applied,
                    "journal_after_start": len(journal),
                    "reason": job.reason,
                }
            )
    return Invariants(lost, duplicated, mismatches, stuck, missing, tuple(problems[:50]))


# --------------------------------------------------------------------------- result


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


_NETWORK_KEYS = (
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


async def run_lab_async(
    lab: LabConfig, seed: int, workdir: Path, *, keep_network_report: bool = False
) -> LabResult:
    """One seed in the running event loop; config files and the server's SQLite go to ``workdir``.
    ``keep_network_report``: keep the handset's whole report (every card's journal) in the result."""
    mix = draw_mix(lab, seed)
    result = LabResult(lab.source, seed, mix)
    handset_path, campaign_path = write_configs(lab, mix, workdir)
    handset_config = load_config(handset_path)
    campaign = load_campaign(campaign_path)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    service = HandsetService(handset_config)
    port = await service.start(host="127.0.0.1", port=0)
    timers: list[asyncio.TimerHandle] = []
    restarts: list[asyncio.Task[None]] = []

    def restart(at: float) -> None:
        task = service.request_restart(lab.events.smsc_outage_s)
        result.events.append(f"smsc restart at {at:g}s" + ("" if task else " (ignored: one under way)"))
        if task is not None:
            restarts.append(task)

    try:
        runner = CampaignRunner(
            campaign,
            smsc=("127.0.0.1", port),
            db_path=workdir / "ota-server.sqlite",
            seed=mix.campaign_seed,
            progress=False,
        )
        for at in lab.events.smsc_restart_at_s:
            timers.append(loop.call_later(at, restart, at))
        try:
            async with asyncio.timeout(campaign.campaign.deadline_s + 120.0):
                report = await runner.run()
        except (OtaSimError, TimeoutError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            report = None
        network_report = service.report()
        result.invariants = check_invariants(
            [JobView.of(card, job) for card, job in runner.outcomes()],
            runner.actions,
            runner.tar_hex,
            network_report,
        )
        if keep_network_report:
            result.network_report = network_report
        result.server_verification = {
            k: v
            for k, v in verification(
                runner.outcomes(), runner.actions, runner.tar_hex, network_report
            ).items()
            if k != "problems"
        }
        smsc = network_report.get("smsc", {})
        result.network = {k: smsc[k] for k in _NETWORK_KEYS if k in smsc}
        if report is not None:
            result.summary = report["summary"]
            result.cards = report["cards"]
    finally:
        for timer in timers:
            timer.cancel()
        for task in restarts:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await service.stop()
        result.wall_s = time.monotonic() - started
    return result


def run_lab(
    lab: LabConfig,
    seed: int,
    *,
    workdir: Path | None = None,
    keep_network_report: bool = False,
    shards: int = 1,
) -> LabResult:
    """One seed from start to end over the lab's transport: on the virtual clock
    (:func:`ota_lab.virtual.run_virtual`), or over SMPP in a fresh event loop (and a temporary
    directory by default). ``shards``: the virtual fleet in that many worker processes."""
    if lab.transport is Transport.VIRTUAL:
        from ota_lab.virtual import run_virtual  # the virtual driver imports this module

        return run_virtual(lab, seed, workdir=workdir, keep_network_report=keep_network_report, shards=shards)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run_lab_async(lab, seed, workdir, keep_network_report=keep_network_report))
    with tempfile.TemporaryDirectory(prefix="ota-lab-") as tmp:
        return asyncio.run(run_lab_async(lab, seed, Path(tmp), keep_network_report=keep_network_report))
