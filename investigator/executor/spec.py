"""What a job is, what state it is in, and what it produced: the executor's data model.

A `JobSpec` is everything a worker needs to run one investigation on any machine that
shares the run directory: the incident (a file path, or the resolved incident inline),
the planner and its settings, budget limits, the sandbox policy, where organism and
scenario specs live, and the resources a Ray task must be given. It is plain JSON, so
it travels through SQLite, a file in the run directory, and Ray's object store alike.

A `JobRecord` is a row of the batch database: state, attempts, error, spend, verdict.
`Progress` is what a running job has spent so far, readable while it runs.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.budget import BudgetLimits
from tools.incident import Incident
from tools.models.base import Pricing

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class JobState(StrEnum):
    """Where a job is. `pending` and `running` are live; the others are final."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self in {JobState.done, JobState.failed, JobState.cancelled}


class Resources(BaseModel):
    """What a job needs from the node it runs on (Ray's scheduler reads these).

    `docker`: the job's sandboxes need a Docker engine on its node, so it asks for one
    unit of the custom ``docker`` resource (start Docker-capable nodes with
    ``ray start --resources '{"docker": 4}'``). None (the default) decides from the
    sandbox backend: a job that may use Docker asks for it; ``backend: local`` does not.
    """

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(default=1.0, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    docker: bool | None = None


class JobSpec(BaseModel):
    """One investigation to run (see module doc)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    run_dir: str = Field(min_length=1)
    incident_path: str | None = None
    incident: Incident | None = None
    planner: str = "protocol"
    model: str | None = None
    judge: str | None = None
    n: int = Field(default=200, ge=1)
    limits: BudgetLimits = Field(default_factory=BudgetLimits)
    blind: bool = False
    seed: int = Field(default=0, ge=0)
    """The investigation's seed (its sample stream): replicates of one incident differ in it."""
    backend: str | None = None
    allow_host: bool = False
    subject_pricing: Pricing | None = None
    organism_dirs: list[str] = Field(default_factory=list)
    scenario_dirs: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    timeout_s: float | None = Field(default=None, gt=0)
    labels: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not JOB_ID.match(value):
            raise ValueError(
                "a job id is 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _one_incident(self) -> JobSpec:
        if (self.incident_path is None) == (self.incident is None):
            raise ValueError("give exactly one of `incident_path` (an incident file) or `incident` (inline)")
        return self

    @property
    def needs_docker(self) -> bool:
        """Whether the job asks for a node with a Docker engine (see `Resources`)."""
        if self.resources.docker is not None:
            return self.resources.docker
        return self.backend != "local"

    def describe_incident(self) -> str:
        """A short name of the incident for tables and logs."""
        if self.incident is not None:
            return self.incident.id
        return str(self.incident_path)


class Progress(BaseModel):
    """What a job has done and spent so far (from its run directory, while it runs)."""

    attempt: int = 0
    steps: int = 0
    tool_calls: int = 0
    samples: int = 0
    tokens: int = 0
    dollars: float = 0.0
    last_step: str | None = None
    updated: float | None = None


ErrorKind = Literal["input", "error", "bug", "crash", "timeout", "cancelled", "budget"]


class JobOutcome(BaseModel):
    """What a worker reports when an attempt ends (also written to ``outcome.json``)."""

    ok: bool
    attempt: int
    error: str | None = None
    error_kind: ErrorKind | None = None
    verdict: str | None = None
    motivation: str | None = None
    confidence: float | None = None
    report_path: str | None = None
    samples: int = 0
    tokens: int = 0
    dollars: float = 0.0
    tool_calls: int = 0
    wall_seconds: float = 0.0
    worker: str | None = None


class JobRecord(BaseModel):
    """A row of the batch database."""

    id: str
    state: JobState
    attempts: int = 0
    error: str | None = None
    error_kind: str | None = None
    note: str | None = None
    worker: str | None = None
    submitted: float
    started: float | None = None
    finished: float | None = None
    wall_seconds: float | None = None
    tool_calls: int = 0
    samples: int = 0
    tokens: int = 0
    dollars: float = 0.0
    verdict: str | None = None
    motivation: str | None = None
    confidence: float | None = None
    report_path: str | None = None
    run_dir: str
    cancel_requested: bool = False
    labels: dict[str, Any] = Field(default_factory=dict)
    incident: str = ""

    @property
    def progress(self) -> Progress:
        return Progress(
            attempt=self.attempts,
            tool_calls=self.tool_calls,
            samples=self.samples,
            tokens=self.tokens,
            dollars=self.dollars,
        )
