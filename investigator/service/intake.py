"""Turning a request into an incident on disk: staged, validated, never outside the
service's own folders.

Every submission is written to a fresh staging folder (``<serve dir>/incoming/<random>``)
under names the service chooses — ``transcript.json`` or ``transcript.jsonl``, the
uploaded ``transcript<suffix>``, ``workspace<suffix>`` for an environment archive, and
``incident.json`` naming them — and is then read back with the same bounded loader an
incident file on the command line gets (`tools.incident.load_incident`: size, depth and
Unicode limits, format detection, paths confined to the incident's folder, the flagged
turn checked). Only a submission that loads is moved into its run directory; one that
does not is removed, and the client gets the loader's message (with the staging path
replaced by the file's own name) as a 422.

Model strings in the incident (the subject, LLM detectors' graders) must use a provider
the operator allows and a plain name (no ``..``, no absolute or backslashed parts), so a
request cannot make a model registry read a file it chose.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from investigator.service.config import ServiceConfig
from investigator.service.errors import RequestRejected
from investigator.service.schemas import ID_PATTERN, InvestigationOptions, InvestigationRequest
from investigator.service.uploads import receive_multipart
from tools.errors import ForensicsError, FormatError
from tools.formats.base import decode_utf8, parse_json_bounded, read_bounded, safe_yaml_load
from tools.incident import Environment, Incident, load_incident

INCOMING_DIR = "incoming"
INPUT_DIR = "input"
INCIDENT_FILE = "incident.json"

MULTIPART_FILES = {"incident": "incident.upload", "transcript": "transcript", "environment": "workspace"}
MULTIPART_FIELDS = {
    "planner",
    "model",
    "n",
    "blind",
    "callback_url",
    "budget_samples",
    "budget_tool_calls",
    "budget_tokens",
    "budget_dollars",
    "labels",
}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,199}$")


@dataclass
class Intake:
    """A submission staged and validated, not yet queued."""

    staging: Path
    options: InvestigationOptions
    incident: Incident
    fingerprint: str
    named_id: bool
    """Whether the request gave the incident an id (else it takes the investigation's)."""

    def install(self, input_dir: Path, job_id: str) -> Path:
        """Move the staged files to `input_dir` (inside the run directory), giving the
        incident the investigation's id when the request named none; the incident file."""
        if not self.named_id:
            path = self.staging / INCIDENT_FILE
            data = json.loads(path.read_text(encoding="utf-8"))
            data["id"] = job_id
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        input_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging.replace(input_dir)
        return input_dir / INCIDENT_FILE

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def new_staging(root: Path) -> Path:
    """A fresh, empty staging folder under the service's directory."""
    folder = root / INCOMING_DIR / secrets.token_hex(12)
    folder.mkdir(parents=True)
    return folder


def _validation_problem(exc: ValidationError, prefix: tuple[str | int, ...]) -> RequestRejected:
    errors = [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    rejected = RequestRejected(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5]))
    rejected.detail = errors  # type: ignore[attr-defined]
    return rejected


def _canonical(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_transcript(staging: Path, transcript: dict[str, Any] | list[Any]) -> str:
    """Write an inline transcript where detection can read it; its file name."""
    if isinstance(transcript, list):
        name = "transcript.jsonl"
        lines = (json.dumps(record, ensure_ascii=False) for record in transcript)
        (staging / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    else:
        name = "transcript.json"
        (staging / name).write_text(json.dumps(transcript, ensure_ascii=False), encoding="utf-8")
    return name


def _model_strings(incident: Incident) -> Iterator[tuple[str, str]]:
    yield "subject.model", incident.subject.model

    def walk(spec: Any, where: str) -> Iterator[tuple[str, str]]:
        if getattr(spec, "kind", None) == "llm" and spec.model:
            yield f"{where}.model", spec.model
        for i, child in enumerate(getattr(spec, "of", None) or []):
            yield from walk(child, f"{where}.of[{i}]")

    yield from walk(incident.behavior, "behavior")


def check_model_string(model: str, field: str, config: ServiceConfig) -> None:
    """Refuse a model string whose provider the operator does not allow, or whose name
    could address a file (see module doc)."""
    provider, sep, name = model.partition("/")
    if not sep or provider not in config.model_providers:
        allowed = ", ".join(config.model_providers)
        raise RequestRejected(422, f"{field}: model {model!r} must be provider/name with a provider of: {allowed}")
    parts = name.split("/")
    if not MODEL_NAME.match(name) or any(p in {"", ".", ".."} for p in parts):
        raise RequestRejected(
            422, f"{field}: model name {name!r} must be letters, digits and . _ : @ + - / with no empty or '..' parts"
        )


def _check_options(options: InvestigationOptions, config: ServiceConfig) -> None:
    top = config.max_budget
    if options.n is not None and options.n > top.n:
        raise RequestRejected(422, f"n: {options.n} is more than this service allows ({top.n})")
    budget = options.budget
    if budget is not None:
        for name in ("samples", "tool_calls", "tokens", "dollars"):
            asked, most = getattr(budget, name), getattr(top, name)
            if asked is not None and most is not None and asked > most:
                raise RequestRejected(422, f"budget.{name}: {asked} is more than this service allows ({most})")
    if options.model is not None:
        check_model_string(options.model, "model", config)
    if options.callback_url is not None:
        if config.webhook_secret is None:
            raise RequestRejected(
                422,
                "callback_url: this service has no webhook secret configured, so it cannot sign callbacks; "
                "the operator sets FORENSICS_WEBHOOK_SECRET (or webhook_secret in the config file)",
            )
        host = options.callback_url.host or ""
        if config.webhook_hosts is not None and not any(_host_matches(host, h) for h in config.webhook_hosts):
            raise RequestRejected(
                422,
                f"callback_url: host {host!r} is not one this service calls back ({', '.join(config.webhook_hosts)})",
            )


def _host_matches(host: str, pattern: str) -> bool:
    host, pattern = host.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def check_sandbox(incident: Incident, planner: str, config: ServiceConfig) -> None:
    """Ask the sandbox policy now, as the investigation would at its start, so that an
    incident this service may not run is refused at once: an untrusted one (anything
    but a shipped scenario played by a shipped organism) runs only in Docker, and a
    request can never allow the host. Planners that run no experiment need no world."""
    from sandboxes.errors import EngineUnavailable, HostExecutionRefused, SandboxError
    from tools.world import choose_world_backend

    if planner == "cot-only":
        return
    try:
        choose_world_backend(incident, backend=config.sandbox_backend, allow_host=False)
    except HostExecutionRefused:
        where = f"sandbox backend {config.sandbox_backend}" if config.sandbox_backend else "no Docker engine answers"
        raise RequestRejected(
            422,
            "incident: its world is untrusted (not a shipped scenario played by a shipped organism), so its commands "
            f"run only in a Docker sandbox, and this service has none to give it ({where}); the operator can start "
            "a Docker engine or set sandbox_backend: docker. Requests cannot allow running on the host; "
            "planner cot-only needs no sandbox",
        ) from None
    except EngineUnavailable as exc:
        raise RequestRejected(
            503, f"the service's Docker engine is not reachable, so nothing can run now: {exc}"
        ) from None
    except SandboxError as exc:
        raise RequestRejected(503, f"the service cannot sandbox this incident now: {exc}") from None
    except ForensicsError as exc:
        raise RequestRejected(422, f"incident: {exc}") from None


async def _load(staging: Path, config: ServiceConfig) -> Incident:
    path = staging / INCIDENT_FILE
    try:
        incident = await asyncio.to_thread(load_incident, path)
    except ForensicsError as exc:
        message = str(exc).replace(f"{staging}/", "").replace(str(staging), "the upload")
        raise RequestRejected(422, f"incident: {message}") from None
    for field, model in _model_strings(incident):
        check_model_string(model, f"incident.{field}", config)
    return incident


# ----------------------------------------------------------------------------- JSON


async def stage_json(body: bytes, staging: Path, config: ServiceConfig) -> Intake:
    """A JSON request (`InvestigationRequest`) staged and validated."""
    try:
        data = parse_json_bounded(decode_utf8(body, source="request body"), source="request body")
    except FormatError as exc:
        raise RequestRejected(422, str(exc)) from None
    try:
        request = InvestigationRequest.model_validate(data)
    except ValidationError as exc:
        raise _validation_problem(exc, ("body",)) from None
    _check_options(request, config)
    raw = dict(data["incident"])
    raw["transcript"] = _write_transcript(staging, request.incident.transcript)
    (staging / INCIDENT_FILE).write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    incident = await _load(staging, config)
    options = InvestigationOptions.model_validate({k: v for k, v in data.items() if k != "incident"})
    await asyncio.to_thread(check_sandbox, incident, options.planner or config.defaults.planner, config)
    return Intake(
        staging=staging, options=options, incident=incident, fingerprint=_canonical(data), named_id=bool(raw.get("id"))
    )


# ----------------------------------------------------------------------------- multipart


def _form_options(fields: dict[str, str]) -> InvestigationOptions:
    data: dict[str, Any] = {}
    for name in ("planner", "model", "callback_url"):
        if fields.get(name):
            data[name] = fields[name]
    if fields.get("n"):
        data["n"] = fields["n"]
    if fields.get("blind"):
        data["blind"] = fields["blind"]
    budget = {k.removeprefix("budget_"): v for k, v in fields.items() if k.startswith("budget_") and v}
    if budget:
        data["budget"] = budget
    if fields.get("labels"):
        try:
            data["labels"] = parse_json_bounded(fields["labels"], source="field `labels`")
        except FormatError as exc:
            raise RequestRejected(422, f"labels: {exc}") from None
    try:
        return InvestigationOptions.model_validate(data)
    except ValidationError as exc:
        raise _validation_problem(exc, ("body",)) from None


def _read_incident_upload(path: Path, suffix: str) -> dict[str, Any]:
    from tools.settings import parse_limits

    source = f"incident{suffix}"
    try:
        raw = read_bounded(path, int(parse_limits().max_incident_bytes), what="an incident file")
        text = decode_utf8(raw, source=source)
        data = parse_json_bounded(text, source=source) if suffix == ".json" else safe_yaml_load(text, source=source)
    except FormatError as exc:
        raise RequestRejected(422, f"incident: {exc}".replace(str(path), source)) from None
    if not isinstance(data, dict):
        raise RequestRejected(
            422, "incident: an incident file is a mapping with keys transcript, flag, environment, subject, behavior"
        )
    return data


async def stage_multipart(
    content_type: str, chunks: AsyncIterator[bytes], staging: Path, config: ServiceConfig
) -> Intake:
    """A multipart request (an incident file, its transcript, an optional environment
    archive, and the options as fields) staged and validated."""
    upload = await receive_multipart(
        content_type, chunks, staging, file_parts=MULTIPART_FILES, text_parts=MULTIPART_FIELDS
    )
    if "incident" not in upload.files:
        raise RequestRejected(422, "multipart body: the `incident` part (an incident file, YAML or JSON) is required")
    options = _form_options(upload.fields)
    _check_options(options, config)
    incident_file = upload.files["incident"]
    raw = _read_incident_upload(incident_file.path, incident_file.suffix)
    transcript = upload.files.get("transcript")
    if transcript is not None:
        raw["transcript"] = transcript.path.name
    elif isinstance(raw.get("transcript"), dict | list):
        raw["transcript"] = _write_transcript(staging, raw["transcript"])
    else:
        named = raw.get("transcript")
        raise RequestRejected(
            422,
            f"incident: it names the transcript file {named!r}; upload that file as the `transcript` part"
            if isinstance(named, str)
            else "incident: give the transcript inline in the incident, or upload it as the `transcript` part",
        )
    archive = upload.files.get("environment")
    if archive is not None:
        if "archive" not in Environment.model_fields:
            raise RequestRejected(
                422, "environment: this version cannot rebuild a world from an uploaded workspace archive"
            )
        environment = raw.get("environment")
        if not isinstance(environment, dict):
            raise RequestRejected(422, "incident: field `environment` must be a mapping")
        own = environment.get("archive")
        strip = own.get("strip_components", 0) if isinstance(own, dict) else 0
        environment["archive"] = {"path": archive.path.name, "strip_components": strip}
    if raw.get("id") is not None and not (isinstance(raw["id"], str) and re.match(ID_PATTERN, raw["id"])):
        raise RequestRejected(
            422, "incident: field `id` must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    (staging / INCIDENT_FILE).write_text(json.dumps(raw, ensure_ascii=False, default=str), encoding="utf-8")
    incident = await _load(staging, config)
    await asyncio.to_thread(check_sandbox, incident, options.planner or config.defaults.planner, config)
    return Intake(
        staging=staging,
        options=options,
        incident=incident,
        fingerprint=upload.fingerprint(),
        named_id=bool(raw.get("id")),
    )
