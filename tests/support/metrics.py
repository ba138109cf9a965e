"""What the services write on /metrics, read from their registry: dashboards and alerts are checked against it."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

import shared.metrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> dict[str, frozenset[str]]:
    """Each series name the services export (a counter's `_total`, a histogram's `_bucket`, ...) and its labels."""
    series: dict[str, frozenset[str]] = {}
    for metric in vars(shared.metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = frozenset(metric._labelnames)
        for suffix in SUFFIXES[metric._type]:
            series[metric._name + suffix] = labels | {"le"} if suffix == "_bucket" else labels
    return series
