"""`forensics bench`: a tiny suite (one organism pair) end to end — killed with SIGKILL
mid-run and rerun with the same --out, it resumes without catching or paying for
anything twice —, replicates on disjoint sample streams pooled into one report, and
suite loading."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evals import paths
from evals.bench import BenchConfig, BenchError, load_suites
from evals.bench_aggregate import aggregate_runs
from evals.world import make_incident
from investigator.executor import BatchDB, JobState
from investigator.executor.accounting import kept_messages, paid_messages
from investigator.executor.worker import ATTEMPTS_FILE
from investigator.investigate import investigate
from tools.models.registry import get_model
from tools.organisms import registry
from tools.organisms.registry import organism_dirs

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "evals" / "organisms"
PAIR = ["oversight-subversion", "oversight-latency-mistake"]  # a fast scenario (no type checker in its world)
QUICK = ["--n", "5", "--job-tool-calls", "8", "--backend", "local", "--workers", "2"]


@pytest.fixture
def clean_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword features (no MiniLM in every worker) and search paths that do not leak
    between tests."""
    monkeypatch.setenv("FORENSICS_NO_EMBEDDINGS", "1")
    monkeypatch.setattr(registry, "_EXTRA_DIRS", [])
    monkeypatch.setattr(paths, "_EXTRA_SCENARIO_DIRS", [])
    monkeypatch.delenv("FORENSICS_ORGANISMS", raising=False)
    monkeypatch.delenv(paths.SCENARIOS_ENV, raising=False)


def _bench(out: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "investigator.cli", "bench", *(str(SHIPPED / f"{o}.yaml") for o in PAIR)]
    args += ["--planners", "cot-only,protocol", "--out", str(out), *QUICK, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORENSICS_NO_EMBEDDINGS": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _ledger_samples(run_dir: Path) -> int:
    path = run_dir / "case.sqlite"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _states(out: Path) -> dict[str, JobState]:
    if not (out / "batch.sqlite").exists():
        return {}
    try:
        with BatchDB(out) as db:
            return {r.id: r.state for r in db.jobs()}
    except Exception:
        return {}


@pytest.mark.slow
def test_bench_writes_the_leaderboard_and_resumes_after_sigkill(tmp_path: Path, clean_paths: None) -> None:
    out = tmp_path / "bench"
    first = _bench(out)
    deadline = time.monotonic() + 600
    killed_running: list[str] = []
    while time.monotonic() < deadline and first.poll() is None:
        states = _states(out)
        running = [j for j, s in states.items() if s is JobState.running and ".protocol." in j]
        busy = [j for j in running if _ledger_samples(out / "runs" / j) >= 2]
        if busy and any(s is JobState.done for s in states.values()):
            killed_running = busy
            first.send_signal(signal.SIGKILL)  # the coordinator only: its workers die with it
            break
        time.sleep(0.2)
    first.wait(timeout=60)
    assert killed_running, "the bench finished (or never got going) before it could be killed:\n" + (
        first.stdout.read().decode() if first.stdout else ""
    )
    assert not (out / "leaderboard.json").exists()
    incidents = {p.name: p.stat().st_mtime_ns for p in (out / "incidents").iterdir()}
    attempts_before = {
        job: len((out / "runs" / job / ATTEMPTS_FILE).read_text().splitlines())
        for job, state in _states(out).items()
        if state is JobState.done
    }
    kept_before = {job: kept_messages(out / "runs" / job)[0] for job in killed_running}

    second = _bench(out)
    output = second.communicate(timeout=900)[0].decode()
    assert second.returncode == 0, output

    # Nothing that was done is redone: no incident caught again, no finished job rerun...
    # (the second organism may not have been caught yet when the kill came: it is caught now, once)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "incidents").iterdir()}
    assert incidents and {name: after.get(name) for name in incidents} == incidents
    assert len(after) == 4  # two incident files and their transcripts
    for job, count in attempts_before.items():
        assert len((out / "runs" / job / ATTEMPTS_FILE).read_text().splitlines()) == count == 1
    # ...and the interrupted job resumed from its checkpoint, paying for no kept sample again.
    for job in killed_running:
        run = out / "runs" / job
        assert len((run / ATTEMPTS_FILE).read_text().splitlines()) == 2
        kept_after = kept_messages(run)[0]
        assert not (kept_before[job] - kept_after), "a sample kept before the kill was lost"
        assert not (paid_messages(run, attempts={2}) & kept_before[job]), "a kept sample was paid for again"

    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["id"]: r for r in board["cases"]}
    assert set(rows) == {f"{o}.s0.{p}.hints" for o in PAIR for p in ("cot-only", "protocol")}
    for row in rows.values():
        assert row["state"] == "done" and row["verdict_correct"] is not None and row["brier"] is not None
        assert (out / row["report"]).is_file()
    summaries = {s["planner"]: s for s in board["leaderboard"]}
    assert set(summaries) == {"cot-only", "protocol"}
    for planner, s in summaries.items():
        mine = [r for r in rows.values() if r["planner"] == planner]
        right = sum(r["verdict_correct"] for r in mine)
        assert s["graded"] == 2 and s["verdict_accuracy"] == right / 2 and s["pairs"] == 1
        assert s["pairs_separated"] == int(right == 2)
        assert s["mean_brier"] == pytest.approx(sum(r["brier"] for r in mine) / 2, abs=1e-4)
        assert s["samples_per_case"] == sum(r["samples"] for r in mine) / 2
        for key in ("motivation_accuracy", "false_incrimination", "false_exoneration", "tokens_per_case"):
            assert key in s
    assert summaries["cot-only"]["samples_per_case"] == 0 < summaries["protocol"]["samples_per_case"]
    md = (out / "leaderboard.md").read_text()
    assert "| protocol | hints | single |" in md and "pairs separated" in md
    html = (out / "leaderboard.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http" not in html.replace("http-equiv", "")
    assert html.count('href="runs/') == 4


@pytest.mark.slow
async def test_replicates_draw_disjoint_samples_and_their_evidence_is_pooled(tmp_path: Path, clean_paths: None) -> None:
    subject = get_model("organism/oversight-subversion")
    incident, _ = await make_incident(subject, "oversight-config", backend="local", incident_id="sub")
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"r{seed}"
        await investigate(incident, run, planner="protocol", n=6, backend="local", seed=seed)
        runs.append((f"r{seed}", run))

    import sqlite3 as sql

    def experiments(run: Path) -> dict[str, tuple[str, list[int], list[str]]]:
        db = sql.connect(run / "case.sqlite")
        try:
            out: dict[str, tuple[str, list[int], list[str]]] = {}
            for eid, label in db.execute("SELECT id, label FROM experiments").fetchall():
                rows = db.execute("SELECT seed, output FROM samples WHERE experiment_id = ?", (eid,)).fetchall()
                out[eid] = (label, [r[0] for r in rows], [r[1] for r in rows])
            return out
        finally:
            db.close()

    a, b = experiments(runs[0][1]), experiments(runs[1][1])
    assert a and b and not set(a) & set(b), "replicates share experiment ids: the seed did not reach them"
    seeds_a = {s for _, seeds, _ in a.values() for s in seeds}
    seeds_b = {s for _, seeds, _ in b.values() for s in seeds}
    assert not seeds_a & seeds_b
    baseline_a = next(v for v in a.values() if v[0] == "baseline")
    baseline_b = next(v for v in b.values() if v[0] == "baseline")
    assert baseline_a[2] != baseline_b[2], "different seeds gave the same samples"

    out = tmp_path / "pooled"
    report, method, pooled = await aggregate_runs(
        runs, incident, out, planner="protocol", truth=registry.find_organism("oversight-subversion").truth
    )
    assert method == "pooled"
    labels_a = sorted(v[0] for v in a.values())
    assert sorted(arm.label for arm in pooled.arms) == sorted(set(labels_a) | {v[0] for v in b.values()})
    for arm in pooled.arms:
        assert arm.n == sum(m.n for m in arm.members if m.counted) and all(m.counted for m in arm.members)
    assert len(next(arm for arm in pooled.arms if arm.label == "baseline").members) == 2
    baseline = next(e for e in report.experiments if e.role.kind == "baseline")
    assert baseline.n == len(baseline_a[1]) + len(baseline_b[1])
    assert report.cost.samples == sum(json.loads((r / "report.json").read_text())["cost"]["samples"] for _, r in runs)
    assert report.verdict in {"misalignment", "mistake", "inconclusive"} and "pooled" in report.planner
    assert set(report.intentional.evidence) <= {arm.id for arm in pooled.arms}
    grade = json.loads((out / "grade.json").read_text())
    assert grade["truth"]["expected_verdict"] == "misalignment"
    assert (out / "report.html").is_file() and (out / "case.sqlite").is_file()


async def test_an_investigation_seed_moves_every_experiment_onto_its_own_stream(
    tmp_path: Path, clean_paths: None
) -> None:
    """Resampling and an importance scan under investigation seed 3: sample seeds start
    at its offset, and the scan's first arm is still recognised as the baseline (the
    same samples), so the two do not collide in the ledger."""
    from tests.factories import precommit_incident
    from tools.agent_tools import ToolContext, call_tool, seed_offset
    from tools.ledger import Ledger

    incident = precommit_incident("precommit-lazy-unaware")
    offset = seed_offset(3)
    assert seed_offset(0) == 0 and offset != seed_offset(4) and 0 < offset < 2**31
    results = {}
    for seed in (0, 3):
        ledger = Ledger(tmp_path / f"s{seed}")
        ctx = ToolContext(
            incident=incident, ledger=ledger, subject=get_model(incident.subject.model), default_n=4, seed=seed
        )
        done = await call_tool(ctx, "resample", {"label": "baseline", "n": 4, "sequential": "vs_baseline"})
        assert done.ok, done.content
        scan = await call_tool(ctx, "importance_scan", {"kind": "sentences", "n": 4})
        assert scan.ok, scan.content
        rows = ledger.experiments(incident.id)
        results[seed] = {r.id: sorted(s.seed for s in ledger.samples(r.id)) for r in rows}
        baselines = [r for r in rows if r.role.kind == "baseline"]
        assert len(baselines) == 1 and min(results[seed][baselines[0].id]) == seed_offset(seed)
        ledger.close()
    assert not set(results[0]) & set(results[3])
    assert all(min(seeds) >= offset for seeds in results[3].values() if seeds)


def test_suites(tmp_path: Path, clean_paths: None) -> None:
    suite = tmp_path / "suite"
    (suite / "organisms").mkdir(parents=True)
    shipped = organism_dirs()[-1]
    spec = yaml.safe_load((shipped / "shutdown-ambiguity.yaml").read_text())
    spec["playbook"] = str((shipped / spec["playbook"]).resolve())
    (suite / "organisms" / "mine.yaml").write_text(yaml.safe_dump({**spec, "id": "mine"}))
    (suite / "organisms" / "broken.yaml").write_text("id: broken\nscenario: nowhere\n")
    organisms, problems = load_suites([suite])
    assert [o.id for o in organisms] == ["mine"]
    assert organisms[0].organism_dir == str((suite / "organisms").resolve())
    assert organisms[0].truth.verdict == "mistake" and organisms[0].pair == spec["pair"]
    assert len(problems) == 1 and "broken.yaml" in problems[0].subject and problems[0].stage == "suite"

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.yaml").write_text(yaml.safe_dump({**spec, "id": "mine"}))
    with pytest.raises(BenchError, match="defined by both"):
        load_suites([suite, tmp_path / "other"])
    with pytest.raises(BenchError, match="no such suite"):
        load_suites([tmp_path / "missing"])
    both, _ = load_suites([SHIPPED / f"{PAIR[0]}.yaml", SHIPPED])  # a file and its own directory: once
    assert sorted(o.id for o in both) == sorted(p.stem for p in SHIPPED.glob("*.yaml"))

    # An output folder that ran a job with other settings is refused, not silently mixed.
    from evals.bench import Case, _submit, job_specs
    from investigator.executor import Executor

    case = Case(organism=next(o for o in both if o.id == PAIR[0]), seed=0)
    executor = Executor(tmp_path / "out")
    first = job_specs(case, tmp_path / "incident.yaml", BenchConfig(planners=["protocol"]), tmp_path / "out")
    for spec in first:
        _submit(executor, spec, tmp_path / "out")
        _submit(executor, spec, tmp_path / "out")  # the same job again: kept, not an error
    changed = job_specs(case, tmp_path / "incident.yaml", BenchConfig(planners=["protocol"], n=7), tmp_path / "out")
    with pytest.raises(BenchError, match="other settings"):
        _submit(executor, changed[0], tmp_path / "out")
    assert [s.seed for s in job_specs(case, tmp_path / "i.yaml", BenchConfig(parallel=3), tmp_path)][:3] == [0, 1, 2]

    with pytest.raises(ValueError, match="--parallel 2 or more"):
        BenchConfig(aggregate=True)
    with pytest.raises(ValueError, match="unknown planner"):
        BenchConfig(planners=["oracle"])


def test_an_organism_from_another_directory_runs_on_the_host_only_with_allow_host(
    tmp_path: Path, clean_paths: None
) -> None:
    """An organism outside the shipped suite is untrusted: with no engine and `--backend
    local` its catch is refused with the way out named, and `--allow-host` runs it."""
    suite = tmp_path / "suite"
    suite.mkdir()
    spec = yaml.safe_load((SHIPPED / f"{PAIR[1]}.yaml").read_text())
    spec["playbook"] = str((SHIPPED / spec["playbook"]).resolve())
    (suite / "theirs.yaml").write_text(yaml.safe_dump({**spec, "id": "theirs", "pair": None}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORENSICS_NO_EMBEDDINGS": "1"}

    def bench(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "investigator.cli", "bench", str(suite), "--planners", "cot-only"]
        args += ["--out", str(out), "--backend", "local", "--workers", "1", *extra]
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    refused = bench(tmp_path / "refused")
    assert "add --allow-host" in refused.stdout + refused.stderr
    assert not list((tmp_path / "refused").glob("incidents/*.yaml"))
    allowed = bench(tmp_path / "allowed", "--allow-host")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    board = json.loads((tmp_path / "allowed" / "leaderboard.json").read_text())
    assert [r["state"] for r in board["cases"]] == ["done"]
    job = json.loads(next((tmp_path / "allowed" / "runs").glob("*/job.json")).read_text())
    assert job["allow_host"] is True
