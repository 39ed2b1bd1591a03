"""The Prometheus text format renderer (exposition format 0.0.4) and its histogram."""

from __future__ import annotations

import math

import pytest

from ota_protocols.prometheus import Family, Histogram, render


def test_counter_and_gauge_lines_with_help_type_and_escaped_labels() -> None:
    text = render(
        [
            Family("ota_submit_total", "counter", "submit_sm answered\nby status").add(
                3, status="0x00000000"
            ),
            Family("ota_link_up", "gauge", "bound").add(1, bind="0", campaign='a"b\\c\nd'),
        ]
    )
    assert text == (
        "# HELP ota_submit_total submit_sm answered\\nby status\n"
        "# TYPE ota_submit_total counter\n"
        'ota_submit_total{status="0x00000000"} 3\n'
        "# HELP ota_link_up bound\n"
        "# TYPE ota_link_up gauge\n"
        'ota_link_up{bind="0",campaign="a\\"b\\\\c\\nd"} 1\n'
    )


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        h.observe(value)
    text = render([Family("lat_seconds", "histogram", "latency").add(h, campaign="c")])
    assert text.splitlines()[2:] == [
        'lat_seconds_bucket{campaign="c",le="0.1"} 2',
        'lat_seconds_bucket{campaign="c",le="1.0"} 3',
        'lat_seconds_bucket{campaign="c",le="+Inf"} 4',
        'lat_seconds_sum{campaign="c"} 7.65',
        'lat_seconds_count{campaign="c"} 4',
    ]
    assert (h + h).counts == [4, 2, 2] and (h + h).count == 8


def test_special_values_and_empty_family() -> None:
    text = render([Family("x", "gauge", "h").add(math.inf).add(math.nan, a="1"), Family("y", "counter", "e")])
    assert "x +Inf\n" in text and 'x{a="1"} NaN\n' in text
    assert text.endswith("# HELP y e\n# TYPE y counter\n")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Family("1bad", "counter", "h"),
        lambda: Family("ok", "summary", "h"),
        lambda: Family("ok", "counter", "h").add(1, le="1"),
        lambda: Family("ok", "counter", "h").add(Histogram((1.0,))),
        lambda: Family("ok", "histogram", "h").add(1),
        lambda: Histogram((1.0, 0.5)),
        lambda: render([Family("a", "gauge", "h"), Family("a", "gauge", "h")]),
    ],
)
def test_malformed_families_are_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]
