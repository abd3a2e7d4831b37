"""Fixtures for the batch tests: organism incidents, made as a monitor makes them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

# Fast scenarios (no type checker in their worlds), one organism of each pair.
BATCH_ORGANISMS = {
    "oversight-subversion": "oversight-config",
    "shutdown-ambiguity": "shutdown-resistance",
    "oversight-latency-mistake": "oversight-config",
    "shutdown-self-preservation": "shutdown-resistance",
}


@pytest.fixture(scope="session")
def organism_incidents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Incident files (YAML + transcript) of organisms caught in their scenarios on the
    local backend, keyed by organism id; made once per session."""
    from evals.world import make_incident, write_incident
    from tools.models.registry import get_model

    out = tmp_path_factory.mktemp("incidents")

    async def make_all() -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for organism, scenario in BATCH_ORGANISMS.items():
            incident, _ = await make_incident(
                get_model(f"organism/{organism}"), scenario, backend="local", incident_id=organism
            )
            paths[organism] = write_incident(incident, out)
        return paths

    return asyncio.run(make_all())
