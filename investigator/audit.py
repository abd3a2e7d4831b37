"""`forensics audit`: investigate a whole batch of flags and summarise it.

Inputs are incident files, directories or globs of them, and Inspect eval logs. An
Inspect log's samples are selected by score (``--flag 'hook_bypass=I'``; several
``--flag``s select a sample when any matches) and each selected sample becomes an
incident: its transcript, a flag on its last assistant turn with a tool call (the
reason names the score), and the subject, environment and detector the audit names
(``--subject``, ``--scenario``/``--knob``, ``--detector``, or an audit spec file). Each
incident is one job of the batch executor, with its run directory under ``OUT/runs``;
an input that cannot become an incident is an error row with its one-line reason.

The batch database (``OUT/batch.sqlite``) is the audit's state: rerun the same command
with the same ``--out`` and finished jobs are kept, interrupted ones resume from their
checkpoints, failed ones are tried again. ``audit.json``, ``audit.csv`` and
``audit.html`` (one row per incident: state, verdict, motivation, confidence, cost,
link to its report) are rewritten at the end of every run.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from investigator.executor import BatchDB, JobOutcome, JobRecord, JobSpec, JobState
from investigator.executor.spec import JOB_ID
from tools.budget import BudgetLimits
from tools.errors import ForensicsError
from tools.formats.base import json_path
from tools.incident import DetectorSpec, Environment, Flag, Incident, Subject, is_incident_file
from tools.transcript import Transcript

AUDIT_FILES = ("audit.json", "audit.csv", "audit.html")
INSPECT_SUFFIXES = {".eval"}
_FLAG = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.:/-]+)\s*(?P<op>>=|<=|!=|==|=|>|<)\s*(?P<value>.+?)\s*$")


class AuditError(ForensicsError):
    """The audit was asked for something it cannot do (bad flag expression, no input,
    an Inspect log without the subject/environment/detector to investigate it)."""


# ----------------------------------------------------------------------------- flags


class FlagExpr(BaseModel):
    """``NAME OP VALUE``: NAME is a scorer (``scorer.key`` for a dict score), OP one of
    = != > >= < <=; VALUE is compared as a number when both sides are numbers, else as
    text (``C``, ``I``, ``true``)."""

    name: str
    op: Literal["=", "!=", ">", ">=", "<", "<="]
    value: str

    @classmethod
    def parse(cls, text: str) -> FlagExpr:
        match = _FLAG.match(text)
        if match is None:
            raise AuditError(
                f"--flag {text!r}: write NAME=VALUE or NAME>=NUMBER (operators = != > >= < <=), e.g. 'hook_bypass=I'"
            )
        op = "=" if match["op"] == "==" else match["op"]
        return cls(name=match["name"], op=op, value=match["value"])

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"

    def score_of(self, scores: dict[str, Any]) -> Any:
        """The value this expression reads from a sample's scores (None when absent)."""
        scorer, _, key = self.name.partition(".")
        score = scores.get(scorer)
        if score is None:
            return None
        value = score.get("value") if isinstance(score, dict) else score
        if key:
            return value.get(key) if isinstance(value, dict) else None
        return value

    def matches(self, scores: dict[str, Any]) -> bool:
        value = self.score_of(scores)
        if value is None or isinstance(value, (dict, list)):
            return False
        left, right = _number(value), _number(self.value)
        if left is not None and right is not None:
            pair: tuple[Any, Any] = (left, right)
        else:
            if self.op not in {"=", "!="}:
                return False
            pair = (str(value).strip().lower(), self.value.strip().lower())
        a, b = pair
        result: bool = {
            "=": a == b,
            "!=": a != b,
            ">": a > b,
            ">=": a >= b,
            "<": a < b,
            "<=": a <= b,
        }[self.op]
        return result


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


# ----------------------------------------------------------------------------- the spec


class AuditSpec(BaseModel):
    """What to do with flagged Inspect samples, and how to investigate every incident.
    Written as YAML (``--spec FILE``); command-line flags override its fields."""

    model_config = ConfigDict(extra="forbid")

    flag: list[str] = Field(default_factory=list)
    subject: str | None = None
    environment: Environment | None = None
    behavior: DetectorSpec | None = None
    planner: str = "protocol"
    model: str | None = None
    judge: str | None = None
    n: int = Field(default=200, ge=1)
    limits: BudgetLimits = Field(default_factory=lambda: BudgetLimits(tool_calls=80, samples=20000))
    blind: bool = False
    backend: str | None = None
    allow_host: bool = False
    organism_dirs: list[str] = Field(default_factory=list)
    scenario_dirs: list[str] = Field(default_factory=list)
    timeout_s: float | None = Field(default=None, gt=0)

    def flags(self) -> list[FlagExpr]:
        return [FlagExpr.parse(f) for f in self.flag]


def load_audit_spec(path: str | Path) -> AuditSpec:
    """An audit spec file (errors name the file and the field)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuditError(f"{p}: cannot read the audit spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise AuditError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AuditError(f"{p}: an audit spec is a mapping (flag, subject, environment, behavior, planner, n, ...)")
    try:
        return AuditSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = "unexpected field" if err["type"] == "extra_forbidden" else err["msg"]
        raise AuditError(f"{p}: field `{json_path(list(err['loc']))}`: {msg}") from None


def parse_detector(text: str) -> DetectorSpec:
    """``--detector``: ``regex:PATTERN`` (matched in tool calls), or a YAML/JSON file
    holding a detector spec (regex | command | llm | all/any)."""
    adapter: TypeAdapter[DetectorSpec] = TypeAdapter(DetectorSpec)
    try:
        if text.startswith("regex:"):
            return adapter.validate_python({"kind": "regex", "pattern": text[len("regex:") :]})
        path = Path(text)
        if not path.is_file():
            raise AuditError(f"--detector {text!r}: give regex:PATTERN or a detector spec file")
        return adapter.validate_python(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise AuditError(f"--detector {text!r}: {json_path(list(err['loc']))}: {err['msg']}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise AuditError(f"--detector {text!r}: cannot read it ({exc})") from None


# ----------------------------------------------------------------------------- inputs


class AuditItem(BaseModel):
    """One row of the audit: an incident to investigate, or an input that failed."""

    job_id: str
    source: str
    incident_path: str | None = None
    incident: Incident | None = None
    error: str | None = None


def _job_id(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:100] or "incident"
    if not JOB_ID.match(base):
        base = f"i-{base}"[:100]
    candidate, k = base, 2
    while candidate in taken:
        candidate, k = f"{base}-{k}", k + 1
    taken.add(candidate)
    return candidate


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files named by `inputs`: files as given, directories' incident files and Inspect
    logs (sorted), glob patterns expanded. A name that matches nothing is an error."""
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p
                for p in path.iterdir()
                if p.is_file() and (p.suffix.lower() in INSPECT_SUFFIXES or _looks_like_incident(p))
            )
        elif path.is_file():
            found.append(path)
        elif any(ch in raw for ch in "*?["):
            names = glob.glob(raw, recursive=True)  # noqa: PTH207 (absolute patterns too)
            matches = sorted(Path(m) for m in names if Path(m).is_file())
            if not matches:
                raise AuditError(f"{raw}: the pattern matches no file")
            found += matches
        else:
            raise AuditError(f"{raw}: no such file or directory")
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in {u.resolve() for u in unique}:
            unique.append(p)
    if not unique:
        raise AuditError(f"no incident files or Inspect logs in {', '.join(inputs)}")
    return unique


def _looks_like_incident(path: Path) -> bool:
    if path.name.endswith(".transcript.json"):
        return False  # the transcripts incident files point at
    try:
        return is_incident_file(path) or (path.suffix.lower() == ".json" and _is_inspect_json(path))
    except OSError:
        return False


def _is_inspect_json(path: Path) -> bool:
    from tools.formats import detect_format

    try:
        return detect_format(path) == "inspect"
    except ForensicsError:
        return False


def _is_inspect(path: Path) -> bool:
    return path.suffix.lower() in INSPECT_SUFFIXES or (path.suffix.lower() == ".json" and _is_inspect_json(path))


def inspect_sample_scores(path: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """(sample id, epoch, scores as JSON) of every sample in an Inspect log, read with
    Inspect's own reader (an ``.eval`` archive's summaries only, after its size checks)."""
    from tools.formats.base import check_zip_archive

    try:
        from inspect_ai.log import read_eval_log, read_eval_log_sample_summaries
    except ImportError as exc:
        raise AuditError(f"{path}: reading Inspect logs needs inspect_ai ({exc})") from None
    try:
        if path.suffix.lower() == ".eval":
            check_zip_archive(path)
            rows = [(s.id, s.epoch, s.scores) for s in read_eval_log_sample_summaries(str(path))]
        else:
            log = read_eval_log(str(path))
            rows = [(s.id, s.epoch, s.scores) for s in log.samples or []]
    except ForensicsError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AuditError(f"{path}: not a readable Inspect log ({first[:300]})") from None
    return [
        (str(sid), int(epoch), {name: score.model_dump(mode="json") for name, score in (scores or {}).items()})
        for sid, epoch, scores in rows
    ]


def _flagged_turn(transcript: Transcript) -> tuple[int, str | None]:
    turns = transcript.turns()
    for turn in reversed(turns):
        if turn.tool_uses:
            return turn.index, turn.tool_uses[-1].id
    return len(turns) - 1, None


def incident_from_sample(
    path: Path, sample_id: str, epoch: int, scores: dict[str, Any], matched: list[FlagExpr], spec: AuditSpec
) -> Incident:
    """An Inspect sample as an incident (see module doc)."""
    from tools.formats import load_transcript

    if spec.environment is None or spec.behavior is None:
        raise AuditError(
            f"{path}: flagged Inspect samples need the environment and detector to investigate them in: give "
            "--scenario (or `environment:` in --spec) and --detector (or `behavior:`)"
        )
    transcript = load_transcript(path, format="inspect", sample_id=sample_id, epoch=epoch)
    if not transcript.turns():
        raise AuditError(f"{path}: sample {sample_id} epoch {epoch} has no assistant turn to investigate")
    turn, call_id = _flagged_turn(transcript)
    subject = spec.subject or transcript.model
    if not subject or "/" not in subject:
        raise AuditError(f"{path}: the log names no usable subject model ({subject!r}); give --subject PROVIDER/MODEL")
    reasons = []
    for expr in matched:
        score = scores.get(expr.name.partition(".")[0])
        explanation = score.get("explanation") if isinstance(score, dict) else None
        reasons.append(f"{expr.name}={expr.score_of(scores)}" + (f" ({explanation})" if explanation else ""))
    numeric = next(
        (_number(expr.score_of(scores)) for expr in matched if _number(expr.score_of(scores)) is not None), None
    )
    return Incident(
        id=f"{path.stem}-{sample_id}-e{epoch}",
        description=f"Inspect sample {sample_id} (epoch {epoch}) of {path.name}, flagged by "
        + ", ".join(map(str, matched)),
        transcript=transcript,
        flag=Flag(turn=turn, tool_use_id=call_id, reason="; ".join(reasons), monitor="inspect-score", score=numeric),
        environment=spec.environment,
        subject=Subject(model=subject),
        behavior=spec.behavior,
        metadata={"inspect_log": str(path), "sample_id": sample_id, "epoch": epoch, "scores": scores},
        source_path=str(path),
    )


def collect(inputs: Sequence[str], spec: AuditSpec) -> list[AuditItem]:
    """Every row the audit will have, in input order (see module doc)."""
    flags = spec.flags()
    items: list[AuditItem] = []
    taken: set[str] = set()
    for path in expand_inputs(inputs):
        if not _is_inspect(path):
            items.append(
                AuditItem(job_id=_job_id(path.stem, taken), source=str(path), incident_path=str(path.resolve()))
            )
            continue
        if not flags:
            items.append(
                AuditItem(
                    job_id=_job_id(path.stem, taken),
                    source=str(path),
                    error=f"{path}: an Inspect log needs --flag to say which samples are incidents",
                )
            )
            continue
        try:
            samples = inspect_sample_scores(path)
        except ForensicsError as exc:
            items.append(AuditItem(job_id=_job_id(path.stem, taken), source=str(path), error=str(exc)))
            continue
        for sample_id, epoch, scores in samples:
            matched = [f for f in flags if f.matches(scores)]
            if not matched:
                continue
            source = f"{path}#{sample_id}@{epoch}"
            job_id = _job_id(f"{path.stem}-{sample_id}-e{epoch}", taken)
            try:
                incident = incident_from_sample(path, sample_id, epoch, scores, matched, spec)
            except ForensicsError as exc:
                items.append(AuditItem(job_id=job_id, source=source, error=str(exc)))
                continue
            items.append(AuditItem(job_id=job_id, source=source, incident=incident))
    return items


def job_spec(item: AuditItem, spec: AuditSpec, out: Path) -> JobSpec:
    """The executor job of one audit row."""
    return JobSpec(
        id=item.job_id,
        run_dir=str((out / "runs" / item.job_id).resolve()),
        incident_path=item.incident_path if item.incident is None else None,
        incident=item.incident,
        planner=spec.planner,
        model=spec.model,
        judge=spec.judge,
        n=spec.n,
        limits=spec.limits,
        blind=spec.blind,
        backend=spec.backend,
        allow_host=spec.allow_host,
        organism_dirs=[str(Path(d).resolve()) for d in spec.organism_dirs],
        scenario_dirs=[str(Path(d).resolve()) for d in spec.scenario_dirs],
        timeout_s=spec.timeout_s,
        labels={"source": item.source},
    )


def record_input_errors(db: BatchDB, items: Sequence[AuditItem], spec: AuditSpec, out: Path) -> None:
    """Rows for inputs that never became incidents: failed jobs with the reason."""
    for item in items:
        if item.error is None:
            continue
        placeholder = JobSpec(
            id=item.job_id,
            run_dir=str((out / "runs" / item.job_id).resolve()),
            incident_path=item.source,
            labels={"source": item.source, "input_error": True},
        )
        record, _ = db.add(placeholder)
        if record.state is not JobState.failed or record.error != item.error:
            if record.state is JobState.pending:
                db.mark_running(item.job_id)
            db.finish(
                item.job_id, JobState.failed, JobOutcome(ok=False, attempt=0, error=item.error, error_kind="input")
            )


# ----------------------------------------------------------------------------- outputs


class AuditRow(BaseModel):
    """One line of audit.json / audit.csv / audit.html."""

    job: str
    source: str
    state: str
    verdict: str | None
    motivation: str | None
    confidence: float | None
    samples: int
    tokens: int
    dollars: float
    tool_calls: int
    attempts: int
    wall_seconds: float | None
    report: str | None
    error: str | None
    note: str | None


def audit_rows(records: Sequence[JobRecord], out: Path) -> list[AuditRow]:
    rows = []
    for r in records:
        report = None
        if r.report_path and Path(r.report_path).exists():
            report = os.path.relpath(r.report_path, out.resolve())
        rows.append(
            AuditRow(
                job=r.id,
                source=str(r.labels.get("source") or r.incident),
                state=r.state.value,
                verdict=r.verdict,
                motivation=r.motivation,
                confidence=r.confidence,
                samples=r.samples,
                tokens=r.tokens,
                dollars=round(r.dollars, 6),
                tool_calls=r.tool_calls,
                attempts=r.attempts,
                wall_seconds=round(r.wall_seconds, 2) if r.wall_seconds is not None else None,
                report=report,
                error=r.error,
                note=r.note,
            )
        )
    return rows


def summary(rows: Sequence[AuditRow], *, budget: float | None) -> dict[str, Any]:
    states = {s.value: sum(1 for r in rows if r.state == s.value) for s in JobState}
    verdicts: dict[str, int] = {}
    for r in rows:
        if r.verdict:
            verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    return {
        "incidents": len(rows),
        "states": states,
        "verdicts": verdicts,
        "samples": sum(r.samples for r in rows),
        "tokens": sum(r.tokens for r in rows),
        "dollars": round(sum(r.dollars for r in rows), 6),
        "budget_dollars": budget,
        "wall_seconds": round(sum(r.wall_seconds or 0 for r in rows), 2),
    }


def _html(rows: Sequence[AuditRow], info: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("prompts", "audit"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("audit.html.j2").render(rows=rows, summary=info)


def write_outputs(out: Path, records: Sequence[JobRecord], *, budget: float | None) -> dict[str, Path]:
    """audit.json, audit.csv and audit.html in `out`, each replaced atomically."""
    from investigator.render import atomic_write_text

    rows = audit_rows(records, out)
    info = summary(rows, budget=budget) | {"generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(AuditRow.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow(row.model_dump())
    texts = {
        "json": json.dumps({"summary": info, "rows": [r.model_dump() for r in rows]}, indent=1) + "\n",
        "csv": buffer.getvalue(),
        "html": _html(rows, info),
    }
    paths = {key: out / f"audit.{key}" for key in texts}
    for key, path in paths.items():
        atomic_write_text(path, texts[key])
    return paths
