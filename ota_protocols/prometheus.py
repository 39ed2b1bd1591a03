"""Prometheus text exposition format 0.0.4: metric families to text, and a fixed-bucket histogram.

Clauses: Prometheus "Exposition formats", text-based format (version 0.0.4): one ``# HELP`` and one
``# TYPE`` line per family, then ``name{label="value"} value`` lines; label values escape ``\\``,
``"`` and line feed, HELP text escapes ``\\`` and line feed; a histogram is cumulative
``_bucket{le="..."}`` lines ending with ``le="+Inf"``, then ``_sum`` and ``_count``.

Glossary: family one metric name with its HELP, TYPE and samples; le "less or equal", a bucket's
upper bound.

PURE: no I/O. Both applications render with it (``ota-server serve`` and ``handset serve
--metrics``), so it lives here rather than in either. The counts are the applications' own
(engine and SMSC counters), read at scrape time; nothing here keeps global state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Family", "Histogram", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KINDS = ("counter", "gauge", "histogram")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = Sequence[tuple[str, str]]


@dataclass(slots=True)
class Histogram:
    """Observations counted into fixed buckets (``bounds`` ascending; +Inf is implicit)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last is +Inf
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"histogram bounds must ascend strictly, got {self.bounds}")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1

    def __add__(self, other: Histogram) -> Histogram:
        return self.merged(other)

    def merged(self, other: Histogram) -> Histogram:
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different buckets")
        return Histogram(
            self.bounds,
            [a + b for a, b in zip(self.counts, other.counts, strict=True)],
            self.total + other.total,
            self.count + other.count,
        )


@dataclass(slots=True)
class Family:
    """One metric family; ``add`` a sample per label set (a :class:`Histogram` for histograms)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float | Histogram]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not [a-zA-Z_:][a-zA-Z0-9_:]*")
        if self.kind not in KINDS:
            raise ValueError(f"metric type {self.kind!r} is not one of {', '.join(KINDS)}")

    def add(self, value: float | Histogram, **labels: object) -> Family:
        for name in labels:
            if not _LABEL.match(name) or name.startswith("__") or name == "le":
                raise ValueError(f"label name {name!r} is reserved or not [a-zA-Z_][a-zA-Z0-9_]*")
        if isinstance(value, Histogram) != (self.kind == "histogram"):
            wanted = "a Histogram" if self.kind == "histogram" else "a number"
            raise ValueError(f"{self.name}: a {self.kind} takes {wanted}")
        self.samples.append((tuple((k, str(v)) for k, v in labels.items()), value))
        return self


def _value(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}"


def render(families: Iterable[Family]) -> str:
    """The exposition text; a family without samples still gets its HELP and TYPE lines."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name} rendered twice")
        seen.add(family.name)
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            if isinstance(value, Histogram):
                cumulative = 0
                for bound, count in zip((*value.bounds, math.inf), value.counts, strict=True):
                    cumulative += count
                    le = (*labels, ("le", _value(float(bound))))
                    lines.append(f"{family.name}_bucket{_labels(le)} {cumulative}")
                lines.append(f"{family.name}_sum{_labels(labels)} {_value(value.total)}")
                lines.append(f"{family.name}_count{_labels(labels)} {value.count}")
            else:
                lines.append(f"{family.name}{_labels(labels)} {_value(value)}")
    return "\n".join(lines) + "\n"
