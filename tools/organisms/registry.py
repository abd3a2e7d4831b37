"""Finding organism specs: in directories named by `--organisms PATH`, the
``FORENSICS_ORGANISMS`` environment variable (os.pathsep-separated), and directories
that installed packages declare in the ``model_forensics.organism_dirs`` entry-point
group (evals declares its own ``evals/organisms``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from tools.organisms.spec import OrganismError, OrganismSpec, load_organism_file

_EXTRA_DIRS: list[Path] = []


def add_organism_dir(path: str | Path) -> None:
    """Search `path` too (what `--organisms PATH` does)."""
    p = Path(path)
    if not p.is_dir():
        raise OrganismError(f"organism directory {p} does not exist")
    if p not in _EXTRA_DIRS:
        _EXTRA_DIRS.insert(0, p)


def organism_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    """Where organism specs are looked for, first match wins."""
    dirs = [Path(p) for p in extra] + list(_EXTRA_DIRS)
    env = os.environ.get("FORENSICS_ORGANISMS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    for ep in entry_points(group="model_forensics.organism_dirs"):
        dirs.append(Path(ep.load()()))
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _spec_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.is_file())


def list_organisms(extra: Sequence[str | Path] = ()) -> list[OrganismSpec]:
    """Every organism found, each id once (earlier directories win)."""
    found: dict[str, OrganismSpec] = {}
    for directory in organism_dirs(extra):
        for path in _spec_files(directory):
            spec = load_organism_file(path)
            found.setdefault(spec.id, spec)
    return list(found.values())


def find_organism(organism_id: str, extra: Sequence[str | Path] = ()) -> OrganismSpec:
    """The spec with this id (file stem or `id` field)."""
    dirs = organism_dirs(extra)
    for directory in dirs:
        candidate = directory / f"{organism_id}.yaml"
        if candidate.is_file():
            return load_organism_file(candidate)
    for spec in list_organisms(extra):
        if spec.id == organism_id:
            return spec
    known = ", ".join(sorted(s.id for s in list_organisms(extra))) or "none"
    raise OrganismError(
        f"no organism {organism_id!r} in {', '.join(map(str, dirs)) or 'no directory'} (known: {known})"
    )
