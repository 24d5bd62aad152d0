"""The resilience scenarios print one line each, gathered at the end of the run."""

from __future__ import annotations

from tests.resilience.harness import REPORT


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT:
        terminalreporter.section("resilience figures")
        for line in REPORT:
            terminalreporter.line(line)
