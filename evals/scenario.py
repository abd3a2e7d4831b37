"""Scenarios: agentic environments recreated from the paper, as data.

A scenario is a folder ``evals/scenarios/<id>/`` with ``scenario.yaml`` (system and
user prompt templates, tools with their command mapping, knobs, setup, behaviour
detector) and optionally a ``generate.py`` whose ``generate(knobs) -> {path: text}``
writes the environment's files (so knobs such as ``n_type_errors`` change the world,
not just the prompt). Prompts are Jinja2 templates over the knob values.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.paths import scenario_dirs, scenarios_dir
from sandboxes.base import SandboxSpec
from tools.errors import ForensicsError
from tools.formats.base import json_path
from tools.hints import CounterfactualHint, DoseHint, InterventionHint, InvestigationHints, ProbeHint
from tools.incident import DetectorSpec, Environment
from tools.toolmap import CommandTool, ToolMapping
from tools.transcript import Message, TextBlock, ToolSpec, Transcript


class ScenarioError(ForensicsError):
    """A scenario is missing, malformed, or was given knob values it does not accept."""


class Knob(BaseModel):
    """A parameter an intervention may change."""

    model_config = ConfigDict(extra="forbid")

    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] | None = None


class ScenarioTool(CommandTool):
    """A tool offered to the subject: its schema plus its command mapping. `when`
    names a boolean knob that must be on for the tool to be offered."""

    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    when: str | None = None


# The `investigation:` section's models live in tools.hints (hints reach the investigator
# as data through the ``model_forensics.hints`` entry point); the old names stay.
Intervention = InterventionHint
DoseSeries = DoseHint
ProbeQuestion = ProbeHint
Counterfactual = CounterfactualHint
Investigation = InvestigationHints


class Scenario(BaseModel):
    """A loaded scenario (see module doc)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    description: str = ""
    system: str
    user: str
    tools: list[ScenarioTool]
    knobs: dict[str, Knob] = Field(default_factory=dict)
    generator: str | None = None
    files: dict[str, str] = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)
    max_turns: int = 30
    behavior: DetectorSpec
    shell: list[str] = Field(default_factory=lambda: ["bash", "-c"])
    investigation: InvestigationHints = Field(default_factory=InvestigationHints)
    """Optional hints for the protocol planner (ignored by ``--blind``); see tools.hints."""
    directory: Path | None = None

    @property
    def shipped(self) -> bool:
        """Whether this scenario is one shipped with the package (``evals/scenarios``),
        rather than loaded from an extra directory (``--scenarios`` / FORENSICS_SCENARIOS,
        or a file path). Only shipped scenarios are the project's own code and data."""
        if self.directory is None:
            return False
        return self.directory.resolve().parent == scenarios_dir().resolve()

    @property
    def origin(self) -> str:
        """Where the scenario came from: ``shipped`` or the folder it was loaded from."""
        return "shipped" if self.shipped else str(self.directory)

    # ------------------------------------------------------------------ knobs
    def resolve_knobs(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with `overrides`, each checked against its knob."""
        values = {name: knob.default for name, knob in self.knobs.items()}
        for name, value in (overrides or {}).items():
            knob = self.knobs.get(name)
            if knob is None:
                raise ScenarioError(
                    f"scenario {self.id!r} has no knob {name!r}; its knobs: {', '.join(sorted(self.knobs)) or 'none'}"
                )
            if isinstance(knob.default, bool) and not isinstance(value, bool):
                raise ScenarioError(f"knob {name!r} of {self.id!r} is true/false, got {value!r}")
            if isinstance(knob.default, (int, float)) and not isinstance(knob.default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ScenarioError(f"knob {name!r} of {self.id!r} is a number, got {value!r}")
                if knob.minimum is not None and value < knob.minimum:
                    raise ScenarioError(f"knob {name!r} of {self.id!r} must be >= {knob.minimum}, got {value}")
                if knob.maximum is not None and value > knob.maximum:
                    raise ScenarioError(f"knob {name!r} of {self.id!r} must be <= {knob.maximum}, got {value}")
            if knob.choices is not None and value not in knob.choices:
                raise ScenarioError(f"knob {name!r} of {self.id!r} must be one of {knob.choices}, got {value!r}")
            values[name] = value
        return values

    # --------------------------------------------------------------- rendering
    def _render(self, template: str, knobs: Mapping[str, Any]) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        try:
            return env.from_string(template).render(**knobs).strip()
        except jinja2.TemplateError as exc:
            raise ScenarioError(f"scenario {self.id!r}: prompt template error: {exc}") from None

    def offered_tools(self, knobs: Mapping[str, Any]) -> list[ScenarioTool]:
        return [t for t in self.tools if t.when is None or bool(knobs.get(t.when))]

    def tool_specs(self, knobs: Mapping[str, Any]) -> list[ToolSpec]:
        return [
            ToolSpec(name=t.name, description=t.description, input_schema=t.input_schema)
            for t in self.offered_tools(knobs)
        ]

    @property
    def mapping(self) -> ToolMapping:
        """How every tool (offered or not) runs in the sandbox."""
        fields = set(CommandTool.model_fields)
        return ToolMapping(tools={t.name: CommandTool(**t.model_dump(include=fields)) for t in self.tools})

    def initial_transcript(self, knobs: Mapping[str, Any] | None = None) -> Transcript:
        """The conversation as it starts: system prompt, the task, the tools."""
        values = self.resolve_knobs(knobs)
        return Transcript(
            system=self._render(self.system, values),
            tools=self.tool_specs(values),
            messages=[Message(role="user", content=[TextBlock(text=self._render(self.user, values))])],
            metadata={"scenario": self.id, "knobs": values},
        )

    # ------------------------------------------------------------------ world
    @cached_property
    def _generate(self) -> Callable[[dict[str, Any]], dict[str, str]] | None:
        if self.generator is None:
            return None
        assert self.directory is not None
        path = self.directory / self.generator
        spec = importlib.util.spec_from_file_location(f"forensics_scenario_{self.id.replace('-', '_')}", path)
        if spec is None or spec.loader is None:
            raise ScenarioError(f"scenario {self.id!r}: cannot load generator {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        generate: Callable[[dict[str, Any]], dict[str, str]] = module.generate
        return generate

    def world_files(self, knobs: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The workspace files for these knob values."""
        values = self.resolve_knobs(knobs)
        files = dict(self.files)
        if self._generate is not None:
            files.update(self._generate(values))
        return files

    def environment(self, knobs: Mapping[str, Any] | None = None) -> Environment:
        """The incident `environment` block for this scenario at these knob values."""
        return Environment(scenario=self.id, knobs=self.resolve_knobs(knobs))

    def sandbox_spec(
        self, knobs: Mapping[str, Any] | None = None, *, backend: str = "docker", client: Any = None
    ) -> SandboxSpec:
        """What to start for a fresh episode. Docker: a scenario image (built offline on
        the base image, cached by content) with the files and setup baked in; local:
        files and setup applied to a temp dir."""
        files = self.world_files(knobs)
        if backend == "docker":
            from sandboxes.engine import docker_client
            from sandboxes.images import build_base_image, build_scenario_image

            client = client or docker_client(timeout=900)
            base = build_base_image(client)
            tag = build_scenario_image(client, name=self.id, base=base, files=files, setup=self.setup)
            return SandboxSpec(image=tag, shell=self.shell)
        return SandboxSpec(files=files, setup=self.setup, shell=self.shell)


def load_scenario_file(path: str | Path) -> Scenario:
    """Load ``scenario.yaml`` (errors name the file and field)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{p}: file not found") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: a scenario must be a mapping")
    data["directory"] = p.parent
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [x for x in err["loc"] if not (isinstance(x, str) and "[" in x)]
        msg = "this field is required" if err["type"] == "missing" else err["msg"]
        raise ScenarioError(f"{p}: field `{json_path(loc)}`: {msg}") from None


SCENARIO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _checked_id(scenario_id: str) -> str:
    """Scenario ids come from incident files (untrusted): a folder name, never a path."""
    if not isinstance(scenario_id, str) or not SCENARIO_ID.match(scenario_id) or ".." in scenario_id:
        raise ScenarioError(
            f"invalid scenario id {scenario_id!r}: letters, digits, '.', '_' and '-' only (a folder name, not a path)"
        )
    return scenario_id


def scenario_ids(extra: Sequence[str | Path] = ()) -> list[str]:
    """Every scenario id on the search path (see `evals.paths`)."""
    found: set[str] = set()
    for directory in scenario_dirs(extra):
        found.update(p.parent.name for p in directory.glob("*/scenario.yaml") if SCENARIO_ID.match(p.parent.name))
    return sorted(found)


def find_scenario_file(scenario_id: str, extra: Sequence[str | Path] = ()) -> Path:
    """The ``scenario.yaml`` of `scenario_id`: the first directory of the search path
    that has it."""
    _checked_id(scenario_id)
    dirs = scenario_dirs(extra)
    for directory in dirs:
        path = directory / scenario_id / "scenario.yaml"
        if path.is_file():
            return path
    raise ScenarioError(
        f"no scenario {scenario_id!r} in {', '.join(map(str, dirs))}; available: "
        f"{', '.join(scenario_ids(extra)) or 'none'} (add a folder with --scenarios DIR or FORENSICS_SCENARIOS)"
    )


def load_scenario(scenario_id: str, extra: Sequence[str | Path] = ()) -> Scenario:
    """The scenario with this id, from the search path (extra directories first, the
    shipped scenarios last; `Scenario.shipped` says which it was)."""
    return load_scenario_file(find_scenario_file(scenario_id, extra))


def list_scenarios(extra: Sequence[str | Path] = ()) -> list[Scenario]:
    """Every scenario on the search path, each id once (the first directory wins)."""
    return [load_scenario(scenario_id, extra) for scenario_id in scenario_ids(extra)]
