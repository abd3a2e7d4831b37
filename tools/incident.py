"""Incident files: what a monitor flagged, in which transcript, and how to rebuild it.

An incident file (YAML or JSON) names a transcript (a path relative to the incident
file, or the transcript inline), the `flag` (which assistant turn / tool call is the
concerning action and why the monitor flagged it), the `environment` needed to
rebuild the world (a scenario id, or a snapshot of the session's workspace: an image,
an archive, a directory or a git commit, with files, setup commands, the session's
working directory and its harness), the `subject` to resample, and the `behavior`
detector that says whether a rollout repeats the action. A transcript whose log
recorded no tool definitions gets its harness's (`tools.harnesses.reconstruct_tools`).

Every validation problem raises `IncidentError` naming the file, the field and what
was expected there.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.errors import FormatError, IncidentError
from tools.formats import FORMAT_NAMES, load_transcript
from tools.formats.base import (
    INCIDENT_CAP_SETTING,
    decode_utf8,
    json_path,
    parse_json_bounded,
    read_bounded,
    safe_yaml_load,
)
from tools.formats.native import parse as parse_native_transcript
from tools.transcript import Transcript, Turn

INCIDENT_SUFFIXES = {".yaml", ".yml"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Flag(_Spec):
    """The concerning action, resolved: `turn` is the assistant turn index (negative
    counts from the end); `tool_use_id` narrows it to one call of that turn."""

    turn: int
    tool_use_id: str | None = None
    reason: str = Field(min_length=1)
    monitor: str | None = None
    score: float | None = None


class FlagSpec(_Spec):
    """The flag as an incident file writes it: `turn`, `tool_use_id`, or both. A
    `tool_use_id` alone locates the turn that made the call; with both, the call must be
    in that turn. `load_incident` resolves it to a `Flag`."""

    turn: int | None = None
    tool_use_id: str | None = None
    reason: str = Field(min_length=1)
    monitor: str | None = None
    score: float | None = None

    @model_validator(mode="after")
    def _locates_something(self) -> FlagSpec:
        if self.turn is None and self.tool_use_id is None:
            raise ValueError(
                "give `turn` (the flagged assistant turn) or `tool_use_id` (the flagged tool call), or both"
            )
        return self


class GitSource(_Spec):
    """A workspace as a commit of a git repository: `repo` is a repository directory (or
    its ``.git``, or a bare repository) or a bundle file, relative to the incident file;
    `commit` is the commit (or ref) checked out. Nothing is fetched from a network."""

    repo: str = Field(min_length=1)
    commit: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@{}^~-]*$")


class ArchiveSource(_Spec):
    """A workspace as an archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
    ``.tar.xz``, ``.zip``), relative to the incident file. `strip_components` drops that
    many leading directories of every member (an archive of ``project/...``)."""

    path: str = Field(min_length=1)
    strip_components: int = Field(default=0, ge=0, le=16)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


_SNAPSHOT_FIELDS = ("image", "archive", "directory", "git", "files", "setup", "workdir", "harness")


def _check_workspace_path(path: str) -> str:
    if "\x00" in path or ".." in PurePosixPath(path).parts or not path.strip():
        raise ValueError(f"file path {path!r} must be relative to the workspace (or absolute) without `..`")
    return path


class Environment(_Spec):
    """How to rebuild the world the subject acted in: a registered scenario (with knob
    settings), or a snapshot of the session's workspace — a container `image`, and/or
    the workspace as an `archive`, a `directory` or a `git` commit — plus `files` written
    over it, `setup` commands run in the sandbox, the session's working directory
    (`workdir`, where absolute paths of the session point) and the `harness` whose tools
    the subject used. See docs/incidents.md."""

    scenario: str | None = None
    knobs: dict[str, Any] = Field(default_factory=dict)
    image: str | None = Field(default=None, min_length=1)
    archive: ArchiveSource | None = None
    directory: str | None = Field(default=None, min_length=1)
    git: GitSource | None = None
    files: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    """The session's working directory (e.g. /home/user/project). Default: the one the
    log recorded (Claude Code's ``cwd``), else /workspace."""
    remove: list[str] = Field(default_factory=list)
    """Files deleted from the rebuilt workspace after it is in place (what `delete_file`
    edits ask for; relative to the workdir, or absolute)."""
    setup: list[str] = Field(default_factory=list)
    harness: str | None = None
    """The harness profile for the subject's tools (default: detected from the transcript)."""

    @model_validator(mode="after")
    def _needs_a_world(self) -> Environment:
        if self.scenario is not None:
            if self.workdir == "/workspace":
                self.workdir = None  # what incidents written before snapshot worlds carry: the scenario's own
            extra = [f for f in _SNAPSHOT_FIELDS if f not in {"files"} and getattr(self, f)]
            if extra:
                raise ValueError(
                    f"a scenario builds its own world; {', '.join(extra)} describe a snapshot of a workspace instead "
                    "(give either `scenario` or a snapshot)"
                )
            return self
        sources = [f for f in ("archive", "directory", "git") if getattr(self, f) is not None]
        if len(sources) > 1:
            raise ValueError(f"give one workspace source, not {' and '.join(sources)}")
        if self.image is None and not sources and not self.files:
            raise ValueError(
                "give either `scenario` (a scenario id) or a snapshot of the workspace: `archive`, `directory`, "
                "`git` (repo + commit), `image` and/or `files`"
            )
        if self.workdir is not None:
            self.workdir = _check_workdir(self.workdir)
        for path in [*self.files, *self.remove]:
            _check_workspace_path(path)
        if any(not isinstance(c, str) or not c.strip() for c in self.setup):
            raise ValueError("every `setup` entry must be a non-empty shell command")
        if self.harness is not None:
            from tools.harnesses import HarnessError, get_profile

            try:
                get_profile(self.harness)
            except HarnessError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def is_snapshot(self) -> bool:
        return self.scenario is None

    def describe(self) -> str:
        """One line for people: what the world is rebuilt from."""
        if self.scenario is not None:
            knobs = ", ".join(f"{k}={v}" for k, v in self.knobs.items())
            return f"scenario {self.scenario}" + (f" ({knobs})" if knobs else "")
        parts = []
        if self.archive is not None:
            parts.append(f"archive {self.archive.path}")
        if self.directory is not None:
            parts.append(f"directory {self.directory}")
        if self.git is not None:
            parts.append(f"git {self.git.repo} @ {self.git.commit}")
        if self.image is not None:
            parts.append(f"on image {self.image}" if parts else f"image {self.image}")
        if self.files:
            parts.append(f"{len(self.files)} file(s)")
        if self.remove:
            parts.append(f"{len(self.remove)} removed")
        if self.setup:
            parts.append(f"{len(self.setup)} setup command(s)")
        if self.workdir:
            parts.append(f"workdir {self.workdir}")
        if self.harness:
            parts.append(f"harness {self.harness}")
        return ", ".join(parts)


_SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/boot", "/run")


def _check_workdir(workdir: str) -> str:
    if not workdir.startswith("/"):
        raise ValueError(f"`workdir` must be an absolute POSIX path (the session's working directory), got {workdir!r}")
    if any(ord(c) < 32 for c in workdir) or ".." in PurePosixPath(workdir).parts:
        raise ValueError(f"`workdir` must not contain `..` or control characters: {workdir!r}")
    normalized = posixpath.normpath(workdir)
    if normalized == "/" or any(normalized == d or normalized.startswith(d + "/") for d in _SYSTEM_DIRS):
        raise ValueError(f"`workdir` {workdir!r} is a system directory; give the session's project directory")
    return normalized


class Subject(_Spec):
    """The model to resample, as a registry string such as ``anthropic/claude-sonnet-4-5``."""

    model: str = Field(min_length=1)
    temperature: float | None = None
    max_tokens: int | None = None


class RegexDetector(_Spec):
    """Matches a regular expression in the subject's tool calls, text or thinking."""

    kind: Literal["regex"]
    pattern: str
    target: Literal["tool_calls", "text", "thinking", "any"] = "tool_calls"
    tool: str | None = None
    ignore_case: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> RegexDetector:
        import re

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return self


class CommandDetector(_Spec):
    """Runs a command in the sandbox after the episode; the behaviour happened when its
    exit code equals `expect_exit`."""

    kind: Literal["command"]
    command: str = Field(min_length=1)
    expect_exit: int = 0
    timeout_s: float = 30.0


class LLMDetector(_Spec):
    """Asks a grader model to judge the episode with a rubric prompt from `prompts/`."""

    kind: Literal["llm"]
    rubric: str = Field(min_length=1)
    model: str | None = None


class CompositeDetector(_Spec):
    """All (`all`) or any (`any`) of several detectors."""

    kind: Literal["all", "any"]
    of: list[DetectorSpec] = Field(min_length=1)


DetectorSpec = Annotated[
    RegexDetector | CommandDetector | LLMDetector | CompositeDetector,
    Field(discriminator="kind"),
]
CompositeDetector.model_rebuild()


class IncidentFile(_Spec):
    """The incident file as written: the transcript is still a reference."""

    id: str | None = None
    description: str | None = None
    transcript: str | dict[str, Any]
    transcript_format: str | None = None
    sample_id: str | None = None
    epoch: int | None = None
    flag: FlagSpec
    environment: Environment
    subject: Subject
    behavior: DetectorSpec
    metadata: dict[str, Any] = Field(default_factory=dict)


class Incident(BaseModel):
    """A resolved incident: the spec plus the loaded transcript."""

    model_config = ConfigDict(extra="forbid")

    id: str
    description: str | None = None
    transcript: Transcript
    flag: Flag
    environment: Environment
    subject: Subject
    behavior: DetectorSpec
    metadata: dict[str, Any] = Field(default_factory=dict)
    source_path: str | None = None

    @property
    def flagged_turn(self) -> Turn:
        """The flagged assistant turn."""
        return self.transcript.turn(self.flag.turn)

    @property
    def flagged_turn_index(self) -> int:
        """The flagged turn as a non-negative index."""
        return self.flagged_turn.index


def _error(path: Path, field: str, message: str) -> IncidentError:
    return IncidentError(f"{path}: field `{field}`: {message}")


def _read_spec(path: Path) -> dict[str, Any]:
    """The incident file's mapping, read bounded: a regular file of at most
    ``FORENSICS_MAX_INCIDENT_BYTES``, JSON parsed as JSON (``.json``), anything else
    with the limited safe YAML loader; depth, integers and Unicode checked."""
    from tools.settings import parse_limits

    try:
        raw = read_bounded(
            path, int(parse_limits().max_incident_bytes), what="an incident file", setting=INCIDENT_CAP_SETTING
        )
        text = decode_utf8(raw, source=str(path))
        if path.suffix.lower() == ".json":
            data = parse_json_bounded(text, source=str(path))
        else:
            data = safe_yaml_load(text, source=str(path))
    except FormatError as exc:
        raise IncidentError(str(exc)) from None
    if not isinstance(data, dict):
        raise IncidentError(
            f"{path}: an incident file must be a mapping with keys transcript, flag, environment, subject, behavior"
        )
    return data


def confined_path(base: Path, value: str, *, source: Path, field: str) -> Path:
    """`value` (a path written in an incident file) resolved against `base` (the
    incident file's folder), refused with an `IncidentError` naming `field` when it
    leads outside `base` — by ``..``, an absolute path or a symbolic link. Paths the
    user gives on the command line are not confined; paths inside untrusted files are."""
    shown = value if len(value) <= 200 else value[:200] + "…"
    try:
        root = base.resolve()
        target = (root / value).resolve()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a symlink loop
        raise _error(source, field, f"path {shown!r} cannot be used: {getattr(exc, 'strerror', None) or exc}") from None
    if not target.is_relative_to(root):
        raise _error(
            source,
            field,
            f"path {shown!r} leads outside the incident's folder {root} (to {target}); an incident file may only "
            "name files next to it or below — pass a file elsewhere on the command line (--transcript)",
        )
    return target


def _check_workspace_sources(path: Path, environment: Environment) -> None:
    """The workspace an environment names (archive, directory, git repository) exists
    and lies inside the incident's folder; its content is read (and checked) when the
    world is built (`tools.snapshot`)."""
    sources = [
        ("environment.archive.path", environment.archive.path if environment.archive else None),
        ("environment.directory", environment.directory),
        ("environment.git.repo", environment.git.repo if environment.git else None),
    ]
    for field, value in sources:
        if value is None:
            continue
        target = confined_path(path.parent, value, source=path, field=field)
        if not target.exists():
            raise _error(path, field, f"{value!r} not found (looked at {target})")


def load_incident(
    path: str | Path, *, transcript_file: str | Path | None = None, skip_bad_lines: bool = False
) -> Incident:
    """Read and validate an incident file, loading the transcript it points at.

    A transcript path inside the file must stay inside the file's folder
    (`confined_path`). `transcript_file`, a path the user gave (on the command line),
    replaces the file's own `transcript` field and is not confined. `skip_bad_lines`
    makes a line-based transcript skip malformed lines (recorded in its import report)."""
    p = Path(path)
    data = _read_spec(p)
    if transcript_file is not None:
        data["transcript"] = str(transcript_file)
    try:
        spec = IncidentFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [x for x in err["loc"] if not (isinstance(x, str) and ("[" in x or x.startswith("function-")))]
        msg = "this field is required" if err["type"] == "missing" else err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unexpected field (check the spelling; see docs/incidents.md)"
        raise _error(p, json_path(loc), msg) from None
    if spec.transcript_format is not None and spec.transcript_format not in FORMAT_NAMES:
        raise _error(
            p,
            "transcript_format",
            f"unknown format {spec.transcript_format!r}; expected one of {', '.join(FORMAT_NAMES)}",
        )

    _check_workspace_sources(p, spec.environment)

    if isinstance(spec.transcript, str):
        if transcript_file is not None:
            transcript_path = Path(transcript_file).resolve()
        else:
            transcript_path = confined_path(p.parent, spec.transcript, source=p, field="transcript")
        try:
            found = transcript_path.exists()
        except (OSError, ValueError) as exc:
            raise _error(p, "transcript", f"cannot use the path: {getattr(exc, 'strerror', None) or exc}") from None
        if not found:
            raise _error(p, "transcript", f"file {spec.transcript!r} not found (looked at {transcript_path})")
        try:
            transcript = load_transcript(
                transcript_path,
                format=spec.transcript_format,
                sample_id=spec.sample_id,
                epoch=spec.epoch,
                skip_bad_lines=skip_bad_lines,
            )
        except FormatError as exc:
            raise _error(p, "transcript", f"the transcript could not be read: {exc}") from None
    else:
        try:
            transcript = parse_native_transcript(spec.transcript, source=f"{p} (inline transcript)")
        except FormatError as exc:
            raise _error(p, "transcript", f"inline transcript is not a model-forensics transcript: {exc}") from None

    # Logs that record no tool definitions (Claude Code) get their harness's, noted as such.
    from tools.harnesses import choose_profile, reconstruct_tools

    profile = choose_profile(transcript, spec.environment.harness)
    if profile is not None:
        reconstruct_tools(transcript, profile)

    flag = resolve_flag(spec.flag, transcript, p)
    return Incident(
        id=spec.id or p.stem,
        description=spec.description,
        transcript=transcript,
        flag=flag,
        environment=spec.environment,
        subject=spec.subject,
        behavior=spec.behavior,
        metadata=spec.metadata,
        source_path=str(p),
    )


def resolve_flag(spec: FlagSpec, transcript: Transcript, path: Path) -> Flag:
    """The flagged turn of `transcript`: `spec.turn`, or the turn that made
    `spec.tool_use_id`. Every mismatch is an `IncidentError` that says where the call
    really is (or that the transcript has no such call, listing the calls it has)."""
    turns = transcript.turns()
    if not turns:
        raise _error(
            path,
            "flag.turn" if spec.turn is not None else "flag.tool_use_id",
            "the transcript has no assistant turn to flag",
        )
    holder: Turn | None = None
    if spec.tool_use_id is not None:
        holder = next((t for t in turns if any(u.id == spec.tool_use_id for u in t.tool_uses)), None)
        if holder is None:
            known = [u.id for t in turns for u in t.tool_uses]
            shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
            raise _error(
                path,
                "flag.tool_use_id",
                f"{spec.tool_use_id!r} is not a tool call in the transcript (its calls: {shown or 'none'})",
            )
    if spec.turn is None:
        assert holder is not None  # FlagSpec requires one of the two
        turn_index = holder.index
    else:
        if not -len(turns) <= spec.turn < len(turns):
            where = f"; tool call {spec.tool_use_id!r} is in turn {holder.index}" if holder is not None else ""
            raise _error(
                path,
                "flag.turn",
                f"turn {spec.turn} does not exist; the transcript has {len(turns)} assistant turns "
                f"(0..{len(turns) - 1}){where}",
            )
        turn = turns[spec.turn]
        if holder is not None and holder.index != turn.index:
            ids = ", ".join(u.id for u in turn.tool_uses) or "none"
            raise _error(
                path,
                "flag.tool_use_id",
                f"{spec.tool_use_id!r} is not a tool call of turn {turn.index} (its calls: {ids}); it is a call of "
                f"turn {holder.index} — set flag.turn to {holder.index}, or leave it out",
            )
        turn_index = turn.index if spec.turn >= 0 else spec.turn
    return Flag(
        turn=turn_index,
        tool_use_id=spec.tool_use_id,
        reason=spec.reason,
        monitor=spec.monitor,
        score=spec.score,
    )


def is_incident_file(path: str | Path) -> bool:
    """Whether a file is an incident (YAML, or JSON with `flag` and `transcript` keys).
    A ``.json`` file is parsed as JSON, and only when it is a regular file no larger
    than an incident file may be (a large transcript is never parsed here)."""
    from tools.settings import parse_limits

    p = Path(path)
    if p.suffix.lower() in INCIDENT_SUFFIXES:
        return True
    if p.suffix.lower() != ".json":
        return False
    try:
        raw = read_bounded(p, int(parse_limits().max_incident_bytes), what="an incident file")
        data = parse_json_bounded(decode_utf8(raw, source=str(p)), source=str(p))
    except FormatError:
        return False
    return isinstance(data, dict) and "flag" in data and "transcript" in data
