"""What the HTTP API reads and writes (its OpenAPI schema is generated from these).

A request names the incident's fields as an incident file would, with the transcript
inline (a JSON object, or an array for line-per-record formats such as Claude Code
sessions), in any format the importers read; it never names a file on the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from tools.incident import DetectorSpec, Environment, Flag, Subject

PlannerName = Literal["protocol", "llm", "cot-only"]
StateName = Literal["queued", "running", "done", "failed", "cancelled"]
VerdictName = Literal["misalignment", "mistake", "inconclusive"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentBody(_Request):
    """An incident, as in an incident file (docs/incidents.md), with the transcript inline."""

    id: str | None = Field(default=None, pattern=ID_PATTERN, description="The incident's id (default: generated).")
    description: str | None = Field(default=None, max_length=20_000)
    transcript: dict[str, Any] | list[Any] = Field(
        description="The transcript, inline: a JSON object (Anthropic Messages, OpenAI chat, Inspect, the native "
        "format...) or an array of records (Claude Code and other JSON-lines logs). Its format is detected.",
    )
    transcript_format: str | None = Field(default=None, description="Skip detection: the transcript's format.")
    sample_id: str | None = Field(default=None, max_length=500)
    epoch: int | None = Field(default=None, ge=0)
    flag: Flag
    environment: Environment
    subject: Subject
    behavior: DetectorSpec
    metadata: dict[str, Any] = Field(default_factory=dict)


class BudgetRequest(_Request):
    """Limits of one investigation (each at most the service's maximum)."""

    samples: int | None = Field(default=None, ge=0)
    tool_calls: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    dollars: float | None = Field(default=None, ge=0)


class InvestigationOptions(_Request):
    """How to investigate (every field optional: the service's defaults apply)."""

    planner: PlannerName | None = None
    model: str | None = Field(default=None, max_length=200, description="The investigator model (planner llm).")
    n: int | None = Field(default=None, ge=1, description="Samples per arm.")
    budget: BudgetRequest | None = None
    blind: bool = False
    callback_url: HttpUrl | None = Field(
        default=None, description="POSTed a signed summary when the investigation ends (see docs/service.md)."
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=32, description="Echoed back; for your own ids.")


class InvestigationRequest(InvestigationOptions):
    """``POST /v1/incidents`` as JSON."""

    incident: IncidentBody


# ----------------------------------------------------------------------------- answers


class ProgressView(BaseModel):
    attempt: int = Field(description="Attempts so far (more than 1 after a crash and resume).")
    tool_calls: int
    samples: int
    tokens: int
    dollars: float
    last_step: str | None = None
    updated: datetime | None = None


class ErrorView(BaseModel):
    kind: str | None = Field(description="input, error, bug, crash, timeout, cancelled or budget.")
    message: str


class WebhookView(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = None


class Links(BaseModel):
    self: str
    report: str | None = None


class Investigation(BaseModel):
    """One investigation: where it is, what it has spent, and its verdict when done."""

    id: str
    state: StateName
    incident_id: str
    subject: str
    planner: str
    submitted: datetime
    started: datetime | None = None
    finished: datetime | None = None
    progress: ProgressView
    verdict: VerdictName | None = None
    motivation: str | None = None
    confidence: float | None = None
    error: ErrorView | None = None
    note: str | None = Field(default=None, description="Why a queued investigation is waiting, when it is.")
    cancel_requested: bool = False
    webhook: WebhookView | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    token: str | None = Field(default=None, description="The name of the token that submitted it.")
    links: Links


class InvestigationList(BaseModel):
    items: list[Investigation]
    count: int


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    executor: str
    queued: int
    running: int


class Problem(BaseModel):
    """Every refusal: what is wrong and what to change (validation errors list each field)."""

    detail: str | list[dict[str, Any]]
