"""Finding the Docker engine and saying clearly why it cannot be used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sandboxes.errors import EngineUnavailable

LABEL = "model-forensics"
"""Every container and image we create carries this label (value: the owning role),
so stale ones can be found and removed."""


@dataclass(frozen=True)
class EngineStatus:
    """Whether a Docker engine answers, its version, or why not."""

    available: bool
    detail: str


def docker_client(timeout: int = 60) -> Any:
    """A docker SDK client for the engine named by DOCKER_HOST (default: the local
    socket). Raises `EngineUnavailable` with the reason when none answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a runtime dependency
        raise EngineUnavailable(f"the docker SDK is not installed ({exc}); pip install docker") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnavailable(
            f"no Docker engine answered at {host} ({exc.__class__.__name__}: {exc}); "
            "start one (e.g. `dockerd &`, or `bash .ci/run` which installs and starts it) or set DOCKER_HOST"
        ) from None
    return client


def engine_status() -> EngineStatus:
    """Probe the engine without raising."""
    try:
        client = docker_client(timeout=10)
    except EngineUnavailable as exc:
        return EngineStatus(False, str(exc))
    version = client.version()
    return EngineStatus(
        True, f"Docker engine {version.get('Version', '?')} ({version.get('Os', '?')}/{version.get('Arch', '?')})"
    )
