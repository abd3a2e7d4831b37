"""One way to build the world a subject acted in, for every kind of environment.

`build_world(environment, ...)` returns the `World` an experiment rolls out in: the
sandbox to start, how tool calls become sandbox operations, which backend runs it and
why. It dispatches on the environment:

* **scenario** environments (``environment.scenario``) are built by a *world provider*
  registered under that kind: installed packages declare one in the
  ``model_forensics.worlds`` entry-point group (evals registers ``scenario``), and
  `register_world_provider` adds one in-process (tests, plugins). So the investigator
  never imports the package that holds the scenarios.
* **snapshot** environments (an image, an archive, a directory or a git commit of the
  workspace, plus files, setup commands and the session's working directory) are built
  here, by `tools.snapshot`.

`world_factory(incident, ...)` binds what a world needs besides the environment (the
incident's folder for relative paths, its transcript for the harness profile and
recorded outputs, the subject) into the `WorldFactory` that experiments call with each
variant's (edited) environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from sandboxes.base import Sandbox, SandboxSpec, SnapshotRef
from sandboxes.registry import BackendChoice
from tools.errors import ForensicsError
from tools.incident import DetectorSpec, Environment
from tools.toolmap import ToolMapping

if TYPE_CHECKING:
    from tools.incident import Incident
    from tools.transcript import Transcript

ENTRY_POINT_GROUP = "model_forensics.worlds"
"""Entry-point group of world providers; each entry's name is the environment kind it builds."""

WorldKind = Literal["scenario", "snapshot"]


class WorldError(ForensicsError):
    """The world of an environment cannot be built (no provider for its kind, a backend
    that may not run it, a workspace that cannot be read); the message says what to do."""


class World(BaseModel):
    """Where rollouts run: what sandbox to start and how tool calls become operations in
    it. `start()` is the one way to get a fresh sandbox of this world: it starts the
    spec on the backend and then runs `prepare` (populating a workspace, checking out a
    commit, running setup commands) when the backend could not bake those in."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    sandbox_spec: SandboxSpec
    mapping: ToolMapping
    backend: str
    max_turns: int = 30
    note: str | None = None
    kind: WorldKind = "scenario"
    trusted: bool = False
    """Whether the commands this world runs were written by us (a shipped scenario played
    by an organism) rather than taken from an incident."""
    prepare: Callable[[Sandbox], Any] | None = None
    """``async (sandbox) -> None`` run on every fresh (not forked) sandbox after start."""
    description: str = ""
    """One line for people: what the world was built from."""

    async def start(self, *, from_snapshot: SnapshotRef | None = None) -> Sandbox:
        """A fresh sandbox of this world (or one forked from a snapshot of it)."""
        from sandboxes.errors import SandboxError
        from sandboxes.registry import start

        sandbox = await start(self.sandbox_spec, backend=self.backend, from_snapshot=from_snapshot)
        if from_snapshot is None and self.prepare is not None:
            try:
                await self.prepare(sandbox)
            except SandboxError as exc:
                await sandbox.close()
                raise WorldError(f"the world ({self.description or self.kind}) could not be prepared: {exc}") from exc
            except BaseException:
                await sandbox.close()
                raise
        return sandbox


WorldFactory = Callable[[Environment], World]
"""Builds the world for an (edited) environment; see `world_factory`."""


@dataclass(frozen=True)
class WorldRequest:
    """Everything besides the environment that decides how a world is built."""

    backend: str | None = None
    """The backend asked for (``docker``, ``local``, ...); None lets the policy choose."""
    allow_host: bool = False
    """Whether the user explicitly allowed the host-side (local) backend for untrusted worlds."""
    subject_model: str | None = None
    """The subject that will act in the world (``organism/...`` subjects are our own code)."""
    transcript: Transcript | None = None
    """The incident's transcript: harness profile, recorded outputs, the session's cwd."""
    base_dir: Path | None = None
    """The incident file's folder, against which relative workspace paths resolve."""
    client: Any = None
    """A docker SDK client to reuse (tests)."""
    behavior: DetectorSpec | None = None
    """The incident's detector: a world is only trusted when it runs the scenario's own."""
    choice: BackendChoice | None = None
    """The backend policy's choice, when already made for this incident (`choose_world_backend`)."""


WorldProvider = Callable[[Environment, WorldRequest], World]
"""Builds the world of one environment kind."""

_PROVIDERS: dict[str, WorldProvider] = {}


def register_world_provider(kind: str, provider: WorldProvider) -> None:
    """Register (or replace) the provider of an environment kind in this process."""
    _PROVIDERS[kind] = provider


def unregister_world_provider(kind: str) -> None:
    """Forget an in-process provider (the entry points are consulted again)."""
    _PROVIDERS.pop(kind, None)


def world_provider(kind: str) -> WorldProvider:
    """The provider for `kind`: registered in-process first, else from an entry point."""
    if kind in _PROVIDERS:
        return _PROVIDERS[kind]
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        raise WorldError(
            f"no world provider for {kind!r} environments is installed (entry-point group {ENTRY_POINT_GROUP!r}); "
            "install the package that provides them (`pip install -e .` installs evals' scenarios)"
        )
    provider: WorldProvider = found[0].load()
    _PROVIDERS[kind] = provider
    return provider


def environment_kind(environment: Environment) -> WorldKind:
    """Which kind of world an environment describes."""
    return "scenario" if environment.scenario is not None else "snapshot"


def build_world(
    environment: Environment,
    *,
    backend: str | None = None,
    allow_host: bool = False,
    subject_model: str | None = None,
    transcript: Transcript | None = None,
    base_dir: Path | None = None,
    client: Any = None,
    behavior: DetectorSpec | None = None,
    choice: BackendChoice | None = None,
) -> World:
    """The world of `environment` (see the module doc)."""
    request = WorldRequest(
        backend=backend,
        allow_host=allow_host,
        subject_model=subject_model,
        transcript=transcript,
        base_dir=base_dir,
        client=client,
        behavior=behavior,
        choice=choice,
    )
    kind = environment_kind(environment)
    if kind == "snapshot":
        from tools.snapshot import snapshot_world

        return snapshot_world(environment, request)
    return world_provider(kind)(environment, request)


def has_world(incident: Incident) -> bool:
    """Whether the incident's environment describes a world that can be built (every
    valid environment does: a scenario, or a snapshot of the workspace)."""
    environment = incident.environment
    return environment.scenario is not None or any(
        (environment.image, environment.archive, environment.directory, environment.git, environment.files)
    )


def incident_base_dir(incident: Incident) -> Path | None:
    """The folder of the incident file (None for incidents made in memory)."""
    return Path(incident.source_path).resolve().parent if incident.source_path else None


def choose_world_backend(
    incident: Incident, *, backend: str | None = None, allow_host: bool = False, subject_model: str | None = None
) -> BackendChoice | None:
    """The sandbox policy's choice for the incident's world, made before anything is
    built or run (None when it has no world). Only a provider's ``trusted(environment,
    request)`` can call a world ours; snapshot worlds never are. Raises a
    `sandboxes.errors.SandboxError` saying what to do when an untrusted incident would
    run on this machine (see `sandboxes.registry.choose_backend`)."""
    from sandboxes.registry import choose_backend

    if not has_world(incident):
        return None
    request = WorldRequest(
        backend=backend,
        allow_host=allow_host,
        subject_model=subject_model or incident.subject.model,
        transcript=incident.transcript,
        base_dir=incident_base_dir(incident),
        behavior=incident.behavior,
    )
    kind = environment_kind(incident.environment)
    judge = getattr(world_provider(kind), "trusted", None) if kind == "scenario" else None
    trusted = bool(judge(incident.environment, request)) if callable(judge) else False
    return choose_backend(backend, trusted=trusted, allow_host=allow_host)


def world_factory(
    incident: Incident,
    *,
    backend: str | None = None,
    allow_host: bool = False,
    subject_model: str | None = None,
    client: Any = None,
    choice: BackendChoice | None = None,
) -> WorldFactory:
    """The `WorldFactory` of an incident: `build_world` with the incident's folder,
    transcript, detector, subject and (when made) the backend policy's choice bound,
    called with each variant's environment."""
    base_dir = incident_base_dir(incident)
    subject = subject_model or incident.subject.model

    def factory(environment: Environment) -> World:
        return build_world(
            environment,
            backend=backend,
            allow_host=allow_host,
            subject_model=subject,
            transcript=incident.transcript,
            base_dir=base_dir,
            client=client,
            behavior=incident.behavior,
            choice=choice,
        )

    return factory
