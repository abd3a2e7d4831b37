"""`forensics bench`: investigators graded on model organisms whose truth is known.

A **suite** is a directory of organism specs (``*.yaml`` at its top, or in an
``organisms/`` folder) and, optionally, the scenarios they play in (a ``scenarios/``
folder of ``<id>/scenario.yaml``); a single organism file is a suite of one. Suites are
put first on the organism and scenario search paths, so a suite's organism shadows a
shipped one of the same id; two suites defining one id is an error.

For every organism × seed (a **case**) the bench catches the organism in its scenario
as a monitor would (`evals.world.make_incident`: episodes until the scenario's detector
fires) and caches the incident in ``OUT/incidents``; then, for every planner × setting
(``hints``: the scenario's `investigation:` section reaches the planner; ``blind``: it
does not) × replicate, it investigates that incident as one job of the batch executor
(`investigator.executor`, run directory ``OUT/runs/<job>``) and grades the report
against the organism's truth (`investigator.judge.truth_grade`).

Seeds. Case seed *s* catches its incident with episode seeds from
``CATCH_SEED_BASE + 1000·s`` (apart from every seed an investigation uses, so the
caught episode's own draw is not among the resamples) and investigates it with
investigation seed ``1000·s + r`` for replicate *r* (`tools.agent_tools.seed_offset`
turns that into the sample stream), so seeds and replicates are independent draws:
two cases of one organism never replay each other's randomness, and the *K*
replicates of ``--parallel K`` measure with disjoint samples (their experiment ids,
which hash the seed, differ). ``--parallel K --aggregate`` then pools each case's
replicates into one report (`evals.bench_aggregate`).

State lives in ``OUT``: ``batch.sqlite`` (the executor's jobs), ``incidents/`` (caught
once), ``runs/`` (each job's checkpointed run directory), ``aggregates/``. Killed and
rerun with the same ``OUT``, the bench reuses every caught incident and finished job,
resumes interrupted jobs from their checkpoints (no kept sample is paid twice) and
retries failed ones. The leaderboard (`evals.bench_leaderboard`) is rewritten at the end
of every run, from this run's matrix.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from investigator.executor import Executor, ExecutorError, JobRecord, JobSpec, JobState
from investigator.investigate import PlannerName
from sandboxes.errors import SandboxError
from tools.budget import BudgetLimits
from tools.errors import ForensicsError
from tools.incident import load_incident
from tools.organisms.spec import OrganismError, OrganismSpec, Truth, load_organism_file

Setting = Literal["hints", "blind"]
SETTINGS: tuple[Setting, ...] = get_args(Setting)
PLANNERS: tuple[str, ...] = get_args(PlannerName)

REPLICATE_STRIDE = 1000
"""Investigation seed of case seed s, replicate r: ``REPLICATE_STRIDE·s + r``."""
CATCH_SEED_BASE = 3 << 30
"""Episode seeds of the monitor's catch start here (above every investigation seed)."""
CATCH_STRIDE = 1000

BENCH_FILE = "bench.json"
INCIDENTS_DIR = "incidents"
RUNS_DIR = "runs"
AGGREGATES_DIR = "aggregates"


class BenchError(ForensicsError):
    """The bench was asked for something it cannot do (no suite, an unknown planner,
    two suites defining one organism, an output folder holding another bench)."""


# ----------------------------------------------------------------------------- suites


class BenchOrganism(BaseModel):
    """An organism of a suite, as the bench needs it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    path: str
    suite: str
    organism_dir: str
    scenario_dirs: list[str] = Field(default_factory=list)
    scenario: str
    pair: str | None = None
    truth: Truth
    digest: str
    """A hash of the loaded spec: a cached incident of a changed organism is not reused."""


class BenchProblem(BaseModel):
    """Something that kept part of the matrix from running: a suite file that is not an
    organism, a scenario that cannot be found, an organism the monitor never caught."""

    stage: Literal["suite", "catch", "aggregate", "job"]
    subject: str
    error: str
    seed: int | None = None


def _digest(spec: OrganismSpec) -> str:
    data = spec.model_dump(mode="json", exclude={"source_path"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _suite_files(path: Path) -> tuple[list[Path], Path, list[Path]]:
    """(organism files, the directory they live in, scenario directories) of a suite."""
    if path.is_file():
        scenarios = path.parent / "scenarios"
        return [path], path.parent, [scenarios] if scenarios.is_dir() else []
    folder = path / "organisms" if (path / "organisms").is_dir() else path
    files = sorted(p for p in folder.glob("*.yaml") if p.is_file())
    scenarios = path / "scenarios"
    return files, folder, [scenarios] if scenarios.is_dir() else []


def load_suites(suites: Sequence[str | Path]) -> tuple[list[BenchOrganism], list[BenchProblem]]:
    """Every organism of the suites (see module doc), and the files that could not be
    read as organisms (each a problem with its one-line reason; the rest still runs)."""
    if not suites:
        raise BenchError("give at least one suite: a directory of organism specs, e.g. evals/organisms")
    organisms: dict[str, BenchOrganism] = {}
    problems: list[BenchProblem] = []
    for raw in suites:
        path = Path(raw)
        if not path.exists():
            raise BenchError(f"{raw}: no such suite (give a directory of organism specs or an organism file)")
        files, folder, scenario_dirs = _suite_files(path)
        if not files:
            raise BenchError(f"{raw}: no organism specs (*.yaml) in it")
        for file in files:
            try:
                spec = load_organism_file(file)
            except OrganismError as exc:
                problems.append(BenchProblem(stage="suite", subject=str(file), error=str(exc)))
                continue
            other = organisms.get(spec.id)
            if other is not None:
                if Path(other.path).resolve() == file.resolve():
                    continue  # the same file named twice
                raise BenchError(
                    f"organism {spec.id!r} is defined by both {other.path} and {file}; "
                    "ids must be unique across the suites of one bench"
                )
            organisms[spec.id] = BenchOrganism(
                id=spec.id,
                path=str(file.resolve()),
                suite=str(raw),
                organism_dir=str(folder.resolve()),
                scenario_dirs=[str(d.resolve()) for d in scenario_dirs],
                scenario=spec.scenario,
                pair=spec.pair,
                truth=spec.truth,
                digest=_digest(spec),
            )
    return list(organisms.values()), problems


def use_search_paths(organisms: Sequence[BenchOrganism]) -> None:
    """Put the suites' organism and scenario directories first on this process's search
    paths (the coordinator catches incidents; each job carries its own directories to
    its worker)."""
    from evals.paths import add_scenario_dir
    from tools.organisms.registry import add_organism_dir

    for organism in reversed(organisms):
        add_organism_dir(organism.organism_dir)
        for directory in organism.scenario_dirs:
            add_scenario_dir(directory, export=False)


def check_scenarios(organisms: Sequence[BenchOrganism]) -> tuple[list[BenchOrganism], list[BenchProblem]]:
    """The organisms whose scenario can be loaded, and a problem for each other one."""
    from evals.scenario import load_scenario

    ok: list[BenchOrganism] = []
    problems: list[BenchProblem] = []
    for organism in organisms:
        try:
            load_scenario(organism.scenario, organism.scenario_dirs)
        except ForensicsError as exc:
            problems.append(BenchProblem(stage="suite", subject=organism.id, error=str(exc)))
            continue
        ok.append(organism)
    return ok, problems


# ----------------------------------------------------------------------------- the matrix


class BenchConfig(BaseModel):
    """What to run for every case, and how."""

    model_config = ConfigDict(extra="forbid")

    planners: list[str] = Field(default_factory=lambda: ["protocol", "cot-only"], min_length=1)
    settings: list[Setting] = Field(default=["hints"], min_length=1)
    seeds: int = Field(default=1, ge=1, le=1000)
    parallel: int = Field(default=1, ge=1, le=REPLICATE_STRIDE)
    aggregate: bool = False
    n: int = Field(default=200, ge=1)
    limits: BudgetLimits = Field(default_factory=BudgetLimits)
    model: str | None = None
    judge: str | None = None
    backend: str | None = None
    allow_host: bool = False
    """Let organisms from other directories (untrusted) run in the local bubblewrap sandbox."""
    timeout_s: float | None = Field(default=None, gt=0)
    max_episodes: int = Field(default=60, ge=1, le=CATCH_STRIDE)

    @model_validator(mode="after")
    def _check(self) -> BenchConfig:
        unknown = [p for p in self.planners if p not in PLANNERS]
        if unknown:
            raise ValueError(f"unknown planner(s) {', '.join(unknown)}; planners: {', '.join(PLANNERS)}")
        if len(set(self.planners)) != len(self.planners) or len(set(self.settings)) != len(self.settings):
            raise ValueError("a planner or setting is named twice")
        if self.aggregate and self.parallel < 2:
            raise ValueError("--aggregate combines --parallel K investigations per incident: give --parallel 2 or more")
        return self


class Case(BaseModel):
    """One incident of the bench: an organism caught with one seed."""

    organism: BenchOrganism
    seed: int

    @property
    def id(self) -> str:
        return f"{self.organism.id}.s{self.seed}"


def investigation_seed(seed: int, replicate: int) -> int:
    return REPLICATE_STRIDE * seed + replicate


def catch_seed(seed: int) -> int:
    return CATCH_SEED_BASE + CATCH_STRIDE * seed


def job_id(case: Case, planner: str, setting: Setting, replicate: int) -> str:
    """``<organism>.s<seed>.<planner>.<setting>``, with ``.r<replicate>`` after the first
    replicate: a plain run's jobs are the first replicates of a ``--parallel`` one."""
    base = f"{case.id}.{planner}.{setting}"
    return base if replicate == 0 else f"{base}.r{replicate}"


def group_id(case: Case, planner: str, setting: Setting) -> str:
    """The id of a case's replicates under one planner and setting (its aggregate)."""
    return f"{case.id}.{planner}.{setting}"


def cases(organisms: Sequence[BenchOrganism], config: BenchConfig) -> list[Case]:
    return [Case(organism=o, seed=s) for o in organisms for s in range(config.seeds)]


def job_specs(case: Case, incident_path: Path, config: BenchConfig, out: Path) -> list[JobSpec]:
    """The executor jobs of one case: planner × setting × replicate."""
    specs = []
    for planner in config.planners:
        for setting in config.settings:
            for replicate in range(config.parallel):
                jid = job_id(case, planner, setting, replicate)
                specs.append(
                    JobSpec(
                        id=jid,
                        run_dir=str((out / RUNS_DIR / jid).resolve()),
                        incident_path=str(incident_path.resolve()),
                        planner=planner,
                        model=config.model,
                        judge=config.judge,
                        n=config.n,
                        limits=config.limits,
                        blind=setting == "blind",
                        seed=investigation_seed(case.seed, replicate),
                        backend=config.backend,
                        allow_host=config.allow_host,
                        organism_dirs=[case.organism.organism_dir],
                        scenario_dirs=case.organism.scenario_dirs,
                        timeout_s=config.timeout_s,
                        labels={
                            "case": case.id,
                            "organism": case.organism.id,
                            "pair": case.organism.pair,
                            "scenario": case.organism.scenario,
                            "seed": case.seed,
                            "planner": planner,
                            "setting": setting,
                            "replicate": replicate,
                            "truth_verdict": case.organism.truth.verdict,
                            "truth_motivation": case.organism.truth.motivation,
                        },
                    )
                )
    return specs


# ----------------------------------------------------------------------------- incidents


def incident_file(out: Path, case: Case) -> Path:
    return out / INCIDENTS_DIR / f"{case.id}.yaml"


def cached_incident(out: Path, case: Case) -> Path | None:
    """The case's incident caught by an earlier run, if there is one (an incident of an
    organism whose spec has changed since is an error: its runs measured another one)."""
    path = incident_file(out, case)
    if not path.is_file():
        return None
    incident = load_incident(path)
    caught = (incident.metadata.get("bench") or {}).get("organism_digest")
    if caught != case.organism.digest:
        raise BenchError(
            f"{path}: organism {case.organism.id} has changed since this incident was caught "
            f"({case.organism.path}); its investigations measured the old spec: use another --out"
        )
    return path


async def catch_incident(
    case: Case, out: Path, *, backend: str | None, max_episodes: int, allow_host: bool = False
) -> Path:
    """Catch the case's organism in its scenario as a monitor would and write the
    incident to ``OUT/incidents`` (both files appear at once, or neither)."""
    from evals.world import make_incident, write_incident
    from tools.models.registry import get_model

    found = cached_incident(out, case)
    if found is not None:
        return found
    subject = get_model(f"organism/{case.organism.id}")
    incident, _episodes = await make_incident(
        subject,
        case.organism.scenario,
        backend=backend,
        allow_host=allow_host,
        max_episodes=max_episodes,
        seed=catch_seed(case.seed),
        incident_id=case.id,
    )
    incident = incident.model_copy(
        update={
            "metadata": {
                **incident.metadata,
                "bench": {"organism": case.organism.id, "seed": case.seed, "organism_digest": case.organism.digest},
            }
        }
    )
    final = incident_file(out, case)
    staging = final.parent / f".{case.id}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    written = write_incident(incident, staging)
    transcript = staging / f"{incident.id}.transcript.json"
    final.parent.mkdir(parents=True, exist_ok=True)
    transcript.replace(final.parent / transcript.name)
    written.replace(final)  # the incident file last: it is what marks the case caught
    shutil.rmtree(staging, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- the live view


def _truth_cell(r: JobRecord) -> Any:
    from rich.text import Text

    expected = r.labels.get("truth_verdict")
    if not r.verdict or not expected:
        return Text(str(expected or ""), style="dim")
    right = r.verdict == expected
    return Text(("✓ " if right else "✗ ") + str(expected), style="green" if right else "red")


def bench_table(records: Sequence[JobRecord], *, final: bool = False, status: str | None = None) -> Any:
    """The live table of a bench: the batch table with each job's truth (✓ when the
    verdict matches it)."""
    from investigator.batch_view import DEFAULT_COLUMNS, Column, batch_table

    columns = list(DEFAULT_COLUMNS)
    columns.insert(3, Column("truth", _truth_cell))
    return batch_table(records, title="bench", final=final, columns=columns, status=status)


# ----------------------------------------------------------------------------- the run


class BenchResult(BaseModel):
    """What one bench run did and wrote."""

    out: str
    records: list[JobRecord]
    problems: list[BenchProblem]
    files: dict[str, str]


def write_config(
    out: Path, suites: Sequence[str | Path], config: BenchConfig, organisms: Sequence[BenchOrganism]
) -> None:
    """``OUT/bench.json``: what this run was asked to do (for the record)."""
    from investigator.render import atomic_write_text

    data = {
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "suites": [str(s) for s in suites],
        "config": config.model_dump(mode="json"),
        "organisms": [o.model_dump(mode="json") for o in organisms],
    }
    atomic_write_text(out / BENCH_FILE, json.dumps(data, indent=1) + "\n")


Status = Callable[[str], None]


async def submit_cases(
    executor: Executor,
    todo: Sequence[Case],
    config: BenchConfig,
    out: Path,
    problems: list[BenchProblem],
    *,
    status: Status | None = None,
) -> dict[str, Path]:
    """Catch each case's incident (or reuse the cached one) and submit its jobs at once,
    so investigations run while the next incidents are caught. Returns the incident file
    of every case caught."""
    caught: dict[str, Path] = {}
    for index, case in enumerate(todo, 1):
        path = cached_incident(out, case)
        if path is None:
            if status is not None:
                status(
                    f"catching {case.organism.id} in {case.organism.scenario} (seed {case.seed}; {index}/{len(todo)})"
                )
            try:
                path = await catch_incident(
                    case, out, backend=config.backend, max_episodes=config.max_episodes, allow_host=config.allow_host
                )
            except BenchError:
                raise
            except (ForensicsError, SandboxError) as exc:  # this case is lost; the others still run
                reason = " ".join(str(exc).split()) or type(exc).__name__
                problems.append(BenchProblem(stage="catch", subject=case.organism.id, seed=case.seed, error=reason))
                continue
        caught[case.id] = path
        for spec in job_specs(case, path, config, out):
            _submit(executor, spec, out)
    if status is not None:
        status("")
    return caught


def _submit(executor: Executor, spec: JobSpec, out: Path) -> None:
    """Submit `spec`, refusing clearly when ``OUT`` already ran that job differently."""
    try:
        existing: JobSpec | None = executor.db.spec(spec.id)
    except ExecutorError:
        existing = None  # a new job
    if existing is not None and existing != spec:
        raise BenchError(
            f"{out} holds a bench whose job {spec.id} was run with other settings (n, limits, model, backend...): "
            "rerun with the same settings, or use another --out"
        )
    executor.submit(spec)


async def run_bench(
    suites: Sequence[str | Path],
    config: BenchConfig,
    out: Path,
    *,
    executor_name: str = "local",
    address: str | None = None,
    workers: int | None = None,
    budget_dollars: float | None = None,
    max_attempts: int = 3,
    console: Any = None,
) -> BenchResult:
    """Run the bench (see module doc): catch, investigate, aggregate, grade, write the
    leaderboard. `console` (a rich Console) shows the live table; None runs quietly."""
    from evals.bench_aggregate import aggregate_groups
    from evals.bench_leaderboard import build_leaderboard, write_leaderboard

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    organisms, problems = load_suites(suites)
    use_search_paths(organisms)
    organisms, missing = check_scenarios(organisms)
    problems += missing
    write_config(out, suites, config, organisms)
    todo = cases(organisms, config)
    executor = Executor(
        out,
        backend=executor_name,
        address=address,
        workers=workers,
        budget_dollars=budget_dollars,
        max_attempts=max_attempts,
        retry_failed=True,
    )
    wanted = {spec_id for case in todo for spec_id in _job_ids(case, config)}
    state = {"status": ""}

    def set_status(text: str) -> None:
        state["status"] = text

    work = submit_cases(executor, todo, config, out, problems, status=set_status)
    if console is None:
        await executor.start()
        try:
            await work
            await executor.wait()
        finally:
            await executor.stop()
    else:
        from investigator.batch_view import run_live

        console.print(
            f"[bold]bench[/bold] {len(organisms)} organism(s) × {config.seeds} seed(s) × "
            f"{', '.join(config.planners)} × {', '.join(config.settings)}"
            + (f" × {config.parallel} replicates" if config.parallel > 1 else "")
            + f" on the {executor_name} executor ({executor.workers} at a time) → {out}"
        )
        await run_live(
            console,
            executor,
            lambda: bench_table([r for r in executor.jobs() if r.id in wanted], status=state["status"]),
            work=work,
        )
    records = [r for r in executor.jobs() if r.id in wanted]
    for record in records:
        if record.state is not JobState.done:
            problems.append(
                BenchProblem(
                    stage="job",
                    subject=record.id,
                    error=record.error or record.note or f"the job is {record.state.value}",
                )
            )
    aggregates = (
        await aggregate_groups(todo, config, out, {r.id: r for r in records}, problems) if config.aggregate else []
    )
    board = build_leaderboard(todo, config, records, aggregates, problems, out=out, suites=[str(s) for s in suites])
    files = write_leaderboard(board, out)
    return BenchResult(out=str(out), records=records, problems=problems, files={k: str(v) for k, v in files.items()})


def _job_ids(case: Case, config: BenchConfig) -> list[str]:
    return [
        job_id(case, planner, setting, r)
        for planner in config.planners
        for setting in config.settings
        for r in range(config.parallel)
    ]


def run_bench_sync(suites: Sequence[str | Path], config: BenchConfig, out: Path, **options: Any) -> BenchResult:
    """`run_bench` from synchronous code."""
    return asyncio.run(run_bench(suites, config, out, **options))
