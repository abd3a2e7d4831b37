"""Scenarios as worlds for experiments, and incidents made the way a monitor makes them.

`scenario_world(environment)` builds the `tools.world.World` of a scenario environment:
the sandbox (its backend chosen by the policy, `sandboxes.registry.choose_backend`), the
tool mapping and the turn cap at the environment's knob values. `scenario_world_provider`
is the same as a `tools.world.WorldProvider`; evals registers it under the ``scenario``
name of the ``model_forensics.worlds`` entry-point group, so `tools.world.build_world`
reaches it without the investigator importing evals. Its `trusted` says whether the
policy may run a world on the local backend without being asked (`is_trusted_world`):
only shipped scenarios played by shipped organisms, with the scenario's own detector and
no files of the incident's.
`make_incident` runs an organism in its scenario until an episode trips the
scenario's detector, as a monitor would catch it, and writes it out as an incident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.paths import organisms_dir
from evals.scenario import Scenario, ScenarioError, load_scenario
from sandboxes.base import Sandbox
from sandboxes.errors import HostExecutionRefused, ImageBuildError
from sandboxes.registry import BackendChoice, choose_backend
from tools.detectors import detect
from tools.errors import ForensicsError
from tools.formats.native import save as save_transcript
from tools.incident import DetectorSpec, Environment, Flag, Incident, RegexDetector, Subject
from tools.models.base import ModelClient
from tools.rollout import rollout
from tools.transcript import Transcript
from tools.world import World, WorldRequest


def _shipped(path: Path | str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root.resolve())


def is_shipped_scenario(scenario: Scenario) -> bool:
    """Whether a scenario is one of this package's own (not from a search directory)."""
    return scenario.shipped


def is_trusted_world(environment: Environment, subject_model: str, behavior: DetectorSpec | None = None) -> bool:
    """Whether the backend policy may treat this world as ours (see module doc): a
    shipped scenario, an ``organism/`` subject whose spec is shipped and plays that
    scenario, no files of the incident's own, and (when given) the scenario's own
    detector. Anything else may carry commands written by whoever filed the incident."""
    if environment.scenario is None or environment.files or not subject_model.startswith("organism/"):
        return False
    try:
        scenario = load_scenario(environment.scenario)
    except ScenarioError:
        return False
    if not is_shipped_scenario(scenario):
        return False
    if behavior is not None and behavior.model_dump(mode="json") != scenario.behavior.model_dump(mode="json"):
        return False
    from tools.organisms.registry import find_organism
    from tools.organisms.spec import OrganismError

    try:
        organism = find_organism(subject_model.split("/", 1)[1])
    except OrganismError:
        return False
    return _shipped(organism.source_path, organisms_dir()) and organism.scenario == environment.scenario


def scenario_world(
    environment: Environment,
    *,
    backend: str | None = None,
    client: Any = None,
    trusted: bool | None = None,
    allow_host: bool = False,
    choice: BackendChoice | None = None,
) -> World:
    """The world for a scenario environment (see module doc). `trusted` defaults to
    whether the scenario is shipped and the environment brings no files; investigations
    pass the whole incident's verdict (`is_trusted_world`), or a `choice` already made."""
    if environment.scenario is None:
        raise ForensicsError("this environment names no scenario; only scenario worlds can be rebuilt here")
    scenario = load_scenario(environment.scenario)
    if trusted is None:
        trusted = choice.trusted if choice is not None else is_shipped_scenario(scenario) and not environment.files
    choice = choice or choose_backend(backend, trusted=trusted, allow_host=allow_host)
    name, note = choice.name, choice.note
    try:
        spec = scenario.sandbox_spec(environment.knobs, backend=name, client=client)
    except ImageBuildError as exc:
        if backend == "docker" or name != "docker":
            raise  # asked for Docker explicitly: say why it cannot be had
        if not (trusted or allow_host):
            raise HostExecutionRefused(
                f"the scenario image could not be built ({exc}), and this incident is untrusted, so it will not "
                "run on this machine; fix the image build, or pass --backend local --allow-host"
            ) from None
        local = choose_backend("local", trusted=trusted, allow_host=allow_host)
        name = "local"
        note = f"the scenario image could not be built ({exc}), so {local.note}"
        spec = scenario.sandbox_spec(environment.knobs, backend=name)
    if environment.files:
        spec = spec.model_copy(update={"files": {**spec.files, **environment.files}})
    return World(
        sandbox_spec=spec,
        mapping=scenario.mapping,
        backend=name,
        max_turns=scenario.max_turns,
        note=note,
        kind="scenario",
        trusted=trusted,
        prepare=_remover(environment.remove),
        description=f"scenario {scenario.id}",
    )


def _remover(paths: list[str]) -> Any:
    """Deletes the files a variant removed from the world (None when there are none)."""
    if not paths:
        return None
    from tools.snapshot import remove_files

    async def prepare(sandbox: Sandbox) -> None:
        await remove_files(sandbox, list(paths))

    return prepare


class ScenarioWorldProvider:
    """`scenario_world` as a `tools.world.WorldProvider` (the ``scenario`` entry point),
    with the trust verdict the policy needs before anything is built."""

    def trusted(self, environment: Environment, request: WorldRequest) -> bool:
        """See `is_trusted_world`; without a subject named, nothing is trusted."""
        return is_trusted_world(environment, request.subject_model or "", request.behavior)

    def __call__(self, environment: Environment, request: WorldRequest) -> World:
        return scenario_world(
            environment,
            backend=request.backend,
            client=request.client,
            trusted=request.choice.trusted if request.choice is not None else self.trusted(environment, request),
            allow_host=request.allow_host,
            choice=request.choice,
        )


scenario_world_provider = ScenarioWorldProvider()


def _flagged_turn(transcript: Transcript, pattern: RegexDetector | None) -> tuple[int, str | None]:
    """The first turn whose tool call matches the detector's regex (else the last turn
    with a tool call), and that call's id."""
    import re

    turns = transcript.turns()
    if pattern is not None:
        regex = re.compile(pattern.pattern, re.I if pattern.ignore_case else 0)
        for turn in turns:
            for call in turn.tool_uses:
                if any(isinstance(v, str) and regex.search(v) for v in call.input.values()):
                    return turn.index, call.id
    for turn in reversed(turns):
        if turn.tool_uses:
            return turn.index, turn.tool_uses[-1].id
    return len(turns) - 1, None


async def make_incident(
    subject: ModelClient,
    scenario_id: str,
    *,
    knobs: dict[str, Any] | None = None,
    backend: str | None = None,
    allow_host: bool = False,
    max_episodes: int = 60,
    seed: int = 0,
    incident_id: str | None = None,
) -> tuple[Incident, int]:
    """Run episodes (seeds seed, seed+1, ...) until the detector fires; return the
    incident and how many episodes it took. Raises when none fires."""
    scenario = load_scenario(scenario_id)
    environment = scenario.environment(knobs)
    trusted = is_trusted_world(environment, subject.model_string)
    world = scenario_world(environment, backend=backend, trusted=trusted, allow_host=allow_host)
    start_transcript = scenario.initial_transcript(environment.knobs)
    regex = next((r for r in _regex_parts(scenario.behavior)), None)
    for attempt in range(max_episodes):
        async with await world.start() as sandbox:
            episode = await rollout(
                subject, start_transcript, sandbox, world.mapping, max_turns=world.max_turns, seed=seed + attempt
            )
            result = await detect(scenario.behavior, episode.transcript, sandbox=sandbox)
        if result.detected:
            turn, call_id = _flagged_turn(episode.transcript, regex)
            flagged_call = episode.transcript.turn(turn).tool_uses
            shown = flagged_call[0].input.get("command", "") if flagged_call else ""
            incident = Incident(
                id=incident_id or f"{scenario_id}-{subject.name}-{seed + attempt}",
                description=f"{scenario.title}: caught by the scenario's monitor on episode {attempt + 1}.",
                transcript=episode.transcript,
                flag=Flag(
                    turn=turn,
                    tool_use_id=call_id,
                    reason=f"the {scenario.title} monitor fired" + (f" on `{shown}`" if shown else ""),
                    monitor="scenario-detector",
                ),
                environment=environment,
                subject=Subject(model=subject.model_string),
                behavior=scenario.behavior,
                metadata={
                    "episodes_until_caught": attempt + 1,
                    "backend": world.backend,
                    "backend_note": world.note,
                    "seed": seed + attempt,
                },
            )
            return incident, attempt + 1
    raise ForensicsError(
        f"{subject.model_string} never triggered the {scenario_id} detector in {max_episodes} episodes"
    )


def _regex_parts(spec: Any) -> list[RegexDetector]:
    if isinstance(spec, RegexDetector):
        return [spec]
    return [r for child in getattr(spec, "of", []) for r in _regex_parts(child)]


def write_incident(incident: Incident, directory: str | Path) -> Path:
    """Write the incident file and its transcript (native JSON) into `directory`."""
    import yaml

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    transcript_path = out / f"{incident.id}.transcript.json"
    save_transcript(incident.transcript, transcript_path)
    spec = incident.model_dump(mode="json", exclude={"transcript", "source_path"}, exclude_none=True)
    spec["transcript"] = transcript_path.name
    path = out / f"{incident.id}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
