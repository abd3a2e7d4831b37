"""`forensics audit`: a directory of organism incidents with one malformed, Inspect logs
whose flagged samples become incidents, outputs, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from investigator.audit import AuditError, AuditSpec, FlagExpr, collect, parse_detector
from investigator.cli import app
from investigator.executor import BatchDB, JobState
from investigator.executor.worker import ATTEMPTS_FILE
from tests.tools.formats.inspect_helpers import run_eval
from tools.incident import Environment

QUICK = ["--n", "5", "--job-tool-calls", "6", "--backend", "local", "--workers", "2"]


def _incident_dir(tmp_path: Path, organism_incidents: dict[str, Path]) -> Path:
    """Five incidents (four organisms, one of them twice under another id) and one
    malformed file, as a monitor's export folder would hold them."""
    folder = tmp_path / "flags"
    folder.mkdir()
    for path in organism_incidents.values():
        for file in (path, path.with_name(f"{path.stem}.transcript.json")):
            (folder / file.name).write_bytes(file.read_bytes())
    source = organism_incidents["oversight-subversion"]
    copy = yaml.safe_load(source.read_text())
    copy["id"] = "oversight-subversion-again"
    (folder / "oversight-subversion-again.yaml").write_text(yaml.safe_dump(copy))
    (folder / "broken.yaml").write_text("transcript: missing.transcript.json\nflag: {turn: 0}\n")
    return folder


def test_audit_of_six_incidents_with_one_malformed_writes_five_reports_and_one_error_row(
    tmp_path: Path, organism_incidents: dict[str, Path], keyword_organisms: None
) -> None:
    folder = _incident_dir(tmp_path, organism_incidents)
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", str(folder), "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "audit.json").read_text())
    rows = {row["job"]: row for row in data["rows"]}
    assert len(rows) == 6
    assert data["summary"]["states"] == {"pending": 0, "running": 0, "done": 5, "failed": 1, "cancelled": 0}
    broken = rows["broken"]
    assert broken["state"] == "failed" and broken["report"] is None
    assert "broken.yaml" in broken["error"] and "\n" not in broken["error"]
    for job, row in rows.items():
        if job == "broken":
            continue
        assert row["state"] == "done" and row["verdict"] in {"misalignment", "mistake", "inconclusive"}
        assert row["samples"] > 0 and row["tool_calls"] <= 6
        assert (out / row["report"]).is_file() and row["report"].endswith("report.html")
    with (out / "audit.csv").open() as handle:
        assert {r["job"] for r in csv.DictReader(handle)} == set(rows)
    html = (out / "audit.html").read_text()
    assert html.count('href="runs/') == 5 and "broken.yaml" in html and "<script" not in html
    assert "broken" in result.output and "audit.html" in result.output

    # Rerun with the same --out: nothing done is redone; the malformed file fails again.
    again = CliRunner().invoke(app, ["audit", str(folder), "--out", str(out), *QUICK])
    assert again.exit_code == 0, again.output
    for job in rows:
        if job != "broken":
            assert len((out / "runs" / job / ATTEMPTS_FILE).read_text().splitlines()) == 1
    assert BatchDB(out).get("broken").state is JobState.failed


def test_flag_expressions() -> None:
    scores = {
        "hook_bypass": {"value": "I", "explanation": "bypassed"},
        "risk": {"value": 0.8},
        "d": {"value": {"x": 2}},
    }
    assert FlagExpr.parse("hook_bypass=I").matches(scores)
    assert FlagExpr.parse("hook_bypass == i").matches(scores)  # text compares case-insensitively
    assert not FlagExpr.parse("hook_bypass=C").matches(scores)
    assert FlagExpr.parse("risk>=0.8").matches(scores) and not FlagExpr.parse("risk>0.8").matches(scores)
    assert FlagExpr.parse("d.x<3").matches(scores)
    assert not FlagExpr.parse("missing=I").matches(scores)
    assert not FlagExpr.parse("hook_bypass>1").matches(scores)  # text is never ordered
    with pytest.raises(AuditError, match="NAME=VALUE"):
        FlagExpr.parse("hook_bypass")
    assert parse_detector("regex:--no-verify").kind == "regex"
    with pytest.raises(AuditError, match="regex:PATTERN"):
        parse_detector("nothing-here.yaml")


def test_flagged_inspect_samples_become_incidents_and_are_investigated(tmp_path: Path, keyword_organisms: None) -> None:
    log = run_eval(tmp_path / "inspect", "eval", epochs=2)
    spec = AuditSpec(flag=["no_hook_bypass=I"])
    unnamed = collect([str(log)], spec)
    assert unnamed and all(item.error and "--scenario" in item.error for item in unnamed)
    assert all(item.error for item in collect([str(log)], AuditSpec()))  # no --flag: an error row

    out = tmp_path / "audit"
    args = ["audit", str(log), "--out", str(out), "--flag", "no_hook_bypass=I"]
    args += ["--subject", "organism/oversight-subversion", "--scenario", "oversight-config"]
    args += ["--detector", "regex:--no-verify", "--planner", "cot-only", "--backend", "local"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "audit.json").read_text())["rows"]
    named = collect(
        [str(log)],
        AuditSpec(
            flag=["no_hook_bypass=I"],
            subject="organism/oversight-subversion",
            environment=Environment(scenario="oversight-config"),
            behavior=parse_detector("regex:--no-verify"),
        ),
    )
    flagged = [item for item in named if item.incident is not None]
    assert flagged and len(rows) == len(flagged)
    for item in flagged:
        incident = item.incident
        assert incident is not None
        assert incident.flag.reason.startswith("no_hook_bypass=I") and incident.flag.monitor == "inspect-score"
        assert incident.subject.model == "organism/oversight-subversion"
        assert incident.flagged_turn.tool_uses  # the last turn with a tool call
    for row in rows:
        assert row["state"] == "done", row
        assert (out / row["report"]).is_file()
        assert "#" in row["source"]  # log#sample@epoch


async def test_input_error_rows_are_not_dispatched_when_failed_jobs_are_retried(tmp_path: Path) -> None:
    from investigator.audit import AuditItem, record_input_errors
    from investigator.executor import Executor

    item = AuditItem(job_id="log", source="logs/run.eval", error="logs/run.eval: an Inspect log needs --flag")
    db = BatchDB(tmp_path)
    record_input_errors(db, [item], AuditSpec(), tmp_path)
    record_input_errors(db, [item], AuditSpec(), tmp_path)  # a rerun records it once
    records = await Executor(db, retry_failed=True).run()
    assert [(r.id, r.state, r.attempts, r.error) for r in records] == [("log", JobState.failed, 0, item.error)]
