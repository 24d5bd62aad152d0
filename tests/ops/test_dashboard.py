"""The Grafana dashboard and the alert rules use only metrics the exporter serves."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from alfred import metrics
from alfred.config import REPO_ROOT
from alfred.operations.backlog import BacklogCollector

OPS = REPO_ROOT / "ops"
NAME = re.compile(r"\b(alfred_[a-z0-9_]+)")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_names(redis_client) -> set[str]:
    """Every sample name the metrics port can serve, from its own exposition text."""
    text = metrics.render(BacklogCollector(lambda: redis_client))[0].decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((OPS / "grafana" / "alfred.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_exported(redis_client):
    exported = exported_names(redis_client)
    used = {name for expr in dashboard_queries() for name in NAME.findall(expr)}
    assert len(used) > 20
    assert used - exported == set()


def test_every_metric_the_alert_rules_use_is_exported(redis_client):
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used - exported_names(redis_client) == set()


def test_the_check_catches_a_misspelt_metric(redis_client):
    assert "alfred_sends_totl" not in exported_names(redis_client)
    assert "alfred_sends_total" in exported_names(redis_client)


def test_the_dashboard_is_for_alfred_home_and_every_query_is_scoped_to_it():
    dashboard = json.loads((OPS / "grafana" / "alfred.json").read_text())
    instance = next(v for v in dashboard["templating"]["list"] if v["name"] == "instance")
    assert instance["current"]["value"] == "alfred-home"
    for expr in dashboard_queries():
        for selector in re.findall(r"alfred_[a-z0-9_]+\{([^}]*)\}", expr):
            assert 'instance="$instance"' in selector, expr
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in (
        "in per tenant",
        "out per tenant",
        "meta code",
        "latency",
        "backlogs",
        "token",
        "quality",
        "tier",
    ):
        assert topic in titles, topic
