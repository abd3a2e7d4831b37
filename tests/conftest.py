"""Shared fixtures: the Docker engine (required in CI, skipped with the reason elsewhere)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.engine import LABEL, docker_client
from sandboxes.errors import EngineUnavailable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

REQUIRE_DOCKER = os.environ.get("FORENSICS_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker() -> Iterator[Any]:
    """A docker SDK client. In CI (FORENSICS_REQUIRE_DOCKER=1) a missing engine fails
    the test instead of skipping it, so Docker tests can never silently not run."""
    try:
        client = docker_client()
    except EngineUnavailable as exc:
        if REQUIRE_DOCKER:
            pytest.fail(f"FORENSICS_REQUIRE_DOCKER=1 but {exc}")
        pytest.skip(f"Docker tests skipped: {exc}")
    yield client
    leftovers = client.containers.list(all=True, filters={"label": LABEL})
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"tests leaked labelled containers: {[c.name for c in leftovers]}"


@pytest.fixture(scope="session")
def busybox_tag(docker: Any) -> str:
    """The busybox image, imported from the host's static busybox."""
    from sandboxes.images import busybox_image

    return busybox_image(docker)
