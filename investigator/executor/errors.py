"""Errors of the executor."""

from __future__ import annotations

from tools.errors import ForensicsError


class ExecutorError(ForensicsError):
    """A batch cannot be run as asked: a bad job spec, an unknown job, a conflicting
    resubmission, a batch database in use by another executor, or an unreachable or
    unsuitable Ray cluster. The message says what to change."""
