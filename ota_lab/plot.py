"""``ota-lab run --plot FILE``: the run over (virtual) time - messages sent per bin and jobs closed
(cumulative, by state). Needs matplotlib (``pip install -e '.[plot]'``) and the virtual transport
(its timeline); imported only when asked for.  :func:`check_plot` runs before the lab does
(format from the suffix, PNG without one, written to exactly the name given; the directory exists;
matplotlib installed), so a bad ``--plot`` costs no run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError
from ota_server.campaign_report import plot_format

__all__ = ["check_plot", "plot_run"]


def check_plot(path: str | Path) -> str:
    """The image format to write ``path`` in; ``ConfigError`` ("--plot: ...") when it cannot be."""
    return plot_format(path, option="--plot")


def plot_run(result: Any, path: str | Path) -> None:
    timeline = result.timeline
    if timeline is None:
        raise ConfigError("--plot", "needs the virtual transport (the smpp path keeps no timeline)")
    fmt = check_plot(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bin_s = timeline["bin_s"]
    sent = timeline["sent"]
    last = max(
        [i for i, v in enumerate(sent) if v]
        + [i for series in timeline["closed"].values() for i, v in enumerate(series) if v]
        + [0]
    )
    xs = [(i + 1) * bin_s for i in range(last + 1)]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    # Bin i covers [i, i + 1) x bin_s: its bar starts there; the closed-jobs curve is read at its end.
    starts = [i * bin_s for i in range(last + 1)]
    top.bar(starts, sent[: last + 1], width=bin_s, align="edge", color="tab:blue")
    top.set_ylabel(f"SMS sent per {bin_s:g} s")
    for state, color in (("confirmed", "tab:green"), ("partial", "tab:orange"), ("failed", "tab:red")):
        total, cumulative = 0, []
        for v in timeline["closed"][state][: last + 1]:
            total += v
            cumulative.append(total)
        bottom.plot(xs, cumulative, label=state, color=color)
    bottom.set_ylabel("jobs closed (cumulative)")
    bottom.set_xlabel("virtual time (s)")
    # Beside the axes, not on the curves (they climb from one corner to the other).
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.suptitle(f"{result.lab} seed {result.seed}: {result.outcome()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format=fmt)  # exactly ``path``: no suffix appended
    plt.close(fig)
