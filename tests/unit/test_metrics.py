"""The remembered metric children count into the same series as `labels()`."""

from __future__ import annotations

import uuid

from shared.metrics import HANDLER_SECONDS, MESSAGES, REGISTRY, labelled


def test_labelled_returns_the_child_labels_returns_and_counts_into_its_series() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    child = labelled(MESSAGES, service, "topic-a", "processed")
    assert child is MESSAGES.labels(service, "topic-a", "processed")
    assert labelled(MESSAGES, service, "topic-a", "processed") is child
    labelled(MESSAGES, service, "topic-a", "processed").inc()
    labelled(MESSAGES, service, "topic-a", "processed").inc()
    labelled(MESSAGES, service, "topic-a", "stale").inc()
    series = {"service": service, "topic": "topic-a"}
    assert REGISTRY.get_sample_value("broadsheet_messages_total", {**series, "outcome": "processed"}) == 2
    assert REGISTRY.get_sample_value("broadsheet_messages_total", {**series, "outcome": "stale"}) == 1


def test_labelled_keeps_each_metrics_children_apart() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    labelled(HANDLER_SECONDS, service, "topic-a").observe(0.003)
    series = {"service": service, "topic": "topic-a"}
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_count", series) == 1
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_bucket", {**series, "le": "0.0025"}) == 0
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_bucket", {**series, "le": "0.005"}) == 1
