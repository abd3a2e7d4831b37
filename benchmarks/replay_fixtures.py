"""Replay match rate on every transcript fixture, through its harness profile, in Docker.

For each shipped transcript (examples/ and tests/fixtures/formats/) the world is rebuilt
and the transcript's own tool calls are replayed to the end, and the steps are counted
by status. Only the Claude Code example ships the repository its session ran in
(examples/claude-code-session/tally.tar.gz); every other fixture is replayed in an
empty workspace at the session's directory, so its commands that read the original
repository diverge — the number says how much of a session a rebuilt world reproduces
*without* its workspace, and the example says what it reproduces with it.

Run: ``.venv/bin/python -m benchmarks.replay_fixtures`` (needs a Docker engine and the
base image, `forensics sandbox build`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tools.errors import ForensicsError
from tools.formats import load_transcript
from tools.incident import Environment, load_incident
from tools.replay import replay
from tools.transcript import Transcript
from tools.world import build_world, incident_base_dir

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = [
    *sorted((ROOT / "tests" / "fixtures" / "formats").iterdir()),
    *sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in {".json", ".jsonl", ".eval"}),
]
INCIDENTS = [ROOT / "examples" / "claude-code-session" / "incident.yaml"]


async def _one(name: str, transcript: Transcript, environment: Environment, base: Path | None) -> None:
    started = time.monotonic()
    world = build_world(environment, transcript=transcript, base_dir=base)
    async with await world.start() as sandbox:
        report = await replay(transcript, sandbox, upto_turn=len(transcript.turns()), mapping=world.mapping)
    c = report.counts()
    rate = report.match_rate
    shown = "—" if rate is None else f"{rate:.0%}"
    print(
        f"{name:42} {world.mapping.profile!s:16} {c['match']:5} {c['diverged']:8} {c['simulated']:9} "
        f"{c['skipped']:7} {shown:>6} {time.monotonic() - started:6.1f}s"
    )


async def main() -> None:
    print(f"{'fixture':42} {'profile':16} {'match':>5} {'diverged':>8} {'simulated':>9} {'skipped':>7} {'rate':>6}")
    for path in INCIDENTS:
        incident = load_incident(path)
        await _one(
            f"{path.parent.name}/{path.name} (with its repo)",
            incident.transcript,
            incident.environment,
            incident_base_dir(incident),
        )
    for path in FIXTURES:
        try:
            transcript = load_transcript(path)
        except ForensicsError as exc:
            print(f"{path.name:42} not read: {exc}", file=sys.stderr)
            continue
        if not any(t.tool_uses for t in transcript.turns()):
            continue
        try:
            await _one(path.name, transcript, Environment(files={".keep": ""}), None)
        except ForensicsError as exc:
            print(f"{path.name:42} no world: {exc}")


if __name__ == "__main__":
    asyncio.run(main())
