"""The `forensics` CLI: show, export and formats on real files, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from investigator.cli import app
from tests.conftest import EXAMPLES, FIXTURES, ROOT
from tools.formats.native import parse as parse_native

runner = CliRunner()
EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".json", ".jsonl", ".eval", ".yaml", ".yml"})


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_show_renders_every_example(path: Path) -> None:
    result = runner.invoke(app, ["show", str(path), "--max-chars", "300"])
    assert result.exit_code == 0, result.output
    assert "assistant" in result.output
    assert "tool call" in result.output
    if path.suffix in {".yaml", ".yml"}:
        assert "FLAGGED" in result.output
        assert "monitor:" in result.output


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_show_json_prints_the_normalized_transcript(path: Path) -> None:
    result = runner.invoke(app, ["show", str(path), "--json"])
    assert result.exit_code == 0, result.output
    transcript = parse_native(json.loads(result.stdout), source="stdout")
    assert transcript.turns()


def test_export_to_both_apis() -> None:
    path = EXAMPLES / "precommit_transcript.json"
    anthropic = json.loads(runner.invoke(app, ["export", str(path), "--to", "anthropic"]).stdout)
    assert anthropic["messages"][0]["role"] == "user"
    assert anthropic["tools"][0]["name"] == "execute_command"
    openai = json.loads(runner.invoke(app, ["export", str(path), "--to", "openai"]).stdout)
    assert openai["messages"][0]["role"] == "system"
    assert any(m.get("tool_calls") for m in openai["messages"])


def test_formats_lists_every_importer() -> None:
    result = runner.invoke(app, ["formats"])
    from tools.formats import FORMAT_NAMES

    for name in FORMAT_NAMES:
        assert name in result.output


def test_bad_input_is_one_clear_line_and_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"messages": [')
    proc = subprocess.run(
        [sys.executable, "-m", "investigator.cli", "show", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "broken.json" in proc.stderr
    assert "line 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_format_option_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "investigator.cli", "show", str(EXAMPLES / "precommit_transcript.json"), "-f", "word"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "unknown format 'word'" in proc.stderr


PARALLEL = FIXTURES / "formats" / "claude_code_parallel.jsonl"


def test_export_to_anthropic_works_on_a_session_with_parallel_calls() -> None:
    result = runner.invoke(app, ["export", str(PARALLEL), "--to", "anthropic"])
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)
    results = [b["tool_use_id"] for b in params["messages"][2]["content"]]
    assert results == ["toolu_01Rd3Qm7Kx2Lp9Wn4Vt6Ys8A", "toolu_01Rd3Qm7Kx2Lp9Wn4Vt6Ys8B"]


def test_a_bad_line_is_an_error_unless_skipped_and_show_prints_what_was_skipped(tmp_path: Path) -> None:
    lines = PARALLEL.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[9] = lines[9][:40] + "\n"
    bad = tmp_path / "session.jsonl"
    bad.write_text("".join(lines), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "investigator.cli", "show", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert "line 10" in proc.stderr and "--skip-bad-lines" in proc.stderr
    result = runner.invoke(app, ["show", str(bad), "--skip-bad-lines", "--max-chars", "80"])
    assert result.exit_code == 0, result.output
    assert "import warning: line 10: skipped a bad line" in result.stderr
    assert "placeholder result" in result.stderr
    assert "import warning" not in result.stdout
