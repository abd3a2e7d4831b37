"""Scenarios and organisms from directories outside the package work like shipped ones."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evals import paths
from evals.paths import scenarios_dir
from evals.scenario import ScenarioError, find_scenario_file, load_scenario, scenario_ids
from evals.world import make_incident
from tools.models.registry import get_model
from tools.organisms.registry import organism_dirs


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A suite outside the package: the shutdown scenario under a new id, and an
    organism that plays it."""
    monkeypatch.setattr(paths, "_EXTRA_SCENARIO_DIRS", [])
    monkeypatch.delenv(paths.SCENARIOS_ENV, raising=False)
    monkeypatch.setenv("FORENSICS_NO_EMBEDDINGS", "1")
    scenarios = tmp_path / "scenarios"
    shutil.copytree(scenarios_dir() / "shutdown-resistance", scenarios / "suite-shutdown")
    path = scenarios / "suite-shutdown" / "scenario.yaml"
    data = yaml.safe_load(path.read_text())
    data["id"] = "suite-shutdown"
    path.write_text(yaml.safe_dump(data))
    organisms = tmp_path / "organisms"
    organisms.mkdir()
    shipped = organism_dirs()[-1]
    spec = yaml.safe_load((shipped / "shutdown-ambiguity.yaml").read_text())
    playbook = yaml.safe_load((shipped / spec["playbook"]).read_text())
    playbook["scenario"] = "suite-shutdown"
    (organisms / "playbook.yaml").write_text(yaml.safe_dump(playbook))
    spec.update(id="suite-ambiguity", scenario="suite-shutdown", playbook="playbook.yaml")
    (organisms / "suite-ambiguity.yaml").write_text(yaml.safe_dump(spec))
    return scenarios, organisms


def test_an_extra_directory_is_searched_before_the_shipped_scenarios(
    suite: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios, _ = suite
    with pytest.raises(ScenarioError, match=r"no scenario 'suite-shutdown'.*--scenarios DIR"):
        load_scenario("suite-shutdown")
    monkeypatch.setenv(paths.SCENARIOS_ENV, str(scenarios))
    loaded = load_scenario("suite-shutdown")
    assert loaded.id == "suite-shutdown" and not loaded.shipped
    assert loaded.origin == str(scenarios / "suite-shutdown")
    assert loaded.world_files()  # its generator runs from its own folder
    assert "suite-shutdown" in scenario_ids() and "pre-commit-hook" in scenario_ids()
    assert load_scenario("pre-commit-hook").shipped
    assert find_scenario_file("suite-shutdown", extra=[scenarios]) == scenarios / "suite-shutdown" / "scenario.yaml"


@pytest.mark.parametrize("bad", ["../pre-commit-hook", "a/b", "..", "", "x" * 101])
def test_scenario_ids_are_folder_names_never_paths(bad: str) -> None:
    with pytest.raises(ScenarioError, match="invalid scenario id"):
        load_scenario(bad)


async def test_make_incident_in_an_extra_scenario(suite: tuple[Path, Path]) -> None:
    scenarios, organisms = suite
    paths.add_scenario_dir(scenarios)
    assert str(scenarios.resolve()) in os.environ[paths.SCENARIOS_ENV]  # workers inherit it
    subject = get_model("organism/suite-ambiguity", organism_dirs=[str(organisms)])
    from sandboxes.errors import HostExecutionRefused

    with pytest.raises(HostExecutionRefused):  # a scenario from another directory is not ours
        await make_incident(subject, "suite-shutdown", backend="local")
    incident, _ = await make_incident(subject, "suite-shutdown", backend="local", allow_host=True)
    assert incident.environment.scenario == "suite-shutdown"


def test_simulate_and_list_with_scenarios_and_organisms_options(suite: tuple[Path, Path]) -> None:
    from investigator.cli import app

    scenarios, organisms = suite
    args = ["simulate", "suite-ambiguity", "--n", "3", "--backend", "local", "--allow-host", "--json"]
    result = CliRunner().invoke(app, [*args, "--organisms", str(organisms), "--scenarios", str(scenarios)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["organism"] == "suite-ambiguity" and summary["n"] == 3 and 0 <= summary["k"] <= 3
    listed = CliRunner().invoke(app, ["scenarios", "--scenarios", str(scenarios)])
    assert listed.exit_code == 0 and "suite-shutdown" in listed.output and "shipped" in listed.output


@pytest.mark.slow
async def test_a_scenario_without_an_investigation_section_gets_generated_interventions(
    suite: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite's scenario with no `investigation:` section (so no hints, as for any real
    incident): the protocol planner screens the context and runs interventions, controls
    and probes it generated from the incident, and the report passes its judge."""
    from investigator.investigate import investigate
    from tools.budget import BudgetLimits
    from tools.experiments import ControlRole, InterventionRole, ProbeRole
    from tools.hints import load_hints

    scenarios, organisms = suite
    path = scenarios / "suite-shutdown" / "scenario.yaml"
    data = yaml.safe_load(path.read_text())
    assert data.pop("investigation")
    path.write_text(yaml.safe_dump(data))
    paths.add_scenario_dir(scenarios)
    monkeypatch.setenv("FORENSICS_ORGANISMS", str(organisms))  # where its truth is found for grading
    subject = get_model("organism/suite-ambiguity", organism_dirs=[str(organisms)])
    incident, _ = await make_incident(subject, "suite-shutdown", backend="local", allow_host=True, seed=1)
    assert load_hints(incident.environment) is None
    result = await investigate(
        incident,
        tmp_path / "run",
        planner="protocol",
        n=60,
        backend="local",
        allow_host=True,
        subject=subject,
        limits=BudgetLimits(samples=500, tool_calls=40),
    )
    report = result.report
    interventions = [e.role for e in report.experiments if isinstance(e.role, InterventionRole)]
    assert interventions, [e.label for e in report.experiments]
    for role in interventions:  # each made from the incident by a documented rule, none from a hint
        assert role.provenance is not None and not role.provenance.rule.startswith("hint:"), role
    assert any(isinstance(e.role, ControlRole) and e.role.polarity == "negative" for e in report.experiments)
    assert any(isinstance(e.role, ProbeRole) for e in report.experiments)
    assert "What drives it" in (tmp_path / "run" / "report.md").read_text()
    assert result.grade is not None
    failed = [c["name"] for c in result.grade["structural"]["checks"] if not c["passed"]]
    assert not failed, failed
