"""The Prometheus alert rules pass their promtool unit tests; the Alertmanager config is valid."""

from __future__ import annotations

import shutil
import subprocess

from alfred.config import REPO_ROOT

OPS = REPO_ROOT / "ops"


def run(*argv: str, cwd=OPS) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtool_test_rules(prometheus_tools):
    checked = run(prometheus_tools["promtool"], "check", "rules", "prometheus/alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(prometheus_tools["promtool"], "test", "rules", "prometheus/alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_catches_a_rule_that_stops_firing(prometheus_tools, tmp_path):
    # The same tests against rules whose send-failure bar was raised to 50 %: they must fail,
    # so the suite above proves the bar and not merely that promtool runs.
    rules = (OPS / "prometheus" / "alerts.yml").read_text().replace(">= 0.10", ">= 0.50")
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(OPS / "prometheus" / "alerts.test.yml", tmp_path)
    tested = run(prometheus_tools["promtool"], "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "AlfredSendFailures" in tested.stdout + tested.stderr


def test_the_alertmanager_config_passes_amtool(prometheus_tools):
    checked = run(prometheus_tools["amtool"], "check-config", "alertmanager/alertmanager.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "pagerduty" in (OPS / "alertmanager" / "alertmanager.yml").read_text()
