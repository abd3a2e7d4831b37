"""Reading a large transcript: the bounded reader against the old YAML-first path.

Run: ``.venv/bin/python -m benchmarks.parsing [--mb 10] [--repeats 3]``

Writes an Anthropic-format transcript of about ``--mb`` megabytes and prints, side by
side in one run (CPU seconds, best of ``--repeats``):

- ``is_incident_file`` (what ``forensics show`` asks first) — now a stat and nothing
  else for a file larger than an incident may be — against ``yaml.safe_load`` (what it
  did before: every ``.json`` was parsed as YAML first, ~100 s for 9.5 MB), per MiB;
- ``load_transcript`` — bounded JSON read and checked (size, depth, Unicode), format
  detection and import — and, of that, ``parse_json_bounded`` against plain
  ``json.loads`` (the price of the depth and Unicode checks);
- the quoting of the whole transcript for a model (`tools.quoting.quote_transcript`)
  against plain ``Transcript.render``.

Target: a 10 MB transcript loads in seconds, and the checks cost well under the parse.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _transcript(target_bytes: int) -> str:
    messages: list[dict[str, Any]] = []
    i = 0
    size = 0
    while size < target_bytes:
        turn: list[dict[str, Any]] = [
            {"role": "user", "content": f"Round {i}: run the tests. " + "lorem ipsum dolor é " * 200},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I will run them. " * 150, "signature": "sig"},
                    {"type": "tool_use", "id": f"t{i}", "name": "bash", "input": {"command": "pytest -q"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok " * 2000}]},
        ]
        size += len(json.dumps(turn))
        messages += turn
        i += 1
    messages.append({"role": "assistant", "content": "All tests pass."})
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages}, ensure_ascii=False)


def _cpu(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before-mb", type=float, default=0.5, help="size for the (slow) old YAML path")
    args = parser.parse_args()

    import yaml

    from tools.formats import load_transcript
    from tools.formats.base import parse_json_bounded
    from tools.incident import is_incident_file
    from tools.quoting import quote_transcript

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.json"
        text = _transcript(int(args.mb * 1024 * 1024))
        path.write_text(text, encoding="utf-8")
        print(f"transcript: {path.stat().st_size / 2**20:.1f} MiB")
        rows: list[tuple[str, float, str, float]] = []
        # The old path, pure-Python yaml.safe_load of the whole file, is measured on a
        # smaller transcript (about 10 s per MiB) and compared per MiB.
        small = _transcript(int(args.before_mb * 1024 * 1024))
        before = _cpu(lambda: yaml.safe_load(small), 1) / (len(small) / 2**20)
        after = _cpu(lambda: is_incident_file(path), args.repeats) / (path.stat().st_size / 2**20)
        rows.append(("is_incident_file /MiB", after, "yaml.safe_load /MiB (before)", before))
        rows.append(
            (
                "parse_json_bounded",
                _cpu(lambda: parse_json_bounded(text, source="big.json"), args.repeats),
                "json.loads",
                _cpu(lambda: json.loads(text), args.repeats),
            )
        )
        transcript = load_transcript(path)
        rows.append(
            (
                "quote_transcript",
                _cpu(lambda: quote_transcript(transcript, max_chars=1500), args.repeats),
                "Transcript.render",
                _cpu(lambda: transcript.render(max_chars=1500), args.repeats),
            )
        )
        load = _cpu(lambda: load_transcript(path), args.repeats)
    print(f"{'load_transcript':24} {load:8.3f} s CPU (read, checks, detection, import)")
    for name, ours, other_name, other in rows:
        print(f"{name:24} {ours:8.3f} s   vs {other_name:26} {other:8.3f} s   ratio {ours / max(other, 1e-9):.3f}")


if __name__ == "__main__":
    main()
