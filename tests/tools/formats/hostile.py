"""Run untrusted files through the Python API and the `forensics show` command, each
in a forked child process with limits, and report how each ended, how long it took
and its peak memory.

    python -m tests.tools.formats.hostile CASES.json RESULTS.json

CASES.json is a list of ``{"name", "path", "kind": "transcript"|"incident", "via":
"api"|"cli"}``. The parent imports the toolkit and the CLI once, then forks a child
per case, so each case costs milliseconds rather than an interpreter start. A child
runs under an address-space limit (``RLIMIT_AS``: its parent's size plus 2 GiB, so a
bomb cannot take the machine down) and a hard alarm (``HARD_LIMIT_S``); the parent
reads its peak resident set from ``wait4``. Peak RSS includes what the child shares
with its parent (the imported modules), so it is an upper bound on what the input
itself cost.

A result is ``{"name", "via", "outcome": "ok"|"error"|"crash"|"killed", "seconds",
"cpu_seconds", "max_rss_bytes", ...}`` (peak RSS: the larger of ``wait4``'s and the
child's own VmHWM): for the API, the error's type, message, source and location;
for the CLI, the exit code and what it wrote to stderr. "crash" carries the
traceback of anything that is not the toolkit's own error (or, for the CLI, anything
that escaped it); "killed" means the child died by a signal (the alarm, or memory).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HARD_LIMIT_S = 60
"""A child still running after this long is killed (the tests require far less)."""
EXTRA_ADDRESS_SPACE = 2 * 1024**3


def _status_field(name: str) -> int:
    """A size from /proc/self/status (VmSize, VmHWM: peak resident set), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    return 0


def _run_api(case: dict[str, Any]) -> dict[str, Any]:
    from tools.errors import ForensicsError
    from tools.formats import load_transcript
    from tools.incident import load_incident

    try:
        if case["kind"] == "incident":
            load_incident(case["path"])
        else:
            load_transcript(case["path"])
    except ForensicsError as exc:
        return {
            "outcome": "error",
            "type": type(exc).__name__,
            "message": str(exc),
            "source": getattr(exc, "source", None),
            "location": getattr(exc, "location", None),
        }
    except BaseException:
        return {"outcome": "crash", "traceback": traceback.format_exc()}
    return {"outcome": "ok"}


def _run_cli(case: dict[str, Any]) -> dict[str, Any]:
    from investigator.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = ["forensics", "show", case["path"]]
        code: Any = 0
        crash = None
        try:
            main()
        except SystemExit as exc:
            code = exc.code if exc.code is not None else 0
        except BaseException:
            crash = traceback.format_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        out.seek(0, os.SEEK_END)
        written = out.tell()
    if crash is not None:
        return {"outcome": "crash", "traceback": crash, "stderr": stderr[-4000:]}
    return {
        "outcome": "ok" if code == 0 else "error",
        "exit_code": code,
        "stderr": stderr[-4000:],
        "stdout_bytes": written,
    }


def run_case(case: dict[str, Any], address_space: int) -> dict[str, Any]:
    """Fork, run the case in the child under limits, and measure it from the parent."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(HARD_LIMIT_S)
            result = _run_api(case) if case["via"] == "api" else _run_cli(case)
            result["vm_hwm_bytes"] = _status_field("VmHWM")
            Path(result_path).write_text(json.dumps(result), encoding="utf-8")
        finally:
            os._exit(0)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    try:
        text = Path(result_path).read_text(encoding="utf-8")
        result = json.loads(text) if text else {}
    finally:
        Path(result_path).unlink(missing_ok=True)
    if os.WIFSIGNALED(status) or not result:
        result = {"outcome": "killed", "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
    return {
        "name": case["name"],
        "via": case["via"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_bytes": max(usage.ru_maxrss * 1024, int(result.get("vm_hwm_bytes", 0))),
        **result,
    }


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    import investigator.cli  # noqa: F401  (imported once, shared by every child)
    import tools.formats.inspect_log
    import tools.incident  # noqa: F401

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    address_space = _status_field("VmSize") + EXTRA_ADDRESS_SPACE
    results = [run_case(case, address_space) for case in cases]
    Path(sys.argv[2]).write_text(json.dumps({"baseline_rss_bytes": baseline, "results": results}), encoding="utf-8")


if __name__ == "__main__":
    main()
