"""The resilience scenarios print one line each, gathered at the end of the run."""

from __future__ import annotations

import pytest

from tests.resilience.harness import REPORT


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT:
        terminalreporter.section("resilience figures")
        for line in REPORT:
            terminalreporter.line(line)


@pytest.fixture
def meta(env, web_server, monkeypatch):
    """The simulator wired both ways (Graph calls to it, its webhooks to our web), every user
    within the window: the faults under test are the only ones."""
    from alfred.simulator.testing import running_simulator
    from tests.conftest import _reset_caches, _simulator_config

    config = _simulator_config(f"{web_server}/webhook", status_delay_s=0.01, enforce_window=False)
    with running_simulator(config) as handle:
        monkeypatch.setenv("GRAPH_API_URL", handle.url)
        _reset_caches()
        yield handle
