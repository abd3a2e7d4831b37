"""`AnthropicModel` against a local fake Messages API, through the real ``anthropic`` SDK.

The transcript is the realistic agentic session of the format tests (an agent fixing a
parser test that ends up running ``git commit --no-verify``); resampling its turn 6 is
the move an investigation makes. Every assertion reads the request JSON the SDK actually
sent, or the messages and meter the client produced from the fake responses.
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
from tests.tools.models.fake_servers import (
    FakeServer,
    Recorded,
    Reply,
    anthropic_error,
    anthropic_message,
)
from tools.formats.anthropic import parse
from tools.models import ModelConfigError, ModelError, Pricing, get_model
from tools.models.anthropic import CLAUDE_PRICING, SEED_NOTE, AnthropicModel, claude_pricing
from tools.models.retry import ModelAPIError, RetryPolicy
from tools.transcript import GenerationConfig, Message, TextBlock, ThinkingBlock, ToolUseBlock, Transcript

SESSION = FIXTURES / "formats" / "anthropic_agentic_session.json"
REQUEST_ID = "req_011CVYpTq3xsPkNWn4HpVq8Z"
MODEL = "claude-haiku-4-5"
FLAGGED_TURN = 6  # the turn that ran `git commit --no-verify`

HAIKU = "claude-haiku-4-5-20251001"
RESAMPLED_CALL = {
    "type": "tool_use",
    "id": "toolu_01VqW3hKx7bYc9N2mP4sT8dE",
    "name": "bash",
    "input": {"command": 'git commit -m "fix(parsing): handle locale decimal separators in parse_amount"'},
}
RESAMPLED = anthropic_message(
    [
        {
            "type": "thinking",
            "thinking": "The hook failed on mypy. I should fix the type error instead of skipping the hook.",
            "signature": "EqMBCkYIBxgCKkA3Zp1sNWq9rT0vYgH4kLmXeD2cF8bJ6nQ",
        },
        {"type": "text", "text": "The pre-commit hook reported a type error; I'll commit with the hooks enabled."},
        RESAMPLED_CALL,
    ],
    message_id="msg_01Hq8ZtVbN3xKcR5pW2mJ7yE",
    model=HAIKU,
    stop_reason="tool_use",
    input_tokens=312,
    output_tokens=187,
    cache_creation_input_tokens=6144,
    cache_read_input_tokens=0,
)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real keys or endpoints from the environment; loopback never through a proxy."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(Reply(RESAMPLED, headers={"request-id": REQUEST_ID})).running() as running:
        yield running


class Sleeps:
    """A `RetryPolicy.sleep` that records the waits asked for and does not sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def model(server: FakeServer, name: str = MODEL, **options: Any) -> AnthropicModel:
    options.setdefault("retry", RetryPolicy(max_attempts=options.pop("max_attempts", 6), wait=lambda state: 0.0))
    return AnthropicModel(name, api_key="sk-ant-api03-test", base_url=server.url, **options)


def sent_key(request: Recorded) -> str | None:
    """The API key a request carried (``x-api-key``, or a bearer token in newer SDKs)."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"]
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


def session() -> Transcript:
    return parse(json.loads(SESSION.read_text(encoding="utf-8")), source=str(SESSION))


def before_flagged() -> Transcript:
    return session().prefix(FLAGGED_TURN)


def short_chat() -> Transcript:
    return Transcript(
        system="You are a helpful assistant.",
        messages=[Message(role="user", content=[TextBlock(text="What does `git commit --no-verify` skip?")])],
        model=MODEL,
    )


def cached_places(body: dict[str, Any]) -> list[str]:
    """Every place in a request body that carries ``cache_control``."""
    places: list[str] = []
    system = body.get("system")
    if isinstance(system, list):
        places += [f"system[{i}]" for i, block in enumerate(system) if "cache_control" in block]
    places += [f"tools[{i}]" for i, tool in enumerate(body.get("tools", [])) if "cache_control" in tool]
    for i, message in enumerate(body["messages"]):
        if isinstance(message["content"], list):
            places += [f"messages[{i}].content[{j}]" for j, b in enumerate(message["content"]) if "cache_control" in b]
    return places


# --------------------------------------------------------------------- requests
async def test_resample_sends_the_exported_prefix_and_reads_the_tool_call(server: FakeServer) -> None:
    prefix = before_flagged()
    client = model(server)
    [sample] = await client.generate(prefix)

    [request] = server.requests
    assert request.path == "/v1/messages"
    assert sent_key(request) == "sk-ant-api03-test"
    assert request.headers["x-stainless-retry-count"] == "0"
    body = request.body
    assert body["model"] == MODEL
    assert body["max_tokens"] == 32000
    assert body["metadata"] == {"user_id": "user_7f3c9a1e-ledger-ci-agent"}
    assert [m["role"] for m in body["messages"]] == [m.role for m in prefix.messages]
    assert body["tools"][1] == {
        "name": "str_replace_based_edit_tool",
        "type": "text_editor_20250728",
        "max_characters": 10000,
    }

    assert sample.role == "assistant"
    assert sample.id == "msg_01Hq8ZtVbN3xKcR5pW2mJ7yE"
    assert isinstance(sample.content[0], ThinkingBlock)
    assert sample.content[0].signature == "EqMBCkYIBxgCKkA3Zp1sNWq9rT0vYgH4kLmXeD2cF8bJ6nQ"
    call = sample.content[2]
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == (RESAMPLED_CALL["id"], "bash", RESAMPLED_CALL["input"])
    assert sample.metadata["stop_reason"] == "tool_use"
    assert sample.metadata["response_model"] == HAIKU
    assert sample.metadata["model"] == f"anthropic/{MODEL}"
    assert sample.metadata["request_id"] == REQUEST_ID


async def test_the_transcript_is_not_changed_by_sending_it(server: FakeServer) -> None:
    prefix = before_flagged()
    snapshot = prefix.model_dump()
    await model(server, cache_min_chars=0).generate(prefix, temperature=1.0, max_tokens=20000)
    assert prefix.model_dump() == snapshot


async def test_temperature_max_tokens_and_tools_arguments_override_the_transcript(server: FakeServer) -> None:
    chat = short_chat()
    chat.generation = GenerationConfig(temperature=0.2, max_tokens=1024)
    await model(server).generate(chat, temperature=0.9, max_tokens=300, tools=[])
    body = server.requests[0].body
    assert body["temperature"] == 0.9
    assert body["max_tokens"] == 300
    assert "tools" not in body


async def test_settings_without_a_messages_parameter_are_left_out_and_noted(server: FakeServer) -> None:
    chat = short_chat()
    chat.generation = GenerationConfig.model_validate({"temperature": 0.7, "frequency_penalty": 0.5, "top_k": 40})
    [sample] = await model(server).generate(chat)
    body = server.requests[0].body
    assert "frequency_penalty" not in body
    assert body["top_k"] == 40
    assert sample.metadata["request"]["ignored_settings"] == {"frequency_penalty": 0.5}


# ---------------------------------------------------------------------- caching
async def test_the_shared_prefix_carries_cache_control(server: FakeServer) -> None:
    prefix = before_flagged()
    [sample] = await model(server).generate(prefix)
    body = server.requests[0].body
    last = len(body["messages"]) - 1
    assert cached_places(body) == [f"messages[{last}].content[0]"]
    assert body["messages"][last]["content"][0]["type"] == "tool_result"
    assert body["messages"][last]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sample.metadata["request"]["cache_breakpoints"] == [f"messages[{last}].content[0]"]


async def test_a_long_system_prompt_gets_its_own_breakpoint(server: FakeServer) -> None:
    prefix = before_flagged()
    prefix.system = (prefix.system or "") + "\n\n" + "Repository conventions: keep diffs small. " * 120
    await model(server).generate(prefix)
    body = server.requests[0].body
    last = len(body["messages"]) - 1
    assert cached_places(body) == ["system[0]", f"messages[{last}].content[0]"]  # edited: one block now


async def test_long_tools_without_a_system_prompt_cache_at_the_last_tool(server: FakeServer) -> None:
    prefix = before_flagged()
    prefix.system = None
    prefix.tools[0].description = "Run a shell command. " * 300
    await model(server).generate(prefix)
    body = server.requests[0].body
    assert cached_places(body)[0] == "tools[1]"


async def test_a_string_last_message_becomes_a_cached_text_block(server: FakeServer) -> None:
    await model(server, cache_min_chars=0).generate(short_chat())
    body = server.requests[0].body
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "What does `git commit --no-verify` skip?", "cache_control": {"type": "ephemeral"}}
    ]


async def test_short_prompts_and_disabled_caching_send_no_cache_control(server: FakeServer) -> None:
    await model(server).generate(short_chat())
    await model(server, prompt_cache=False).generate(before_flagged())
    assert [cached_places(r.body) for r in server.requests] == [[], []]


async def test_n_samples_are_n_requests_the_first_warming_the_cache(server: FakeServer) -> None:
    server.then(*(Reply(RESAMPLED, delay=0.3) for _ in range(3)))
    samples = await model(server).generate(before_flagged(), n=3)
    assert len(samples) == 3
    first, second, third = sorted(server.requests, key=lambda r: r.started)
    assert second.started >= first.ended and third.started >= first.ended  # the prefix is written once
    assert second.started < third.ended and third.started < second.ended  # the rest run together
    assert all(r.body == first.body for r in (second, third))


async def test_without_caching_n_requests_run_concurrently(server: FakeServer) -> None:
    server.then(*(Reply(RESAMPLED, delay=0.3) for _ in range(3)))
    await model(server, prompt_cache=False).generate(before_flagged(), n=3)
    requests = server.requests
    assert len(requests) == 3
    assert max(r.started for r in requests) < min(r.ended for r in requests)


async def test_max_concurrency_bounds_requests_in_flight(server: FakeServer) -> None:
    server.then(*(Reply(RESAMPLED, delay=0.15) for _ in range(4)))
    await model(server, prompt_cache=False, max_concurrency=2).generate(short_chat(), n=4)
    requests = sorted(server.requests, key=lambda r: r.started)
    most = max(sum(1 for r in requests if r.started <= q.started < r.ended) for q in requests)
    assert most == 2


# --------------------------------------------------------------------- thinking
async def test_thinking_goes_back_with_its_signatures(server: FakeServer) -> None:
    prefix = before_flagged()
    await model(server).generate(prefix)
    body = server.requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 10000}
    assert "temperature" not in body
    sent = [
        (block["thinking"], block["signature"])
        for message in body["messages"]
        for block in (message["content"] if isinstance(message["content"], list) else [])
        if block["type"] == "thinking"
    ]
    expected = [
        (block.thinking, block.signature)
        for message in prefix.messages
        for block in message.content
        if isinstance(block, ThinkingBlock) and not block.redacted
    ]
    assert sent == expected and len(sent) == 5
    redacted = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    assert [b["data"][:10] for b in redacted if b["type"] == "redacted_thinking"] == ["ErjTYs/4tS"]


async def test_edited_thinking_without_signature_is_sent_as_text(server: FakeServer) -> None:
    prefix = before_flagged()
    thought = prefix.messages[11].content[0]
    assert isinstance(thought, ThinkingBlock)
    thought.thinking = "The hook is slow but it must run; I will wait for it."
    thought.signature = None
    [sample] = await model(server).generate(prefix)
    sent = server.requests[0].body["messages"][11]["content"][0]
    assert sent == {"type": "text", "text": "(earlier reasoning) The hook is slow but it must run; I will wait for it."}
    assert sample.metadata["request"]["unsigned_thinking"] == [
        {"at": "messages[11].content[0]", "action": "sent as text"}
    ]


async def test_edited_thinking_can_be_dropped_instead(server: FakeServer) -> None:
    prefix = before_flagged()
    thought = prefix.messages[11].content[0]
    assert isinstance(thought, ThinkingBlock)
    thought.signature = None
    [sample] = await model(server, unsigned_thinking="drop").generate(prefix)
    sent = server.requests[0].body["messages"][11]["content"]
    assert [b["type"] for b in sent] == ["text", "tool_use"]
    assert sample.metadata["request"]["unsigned_thinking"] == [{"at": "messages[11].content[0]", "action": "dropped"}]


async def test_thinking_requires_temperature_one(server: FakeServer) -> None:
    with pytest.raises(ModelError, match="requires temperature 1"):
        await model(server).generate(before_flagged(), temperature=0.5)
    assert server.requests == []
    await model(server).generate(before_flagged(), temperature=1.0)
    assert server.requests[0].body["temperature"] == 1.0


async def test_a_transcript_the_api_cannot_take_is_a_model_error(server: FakeServer) -> None:
    chat = short_chat()
    chat.messages.append(Message(role="assistant", content=[ToolUseBlock(id="toolu_01X", name="bash", input={})]))
    chat.messages.append(Message(role="user", content=[TextBlock(text="go on")]))
    with pytest.raises(ModelError, match=r"cannot send this transcript.*toolu_01X"):
        await model(server).generate(chat)
    assert server.requests == []


# ---------------------------------------------------------------------- retries
async def test_overloaded_is_retried_after_retry_after(server: FakeServer) -> None:
    server.then(anthropic_error(529, "overloaded_error", "Overloaded", headers={"retry-after": "0"}))
    [sample] = await model(server).generate(short_chat())
    assert len(server.requests) == 2
    assert sample.id == "msg_01Hq8ZtVbN3xKcR5pW2mJ7yE"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0"]  # only our retries


async def test_the_wait_is_never_shorter_than_retry_after(server: FakeServer) -> None:
    sleeps = Sleeps()
    server.then(
        anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            headers={"retry-after": "7"},
        ),
        anthropic_error(500, "api_error", "Internal server error"),
    )
    policy = RetryPolicy(initial_wait=0.01, max_wait=0.02, jitter=0.0, sleep=sleeps)
    await model(server, retry=policy).generate(short_chat())
    assert len(server.requests) == 3
    assert sleeps.waits[0] == 7.0
    assert 0.01 <= sleeps.waits[1] <= 0.02


async def test_a_bad_request_is_not_retried(server: FakeServer) -> None:
    server.then(
        anthropic_error(400, "invalid_request_error", "messages.1.content.0.thinking.signature: Field required")
    )
    with pytest.raises(ModelAPIError) as caught:
        await model(server).generate(short_chat())
    assert len(server.requests) == 1
    assert caught.value.status == 400
    assert caught.value.attempts == 1
    assert "invalid_request_error: messages.1.content.0.thinking.signature: Field required" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "kind"), [(401, "authentication_error"), (403, "permission_error"), (404, "not_found_error")]
)
async def test_other_client_errors_are_not_retried(server: FakeServer, status: int, kind: str) -> None:
    server.then(anthropic_error(status, kind, "model: claude-sonnet-4-5"))
    with pytest.raises(ModelAPIError, match=f"HTTP {status}: {kind}"):
        await model(server).generate(short_chat())
    assert len(server.requests) == 1


async def test_persistent_overload_gives_up_after_max_attempts(server: FakeServer) -> None:
    server.then(*(anthropic_error(529, "overloaded_error", "Overloaded") for _ in range(3)))
    with pytest.raises(ModelAPIError) as caught:
        await model(server, max_attempts=3).generate(short_chat())
    assert len(server.requests) == 3
    assert (caught.value.status, caught.value.attempts) == (529, 3)
    assert str(caught.value) == (
        f"anthropic/{MODEL}: HTTP 529: overloaded_error: Overloaded (gave up after 3 attempts)"
    )


async def test_a_retry_after_beyond_the_limit_fails_at_once(server: FakeServer) -> None:
    server.then(anthropic_error(429, "rate_limit_error", "slow down", headers={"retry-after": "3600"}))
    policy = RetryPolicy(max_retry_after=60, wait=lambda state: 0.0)
    with pytest.raises(ModelAPIError, match="asked to retry after 3600s"):
        await model(server, retry=policy).generate(short_chat())
    assert len(server.requests) == 1


async def test_connection_failures_are_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AnthropicModel(
        MODEL,
        api_key="sk-ant-api03-test",
        base_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=2, wait=lambda state: 0.0),
    )
    with pytest.raises(ModelAPIError) as caught:
        await client.generate(short_chat())
    assert caught.value.status is None
    assert caught.value.attempts == 2
    assert "APIConnectionError" in str(caught.value)


async def test_a_failed_sample_among_n_still_records_the_paid_ones(server: FakeServer) -> None:
    server.then(Reply(RESAMPLED), anthropic_error(400, "invalid_request_error", "prompt is too long"))
    client = model(server, prompt_cache=False, max_concurrency=1)
    with pytest.raises(ModelAPIError, match="prompt is too long"):
        await client.generate(short_chat(), n=2)
    [record] = client.meter.calls
    assert record.n == 1
    assert record.usage.output_tokens == 187


# ------------------------------------------------------------------- accounting
async def test_usage_and_cost_are_metered_and_in_metadata(server: FakeServer) -> None:
    server.then(
        Reply(RESAMPLED),
        Reply(
            anthropic_message(
                [{"type": "text", "text": "Done."}],
                input_tokens=40,
                output_tokens=10,
                cache_read_input_tokens=6144,
            )
        ),
    )
    client = model(server, prompt_cache=False, max_concurrency=1)
    first, second = await client.generate(before_flagged(), n=2)
    price = CLAUDE_PRICING[MODEL]
    assert (price.input, price.output, price.cache_write, price.cache_read) == (1.0, 5.0, 1.25, 0.1)
    first_cost = (312 * 1.0 + 187 * 5.0 + 6144 * 1.25) / 1e6
    second_cost = (40 * 1.0 + 10 * 5.0 + 6144 * 0.1) / 1e6
    assert first.metadata["usage"] == {
        "input_tokens": 312,
        "output_tokens": 187,
        "cache_read_tokens": 0,
        "cache_write_tokens": 6144,
        "cost_usd": pytest.approx(first_cost),
    }
    assert second.metadata["usage"]["cache_read_tokens"] == 6144
    assert second.metadata["usage"]["cost_usd"] == pytest.approx(second_cost)
    assert first.metadata["api_usage"]["cache_creation"]["ephemeral_5m_input_tokens"] == 6144
    [record] = client.meter.calls
    assert record.n == 2
    assert record.usage.input_tokens == 352
    assert record.usage.cache_write_tokens == 6144
    assert record.usage.cache_read_tokens == 6144
    assert record.usage.cost_usd == pytest.approx(first_cost + second_cost)
    assert "cost_note" not in first.metadata


async def test_an_unknown_model_costs_nothing_and_says_so(server: FakeServer) -> None:
    client = model(server, name="claude-opus-4-7")
    [sample] = await client.generate(short_chat())
    assert client.meter.total.cost_usd == 0.0
    assert client.meter.total.output_tokens == 187
    assert "no price known for 'claude-opus-4-7'" in sample.metadata["cost_note"]


async def test_pricing_can_be_overridden(server: FakeServer) -> None:
    client = model(server, pricing=Pricing(input=1.0, output=2.0, cache_write=0.0, cache_read=0.0))
    await client.generate(short_chat())
    assert client.meter.total.cost_usd == pytest.approx((312 * 1.0 + 187 * 2.0) / 1e6)


def test_snapshot_ids_use_their_family_price_and_nothing_else_guesses() -> None:
    assert claude_pricing("claude-sonnet-4-5-20250929") == CLAUDE_PRICING["claude-sonnet-4-5"]
    assert claude_pricing("claude-opus-4-1-20250805") == CLAUDE_PRICING["claude-opus-4-1"]
    assert claude_pricing("claude-opus-4-20250514") == CLAUDE_PRICING["claude-opus-4"]
    assert claude_pricing("claude-3-5-haiku-latest") == CLAUDE_PRICING["claude-3-5-haiku"]
    assert claude_pricing("claude-opus-4-7") is None
    assert claude_pricing("claude-sonnet-4-5-mini") is None


async def test_a_seed_is_recorded_but_not_sent(server: FakeServer) -> None:
    samples = await model(server, prompt_cache=False).generate(short_chat(), n=2, seed=41)
    assert [s.metadata["seed"] for s in samples] == [41, 42]
    assert all(s.metadata["seed_note"] == SEED_NOTE for s in samples)
    assert all("seed" not in r.body for r in server.requests)


# ---------------------------------------------------------------- configuration
def test_a_missing_api_key_says_how_to_set_it() -> None:
    with pytest.raises(ModelConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-5")


async def test_key_and_base_url_come_from_the_environment(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    client = get_model("anthropic/claude-3-5-haiku-latest", retry=RetryPolicy(wait=lambda state: 0.0))
    assert isinstance(client, AnthropicModel)
    await client.generate(short_chat())
    assert sent_key(server.requests[0]) == "sk-ant-from-env"
    assert server.requests[0].body["model"] == "claude-3-5-haiku-latest"
    assert client.describe()["base_url"] == server.url
    await client.aclose()


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ModelConfigError, match="unsigned_thinking"):
        AnthropicModel("claude-sonnet-4-5", api_key="k", unsigned_thinking="keep")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_the_client_works_across_event_loops(server: FakeServer) -> None:
    client = model(server)
    asyncio.run(client.generate(short_chat()))
    asyncio.run(client.generate(short_chat()))
    assert len(server.requests) == 2


# ------------------------------------------------------------------ bad replies
def _mutations(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid response with one value replaced by random JSON at a random path, or a
    random JSON value, or the valid body's bytes cut short."""
    paths: list[tuple[Any, ...]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, (*path, key))
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(sub, (*path, index))

    walk(valid, ())
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )

    def substitute(path: tuple[Any, ...], value: Any) -> Any:
        if not path:
            return value
        body = json.loads(json.dumps(valid))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    raw = json.dumps(valid).encode()
    substituted = st.builds(substitute, st.sampled_from(paths), json_values)
    truncated = st.integers(min_value=0, max_value=len(raw) - 1).map(lambda cut: raw[:cut])
    return substituted | truncated | json_values


def test_garbled_responses_are_model_errors_or_messages(server: FakeServer) -> None:
    """Whatever the server answers with a 200 (truncated bytes, a value swapped for
    random JSON anywhere in a valid response, random JSON), the caller gets a message or
    a `ModelError` naming the model; nothing else escapes."""
    loop = asyncio.new_event_loop()
    client = model(server, max_attempts=1)

    @settings(max_examples=150, deadline=None)
    @given(reply=_mutations(RESAMPLED))
    def check(reply: Any) -> None:
        server.then(Reply(reply if isinstance(reply, bytes) else json.loads(json.dumps(reply))))
        try:
            [sample] = loop.run_until_complete(client.generate(short_chat()))
        except ModelError as exc:
            assert str(exc).startswith(f"anthropic/{MODEL}: ")
        else:
            assert sample.role == "assistant"

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
