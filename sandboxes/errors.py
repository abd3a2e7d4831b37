"""Errors raised by sandboxes and image building."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class for sandbox failures."""


class EngineUnavailable(SandboxError):
    """No container engine answered; the message says what was tried and how to fix it."""


class ImageBuildError(SandboxError):
    """An image could not be built from its inputs."""
