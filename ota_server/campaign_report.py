"""``ota-server report CAMPAIGN`` and ``campaign status``: what the database says about a campaign.

Everything here is read from the card store (jobs, history, campaigns), so a report can be drawn
while the campaign runs, after it ended, or after a crash. States and meanings as in the runner's
report (docs/campaigns.md §3); key material is never read.

Glossary: job one (card, step); CNTR 03.48 replay counter; PoR proof of receipt; SW status word;
MT/MO mobile terminated/originated.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError
from ota_server.card_store import CardStore, HistoryRow
from ota_server.engine.lease import LEASE_TTL_S
from ota_server.engine.records import CampaignRow

_FINAL = {
    "done": "confirmed",
    "partial": "partial",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
}
_POR_STATUS = re.compile(r"^([0-9A-F]{2}) ")
# PoR statuses that report no failure of the secured packet: 00 PoR OK (TS 102 225 §5.2), 0B and 0C
# "the actual response is sent by SMS-SUBMIT / USSD" (TS 31.115 §4.3). A job ending partial or failed
# after one of these failed in its commands: it is counted by its status word, not here.
_POR_NOT_FAILURES = frozenset({"00", "0B", "0C"})
_SW = re.compile(r"SW ([0-9A-F]{4})")
CSV_COLUMNS = (
    "iccid", "msisdn", "step", "tar", "state", "actions", "executed", "attempts", "queries",
    "resent_actions", "confirmed_counter", "last_por_status", "last_sw", "reason",
)  # fmt: skip


def job_state(stored: str, campaign_state: str) -> str:
    final = _FINAL.get(stored)
    if final is not None:
        return final
    return "cancelled" if campaign_state == "cancelled" else "pending"


def por_failure(statuses: Sequence[str]) -> str | None:
    """The row of "failures by PoR status" for a job that did not end confirmed: its last PoR
    status when that is an error, "no PoR" when none came, ``None`` when the last PoR said OK."""
    last = next((s for s in reversed(statuses) if _POR_STATUS.match(s)), None)
    if last is None:
        return "no PoR"
    return None if last[:2] in _POR_NOT_FAILURES else last


def _card_state(states: list[str]) -> str:
    return next((s for s in states if s != "confirmed"), "confirmed")


def build_report(store: CardStore, name: str) -> dict[str, Any] | None:
    row = store.campaign(name)
    jobs = store.load_step_jobs(name)
    if row is None and not jobs:
        return None
    campaign_state = row.state if row is not None else "unknown"
    msisdns = {c.iccid: c.msisdn for c in store.cards()}
    cards: list[dict[str, Any]] = []
    per_card: dict[str, list[str]] = {}
    by_status: Counter[str] = Counter()
    by_sw: Counter[str] = Counter()
    for (iccid, tar, step), job in sorted(jobs.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        state = job_state(job.state, campaign_state)
        reason = job.reason
        extra = job.extra or {}
        if _in_flight_unknown(state, job.state, extra.get("script_cntr") is not None):
            reason = f"cancelled with script cntr={extra['script_cntr']} in flight: outcome unknown"
        por_status = next((s[:2] for s in reversed(job.statuses) if _POR_STATUS.match(s)), "")
        sw_text = _sw_text(extra.get("last_sw"), reason)
        _count_failure(by_status, by_sw, state, job.statuses, sw_text)
        per_card.setdefault(iccid, []).append(state)
        cards.append(
            {
                "iccid": iccid,
                "msisdn": msisdns.get(iccid, ""),
                "step": step + 1,
                "tar": tar,
                "state": state,
                "actions": job.n,
                "executed": job.applied,
                "attempts": job.attempts,
                "queries": job.queries,
                "resent_actions": job.resent_actions,
                "confirmed_counter": job.base,
                "last_por_status": por_status,
                "last_sw": sw_text,
                "reason": reason,
                "finished_at": extra.get("finished_at"),
            }
        )
    counts = Counter(_card_state(states) for states in per_card.values())
    history = Counter((h.direction, h.kind, h.status or "") for h in store.campaign_history(name))
    summary = _summary(
        cards=len(per_card),
        jobs=len(jobs),
        states=counts,
        history=history,
        resent_actions=sum(c["resent_actions"] for c in cards),
    )
    return {
        "campaign": name,
        "state": campaign_state,
        "source": row.source if row else "",
        "summary": summary,
        "failures": _failures(by_status, by_sw),
        "cards": cards,
    }


def campaign_summary(store: CardStore, name: str, campaign_state: str) -> dict[str, Any]:
    """The report's ``summary`` and ``failures`` from the store's aggregates (GROUP BY: no job row
    is read into Python), for ``campaign status`` and the dashboard; equal to :func:`build_report`'s
    (tests/ota_server/test_campaign_summary.py). ``campaign_state``: the campaigns row's state.
    Also ``jobs``: the jobs by stored state (:meth:`CardStore.job_counts`), from the same groups."""
    by_status: Counter[str] = Counter()
    by_sw: Counter[str] = Counter()
    by_stored: Counter[str] = Counter()
    jobs = resent = 0
    for group in store.job_groups(name, ended=_ENDED_CONFIRMED):
        by_stored[group.state] += group.jobs
        state = job_state(group.state, campaign_state)
        reason = "" if _in_flight_unknown(state, group.state, group.script_in_flight) else group.sw_reason
        _count_failure(by_status, by_sw, state, group.statuses, _sw_text(group.last_sw, reason), group.jobs)
        jobs += group.jobs
        resent += group.resent_actions
    cards, firsts = store.card_firsts(name, ended=_ENDED_CONFIRMED)
    states: Counter[str] = Counter()
    for stored, n in firsts.items():
        states[job_state(stored, campaign_state)] += n
    states["confirmed"] += cards - sum(firsts.values())
    summary = _summary(
        cards=cards, jobs=jobs, states=states, history=store.history_counts(name), resent_actions=resent
    )
    return {
        "summary": summary,
        "failures": _failures(by_status, by_sw),
        "jobs": dict(sorted(by_stored.items())),
    }


_ENDED_CONFIRMED = next(k for k, v in _FINAL.items() if v == "confirmed")  # the stored "done"


def _in_flight_unknown(state: str, stored: str, script_in_flight: bool) -> bool:
    """A job cancelled with its script in flight: the report says so instead of its reason."""
    return state == "cancelled" and stored not in _FINAL and script_in_flight


def _sw_text(last_sw: object, reason: str) -> str:
    """The job's last status word: as the engine stored it, else the one its reason names."""
    if isinstance(last_sw, int):
        return f"{last_sw:04X}"
    match = _SW.search(reason)
    return match.group(1) if match else ""


def _count_failure(
    by_status: Counter[str],
    by_sw: Counter[str],
    state: str,
    statuses: Sequence[str],
    sw_text: str,
    n: int = 1,
) -> None:
    """Count ``n`` jobs alike in the failure tables (jobs neither confirmed nor pending)."""
    if state in ("confirmed", "pending"):
        return
    failure = por_failure(statuses)
    if failure is not None:
        by_status[f"{state}: {failure}"] += n
    by_sw[f"{state}: SW {sw_text}" if sw_text else f"{state}: no SW"] += n


def _failures(by_status: Counter[str], by_sw: Counter[str]) -> dict[str, dict[str, int]]:
    return {"by_por_status": dict(by_status.most_common()), "by_status_word": dict(by_sw.most_common())}


def _summary(
    *,
    cards: int,
    jobs: int,
    states: Counter[str],
    history: Counter[tuple[str, str, str]] | dict[tuple[str, str, str], int],
    resent_actions: int,
) -> dict[str, int]:
    """The report's summary; ``history``: the campaign's history rows by (direction, kind, status)."""
    kinds: Counter[tuple[str, str]] = Counter()
    accepted = failed = pors = 0
    for (direction, kind, status), n in history.items():
        kinds[(direction, kind)] += n
        if (direction, kind) == ("mt", "submit_resp"):
            accepted += n if status == "accepted" else 0
            failed += n if status == "failed" else 0
        elif (direction, kind) == ("mo", "por") and status not in ("rejected", "unmatched"):
            pors += n
    return {
        "cards": cards,
        "jobs": jobs,
        **{k: states[k] for k in CARD_STATES},
        "packets_sent": sum(kinds[("mt", k)] for k in ("script", "query", "reply")),
        "scripts_sent": kinds[("mt", "script")],
        "queries_sent": kinds[("mt", "query")],
        "messages_accepted": accepted,
        "submit_failed": failed,
        "por_received": pors,
        "resent_actions": resent_actions,
    }


def cards_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["cards"])
    return out.getvalue()


def print_report(report: dict[str, Any], file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=110)
    table = Table(title=f"campaign {report['campaign']} ({report['state']})")
    table.add_column("result")
    table.add_column("count", justify="right")
    for key, value in report["summary"].items():
        table.add_row(key, str(value))
    console.print(table)
    for title, key in (
        ("failures by PoR status", "by_por_status"),
        ("failures by last status word", "by_status_word"),
    ):
        breakdown = report["failures"][key]
        if not breakdown:
            continue
        t = Table(title=title)
        t.add_column("state: status")
        t.add_column("jobs", justify="right")
        for what, count in breakdown.items():
            t.add_row(what, str(count))
        console.print(t)
    reasons = Counter(c["reason"] for c in report["cards"] if c["reason"])
    for reason, count in reasons.most_common(5):
        console.print(f"  {count} x {reason}")


def audit_rows(store: CardStore, name: str | None, iccid: str) -> list[dict[str, Any]]:
    """One card's trail (in one campaign, or all with ``name=None``): every message sent and
    received, with time (UTC), campaign, direction, kind, CNTR (10 hex digits), status and detail."""
    from datetime import UTC, datetime

    return [
        {
            "at": datetime.fromtimestamp(h.at, UTC).isoformat(timespec="milliseconds"),
            "campaign": h.campaign,
            "direction": h.direction,
            "kind": h.kind,
            "cntr": f"{h.cntr:010X}" if h.cntr is not None else None,
            "status": h.status,
            "detail": h.detail,
        }
        for h in store.history(iccid)
        if name is None or h.campaign == name
    ]


def audit_lines(store: CardStore, name: str, iccid: str) -> list[str]:
    """``report --audit``: :func:`audit_rows` as text, one line per message."""
    return [
        f"{r['at']} {r['direction']:4} {r['kind']:12} cntr={r['cntr'] or '-'} {r['status'] or '-'} "
        f"{r['detail'] or ''}".rstrip()
        for r in audit_rows(store, name, iccid)
    ]


def check_output_path(path: str | Path, *, option: str) -> Path:
    """A file the command will write, checked before any work (a campaign that ran for an hour
    must not end in "no such directory"): not a directory, in an existing directory we may write
    to. Anything else is a ``ConfigError`` naming ``option``."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(option, f"{path} is a directory: give a file name")
    if not target.parent.is_dir():
        raise ConfigError(option, f"{path}: no such directory {str(target.parent)!r}")
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(option, f"{path}: not writable")
    return target


# What the Agg backend writes (``FigureCanvasBase.get_supported_filetypes`` without the raw formats).
PLOT_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def plot_format(path: str | Path, *, option: str = "--plot") -> str:
    """The image format for ``path``, checked before any work: its suffix (``out.svg`` -> svg), PNG
    without one (``out/plot`` is written to exactly that name), an existing directory, and
    matplotlib installed.  Anything else is a ``ConfigError`` naming ``option``."""
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    if suffix and suffix not in PLOT_FORMATS:
        raise ConfigError(
            option,
            f"{path}: cannot draw a '.{suffix}' file (use one of .{', .'.join(PLOT_FORMATS[:3])}, ... "
            f"or no suffix for PNG)",
        )
    check_output_path(target, option=option)
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(option, "needs matplotlib: pip install 'ota-sim[plot]'")
    return suffix or "png"


def rate_bin_s(span_s: float, messages: int) -> float:
    """The width of the SMS-rate bins for ``messages`` sent over ``span_s`` seconds: about 20 bins,
    fewer when that would leave under 50 messages in an average bin (a rate from a handful of
    messages is noise), rounded up to 1, 2 or 5 times a power of ten so the axis can name it
    (at most the whole run)."""
    if span_s <= 0 or messages <= 0:
        return 1.0
    raw = max(span_s / 20.0, span_s * 50.0 / messages, 1e-3)
    scale = 10.0 ** math.floor(math.log10(raw))
    nice = next(m * scale for m in (1.0, 2.0, 5.0, 10.0) if m * scale >= raw * (1 - 1e-9))
    return min(nice, span_s)  # never wider than the run: one bin is the mean rate


def plot(store: CardStore, name: str, report: dict[str, Any], out_path: str) -> None:
    """Confirmed / partial / failed cards over time, and the SMS rate on a second axis (Agg backend)."""
    fmt = plot_format(out_path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history: list[HistoryRow] = store.campaign_history(name)
    sent = [
        h.at for h in history if h.direction == "mt" and h.kind == "submit_resp" and h.status == "accepted"
    ]
    if not sent:
        sent = [h.at for h in history if h.direction == "mt" and h.kind in ("script", "query", "reply")]
    # A card's end: its last step's end; its state as in the summary.
    ends: dict[str, tuple[float, list[str]]] = {}
    for card in report["cards"]:
        at = card.get("finished_at")
        prev = ends.get(card["iccid"], (0.0, []))
        ends[card["iccid"]] = (max(prev[0], at or 0.0), [*prev[1], card["state"]])
    finished = sorted((at, _card_state(states)) for at, states in ends.values() if at)
    t0 = min([*sent, *(at for at, _ in finished)], default=0.0)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    colors = {"confirmed": "tab:green", "partial": "tab:orange", "failed": "tab:red", "cancelled": "tab:gray"}
    for state, color in colors.items():
        times = [at - t0 for at, s in finished if s == state]
        if not times and state == "cancelled":
            continue
        xs = [0.0, *times]
        ax.step(xs, list(range(len(xs))), where="post", color=color, label=f"{state} ({len(times)})")
    ax.set_xlabel("seconds since the first message")
    ax.set_ylabel("cards")
    ax.grid(alpha=0.3)
    rate_ax = ax.twinx()
    width = rate_bin_s(max(sent) - t0 if sent else 0.0, len(sent))
    if sent:
        bins = int((max(sent) - t0) / width) + 1
        counts = [0] * bins
        for at in sent:
            counts[min(int((at - t0) / width), bins - 1)] += 1
        xs = [i * width for i in range(bins + 1)]
        rates = [c / width for c in counts]
        rate_ax.stairs(
            rates, xs, color="tab:blue", alpha=0.6, linewidth=1, label="SMS/s (submit_sm accepted)"
        )
    rate_ax.set_ylabel(f"SMS per second (mean over {width:g} s)")
    rate_ax.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    rate_lines = rate_ax.get_legend_handles_labels()
    # Below the axes, not on them: the curves fill the plot from corner to corner.
    fig.legend(
        lines[0] + rate_lines[0],
        lines[1] + rate_lines[1],
        loc="lower center",
        ncol=len(lines[0]) + len(rate_lines[0]),
        frameon=False,
        fontsize="small",
    )
    s = report["summary"]
    ax.set_title(f"campaign {name}: {s['cards']} cards, {s['confirmed']} confirmed, {s['partial']} partial, "
                 f"{s['failed']} failed")  # fmt: skip
    fig.tight_layout(rect=(0.0, 0.07, 1.0, 1.0))
    fig.savefig(out_path, format=fmt)  # exactly out_path: no suffix appended
    plt.close(fig)


# --------------------------------------------------------------------------- campaign status


@dataclass(frozen=True, slots=True)
class RunnerLiveness:
    """Whether the holder of a campaign's lease still runs, by the rule a new runner takes the lease
    over with (``engine/lease.decide_lease``): its pid gone on this host, or its heartbeat older
    than :data:`~ota_server.engine.lease.LEASE_TTL_S`."""

    pid: int
    host: str | None
    heartbeat_age_s: float | None  # None: it never beat
    alive: bool
    why: str = ""  # when not alive: "gone" (no such pid on this host) or "silent" (heartbeat too old)

    def heartbeat(self) -> str:
        age = self.heartbeat_age_s
        return "no heartbeat" if age is None else f"heartbeat {age:.1f} s ago"

    def describe(self) -> str:
        """``pid 42 on host lab1, heartbeat 0.3 s ago`` when alive, else why it is not."""
        if self.alive:
            return f"pid {self.pid} on host {self.host or '?'}, {self.heartbeat()}"
        if self.why == "gone":
            return f"runner pid {self.pid} gone ({self.heartbeat()})"
        return (
            f"runner pid {self.pid} on host {self.host or '?'} silent "
            f"({self.heartbeat()}; its lease lapses after {LEASE_TTL_S:g} s)"
        )

    def as_json(self) -> dict[str, Any]:
        age = self.heartbeat_age_s
        return {
            "pid": self.pid,
            "host": self.host,
            "heartbeat_age_s": None if age is None else round(age, 3),
            "alive": self.alive,
            "why": self.why or None,
        }


def runner_liveness(
    row: CampaignRow,
    *,
    now: float,
    host: str,
    pid_alive: Callable[[int], bool],
    ttl_s: float = LEASE_TTL_S,
) -> RunnerLiveness | None:
    """The lease holder of ``row`` and whether it runs (None: nobody holds the lease).

    ``now`` is wall-clock time (heartbeats are); ``pid_alive`` is asked only about a holder on
    ``host``, this machine: a pid on another host says nothing here, its heartbeat does."""
    if row.runner_pid is None:
        return None
    age = None if row.heartbeat_at is None else max(0.0, now - row.heartbeat_at)
    why = ""
    if row.runner_host == host and not pid_alive(row.runner_pid):
        why = "gone"
    elif age is None or age > ttl_s:
        why = "silent"
    return RunnerLiveness(row.runner_pid, row.runner_host, age, alive=not why, why=why)


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    """What ``campaign status`` says: ``status`` is one of running, paused, cancelling (a live
    runner settles the messages in flight), interrupted (running, but no live runner), cancelled,
    finished; ``text`` the sentence; ``continue_with`` the command that carries on, when one does."""

    status: str
    text: str
    runner: RunnerLiveness | None
    continue_with: str | None = None


def continue_command(row: CampaignRow, db: Path | str) -> str:
    """``campaign run`` on the same file and database. ``--smsc`` because the campaign's jobs are in
    the database: the embedded network starts fresh cards and refuses it (docs/campaigns.md §1.1)."""
    source = shlex.quote(row.source) if row.source else "CAMPAIGN.toml"
    return f"ota-server campaign run {source} --db {shlex.quote(str(db))} --smsc HOST:PORT"


def campaign_status(
    row: CampaignRow, runner: RunnerLiveness | None, *, db: Path | str, workers: Sequence[str] = ()
) -> CampaignStatus:
    """``workers``: the live workers of the campaign (docs/campaigns.md §6.7), each described."""
    alive = runner is not None and runner.alive
    if row.state == "finished":
        return CampaignStatus("finished", "finished", runner)
    if workers:
        status = {"cancelled": "cancelling", "paused": "paused"}.get(row.state, "running")
        return CampaignStatus(status, f"{status} ({len(workers)} worker(s): {', '.join(workers)})", runner)
    if row.state == "cancelled":
        if alive:
            assert runner is not None
            text = f"cancelling (runner {runner.describe()}, settling the messages in flight)"
            return CampaignStatus("cancelling", text, runner)
        return CampaignStatus("cancelled", "cancelled", runner)
    if alive:
        assert runner is not None
        if row.state == "paused":
            return CampaignStatus("paused", f"paused (runner {runner.describe()})", runner)
        return CampaignStatus("running", f"running ({runner.describe()})", runner)
    why = runner.describe() if runner is not None else "no runner (the last run stopped before the end)"
    command = continue_command(row, db)
    if row.state == "paused":
        return CampaignStatus("paused", f"paused; {why}; continue with: {command}", runner, command)
    return CampaignStatus("interrupted", f"interrupted: {why}; continue with: {command}", runner, command)


# --------------------------------------------------------------------------- lifecycle and status

# ``campaign pause|resume|cancel`` and the HTTP API's POST /api/campaigns/NAME/{command}: the state
# each writes into the campaigns row, which the runner polls (docs/campaigns.md §1.1).
LIFECYCLE = {"pause": "paused", "resume": "running", "cancel": "cancelled"}
CARD_STATES = ("confirmed", "partial", "failed", "pending", "cancelled", "skipped")


def lifecycle_refusal(row: CampaignRow, command: str) -> str | None:
    """Why ``command`` cannot apply to the campaign (an ended one stays ended), or None."""
    wanted = LIFECYCLE[command]
    if row.state in ("cancelled", "finished") and wanted != row.state:
        return f"campaign {row.name} is {row.state}: cannot {command}"
    return None


def status_document(
    store: CardStore, row: CampaignRow, status: CampaignStatus, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``campaign status --json`` and ``GET /api/campaigns/NAME``: state, lease and counts.
    ``summary``: :func:`campaign_summary`'s, when the caller has it already."""
    if summary is None:
        summary = campaign_summary(store, row.name, row.state)
    s = summary["summary"]
    return {
        "campaign": row.name,
        "state": row.state,
        "status": status.status,
        "text": status.text,
        "runner": status.runner.as_json() if status.runner is not None else None,
        "workers": store.live_workers(row.name),
        "lease_ttl_s": LEASE_TTL_S,
        "continue_with": status.continue_with,
        "source": row.source,
        "cards": {k: s[k] for k in ("cards", *CARD_STATES)},
        "jobs": summary["jobs"],
    }
