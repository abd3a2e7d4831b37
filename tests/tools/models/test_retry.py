"""The shared retry policy: which failures are retried, how long it waits, what the
caller sees when it gives up, and the cancel-on-failure gather used for ``n`` samples."""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.models.base import ModelError
from tools.models.retry import (
    ModelAPIError,
    RetryPolicy,
    TransientError,
    call_with_retries,
    gather_all,
    is_retryable_status,
    retry_after_seconds,
)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Flaky:
    """A request that fails with the given errors, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, True),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (529, True),
    ],
)
def test_which_statuses_are_retried(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_x_should_retry_overrides_the_status() -> None:
    assert is_retryable_status(400, {"x-should-retry": "true"})
    assert not is_retryable_status(503, {"x-should-retry": "false"})


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "12"}) == 12.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "-3"}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({"retry-after": "inf"}) is None
    now = 1_764_280_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=now) == pytest.approx(30.0)
    assert retry_after_seconds({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), st.text(max_size=40)))
def test_retry_after_never_raises(headers: dict[str, str]) -> None:
    value = retry_after_seconds(headers)
    assert value is None or value >= 0


async def test_transient_failures_are_retried_until_success() -> None:
    sleeps = Sleeps()
    request = Flaky(TransientError("overloaded", status=529), TransientError("reset"))
    policy = RetryPolicy(initial_wait=0.5, max_wait=8, jitter=0.0, sleep=sleeps)
    assert await call_with_retries(request, policy=policy, model="m/x") == "ok"
    assert request.calls == 3
    assert sleeps.waits == [0.5, 1.0]


async def test_backoff_grows_and_is_capped() -> None:
    sleeps = Sleeps()
    request = Flaky(*(TransientError("busy", status=503) for _ in range(5)))
    policy = RetryPolicy(max_attempts=6, initial_wait=1.0, max_wait=4.0, jitter=0.5, sleep=sleeps)
    await call_with_retries(request, policy=policy, model="m/x")
    assert [int(w) for w in sleeps.waits] == [1, 2, 4, 4, 4]
    assert all(0 <= w - int(w) <= 0.5 for w in sleeps.waits)


async def test_retry_after_raises_the_wait_but_never_lowers_it() -> None:
    sleeps = Sleeps()
    request = Flaky(TransientError("slow down", status=429, retry_after=5.0), TransientError("x", retry_after=0.1))
    policy = RetryPolicy(initial_wait=1.0, jitter=0.0, sleep=sleeps)
    await call_with_retries(request, policy=policy, model="m/x")
    assert sleeps.waits == [5.0, 2.0]


async def test_giving_up_reports_status_message_and_attempts() -> None:
    request = Flaky(*(TransientError("overloaded_error: Overloaded", status=529) for _ in range(4)))
    with pytest.raises(ModelAPIError) as caught:
        await call_with_retries(request, policy=RetryPolicy(max_attempts=3, sleep=Sleeps()), model="anthropic/x")
    assert (caught.value.status, caught.value.attempts, request.calls) == (529, 3, 3)
    assert str(caught.value) == "anthropic/x: HTTP 529: overloaded_error: Overloaded (gave up after 3 attempts)"
    assert isinstance(caught.value, ModelError)


async def test_other_errors_pass_through_at_once() -> None:
    final = ModelAPIError("openai/x", "invalid_request_error: bad", status=400)
    request = Flaky(final)
    with pytest.raises(ModelAPIError) as caught:
        await call_with_retries(request, policy=RetryPolicy(sleep=Sleeps()), model="openai/x")
    assert caught.value is final and request.calls == 1


async def test_a_long_retry_after_fails_without_waiting() -> None:
    sleeps = Sleeps()
    request = Flaky(TransientError("rate_limit_error: daily limit", status=429, retry_after=7200.0))
    with pytest.raises(ModelAPIError, match="asked to retry after 7200s, longer than max_retry_after=600s"):
        await call_with_retries(request, policy=RetryPolicy(max_retry_after=600, sleep=sleeps), model="m/x")
    assert sleeps.waits == [] and request.calls == 1


def test_policy_checks_its_numbers() -> None:
    with pytest.raises(ModelError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ModelError, match="negative"):
        RetryPolicy(jitter=-1)


async def test_gather_all_keeps_order() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert await gather_all([after(0.03, 1), after(0.0, 2), after(0.01, 3)]) == [1, 2, 3]
    assert await gather_all([]) == []


async def test_gather_all_cancels_the_rest_on_the_first_failure() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ModelAPIError("m/x", "invalid_request_error: no", status=400)

    coros: list[Any] = [slow(0), fail(), slow(2)]
    with pytest.raises(ModelAPIError):
        await asyncio.wait_for(gather_all(coros), timeout=2)
    assert sorted(cancelled) == [0, 2]


async def test_cancelling_gather_all_cancels_its_children() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    task = asyncio.ensure_future(gather_all([slow(0), slow(1)]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [0, 1]
