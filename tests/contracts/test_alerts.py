"""deploy/prometheus/alerts.yaml: every rule parses as PromQL and reads only series and labels the services
export, so an alert cannot sit silent on a metric that was renamed or never existed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.support.metrics import exported_series

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yaml"
SEVERITIES = {"page", "ticket"}
OUTCOMES = {"retried", "dead_lettered"}  # the runner's own; handlers name theirs (published, moderated, ...)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def selectors(node: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every series selector in a parsed expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            yield from selectors(argument)
    elif isinstance(node, (promql_parser.AggregateExpr, promql_parser.ParenExpr, promql_parser.UnaryExpr,
                           promql_parser.SubqueryExpr)):
        yield from selectors(node.expr)


def test_the_rules_are_complete_and_uniquely_named() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) and len(names) >= 5
    for rule in rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_a_rule_reads_only_what_the_services_export(rule: dict[str, Any]) -> None:
    expression = promql_parser.parse(rule["expr"])
    exported = exported_series()
    found = list(selectors(expression))
    assert found, "no series selector found"
    for selector in found:
        assert selector.name in exported, f"{selector.name} is not exported"
        for matcher in selector.matchers.matchers:
            assert matcher.name in exported[selector.name], f"{selector.name} has no label {matcher.name}"
            if matcher.name == "outcome":
                assert set(matcher.value.split("|")) <= OUTCOMES, matcher.value


def test_the_checks_catch_a_misspelt_series() -> None:
    broken = promql_parser.parse('sum(rate(broadsheet_message_total{outcome="failed"}[5m])) > 0')
    assert [s.name for s in selectors(broken)] == ["broadsheet_message_total"]
    assert "broadsheet_message_total" not in exported_series()
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("sum by (service (rate(broadsheet_messages_total[5m]))")
