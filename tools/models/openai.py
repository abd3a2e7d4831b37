"""Any OpenAI-compatible chat server (``openai/<model>``): OpenAI itself, vLLM, the
llama.cpp server, Ollama, LM Studio, OpenRouter, ...

It speaks the HTTP protocol directly (``POST {base_url}/chat/completions`` with httpx),
not through the ``openai`` package: the protocol is the common ground of all those
servers, the package is not a dependency of this project, and one code path is one code
path to test. The request body is what the format exporter writes
(`tools.formats.openai.to_openai_params`, with ``extra_body`` merged in as the SDK would
on the wire) and each returned choice is read by the format importer
(`tools.formats.openai.parse`), so live calls and imported files agree on the mapping.

Options
    ``base_url``: ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``. ``api_key``:
    ``$OPENAI_API_KEY``; required for api.openai.com, optional for local servers (no
    ``Authorization`` header is sent without one). ``headers``: extra request headers.

Sampling ``n``
    ``n`` (when above 1) and ``seed`` are sent as is. Servers that ignore ``n`` (several
    OpenAI-compatible servers answer with one choice) are topped up: the missing samples
    are requested one per call, concurrently, with seeds ``seed + k`` so a seeded server
    does not hand back the same sample again. A server that returned exactly one choice
    is remembered as ignoring ``n``; one that *refuses* ``n > 1`` with a 400/422 (the
    llama.cpp server: "Only one completion choice is allowed") is retried the same way
    and remembered too. ``supports_n=False`` skips the probing. Which request produced a
    sample is in ``metadata["sampling"]`` (``request_seed``, ``request_n``, ``choice``).

Reasoning
    Thinking in the transcript is sent as ``reasoning_content`` to servers other than
    api.openai.com (vLLM and llama.cpp reasoning models read it back) and left out for
    OpenAI, which rejects the field; ``include_reasoning`` overrides that.

Limits
    ``max_tokens`` is written as ``max_completion_tokens`` for api.openai.com (its
    reasoning models refuse ``max_tokens``) and as ``max_tokens`` elsewhere (what every
    compatible server reads); ``max_tokens_field`` overrides that.

Retries
    `tools.models.retry` (429, 5xx, 408/409, timeouts, connection errors; ``retry-after``
    honoured). An error in a 200 response's body (some gateways do that) counts as the
    status its ``code`` names, else as a non-retryable failure.

Usage and cost
    From ``usage``: ``prompt_tokens`` less ``prompt_tokens_details.cached_tokens`` is
    input, the cached part cache reads, ``completion_tokens`` output. A call's usage is
    shared evenly between the choices it returned (the prompt is billed once per call).
    There is no price table: pass ``pricing=Pricing(...)``; without one the cost is 0 and
    each sample says so in ``metadata["cost_note"]``.

A tool call that comes back without an id (seen from some local servers) gets a fresh
``call_<hex>`` id, listed in ``metadata["generated_tool_call_ids"]``, so its result can be
addressed.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from tools.errors import ExportError, FormatError
from tools.formats import openai as openai_format
from tools.models.base import CallRecord, ModelClient, ModelConfigError, ModelError, Pricing, Usage
from tools.models.retry import (
    ModelAPIError,
    RetryPolicy,
    TransientError,
    call_with_retries,
    gather_all,
    is_retryable_status,
    retry_after_seconds,
)
from tools.settings import model_call_settings
from tools.transcript import Message, ToolSpec, Transcript

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
_OPENAI_HOST: Final = "api.openai.com"
_N_REFUSED_STATUSES: Final = frozenset({400, 422})
_CONTROLLED: Final = ("n", "seed", "stream", "stream_options")
"""Body keys this client decides; a transcript's recorded values are not sent."""

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


class _CachedIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    cached_tokens: int | None = None


class _UsageIn(BaseModel):
    """The token counts of a chat completion's ``usage`` (absent or null counts are 0)."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _CachedIn | None = None


@dataclass
class _LoopState:
    """The HTTP client and request gate of one event loop (neither can cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    gate: asyncio.Semaphore


@dataclass
class _Sample:
    message: Message
    usage: Usage


@dataclass
class PreparedRequest:
    body: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)


class OpenAIModel(ModelClient):
    """``openai/<model>`` against an OpenAI-compatible ``/chat/completions`` endpoint
    (see the module doc). Options: ``base_url``, ``api_key``, ``headers``, ``max_attempts``
    (default ``$FORENSICS_MODEL_ATTEMPTS``, 4) or a whole ``retry`` policy, ``timeout`` (seconds per
    request, default ``$FORENSICS_MODEL_TIMEOUT_S``, 120), ``supports_n``,
    ``include_reasoning``, ``max_tokens_field``, ``pricing``, ``max_concurrency``."""

    provider: ClassVar[str] = "openai"

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        supports_n: bool | None = None,
        include_reasoning: bool | None = None,
        max_tokens_field: MaxTokensField | None = None,
        pricing: Pricing | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise ModelConfigError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        super().__init__(name, max_concurrency=max_concurrency, pricing=pricing)
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelConfigError(
                f"{self.model_string}: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1 (got {url!r})"
            )
        official = parts.hostname == _OPENAI_HOST
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if official and key is None:
            raise ModelConfigError(
                f"{self.model_string} calls {url}, which needs an API key: set OPENAI_API_KEY or pass api_key=...; "
                "for a local OpenAI-compatible server set OPENAI_BASE_URL or pass base_url=..."
            )
        if max_tokens_field not in (None, "max_tokens", "max_completion_tokens"):
            raise ModelConfigError(
                f"max_tokens_field must be 'max_tokens' or 'max_completion_tokens' (got {max_tokens_field!r})"
            )
        self.base_url = url
        self._api_key = key
        self._headers = dict(headers or {})
        settings = model_call_settings()  # FORENSICS_MODEL_TIMEOUT_S / FORENSICS_MODEL_ATTEMPTS
        self.retry = retry if retry is not None else RetryPolicy(max_attempts=max_attempts or settings.attempts)
        self.timeout = timeout if timeout is not None else settings.timeout_s
        self.supports_n = supports_n
        self.include_reasoning = (not official) if include_reasoning is None else include_reasoning
        self.max_tokens_field: MaxTokensField = max_tokens_field or (
            "max_completion_tokens" if official else "max_tokens"
        )
        self.priced = pricing is not None
        self.max_concurrency = max_concurrency
        self._state: _LoopState | None = None

    # ------------------------------------------------------------------ plumbing
    def _loop_state(self) -> _LoopState:
        """The HTTP client and gate for the running loop, made on first use in it."""
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            headers = dict(self._headers)
            if self._api_key is not None:
                headers["authorization"] = f"Bearer {self._api_key}"
            client = httpx.AsyncClient(base_url=self.base_url + "/", headers=headers, timeout=self.timeout)
            self._state = _LoopState(loop=loop, client=client, gate=asyncio.Semaphore(self.max_concurrency))
        return self._state

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        state, self._state = self._state, None
        if state is not None and not state.loop.is_closed():
            await state.client.aclose()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_string,
            "base_url": self.base_url,
            "max_attempts": self.retry.max_attempts,
            "supports_n": self.supports_n,
            "include_reasoning": self.include_reasoning,
            "max_tokens_field": self.max_tokens_field,
            "pricing": self.pricing.model_dump() if self.priced else None,
        }

    # ------------------------------------------------------------------ generate
    async def _generate(
        self,
        transcript: Transcript,
        *,
        n: int,
        seed: int | None,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[ToolSpec],
    ) -> tuple[list[Message], Usage]:
        prepared = self.prepare(transcript, temperature=temperature, max_tokens=max_tokens, tools=tools)
        state = self._loop_state()
        spent: list[Usage] = []
        started = time.monotonic()

        async def call(k: int, request_seed: int | None) -> list[_Sample]:
            body = dict(prepared.body)
            if k > 1:
                body["n"] = k
            if request_seed is not None:
                body["seed"] = request_seed
            async with state.gate:
                data = await call_with_retries(
                    lambda: self._post(state.client, body), policy=self.retry, model=self.model_string
                )
            samples = self._read_response(data, request_seed=request_seed, request_n=k)
            spent.extend(s.usage for s in samples)
            return samples

        def seed_at(k: int) -> int | None:
            return None if seed is None else seed + k

        async def singles(start: int) -> list[_Sample]:
            batches = await gather_all(call(1, seed_at(k)) for k in range(start, n))
            return [sample for batch in batches for sample in batch]

        try:
            if n == 1 or self.supports_n is False:
                samples = await singles(0)
            else:
                try:
                    samples = await call(n, seed)
                except ModelAPIError as exc:
                    if self.supports_n is not None or exc.status not in _N_REFUSED_STATUSES:
                        raise
                    samples = await singles(0)  # the server refuses n > 1: ask one at a time
                    self.supports_n = False
                    prepared.notes["n"] = f"the server refused n={n} ({exc.api_message}); sampled one per request"
                else:
                    if 0 < len(samples) < n:
                        prepared.notes["n"] = (
                            f"the server returned {len(samples)} of {n} choices; the rest were requested one per call"
                        )
                        if len(samples) == 1 and self.supports_n is None:
                            self.supports_n = False
                        samples += await singles(len(samples))
        except BaseException:
            if spent:  # samples that were paid for still count against budgets
                self.meter.record(
                    CallRecord(
                        model=self.model_string,
                        n=len(spent),
                        usage=sum(spent, Usage()),
                        seconds=time.monotonic() - started,
                        seed=seed,
                    )
                )
            raise
        if len(samples) > n:  # a server that sent more choices than asked for
            prepared.notes["extra_choices"] = f"the server returned {len(samples)} choices for n={n}; kept the first"
        kept = samples[:n]
        for sample in kept:
            if prepared.notes:
                sample.message.metadata["request"] = copy.deepcopy(prepared.notes)
        return [s.message for s in kept], sum((s.usage for s in samples), Usage())

    def prepare(
        self,
        transcript: Transcript,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: list[ToolSpec] | None = None,
    ) -> PreparedRequest:
        """The JSON body (without ``n`` and ``seed``) continuing `transcript` with this
        model. Raises `ModelError` for a transcript the format cannot express."""
        updates: dict[str, Any] = {"model": self.name}
        generation: dict[str, Any] = {}
        if temperature is not None:
            generation["temperature"] = temperature
        if max_tokens is not None:
            generation["max_tokens"] = max_tokens
        if generation:
            updates["generation"] = transcript.generation.model_copy(update=generation)
        if tools is not None:
            updates["tools"] = list(tools)
        try:
            body = openai_format.to_openai_params(
                transcript.model_copy(update=updates), include_reasoning=self.include_reasoning
            )
        except ExportError as exc:
            raise ModelError(f"{self.model_string}: cannot send this transcript: {exc}") from None
        extra_body = body.pop("extra_body", None)
        if isinstance(extra_body, dict):  # what the SDK does with extra_body on the wire
            body.update({k: v for k, v in extra_body.items() if k not in body})
        limit = body.pop("max_completion_tokens", None)
        limit = body.pop("max_tokens", limit)
        if limit is not None:
            body[self.max_tokens_field] = limit
        notes: dict[str, Any] = {}
        replaced = {key: body.pop(key) for key in _CONTROLLED if key in body}
        if replaced:
            notes["replaced_settings"] = replaced
        return PreparedRequest(body=body, notes=notes)

    # ------------------------------------------------------------------- request
    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /chat/completions``: the response JSON, or a `TransientError` /
        `ModelAPIError` for `call_with_retries` to act on."""
        try:
            response = await client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status >= 400:
            message = _error_message(response)
            if is_retryable_status(status, response.headers):
                raise TransientError(message, status=status, retry_after=retry_after_seconds(response.headers))
            raise ModelAPIError(self.model_string, message, status=status)
        try:
            data = response.json()
        except ValueError:
            raise ModelAPIError(
                self.model_string, f"the response is not JSON: {response.text[:200]!r}", status=status
            ) from None
        if not isinstance(data, dict):
            raise ModelAPIError(self.model_string, "the response is not a JSON object", status=status)
        if "error" in data and not data.get("choices"):  # an error reported with a 200 status
            code = _error_code(data["error"])
            message = _describe_error(data["error"])
            if code is not None and is_retryable_status(code):
                raise TransientError(message, status=code)
            raise ModelAPIError(self.model_string, message, status=code if code is not None else status)
        return data

    def _read_response(self, data: dict[str, Any], *, request_seed: int | None, request_n: int) -> list[_Sample]:
        """Each choice as a `Message` (through the format importer), with the call's usage
        shared between them and provenance in metadata."""
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ModelError(f"{self.model_string}: the server returned no choices")
        raw_usage = data.get("usage")
        counts = _usage_counts(raw_usage)
        prompt = counts.prompt_tokens or 0
        cached = (counts.prompt_tokens_details.cached_tokens or 0) if counts.prompt_tokens_details else 0
        shares = _shares(
            Usage(
                input_tokens=max(0, prompt - cached),
                output_tokens=counts.completion_tokens or 0,
                cache_read_tokens=cached,
            ),
            len(choices),
        )
        samples: list[_Sample] = []
        for j, (choice, usage) in enumerate(zip(choices, shares, strict=True)):
            choice, generated = _with_tool_call_ids(choice)
            try:
                transcript = openai_format.parse(
                    {**data, "choices": [choice]}, source=f"{self.model_string} response choice {j}"
                )
            except FormatError as exc:
                raise ModelError(f"{self.model_string}: could not read the server's response: {exc}") from None
            message = transcript.messages[0]
            usage.cost_usd = self.pricing.cost(usage)
            message.metadata["usage"] = usage.model_dump()
            message.metadata["sampling"] = {"request_seed": request_seed, "request_n": request_n, "choice": j}
            if isinstance(data.get("model"), str):
                message.metadata["response_model"] = data["model"]
            if isinstance(data.get("system_fingerprint"), str):
                message.metadata["system_fingerprint"] = data["system_fingerprint"]
            if counts is _NO_USAGE:
                message.metadata["usage_note"] = f"the server reported no readable token usage (got {raw_usage!r:.100})"
            if generated:
                message.metadata["generated_tool_call_ids"] = generated
            if not self.priced:
                message.metadata["cost_note"] = (
                    f"no price configured for {self.model_string}; cost not estimated (pass pricing=Pricing(...))"
                )
            samples.append(_Sample(message=message, usage=usage))
        return samples


_NO_USAGE: Final = _UsageIn()


def _usage_counts(raw: Any) -> _UsageIn:
    """The counts of a ``usage`` object, or `_NO_USAGE` when it is missing or unreadable
    (a server's odd usage must not fail a call whose sample is fine)."""
    if not isinstance(raw, dict):
        return _NO_USAGE
    try:
        return _UsageIn.model_validate(raw)
    except ValidationError:
        return _NO_USAGE


def _shares(usage: Usage, parts: int) -> list[Usage]:
    """`usage` split into `parts` that add up to it exactly (remainders go to the first)."""

    def split(total: int) -> list[int]:
        base, extra = divmod(total, parts)
        return [base + (1 if i < extra else 0) for i in range(parts)]

    inputs, outputs, reads = split(usage.input_tokens), split(usage.output_tokens), split(usage.cache_read_tokens)
    return [Usage(input_tokens=inputs[i], output_tokens=outputs[i], cache_read_tokens=reads[i]) for i in range(parts)]


def _with_tool_call_ids(choice: Any) -> tuple[Any, list[str]]:
    """The choice with an id given to every tool call that lacks one, and those ids."""
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return choice, []
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or all(not isinstance(c, dict) or isinstance(c.get("id"), str) for c in calls):
        return choice, []
    generated: list[str] = []
    fixed: list[Any] = []
    for call in calls:
        if isinstance(call, dict) and not isinstance(call.get("id"), str):
            call = {**call, "id": f"call_{uuid.uuid4().hex[:24]}"}
            generated.append(call["id"])
        fixed.append(call)
    return {**choice, "message": {**message, "tool_calls": fixed}}, generated


def _error_message(response: httpx.Response) -> str:
    """The error text of a failed response, from whichever shape the server uses:
    OpenAI/llama.cpp ``{"error": {"message", "type"}}``, vLLM ``{"message"}``, Ollama
    ``{"error": "..."}``; else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else (response.reason_phrase or "error")
    if isinstance(data, dict):
        if "error" in data:
            return _describe_error(data["error"])
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return str(data)[:300]


def _describe_error(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type")
        if isinstance(message, str):
            return f"{kind}: {message}" if isinstance(kind, str) and kind else message
    if isinstance(error, str):
        return error
    return str(error)[:300]


def _error_code(error: Any) -> int | None:
    """An HTTP-like status in an error body's ``code`` (OpenRouter puts one there)."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 100 <= int(code) <= 599:
        return int(code)
    return None


__all__ = ["DEFAULT_BASE_URL", "OpenAIModel"]
