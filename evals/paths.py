"""Where evals keeps its data, and where else to look for it.

Scenarios are found, first match wins, in directories given to a loader (`extra`),
directories added with `add_scenario_dir` (what ``--scenarios DIR`` does), the
``FORENSICS_SCENARIOS`` environment variable (os.pathsep-separated; worker processes
inherit it), and last the scenarios shipped in ``evals/scenarios``. Organisms have the
same search path in `tools.organisms.registry` (``--organisms`` /
``FORENSICS_ORGANISMS``). A directory of scenarios holds one folder per scenario,
``<dir>/<id>/scenario.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent
SCENARIOS_ENV = "FORENSICS_SCENARIOS"

_EXTRA_SCENARIO_DIRS: list[Path] = []


def organisms_dir() -> Path:
    """The directory of the shipped organism specs."""
    return EVALS_DIR / "organisms"


def scenarios_dir() -> Path:
    """The directory of the shipped scenarios."""
    return EVALS_DIR / "scenarios"


def add_scenario_dir(path: str | Path, *, export: bool = True) -> Path:
    """Search `path` for scenarios too, before the shipped ones (``--scenarios DIR``).
    With `export`, the directory is also put on ``FORENSICS_SCENARIOS`` so processes
    started from this one (investigation workers) find the same scenarios."""
    p = Path(path).resolve()
    if not p.is_dir():
        from evals.scenario import ScenarioError

        raise ScenarioError(f"scenario directory {path} does not exist (give a folder of <id>/scenario.yaml)")
    if p not in _EXTRA_SCENARIO_DIRS:
        _EXTRA_SCENARIO_DIRS.insert(0, p)
    if export:
        current = [d for d in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep) if d]
        os.environ[SCENARIOS_ENV] = os.pathsep.join(dict.fromkeys([str(p), *current]))
    return p


def scenario_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    """Where scenarios are looked for, in order (see module doc); the shipped folder last."""
    dirs = [Path(p) for p in extra] + list(_EXTRA_SCENARIO_DIRS)
    dirs += [Path(p) for p in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep) if p]
    dirs.append(scenarios_dir())
    seen: list[Path] = []
    for d in dirs:
        resolved = d.resolve()
        if resolved not in seen:
            seen.append(resolved)
    return seen
