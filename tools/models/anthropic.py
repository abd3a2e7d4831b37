"""Claude through the Anthropic Messages API (``anthropic/<model>``), with the official SDK.

The request is built by the format exporter (`tools.formats.anthropic.to_anthropic_params`)
and the answer read by its importer (`tools.formats.anthropic.parse`), so a resample
sends exactly what an exported transcript would and reads back exactly what an imported
response would; this module only adds what a *live* call needs:

Sampling ``n``
    The Messages API has no ``n``: ``n`` samples are ``n`` requests. They run
    concurrently, each holding the client's request gate (at most ``max_concurrency``
    HTTP requests in flight per client). With prompt caching on, the first request goes
    alone and the other ``n - 1`` follow once it has answered: a cache entry only exists
    after the first response starts, so ``n`` simultaneous requests would all pay to
    write the same prefix.

Seeds
    The Messages API has no seed. A ``seed`` is recorded in each sample's metadata (the
    protocol's ``seed + i``) with a ``seed_note`` saying it did not reach the API: Claude
    samples are not reproducible from it.

Prompt caching
    ``cache_control: {"type": "ephemeral"}`` goes on the last block of the last message
    (the whole shared prefix, so ``n`` resamples of one prefix pay for it once), and on
    the system prompt (or the last tool, when there is no system prompt) when tools and
    system are long enough to be worth their own breakpoint — that one is shared between
    resamples at *different* turns of one transcript. Prompts shorter than
    ``cache_min_chars`` (about the API's 1024-token minimum) get no breakpoints: the API
    would ignore them. Cache reads and writes are read from the response's usage. The
    breakpoints set are listed in each sample's ``metadata["request"]["cache_breakpoints"]``.

Thinking
    Thinking blocks are sent back with their signatures. A thinking block whose signature
    is gone (an investigator edited the reasoning: `tools.edit` drops the signature,
    since it no longer matches) cannot be sent as thinking — the API rejects unsigned
    thinking. By default (``unsigned_thinking="text"``) it becomes a text block
    ``"(earlier reasoning) <thinking>"``, so the model *sees* the edited reasoning, which
    is the point of editing it; ``"drop"`` removes it instead. Either way the places are
    listed in ``metadata["request"]["unsigned_thinking"]``. Note: the API strips the
    thinking of earlier assistant turns from the model's context, but not text, so an
    edited early thought is *more* visible than the original was; and with extended
    thinking on, the API requires the final assistant turn of a tool-use loop to start
    with real thinking, so editing that one's reasoning makes the API refuse the request
    (a `ModelAPIError` quoting it). Redacted thinking without its encrypted data is
    dropped and listed the same way.

    When ``transcript.generation.thinking_budget`` is set, extended thinking is enabled
    with that budget (the exporter writes ``thinking``); the temperature must then be 1
    (or unset), otherwise `ModelError` before any request is made.

Retries
    `tools.models.retry`: 429, 529, other 5xx, 408/409, timeouts and connection errors are
    retried with exponential backoff and jitter, never sooner than ``retry-after``; the
    SDK's own retries are off (``max_retries=0``). Other errors raise `ModelAPIError` at
    once with the API's message.

Pricing
    `CLAUDE_PRICING` holds list prices ($/Mtok) for known Claude models (a dated snapshot
    such as ``claude-sonnet-4-5-20250929`` uses its family's price; long-context premiums
    and batch discounts are not modelled); cache writes cost 1.25x input (5-minute
    cache), cache reads 0.1x. ``pricing=Pricing(...)`` overrides it. For a model not in the
    table the cost is 0 and each sample says so in ``metadata["cost_note"]``.

Settings the Messages API has no parameter for (an OpenAI transcript's
``frequency_penalty``, say) are not sent; they are listed in
``metadata["request"]["ignored_settings"]``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

import anthropic
from pydantic import BaseModel, ConfigDict, ValidationError

from tools.errors import ExportError, FormatError
from tools.formats import anthropic as anthropic_format
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
from tools.transcript import ContentBlock, GenerationConfig, Message, TextBlock, ThinkingBlock, ToolSpec, Transcript

EPHEMERAL: Final[Mapping[str, str]] = {"type": "ephemeral"}

UNSIGNED_THINKING_PREFIX: Final = "(earlier reasoning) "
"""Prefix of the text block an unsigned (edited) thinking block is sent as."""

DEFAULT_CACHE_MIN_CHARS: Final = 4096
"""About 1024 tokens, the smallest prefix the API caches for Sonnet and Opus models."""


SEED_NOTE: Final = "the Anthropic Messages API has no seed parameter; this sample is not reproducible from it"


def _claude(input_usd: float, output_usd: float) -> Pricing:
    return Pricing(input=input_usd, output=output_usd, cache_write=input_usd * 1.25, cache_read=input_usd * 0.1)


CLAUDE_PRICING: Final[Mapping[str, Pricing]] = {
    "claude-opus-4-5": _claude(5.0, 25.0),
    "claude-opus-4-1": _claude(15.0, 75.0),
    "claude-opus-4-0": _claude(15.0, 75.0),
    "claude-opus-4": _claude(15.0, 75.0),
    "claude-sonnet-4-5": _claude(3.0, 15.0),
    "claude-sonnet-4-0": _claude(3.0, 15.0),
    "claude-sonnet-4": _claude(3.0, 15.0),
    "claude-3-7-sonnet": _claude(3.0, 15.0),
    "claude-3-5-sonnet": _claude(3.0, 15.0),
    "claude-haiku-4-5": _claude(1.0, 5.0),
    "claude-3-5-haiku": _claude(0.8, 4.0),
    "claude-3-opus": _claude(15.0, 75.0),
    "claude-3-haiku": _claude(0.25, 1.25),
}
"""List prices in dollars per million tokens, by model family (as of late 2025)."""

_SNAPSHOT_SUFFIX: Final = re.compile(r"-(?:\d{8}|latest)$")


def claude_pricing(model: str) -> Pricing | None:
    """The list price of a Claude model id or alias, or None when unknown. Only a date or
    ``-latest`` suffix is stripped, so an unknown newer model (``claude-opus-4-7``) is
    never priced as an older one it happens to start like."""
    return CLAUDE_PRICING.get(_SNAPSHOT_SUFFIX.sub("", model))


class _UsageIn(BaseModel):
    """The token counts of a response's ``usage`` (absent or null counts are 0)."""

    model_config = ConfigDict(extra="allow")

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


@dataclass
class PreparedRequest:
    """A request ready to send, and what was done to the transcript to make it."""

    params: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)
    warm_first: bool = False


@dataclass
class _LoopState:
    """The SDK client and request gate of one event loop (neither can cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: anthropic.AsyncAnthropic
    gate: asyncio.Semaphore


class AnthropicModel(ModelClient):
    """``anthropic/<model>``: Claude via ``anthropic.AsyncAnthropic`` (see the module doc).

    Options: ``api_key`` (default ``$ANTHROPIC_API_KEY``; required), ``base_url`` (default
    ``$ANTHROPIC_BASE_URL``, else the SDK's), ``max_attempts`` (default
    ``$FORENSICS_MODEL_ATTEMPTS``, 4) or a whole ``retry`` policy, ``timeout`` (seconds per
    request, default ``$FORENSICS_MODEL_TIMEOUT_S``, 120), ``prompt_cache`` (True),
    ``cache_min_chars``, ``unsigned_thinking`` (``"text"`` or ``"drop"``), ``pricing``,
    ``max_concurrency``.
    """

    provider: ClassVar[str] = "anthropic"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        prompt_cache: bool = True,
        cache_min_chars: int = DEFAULT_CACHE_MIN_CHARS,
        unsigned_thinking: Literal["text", "drop"] = "text",
        pricing: Pricing | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise ModelConfigError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        known_price = claude_pricing(name)
        super().__init__(name, max_concurrency=max_concurrency, pricing=pricing if pricing is not None else known_price)
        self.priced = pricing is not None or known_price is not None
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ModelConfigError(
                f"{self.model_string} needs an Anthropic API key: set the ANTHROPIC_API_KEY environment variable "
                f"or pass api_key=... (get_model({self.model_string!r}, api_key=...))"
            )
        if unsigned_thinking not in ("text", "drop"):
            raise ModelConfigError(f"unsigned_thinking must be 'text' or 'drop' (got {unsigned_thinking!r})")
        self._api_key = key
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        settings = model_call_settings()  # FORENSICS_MODEL_TIMEOUT_S / FORENSICS_MODEL_ATTEMPTS
        self.retry = retry if retry is not None else RetryPolicy(max_attempts=max_attempts or settings.attempts)
        self.timeout = timeout if timeout is not None else settings.timeout_s
        self.prompt_cache = prompt_cache
        self.cache_min_chars = cache_min_chars
        self.unsigned_thinking = unsigned_thinking
        self.max_concurrency = max_concurrency
        self._state: _LoopState | None = None

    # ------------------------------------------------------------------ plumbing
    def _loop_state(self) -> _LoopState:
        """The SDK client and gate for the running loop, made on first use in it (an
        httpx connection pool is bound to the loop that opened it)."""
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            # An http_client of our own: the SDK's default one closes itself from __del__ on
            # whatever loop is running then, which fails once its own loop is gone.
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout,
                http_client=anthropic.DefaultAsyncHttpxClient(),
            )
            self._state = _LoopState(loop=loop, client=client, gate=asyncio.Semaphore(self.max_concurrency))
        return self._state

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        state, self._state = self._state, None
        if state is not None and not state.loop.is_closed():
            await state.client.close()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_string,
            "base_url": self.base_url,
            "max_attempts": self.retry.max_attempts,
            "prompt_cache": self.prompt_cache,
            "unsigned_thinking": self.unsigned_thinking,
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

        async def sample() -> tuple[Message, Usage]:
            async with state.gate:
                message, usage = await call_with_retries(
                    lambda: self._request(state.client, prepared.params), policy=self.retry, model=self.model_string
                )
            spent.append(usage)
            return message, usage

        try:
            results: list[tuple[Message, Usage]] = []
            remaining = n
            if prepared.warm_first and n > 1:
                results.append(await sample())
                remaining -= 1
            results += await gather_all(sample() for _ in range(remaining))
        except BaseException:
            if spent:  # samples that were paid for still count against budgets
                partial = sum(spent, Usage())
                self.meter.record(
                    CallRecord(
                        model=self.model_string,
                        n=len(spent),
                        usage=partial,
                        seconds=time.monotonic() - started,
                        seed=seed,
                    )
                )
            raise

        messages: list[Message] = []
        for message, _ in results:
            if prepared.notes:
                message.metadata["request"] = copy.deepcopy(prepared.notes)
            if seed is not None:
                message.metadata["seed_note"] = SEED_NOTE
            messages.append(message)
        return messages, sum((u for _, u in results), Usage())

    def prepare(
        self,
        transcript: Transcript,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: list[ToolSpec] | None = None,
    ) -> PreparedRequest:
        """The ``messages.create`` kwargs for continuing `transcript` with this model,
        after unsigned thinking is handled, unsupported settings are set aside and cache
        breakpoints are placed. Raises `ModelError` for a transcript the API cannot take."""
        notes: dict[str, Any] = {}
        settings = transcript.generation.model_dump()
        ignored = sorted(
            key
            for key, value in (transcript.generation.model_extra or {}).items()
            if value is not None and key not in anthropic_format.GENERATION_EXTRAS
        )
        if ignored:
            notes["ignored_settings"] = {key: settings.pop(key) for key in ignored}
        if temperature is not None:
            settings["temperature"] = temperature
        if max_tokens is not None:
            settings["max_tokens"] = max_tokens
        config = GenerationConfig.model_validate(settings)
        effective_temperature = config.temperature
        if config.thinking_budget is not None and effective_temperature not in (None, 1, 1.0):
            raise ModelError(
                f"{self.model_string}: extended thinking (thinking_budget={config.thinking_budget}) requires "
                f"temperature 1, got {effective_temperature}; leave the temperature unset or set it to 1"
            )

        messages, unsigned = self._sendable_messages(transcript.messages)
        if unsigned:
            notes["unsigned_thinking"] = unsigned
        request = transcript.model_copy(
            update={
                "model": self.name,
                "messages": messages,
                "tools": list(transcript.tools if tools is None else tools),
                "generation": config,
            }
        )
        try:
            params = anthropic_format.to_anthropic_params(request)
        except ExportError as exc:
            raise ModelError(f"{self.model_string}: cannot send this transcript: {exc}") from None

        warm_first = False
        if self.prompt_cache:
            breakpoints = self._place_cache_breakpoints(params)
            if breakpoints:
                notes["cache_breakpoints"] = breakpoints
                warm_first = True
        return PreparedRequest(params=params, notes=notes, warm_first=warm_first)

    def _sendable_messages(self, messages: list[Message]) -> tuple[list[Message], list[dict[str, Any]]]:
        """The messages with thinking the API would refuse (no signature) turned into
        text or dropped, and where that happened."""
        out: list[Message] = []
        changed: list[dict[str, Any]] = []
        for i, msg in enumerate(messages):
            content: list[ContentBlock] = []
            edited = False
            for j, block in enumerate(msg.content):
                if not (isinstance(block, ThinkingBlock) and block.signature is None):
                    content.append(block)
                    continue
                edited = True
                where = f"messages[{i}].content[{j}]"
                if block.redacted or self.unsigned_thinking == "drop":
                    changed.append({"at": where, "action": "dropped"})
                else:
                    changed.append({"at": where, "action": "sent as text"})
                    content.append(TextBlock(text=UNSIGNED_THINKING_PREFIX + block.thinking))
            out.append(msg.model_copy(update={"content": content}) if edited else msg)
        return out, changed

    def _place_cache_breakpoints(self, params: dict[str, Any]) -> list[str]:
        """Mark the shared prefix for caching (see the module doc); returns the places
        marked. At most two of the API's four breakpoints are used."""
        tools = params.get("tools") or []
        system = params.get("system")
        head_chars = len(json.dumps(tools)) + len(json.dumps(system) if system is not None else "")
        total_chars = head_chars + len(json.dumps(params.get("messages", [])))
        if total_chars < self.cache_min_chars:
            return []
        marked: list[str] = []
        if head_chars >= self.cache_min_chars:
            if isinstance(system, str) and system:
                params["system"] = [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
                marked.append("system[0]")
            elif isinstance(system, list) and system:
                system[-1]["cache_control"] = dict(EPHEMERAL)
                marked.append(f"system[{len(system) - 1}]")
            elif tools:
                tools[-1]["cache_control"] = dict(EPHEMERAL)
                marked.append(f"tools[{len(tools) - 1}]")
        messages = params.get("messages") or []
        if messages:
            last = messages[-1]
            if isinstance(last.get("content"), str):
                if last["content"]:
                    last["content"] = [{"type": "text", "text": last["content"], "cache_control": dict(EPHEMERAL)}]
                    marked.append(f"messages[{len(messages) - 1}].content[0]")
            else:
                blocks = last.get("content") or []
                for j in range(len(blocks) - 1, -1, -1):
                    if _cacheable(blocks[j]):
                        blocks[j]["cache_control"] = dict(EPHEMERAL)
                        marked.append(f"messages[{len(messages) - 1}].content[{j}]")
                        break
        return marked

    # ------------------------------------------------------------------- request
    async def _request(self, client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> tuple[Message, Usage]:
        """One ``messages.create``: the reply as a `Message` and its usage, or a
        `TransientError` / `ModelAPIError` for `call_with_retries` to act on."""
        try:
            raw = await client.messages.with_raw_response.create(**params)
        except anthropic.APIStatusError as exc:
            message = _api_message(exc)
            if is_retryable_status(exc.status_code, exc.response.headers):
                raise TransientError(
                    message, status=exc.status_code, retry_after=retry_after_seconds(exc.response.headers)
                ) from None
            raise ModelAPIError(self.model_string, message, status=exc.status_code) from None
        except anthropic.APIConnectionError as exc:  # timeouts included
            raise TransientError(f"{type(exc).__name__}: {exc.message}") from None
        except (anthropic.AnthropicError, ValueError) as exc:  # ValueError: the SDK refusing the call
            raise ModelAPIError(self.model_string, f"{type(exc).__name__}: {exc}") from None
        try:
            data = await raw.json()
        except ValueError as exc:  # a 2xx whose body is not JSON
            raise ModelAPIError(
                self.model_string, f"the response is not JSON ({exc})", status=raw.status_code
            ) from None
        return self._read_response(data, raw.headers.get("request-id"))

    def _read_response(self, data: Any, request_id: str | None) -> tuple[Message, Usage]:
        """The response body as a `Message` (through the format importer) with its usage,
        cost and provenance in metadata."""
        try:
            transcript = anthropic_format.parse(data, source=f"{self.model_string} response")
        except FormatError as exc:
            raise ModelError(f"{self.model_string}: could not read the API's response: {exc}") from None
        message = transcript.messages[0]
        raw_usage = message.metadata.pop("usage", None)
        response_model = message.metadata.pop("model", None)
        try:
            counts = _UsageIn.model_validate(raw_usage) if isinstance(raw_usage, dict) else _UsageIn()
        except ValidationError:  # odd usage must not fail a call whose sample is fine
            counts = _UsageIn()
            message.metadata["usage_note"] = "the response's usage could not be read; tokens counted as 0"
        usage = Usage(
            input_tokens=counts.input_tokens or 0,
            output_tokens=counts.output_tokens or 0,
            cache_read_tokens=counts.cache_read_input_tokens or 0,
            cache_write_tokens=counts.cache_creation_input_tokens or 0,
        )
        usage.cost_usd = self.pricing.cost(usage)
        message.metadata["usage"] = usage.model_dump()
        if raw_usage is not None:
            message.metadata["api_usage"] = raw_usage
        if response_model is not None:
            message.metadata["response_model"] = response_model
        if request_id:
            message.metadata["request_id"] = request_id
        if not self.priced:
            message.metadata["cost_note"] = (
                f"no price known for {self.name!r}; cost not estimated (pass pricing=Pricing(...) to set one)"
            )
        return message, usage


def _cacheable(block: Any) -> bool:
    """Whether the API takes ``cache_control`` on this block: not on thinking, nor on an
    empty text block."""
    if not isinstance(block, dict) or block.get("type") in ("thinking", "redacted_thinking"):
        return False
    return not (block.get("type") == "text" and not block.get("text"))


def _api_message(exc: anthropic.APIStatusError) -> str:
    """``"<error type>: <message>"`` from an error body, else the SDK's message."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return f"{kind}: {error['message']}" if isinstance(kind, str) else str(error["message"])
    return exc.message


__all__ = ["CLAUDE_PRICING", "SEED_NOTE", "UNSIGNED_THINKING_PREFIX", "AnthropicModel", "claude_pricing"]
