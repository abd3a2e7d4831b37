"""Errors of the service."""

from __future__ import annotations

from tools.errors import ForensicsError


class ServiceError(ForensicsError):
    """The service cannot start or serve as configured."""


class ServiceConfigError(ServiceError):
    """A config file, environment variable or flag holds a value the service cannot use;
    the message names it and what was expected."""


class RequestRejected(ServiceError):
    """A request the service refuses, with the HTTP status to answer and a message that
    says what to change."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
