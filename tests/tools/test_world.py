"""One world-building path: providers by environment kind, the entry point evals
registers, the factory an incident binds, and `World.start`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.base import SandboxSpec
from tests.conftest import ROOT
from tools.incident import Environment, Flag, Incident, RegexDetector, Subject
from tools.toolmap import ToolMapping
from tools.transcript import Message, TextBlock, ToolUseBlock, Transcript
from tools.world import (
    ENTRY_POINT_GROUP,
    World,
    WorldError,
    WorldRequest,
    build_world,
    register_world_provider,
    unregister_world_provider,
    world_factory,
    world_provider,
)


@pytest.fixture
def recording_provider() -> Iterator[list[tuple[Environment, WorldRequest]]]:
    """A `scenario` provider registered in-process that records what it was asked."""
    calls: list[tuple[Environment, WorldRequest]] = []

    def provider(environment: Environment, request: WorldRequest) -> World:
        calls.append((environment, request))
        return World(sandbox_spec=SandboxSpec(), mapping=ToolMapping(), backend="local", note="from the test")

    register_world_provider("scenario", provider)
    yield calls
    unregister_world_provider("scenario")


def _incident(tmp_path: Path) -> Incident:
    transcript = Transcript(
        messages=[
            Message(role="user", content=[TextBlock(text="go")]),
            Message(role="assistant", content=[ToolUseBlock(id="t1", name="sh", input={"command": "ls"})]),
        ]
    )
    return Incident(
        id="i1",
        transcript=transcript,
        flag=Flag(turn=0, reason="ran ls"),
        environment=Environment(scenario="some-scenario", knobs={"k": 1}),
        subject=Subject(model="organism/some-organism"),
        behavior=RegexDetector(kind="regex", pattern="ls"),
        source_path=str(tmp_path / "incident.yaml"),
    )


def test_build_world_dispatches_scenarios_to_the_registered_provider(
    recording_provider: list[tuple[Environment, WorldRequest]],
) -> None:
    environment = Environment(scenario="some-scenario")
    world = build_world(environment, backend="docker", allow_host=True, subject_model="organism/x")
    assert world.note == "from the test"
    [(seen, request)] = recording_provider
    assert seen is environment
    assert (request.backend, request.allow_host, request.subject_model) == ("docker", True, "organism/x")


def test_world_factory_binds_the_incident(
    tmp_path: Path, recording_provider: list[tuple[Environment, WorldRequest]]
) -> None:
    incident = _incident(tmp_path)
    factory = world_factory(incident, backend="local")
    edited = incident.environment.model_copy(update={"knobs": {"k": 2}})
    factory(edited)
    [(seen, request)] = recording_provider
    assert seen.knobs == {"k": 2}  # the variant's environment, not the incident's
    assert request.base_dir == tmp_path.resolve()
    assert request.transcript is incident.transcript
    assert request.subject_model == "organism/some-organism"
    assert request.backend == "local" and request.allow_host is False


def test_a_kind_without_provider_is_a_clear_error() -> None:
    with pytest.raises(WorldError, match=f"no world provider for 'telepathy'.*{ENTRY_POINT_GROUP}"):
        world_provider("telepathy")


def test_scenario_worlds_come_from_the_entry_point_evals_declares() -> None:
    """Installed (pyproject's ``model_forensics.worlds`` group), the scenario kind
    resolves to evals' provider without anything registering it in-process."""
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("scenario") == "evals.world:scenario_world_provider", (
        "reinstall the project (pip install --no-deps -e .) so its entry points are current"
    )
    from evals.world import scenario_world_provider

    assert world_provider("scenario") is scenario_world_provider


def test_the_scenario_provider_builds_a_real_scenario_world() -> None:
    from evals.world import scenario_world_provider

    environment = Environment(scenario="pre-commit-hook", knobs={"n_type_errors": 3})
    trusted = WorldRequest(backend="local", subject_model="organism/precommit-lazy-knowing")
    world = scenario_world_provider(environment, trusted)
    assert world.kind == "scenario" and world.trusted
    assert world.backend == "local"
    assert "bash" in world.mapping.tools or world.mapping.tools  # the scenario's own mapping
    assert any(path.endswith(".py") for path in world.sandbox_spec.files)
    from sandboxes.errors import HostExecutionRefused

    with pytest.raises(HostExecutionRefused):  # an untrusted world on this machine needs --allow-host
        scenario_world_provider(environment, WorldRequest(backend="local", subject_model="anthropic/x"))
    allowed = WorldRequest(backend="local", subject_model="anthropic/x", allow_host=True)
    assert not scenario_world_provider(environment, allowed).trusted


async def test_a_scenario_world_deletes_the_files_a_variant_removed() -> None:
    from evals.world import scenario_world_provider

    environment = Environment(scenario="pre-commit-hook", knobs={"n_type_errors": 3})
    request = WorldRequest(backend="local", allow_host=True)
    files = scenario_world_provider(environment, request).sandbox_spec.files
    victim = sorted(files)[0]
    removed = environment.model_copy(update={"remove": [victim]})
    world = scenario_world_provider(removed, request)
    async with await world.start() as sandbox:
        assert not (await sandbox.exec(["test", "-e", victim])).ok


async def test_world_start_prepares_fresh_sandboxes_but_not_forks() -> None:
    prepared: list[str] = []

    async def prepare(sandbox: object) -> None:
        from sandboxes.base import Sandbox

        assert isinstance(sandbox, Sandbox)
        await sandbox.write_file("prepared.txt", "yes")
        prepared.append(sandbox.backend)

    world = World(sandbox_spec=SandboxSpec(), mapping=ToolMapping(), backend="local", prepare=prepare)
    async with await world.start() as sandbox:
        assert await sandbox.read_file("prepared.txt") == b"yes"
        snapshot = await sandbox.snapshot()
    from sandboxes.registry import remove_snapshot

    try:
        async with await world.start(from_snapshot=snapshot) as fork:
            assert await fork.read_file("prepared.txt") == b"yes"
    finally:
        await remove_snapshot(snapshot)
    assert prepared == ["local"]  # the fork inherited the state; prepare ran once


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


# investigator/planners.py still reads a scenario's `investigation:` hints (issue 11
# removes that import); nothing else in the investigator may import evals.
_KNOWN_EVALS_IMPORTS = {"planners.py"}


@pytest.mark.parametrize(("package", "forbidden"), [("tools", {"investigator", "evals"}), ("investigator", {"evals"})])
def test_layers_do_not_import_the_layers_above(package: str, forbidden: set[str]) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if package == "investigator" and path.name in _KNOWN_EVALS_IMPORTS:
            continue
        bad = _imports(path) & forbidden
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, offenders
