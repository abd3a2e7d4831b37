"""The scenarios' ``investigation:`` sections as investigation hints (the
``model_forensics.hints`` entry point; see tools.hints)."""

from __future__ import annotations

from evals.scenario import ScenarioError, load_scenario
from tools.hints import InvestigationHints
from tools.incident import Environment


def scenario_hints(environment: Environment) -> InvestigationHints | None:
    """The `investigation:` section of the environment's scenario, if it has one."""
    if not environment.scenario:
        return None
    try:
        hints = load_scenario(environment.scenario).investigation
    except ScenarioError:
        return None
    return None if hints.empty else hints
