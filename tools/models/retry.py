"""The one retry policy every API-backed model client shares, built on tenacity.

A backend wraps each HTTP request in `call_with_retries` and sorts its failures in two:

* `TransientError` — worth trying again: rate limits (429), overload (Anthropic's 529),
  server errors (5xx), request timeouts (408), lock conflicts (409), timeouts and
  dropped connections. These are retried with exponential backoff and jitter, waiting
  at least as long as the server's ``retry-after`` (or ``retry-after-ms``) header asks;
* `ModelAPIError` — anything else (a 400 naming a bad field, a 401, a 404 model):
  raised at once, because sending the same request again cannot succeed.

When the attempts run out, the last transient failure becomes a `ModelAPIError` with
its HTTP status and the API's own message. A server that asks to wait longer than
`RetryPolicy.max_retry_after` is not waited for: the call fails at once, saying how
long the server wanted, instead of hanging a whole investigation on one request.

The SDKs' own retry loops must be turned off (Anthropic: ``max_retries=0``) so this
policy is the only one: otherwise the attempt counts multiply and ``retry-after`` is
honoured twice.

Everything that costs wall-clock time is injectable (`RetryPolicy.wait`,
`RetryPolicy.sleep`), so tests retry instantly and can assert on the waits requested.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from tools.models.base import ModelError

T = TypeVar("T")

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""4xx statuses worth retrying: request timeout, conflict (a lock timeout at the
provider), rate limit. Every 5xx (including Anthropic's 529 "overloaded") is retried too."""


def is_retryable_status(status: int, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a failed HTTP status is transient. A server's ``x-should-retry: true`` or
    ``false`` header overrides the status (Anthropic and OpenAI both send it)."""
    hint = (headers or {}).get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false":
        return False
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long a response asks the client to wait, in seconds, or None if it does not
    say. Reads ``retry-after-ms`` (milliseconds, more precise), then ``retry-after`` as
    seconds or as an HTTP date. Negative or unparseable values count as not saying."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _finite(raw_ms)
        if seconds is not None and seconds >= 0:
            return seconds / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _finite(raw)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class TransientError(Exception):
    """A failure worth retrying. Raised by a backend's request function, caught by
    `call_with_retries`; callers never see it (it becomes a `ModelAPIError`)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class ModelAPIError(ModelError):
    """A model API call failed for good. `status` is the HTTP status (None for a timeout
    or a connection that never answered), `api_message` what the API said, `attempts`
    how many requests were made (1 for an error that is not worth retrying)."""

    def __init__(self, model: str, api_message: str, *, status: int | None = None, attempts: int = 1) -> None:
        self.model = model
        self.api_message = api_message
        self.status = status
        self.attempts = attempts
        where = f"HTTP {status}" if status is not None else "no response"
        tail = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{model}: {where}: {api_message}{tail}")


Wait = Callable[[RetryCallState], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The backoff before attempt *k+1* is
    ``min(max_wait, initial_wait * 2**(k-1)) + uniform(0, jitter)`` seconds, or whatever
    `wait` returns if given; either way never less than the server's ``retry-after``."""

    max_attempts: int = 6
    """Requests in all, the first included."""
    initial_wait: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    max_retry_after: float = 300.0
    """A ``retry-after`` longer than this fails the call instead of sleeping through it."""
    wait: Wait | None = None
    """Replaces the exponential backoff (tests pass ``lambda state: 0``)."""
    sleep: Sleep = field(default=asyncio.sleep)
    """How to wait (tests pass a recorder that does not sleep)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ModelError(f"max_attempts must be at least 1 (got {self.max_attempts})")
        if min(self.initial_wait, self.max_wait, self.jitter, self.max_retry_after) < 0:
            raise ModelError("retry waits must not be negative")

    def backoff(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: the backoff, raised to the server's
        ``retry-after`` when it asked for longer."""
        if self.wait is not None:
            base = self.wait(state)
        else:
            exponent = max(0, state.attempt_number - 1)
            base = min(self.max_wait, self.initial_wait * 2.0 ** min(exponent, 64)) + random.uniform(0, self.jitter)
        asked = _retry_after_of(state)
        return max(base, asked or 0.0)

    def should_stop(self, state: RetryCallState) -> bool:
        """Stop after `max_attempts`, or at once when the server asks for a longer wait
        than `max_retry_after`."""
        if state.attempt_number >= self.max_attempts:
            return True
        asked = _retry_after_of(state)
        return asked is not None and asked > self.max_retry_after


def _retry_after_of(state: RetryCallState) -> float | None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    return exc.retry_after if isinstance(exc, TransientError) else None


async def call_with_retries(request: Callable[[], Awaitable[T]], *, policy: RetryPolicy, model: str) -> T:
    """Run `request` until it succeeds, raises something other than `TransientError`,
    or the policy gives up; then the last `TransientError` becomes a `ModelAPIError`
    naming `model`, the status, the API's message and the number of attempts."""

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s: attempt %d failed (%s); retrying in %.1fs", model, state.attempt_number, exc, wait)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        stop=policy.should_stop,
        wait=policy.backoff,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await request()
    except TransientError as exc:
        attempts = int(retrying.statistics.get("attempt_number", 1))
        message = exc.message
        if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
            message += (
                f"; the server asked to retry after {exc.retry_after:g}s, "
                f"longer than max_retry_after={policy.max_retry_after:g}s"
            )
        raise ModelAPIError(model, message, status=exc.status, attempts=attempts) from exc
    raise AssertionError("unreachable: tenacity either returns a result or re-raises")  # pragma: no cover


async def gather_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently and return their results in order. On the first
    failure the others are cancelled (so a failed resample does not keep spending) and
    that failure is raised as is, not wrapped in an ExceptionGroup."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # cancelled from outside: take the children down too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t in done and not t.cancelled() and t.exception() is not None), None)
    if failed is not None:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        error = failed.exception()
        assert error is not None
        raise error
    return [t.result() for t in tasks]


__all__ = [
    "RETRYABLE_STATUSES",
    "ModelAPIError",
    "RetryPolicy",
    "TransientError",
    "call_with_retries",
    "gather_all",
    "is_retryable_status",
    "retry_after_seconds",
]
