"""Where evals keeps its data, for entry points and loaders."""

from __future__ import annotations

from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent


def organisms_dir() -> Path:
    """The directory of the shipped organism specs."""
    return EVALS_DIR / "organisms"


def scenarios_dir() -> Path:
    """The directory of the shipped scenarios."""
    return EVALS_DIR / "scenarios"
