"""Errors raised by sandboxes and image building."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class for sandbox failures."""


class EngineUnavailable(SandboxError):
    """No container engine answered; the message says what was tried and how to fix it."""


class ImageBuildError(SandboxError):
    """An image could not be built from its inputs."""


class LocalSandboxUnavailable(SandboxError):
    """The local backend cannot isolate commands here (bubblewrap missing or refused to
    create namespaces); it refuses rather than running them with less isolation."""


class HostExecutionRefused(SandboxError):
    """An untrusted incident would run on this machine: no Docker engine answered, or the
    local backend was asked for without ``--allow-host``. The message says how to proceed."""
