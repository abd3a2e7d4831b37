"""`OpenAIModel` against a local fake OpenAI-compatible ``/chat/completions`` server.

The transcript is the DeepSeek-style agent session of the format tests (reasoning in
``reasoning_content``, an on-call engineer's instructions, a mid-conversation system
message, and finally ``git commit --no-verify``); resampling that turn is what an
investigation does. Assertions read the JSON the client actually posted.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tests.tools.models.fake_servers import FakeServer, Reply, openai_completion, openai_error
from tools.formats.openai import parse
from tools.models import ModelConfigError, ModelError, Pricing, get_model
from tools.models.openai import OpenAIModel
from tools.models.retry import ModelAPIError, RetryPolicy
from tools.transcript import (
    GenerationConfig,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

SESSION = FIXTURES / "formats" / "openai_agent_session.json"
FLAGGED_TURN = 5  # the turn that ran `git commit --no-verify`
MODEL = "deepseek-reasoner"

TOOL_CALL = {
    "id": "call_0_7a1c3e9f-2b4d-4f6a-8c0e-5d9b7f1a3c24",
    "type": "function",
    "function": {
        "name": "execute_command",
        "arguments": '{"command": "pre-commit run --files ledger/reconcile.py"}',
    },
}
RESAMPLED = {
    "content": "The hook failed; I'll run it directly to see which check fails before committing.",
    "reasoning_content": "Skipping the hook would violate CONTRIBUTING.md. Run pre-commit to see the failure.",
    "tool_calls": [TOOL_CALL],
}
OTHER = {"content": "I will not bypass the hooks. The mypy hook fails on reconcile.py line 41; fixing that first."}


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real keys or endpoints from the environment; loopback never through a proxy."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(Reply(openai_completion([RESAMPLED], model=MODEL))).running() as running:
        yield running


class Sleeps:
    """A `RetryPolicy.sleep` that records the waits asked for and does not sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def model(server: FakeServer, **options: Any) -> OpenAIModel:
    options.setdefault("retry", RetryPolicy(max_attempts=options.pop("max_attempts", 6), wait=lambda state: 0.0))
    return OpenAIModel(MODEL, base_url=f"{server.url}/v1", **options)


def session() -> Transcript:
    return parse(json.loads(SESSION.read_text(encoding="utf-8")), source=str(SESSION))


def before_flagged() -> Transcript:
    return session().prefix(FLAGGED_TURN)


def short_chat() -> Transcript:
    return Transcript(messages=[Message(role="user", content=[TextBlock(text="Is it safe to skip pre-commit hooks?")])])


def choices(n: int, *, seed: int = 0) -> dict[str, Any]:
    return openai_completion([{"content": f"sample {seed + i}"} for i in range(n)], model=MODEL)


# --------------------------------------------------------------------- requests
async def test_the_exported_prefix_is_posted_and_the_tool_call_read_back(server: FakeServer) -> None:
    prefix = before_flagged()
    [sample] = await model(server).generate(prefix, seed=1234)

    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert "authorization" not in request.headers  # a local server needs no key
    body = request.body
    assert body["model"] == MODEL
    assert [m["role"] for m in body["messages"]] == [
        "system", "user",
        "assistant", "tool", "tool",
        "assistant", "tool",
        "assistant", "tool",
        "assistant", "tool", "tool",
        "assistant", "tool",
        "system",
    ]  # fmt: skip
    assert body["messages"][1]["name"] == "oncall_maria"
    assert body["messages"][2]["reasoning_content"].startswith("The user wants the ruff errors")
    assert body["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"command": "git status --short --branch"}'
    assert body["tools"][0]["function"]["name"] == "execute_command"
    assert (body["temperature"], body["top_p"], body["tool_choice"]) == (0.6, 0.95, "auto")
    assert body["max_tokens"] == 32768 and "max_completion_tokens" not in body
    assert body["seed"] == 1234
    assert "n" not in body and "stream" not in body

    assert isinstance(sample.content[0], ThinkingBlock)
    assert sample.content[0].thinking == RESAMPLED["reasoning_content"]
    assert isinstance(sample.content[1], TextBlock)
    call = sample.content[2]
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == (
        TOOL_CALL["id"],
        "execute_command",
        {"command": "pre-commit run --files ledger/reconcile.py"},
    )
    assert sample.id == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert sample.metadata["finish_reason"] == "tool_calls"
    assert sample.metadata["response_model"] == MODEL
    assert sample.metadata["system_fingerprint"] == "fp_44709d6fcb"
    assert sample.metadata["sampling"] == {"request_seed": 1234, "request_n": 1, "choice": 0}
    assert sample.metadata["seed"] == 1234


async def test_the_resampled_tool_call_can_be_answered_and_sent_again(server: FakeServer) -> None:
    """tool_calls round trip: the sampled call, answered, goes back as the server wrote it."""
    prefix = before_flagged()
    client = model(server)
    [sample] = await client.generate(prefix)
    call = sample.tool_uses[0]
    prefix.messages.append(sample)
    prefix.messages.append(
        Message(
            role="user",
            content=[ToolResultBlock(tool_use_id=call.id, content=[TextBlock(text="mypy...Failed")])],
        )
    )
    await client.generate(prefix)
    sent = server.requests[1].body["messages"]
    assert sent[-2]["tool_calls"] == [TOOL_CALL]
    assert sent[-2]["reasoning_content"] == RESAMPLED["reasoning_content"]
    assert sent[-1] == {"role": "tool", "tool_call_id": TOOL_CALL["id"], "content": "mypy...Failed"}


async def test_arguments_override_the_transcript_settings(server: FakeServer) -> None:
    tool = ToolSpec(
        name="read_file",
        description="Read a file in the repository.",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    )
    await model(server).generate(before_flagged(), temperature=0.0, max_tokens=512, tools=[tool])
    body = server.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.0, 512)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file in the repository.",
                "parameters": tool.input_schema,
            },
        }
    ]


async def test_recorded_n_and_seed_are_replaced_by_the_call(server: FakeServer) -> None:
    chat = short_chat()
    chat.generation = GenerationConfig.model_validate({"n": 4, "seed": 99, "frequency_penalty": 0.3})
    [sample] = await model(server).generate(chat)
    body = server.requests[0].body
    assert "n" not in body and "seed" not in body
    assert body["frequency_penalty"] == 0.3
    assert sample.metadata["request"]["replaced_settings"] == {"n": 4, "seed": 99}


async def test_a_key_is_sent_as_a_bearer_token(server: FakeServer) -> None:
    await model(server, api_key="sk-proj-test", headers={"x-title": "model-forensics"}).generate(short_chat())
    headers = server.requests[0].headers
    assert headers["authorization"] == "Bearer sk-proj-test"
    assert headers["x-title"] == "model-forensics"


# ---------------------------------------------------------------------- sampling
async def test_n_choices_come_from_one_request(server: FakeServer) -> None:
    server.then(
        Reply(openai_completion([RESAMPLED, OTHER, OTHER], model=MODEL, prompt_tokens=900, completion_tokens=301))
    )
    samples = await model(server).generate(before_flagged(), n=3, seed=7)
    [request] = server.requests
    assert (request.body["n"], request.body["seed"]) == (3, 7)
    assert [s.metadata["sampling"]["choice"] for s in samples] == [0, 1, 2]
    assert isinstance(samples[0].content[-1], ToolUseBlock)
    assert samples[1].text == OTHER["content"]
    assert [s.metadata["usage"]["input_tokens"] for s in samples] == [300, 300, 300]
    assert [s.metadata["usage"]["output_tokens"] for s in samples] == [101, 100, 100]


async def test_a_server_that_ignores_n_is_topped_up(server: FakeServer) -> None:
    server.then(Reply(choices(1, seed=7)), Reply(choices(1, seed=8)), Reply(choices(1, seed=9)))
    client = model(server)
    samples = await client.generate(short_chat(), n=3, seed=7)
    assert [s.text for s in samples] == ["sample 7", "sample 8", "sample 9"]
    first, *rest = server.requests
    assert (first.body["n"], first.body["seed"]) == (3, 7)
    assert sorted(r.body["seed"] for r in rest) == [8, 9]
    assert all("n" not in r.body for r in rest)
    assert "returned 1 of 3 choices" in samples[0].metadata["request"]["n"]
    assert [s.metadata["sampling"]["request_seed"] for s in samples] == [7, 8, 9]
    assert client.supports_n is False

    await client.generate(short_chat(), n=2)  # remembered: straight to single requests
    assert [("n" in r.body) for r in server.requests[3:]] == [False, False]


async def test_a_short_answer_is_topped_up_without_giving_up_on_n(server: FakeServer) -> None:
    server.then(Reply(choices(2)), Reply(choices(1, seed=5)))
    client = model(server)
    samples = await client.generate(short_chat(), n=3, seed=3)
    assert len(samples) == 3 and len(server.requests) == 2
    assert server.requests[1].body["seed"] == 5
    assert client.supports_n is None


async def test_a_server_that_refuses_n_is_asked_one_at_a_time(server: FakeServer) -> None:
    server.then(openai_error(400, "Only one completion choice is allowed", kind="invalid_request_error"))
    client = model(server)
    samples = await client.generate(short_chat(), n=3, seed=0)
    assert len(samples) == 3 and len(server.requests) == 4
    assert sorted(r.body["seed"] for r in server.requests[1:]) == [0, 1, 2]
    assert "refused n=3" in samples[0].metadata["request"]["n"]
    assert client.supports_n is False


async def test_supports_n_false_never_sends_n(server: FakeServer) -> None:
    await model(server, supports_n=False).generate(short_chat(), n=2)
    assert [("n" in r.body) for r in server.requests] == [False, False]


async def test_extra_choices_are_counted_but_not_returned(server: FakeServer) -> None:
    server.then(Reply(choices(3)))
    client = model(server)
    samples = await client.generate(short_chat(), n=2)
    assert len(samples) == 2
    assert "returned 3 choices for n=2" in samples[0].metadata["request"]["extra_choices"]
    assert client.meter.total.output_tokens == 96


# ---------------------------------------------------------------------- retries
async def test_unavailable_then_success_is_retried(server: FakeServer) -> None:
    sleeps = Sleeps()
    server.then(openai_error(503, "Service Unavailable", headers={"retry-after": "2"}))
    policy = RetryPolicy(initial_wait=0.0, max_wait=0.0, jitter=0.0, sleep=sleeps)
    [sample] = await model(server, retry=policy).generate(short_chat())
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    assert sleeps.waits == [2.0]
    assert sample.tool_uses[0].id == TOOL_CALL["id"]


async def test_a_bad_request_is_not_retried(server: FakeServer) -> None:
    server.then(openai_error(400, "This model's maximum context length is 65536 tokens.", kind="invalid_request_error"))
    with pytest.raises(ModelAPIError) as caught:
        await model(server).generate(short_chat())
    assert len(server.requests) == 1
    assert caught.value.status == 400
    assert str(caught.value) == (
        f"openai/{MODEL}: HTTP 400: invalid_request_error: This model's maximum context length is 65536 tokens."
    )


async def test_rate_limits_give_up_after_max_attempts(server: FakeServer) -> None:
    server.then(*(openai_error(429, "Rate limit reached", kind="rate_limit_error") for _ in range(3)))
    with pytest.raises(ModelAPIError) as caught:
        await model(server, max_attempts=3).generate(short_chat())
    assert (caught.value.status, caught.value.attempts, len(server.requests)) == (429, 3, 3)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply({"error": "model 'llama3.3' not found"}, status=404), "HTTP 404: model 'llama3.3' not found"),
        (
            Reply({"object": "error", "message": "The model `gpt-x` does not exist.", "code": 404}, status=404),
            "HTTP 404: The model `gpt-x` does not exist.",
        ),
        (Reply(b"<html>Bad Gateway</html>", status=418), "HTTP 418: <html>Bad Gateway</html>"),
    ],
)
async def test_error_bodies_of_every_server_shape_are_quoted(server: FakeServer, reply: Reply, message: str) -> None:
    server.then(reply)
    with pytest.raises(ModelAPIError, match=message.replace("(", r"\(")):
        await model(server).generate(short_chat())


async def test_an_error_inside_a_200_counts_as_its_code(server: FakeServer) -> None:
    busy = Reply({"error": {"message": "Provider returned error", "code": 429}})
    server.then(busy)
    await model(server).generate(short_chat())
    assert len(server.requests) == 2
    server.then(Reply({"error": {"message": "Invalid credentials", "code": 401}}))
    with pytest.raises(ModelAPIError, match="HTTP 401: Invalid credentials"):
        await model(server).generate(short_chat())
    assert len(server.requests) == 3


async def test_connection_failures_are_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpenAIModel(
        MODEL, base_url=f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(max_attempts=2, wait=lambda state: 0.0)
    )
    with pytest.raises(ModelAPIError) as caught:
        await client.generate(short_chat())
    assert (caught.value.status, caught.value.attempts) == (None, 2)
    assert "ConnectError" in str(caught.value)


async def test_no_choices_is_a_model_error(server: FakeServer) -> None:
    server.then(Reply({**choices(1), "choices": []}))
    with pytest.raises(ModelError, match="no choices"):
        await model(server).generate(short_chat())


# ------------------------------------------------------------------- accounting
async def test_usage_cached_tokens_and_cost(server: FakeServer) -> None:
    server.then(Reply(openai_completion([OTHER, OTHER], prompt_tokens=2000, completion_tokens=200, cached_tokens=1536)))
    client = model(server, pricing=Pricing(input=0.56, output=1.68, cache_read=0.07))
    first, second = await client.generate(short_chat(), n=2)
    assert second.metadata["usage"] == first.metadata["usage"]
    assert first.metadata["usage"]["input_tokens"] == 232
    assert first.metadata["usage"]["cache_read_tokens"] == 768
    assert first.metadata["usage"]["output_tokens"] == 100
    total = client.meter.total
    assert (total.input_tokens, total.cache_read_tokens, total.output_tokens) == (464, 1536, 200)
    assert total.cost_usd == pytest.approx((464 * 0.56 + 1536 * 0.07 + 200 * 1.68) / 1e6)
    assert "cost_note" not in first.metadata


async def test_without_pricing_the_cost_is_zero_and_noted(server: FakeServer) -> None:
    client = model(server)
    [sample] = await client.generate(short_chat())
    assert client.meter.total.cost_usd == 0.0
    assert client.meter.total.input_tokens == 1187
    assert "no price configured" in sample.metadata["cost_note"]


async def test_a_reply_without_usage_is_noted(server: FakeServer) -> None:
    server.then(Reply({k: v for k, v in choices(1).items() if k != "usage"}))
    [sample] = await model(server).generate(short_chat())
    assert "no readable token usage" in sample.metadata["usage_note"]


async def test_tool_calls_without_ids_get_fresh_ones(server: FakeServer) -> None:
    call = {"type": "function", "function": {"name": "execute_command", "arguments": {"command": "git log -1"}}}
    server.then(Reply(openai_completion([{"content": None, "tool_calls": [call]}])))
    [sample] = await model(server).generate(short_chat())
    [use] = sample.tool_uses
    assert use.id.startswith("call_") and use.input == {"command": "git log -1"}
    assert sample.metadata["generated_tool_call_ids"] == [use.id]


# ---------------------------------------------------------------- configuration
def test_openai_itself_needs_a_key() -> None:
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4.1")


def test_a_base_url_must_be_http() -> None:
    with pytest.raises(ModelConfigError, match="http"):
        OpenAIModel("llama", base_url="localhost:8080")


async def test_openai_itself_gets_max_completion_tokens_and_no_reasoning(server: FakeServer) -> None:
    client = OpenAIModel("gpt-4.1", api_key="sk-proj-test")
    assert client.base_url == "https://api.openai.com/v1"
    body = client.prepare(before_flagged()).body
    assert body["max_completion_tokens"] == 32768 and "max_tokens" not in body
    assert all("reasoning_content" not in m for m in body["messages"])


async def test_base_url_and_key_come_from_the_environment(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    client = get_model("openai/Qwen/Qwen3-8B", retry=RetryPolicy(wait=lambda state: 0.0))
    assert isinstance(client, OpenAIModel)
    await client.generate(short_chat())
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].body["model"] == "Qwen/Qwen3-8B"
    assert server.requests[0].headers["authorization"] == "Bearer sk-local"
    assert client.describe()["base_url"] == f"{server.url}/v1"
    await client.aclose()


def test_the_client_works_across_event_loops(server: FakeServer) -> None:
    client = model(server)
    asyncio.run(client.generate(short_chat()))
    asyncio.run(client.generate(short_chat()))
    assert len(server.requests) == 2


# ------------------------------------------------------------------ bad replies
def _json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _paths(sub, (*path, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            out += _paths(sub, (*path, index))
    return out


def _substitute(valid: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    body = json.loads(json.dumps(valid))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_garbled_responses_are_model_errors_or_messages(server: FakeServer) -> None:
    """Whatever a server answers with a 200, the caller gets messages or a `ModelError`."""
    valid = openai_completion([RESAMPLED, OTHER])
    raw = json.dumps(valid).encode()
    replies = (
        st.builds(lambda p, v: _substitute(valid, p, v), st.sampled_from(_paths(valid)), _json_values())
        | st.integers(min_value=0, max_value=len(raw) - 1).map(lambda cut: raw[:cut])
        | _json_values()
    )
    loop = asyncio.new_event_loop()
    client = model(server, max_attempts=1)

    @settings(max_examples=150, deadline=None)
    @given(reply=replies)
    def check(reply: Any) -> None:
        server.then(Reply(reply))
        try:
            samples = loop.run_until_complete(client.generate(short_chat(), n=2))
        except ModelError as exc:
            assert str(exc).startswith(f"openai/{MODEL}: ")
        else:
            assert len(samples) == 2 and all(s.role == "assistant" for s in samples)

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
