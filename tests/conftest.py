"""Shared fixtures: the Docker engine (required in CI, skipped with the reason elsewhere)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.docker import owner_id
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
    mine = f"{LABEL}.owner={owner_id()}"
    leftovers = client.containers.list(all=True, filters={"label": mine})
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"tests leaked labelled containers: {[c.name for c in leftovers]}"


@pytest.fixture(scope="session")
def busybox_tag(docker: Any) -> str:
    """The busybox image, imported from the host's static busybox."""
    from sandboxes.images import busybox_image

    return busybox_image(docker)


@pytest.fixture(scope="session")
def base_image(docker: Any) -> str:
    """The Debian base image (python3, git, mypy), built once (minutes) and cached by
    its recipe hash. Building needs root and debootstrap; CI has both."""
    from sandboxes.errors import ImageBuildError
    from sandboxes.images import build_base_image

    try:
        return build_base_image(docker)
    except ImageBuildError as exc:
        if REQUIRE_DOCKER:
            pytest.fail(f"FORENSICS_REQUIRE_DOCKER=1 but the base image cannot be built: {exc}")
        pytest.skip(f"base image unavailable: {exc}")
