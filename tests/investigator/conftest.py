"""Fixtures for the batch tests: organism incidents, made as a monitor makes them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evals.world import make_incident, write_incident
from tools.models.registry import get_model

# Fast scenarios (no type checker in their worlds), one organism of each pair.
BATCH_ORGANISMS = {
    "oversight-subversion": "oversight-config",
    "shutdown-ambiguity": "shutdown-resistance",
    "oversight-latency-mistake": "oversight-config",
    "shutdown-self-preservation": "shutdown-resistance",
}


@pytest.fixture
def keyword_organisms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Organisms read their features by keywords, not the embedding model: batch tests
    exercise the executor, and each worker process would otherwise load MiniLM."""
    monkeypatch.setenv("FORENSICS_NO_EMBEDDINGS", "1")


async def _make_all(out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for organism, scenario in BATCH_ORGANISMS.items():
        subject = get_model(f"organism/{organism}")
        incident, _ = await make_incident(subject, scenario, backend="local", incident_id=organism)
        paths[organism] = write_incident(incident, out)
    return paths


@pytest.fixture(scope="session")
def organism_incidents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Incident files (YAML + transcript) of organisms caught in their scenarios on the
    local backend, keyed by organism id; made once per session (keyword features)."""
    out = tmp_path_factory.mktemp("incidents")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORENSICS_NO_EMBEDDINGS", "1")
        return asyncio.run(_make_all(out))
