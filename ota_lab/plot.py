"""``ota-lab run --plot FILE``: the run over (virtual) time - messages sent per bin and jobs closed
(cumulative, by state). Needs matplotlib (``pip install -e '.[plot]'``) and the virtual transport
(its timeline); imported only when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError

__all__ = ["plot_run"]


def plot_run(result: Any, path: str | Path) -> None:
    timeline = result.timeline
    if timeline is None:
        raise ConfigError("--plot", "needs the virtual transport (the smpp path keeps no timeline)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot", "matplotlib is not installed (pip install -e '.[plot]')") from None
    bin_s = timeline["bin_s"]
    sent = timeline["sent"]
    last = max(
        [i for i, v in enumerate(sent) if v]
        + [i for series in timeline["closed"].values() for i, v in enumerate(series) if v]
        + [0]
    )
    xs = [(i + 1) * bin_s for i in range(last + 1)]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    top.bar(xs, sent[: last + 1], width=bin_s, align="edge", color="tab:blue")
    top.set_ylabel("SMS sent per bin")
    for state, color in (("confirmed", "tab:green"), ("partial", "tab:orange"), ("failed", "tab:red")):
        total, cumulative = 0, []
        for v in timeline["closed"][state][: last + 1]:
            total += v
            cumulative.append(total)
        bottom.plot(xs, cumulative, label=state, color=color)
    bottom.set_ylabel("jobs closed")
    bottom.set_xlabel("virtual time (s)")
    bottom.legend()
    fig.suptitle(f"{result.lab} seed {result.seed}: {result.outcome()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
