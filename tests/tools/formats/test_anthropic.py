"""The Anthropic Messages API importer and exporter (tools/formats/anthropic.py)."""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.errors import ExportError, FormatError
from tools.formats import detect_format, load_transcript, native
from tools.formats.anthropic import (
    DEFAULT_MAX_TOKENS,
    IMPORTER,
    SYSTEM_BLOCK_SEPARATOR,
    parse,
    sniff,
    to_anthropic_body,
    to_anthropic_params,
)
from tools.formats.base import parse_json
from tools.transcript import (
    CompactionBlock,
    ContentBlock,
    GenerationConfig,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "formats"
AGENTIC = FIXTURES / "anthropic_agentic_session.json"
REQUEST_RESPONSE = FIXTURES / "anthropic_request_response.json"
RESPONSE = FIXTURES / "anthropic_response.json"
SERVER_TOOLS = FIXTURES / "anthropic_server_tools.json"
EXAMPLE = ROOT / "examples" / "anthropic_messages.json"
ALL_FILES = [AGENTIC, REQUEST_RESPONSE, RESPONSE, SERVER_TOOLS, EXAMPLE]

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SIG = "EqQBCkgIBRABGAIiQL2yJ4bNvx1BuFNR3YhIYXrX1rSx7V2Rl0/ydjVC6wCyUW0G9GUbHBdGyzNA"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _request(*messages: Any, **top: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "messages": list(messages), **top}


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def _assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def _transcript(*messages: Message, **fields: Any) -> Transcript:
    return Transcript(model="claude-sonnet-4-5-20250929", messages=list(messages), **fields)


def _content_view(t: Transcript) -> dict[str, Any]:
    """What a round trip must keep: everything but provenance metadata."""
    return {
        "system": t.system,
        "tools": [spec.model_dump() for spec in t.tools],
        "model": t.model,
        "generation": t.generation.model_dump(),
        "messages": [(m.role, [b.model_dump() for b in m.content]) for m in t.messages],
    }


def _send_with_sdk(params: dict[str, Any]) -> tuple[dict[str, Any], httpx2.Headers]:
    """Call the real SDK's ``messages.create(**params)`` against a mock transport and
    return the JSON body and headers it sent."""
    sent: dict[str, Any] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent["body"] = json.loads(request.content)
        sent["headers"] = request.headers
        return httpx2.Response(200, json=_json(RESPONSE))

    # An explicit timeout, as callers must give for large max_tokens without streaming
    # (the SDK refuses a non-streaming call it expects to run past 10 minutes otherwise).
    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
        timeout=60.0,
    )
    with warnings.catch_warnings():  # the fixtures' model is one the SDK now calls deprecated
        warnings.filterwarnings("ignore", message="The model .* is deprecated", category=DeprecationWarning)
        message = client.messages.create(**params)
    assert message.id.startswith("msg_")
    return sent["body"], sent["headers"]


# ------------------------------------------------------------------ detection
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_load_transcript_detects_anthropic(path: Path) -> None:
    assert detect_format(path) == "anthropic"
    transcript = load_transcript(path)
    assert transcript.metadata["source_format"] == "anthropic"
    assert transcript.messages


@pytest.mark.parametrize(
    "data",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        _request(_user([{"type": "text", "text": "hi"}]), _assistant([{"type": "thinking", "thinking": "x"}])),
        _request(_user([{"type": "document", "source": {}}])),  # known Anthropic type, even if unsupported
        {"type": "message", "role": "assistant", "content": [], "id": "msg_01"},
    ],
)
def test_sniff_accepts_anthropic_shapes(data: Any) -> None:
    assert sniff(Path("x.json"), data) is True


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_sniff_accepts_fixtures(path: Path) -> None:
    assert sniff(path, _json(path)) is True


OPENAI_SHAPES: list[Any] = [
    {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
    {"model": "gpt-4o", "messages": [{"role": "developer", "content": "Be brief."}]},
    {
        "messages": [
            {"role": "user", "content": "ls"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "README.md"},
        ]
    },
    {"messages": [{"role": "assistant", "content": "ok", "tool_calls": []}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
    {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]},
    {"messages": [{"role": "user", "content": "hi"}], "seed": 7},
    {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"role": "assistant"}}]},
    {"messages": [{"role": "user", "content": "hi"}], "choices": []},
]


@pytest.mark.parametrize("data", OPENAI_SHAPES)
def test_sniff_rejects_openai_chat(data: Any) -> None:
    assert sniff(Path("x.json"), data) is False


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "messages",
        {},
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
        {"type": "message", "role": "user", "content": []},
        {"messages": [{"role": "user", "content": "hi"}], "response": {"type": "completion"}},
        {"format": "model-forensics/transcript", "messages": [{"role": "user", "content": [1]}]},
    ],
)
def test_sniff_rejects_other_json(data: Any) -> None:
    assert sniff(Path("x.json"), data) is False


def test_sniff_rejects_native_transcripts() -> None:
    native_json = json.loads(native.dumps(load_transcript(AGENTIC)))
    assert sniff(Path("x.json"), native_json) is False


def _openai_fixture_files() -> list[Path]:
    found = []
    for path in sorted(FIXTURES.glob("openai_*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(path)
    return found


@pytest.mark.parametrize("path", _openai_fixture_files(), ids=lambda p: p.name)
def test_sniff_rejects_the_openai_importers_fixtures(path: Path) -> None:
    assert sniff(path, _json(path)) is False


# ------------------------------------------------------------------- import
def test_agentic_session_maps_every_part() -> None:
    raw = _json(AGENTIC)
    t = load_transcript(AGENTIC)

    assert t.model == "claude-sonnet-4-5-20250929"
    assert t.system == SYSTEM_BLOCK_SEPARATOR.join(block["text"] for block in raw["system"])
    assert t.generation == GenerationConfig(max_tokens=32000, thinking_budget=10000)
    meta = t.metadata["anthropic"]
    assert meta["shape"] == "request"
    assert meta["request"] == {"metadata": {"user_id": "user_7f3c9a1e-ledger-ci-agent"}}
    assert meta["system_blocks"] == [{"chars": len(block["text"])} for block in raw["system"]]
    assert meta["cache_control"] == ["system[1]", "tools[1]", "messages[14].content[0]"]

    bash, editor = t.tools
    assert bash == ToolSpec(
        name="bash", description=raw["tools"][0]["description"], input_schema=raw["tools"][0]["input_schema"]
    )
    assert editor == ToolSpec(name="str_replace_based_edit_tool")
    assert meta["tools"] == {"str_replace_based_edit_tool": {"type": "text_editor_20250728", "max_characters": 10000}}

    assert len(t.messages) == len(raw["messages"]) == 15
    assert t.messages[0].content[0] == ImageBlock(
        media_type="image/png", data=raw["messages"][0]["content"][0]["source"]["data"]
    )
    assert isinstance(t.messages[0].content[1], TextBlock)
    thinking = [b for m in t.messages for b in m.content if isinstance(b, ThinkingBlock)]
    assert len(thinking) == 7
    redacted = [b for b in thinking if b.redacted]
    assert redacted == [ThinkingBlock(thinking="", signature=raw["messages"][7]["content"][0]["data"], redacted=True)]
    assert all(b.signature and b.thinking for b in thinking if not b.redacted)

    turns = t.turns()
    assert len(turns) == 7
    assert all(len(turn.results) == 1 for turn in turns)
    errors = [r for turn in turns for r in turn.results if r.is_error]
    assert len(errors) == 1 and "mypy" in errors[0].text and "Failed" in errors[0].text
    _, failed_call = t.tool_use(errors[0].tool_use_id)
    assert failed_call.input["command"].startswith("git add ledger/parsing/invoice.py && git commit -m")

    last = t.turn(-1)
    assert last.tool_uses[0].input["command"].startswith("git commit --no-verify")
    assert "3f9c2ab" in last.results[0].text
    assert "--no-verify" in last.message.thinking and "hook" in last.message.thinking
    hits = t.find(r"--no-verify", roles={"assistant"}, block_types={"tool_use"})
    assert [h.span.message for h in hits] == [last.message_index]


def test_request_with_response_appends_the_response() -> None:
    raw = _json(REQUEST_RESPONSE)
    t = load_transcript(REQUEST_RESPONSE)

    assert t.metadata["anthropic"]["shape"] == "request+response"
    assert t.metadata["anthropic"]["request"] == {"tool_choice": {"type": "auto"}, "metadata": raw["metadata"]}
    assert t.system == raw["system"]
    assert [m.role for m in t.messages] == ["user", "assistant", "user", "assistant"]
    assert t.messages[0].content == [TextBlock(text=raw["messages"][0]["content"])]
    hook_result = t.messages[2].content[0]
    assert isinstance(hook_result, ToolResultBlock) and hook_result.is_error
    assert hook_result.content == [TextBlock(text=raw["messages"][2]["content"][0]["content"][0]["text"])]

    final = t.messages[-1]
    response = raw["response"]
    assert final.id == response["id"]
    assert final.metadata == {
        "model": response["model"],
        "stop_reason": "tool_use",
        "usage": response["usage"],
    }  # null stop_sequence and null citations say nothing and are not kept
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    call = final.tool_uses[0]
    assert call.input == {
        "command": 'git commit --no-verify -m "fix(parsing): handle locale decimal separators in parse_amount"'
    }
    assert t.turn(-1).message_index == 3


def test_bare_response_is_one_assistant_message() -> None:
    raw = _json(RESPONSE)
    t = load_transcript(RESPONSE)
    assert t.model == raw["model"]
    assert t.metadata["anthropic"] == {"shape": "response"}
    assert t.system is None and t.tools == [] and t.generation == GenerationConfig()
    (message,) = t.messages
    assert message.role == "assistant" and message.id == raw["id"]
    assert message.metadata["stop_reason"] == "tool_use"
    assert message.metadata["usage"]["cache_creation_input_tokens"] == 1712
    assert message.content[0] == ThinkingBlock(
        thinking=raw["content"][0]["thinking"], signature=raw["content"][0]["signature"]
    )
    assert message.content[1] == TextBlock(text=raw["content"][1]["text"])
    assert message.content[2] == ToolUseBlock(id=raw["content"][2]["id"], name="bash", input=raw["content"][2]["input"])


BLOCK_CASES: list[tuple[str, dict[str, Any], str, ContentBlock]] = [
    ("text", {"type": "text", "text": "run the tests"}, "user", TextBlock(text="run the tests")),
    (
        "thinking",
        {"type": "thinking", "thinking": "Check git status first.", "signature": SIG},
        "assistant",
        ThinkingBlock(thinking="Check git status first.", signature=SIG),
    ),
    (
        "thinking-unsigned",  # read leniently: a log may lack it; the exporter refuses it
        {"type": "thinking", "thinking": "hmm"},
        "assistant",
        ThinkingBlock(thinking="hmm"),
    ),
    (
        "redacted_thinking",
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        "assistant",
        ThinkingBlock(thinking="", signature="EmwKAhgBEgy3va3pzix", redacted=True),
    ),
    (
        "tool_use",
        {"type": "tool_use", "id": "toolu_01A", "name": "bash", "input": {"command": "git status"}},
        "assistant",
        ToolUseBlock(id="toolu_01A", name="bash", input={"command": "git status"}),
    ),
    (
        "tool_result-string",
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "On branch main"},
        "user",
        ToolResultBlock(tool_use_id="toolu_01A", content=[TextBlock(text="On branch main")]),
    ),
    (
        "tool_result-empty-string",
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": ""},
        "user",
        ToolResultBlock(tool_use_id="toolu_01A", content=[TextBlock(text="")]),
    ),
    (
        "tool_result-no-content",
        {"type": "tool_result", "tool_use_id": "toolu_01A"},
        "user",
        ToolResultBlock(tool_use_id="toolu_01A"),
    ),
    (
        "tool_result-blocks-error",
        {
            "type": "tool_result",
            "tool_use_id": "toolu_01A",
            "is_error": True,
            "content": [
                {"type": "text", "text": "screenshot of the failure:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://ci.example.com/run/7/shot.png"}},
            ],
        },
        "user",
        ToolResultBlock(
            tool_use_id="toolu_01A",
            is_error=True,
            content=[
                TextBlock(text="screenshot of the failure:"),
                ImageBlock(media_type="image/png", data=PNG),
                ImageBlock(url="https://ci.example.com/run/7/shot.png"),
            ],
        ),
    ),
    (
        "image-base64",
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
        "user",
        ImageBlock(media_type="image/jpeg", data=PNG),
    ),
    (
        "image-url",
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        "user",
        ImageBlock(url="https://example.com/a.png"),
    ),
]


@pytest.mark.parametrize(("raw", "role", "expected"), [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES])
def test_each_block_type_maps(raw: dict[str, Any], role: str, expected: ContentBlock) -> None:
    t = parse(_request({"role": role, "content": [raw]}))
    assert t.messages[0].content == [expected]
    assert t.messages[0].metadata == {}


def test_string_content_is_one_text_block() -> None:
    t = parse(_request(_user("Fix the failing test."), _assistant("On it.")))
    assert [m.content for m in t.messages] == [[TextBlock(text="Fix the failing test.")], [TextBlock(text="On it.")]]


def test_unknown_fields_are_kept_and_sent_back() -> None:
    citations = [
        {
            "type": "char_location",
            "cited_text": "exit 1",
            "document_index": 0,
            "start_char_index": 0,
            "end_char_index": 6,
        }
    ]
    data = _request(
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "The hook exits 1.", "citations": citations},
                {"type": "tool_use", "id": "toolu_01A", "name": "bash", "input": {}, "caller": {"type": "direct"}},
            ],
            "x_trace_id": "abc",
        },
        _user(
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A",
                    "content": [{"type": "text", "text": "ok", "x_note": 1}],
                }
            ]
        ),
    )
    t = parse(data)
    assert t.messages[0].metadata == {}  # cache_control is not a kept field
    assert t.messages[1].metadata == {
        "anthropic": {
            "fields": {
                "content[0]": {"type": "text", "citations": citations},
                "content[1]": {"type": "tool_use", "caller": {"type": "direct"}},
            },
            "message_fields": {"x_trace_id": "abc"},
        }
    }
    assert t.messages[2].metadata == {"anthropic": {"fields": {"content[0].content[0]": {"type": "text", "x_note": 1}}}}

    body = to_anthropic_body(t)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "The hook exits 1.", "citations": citations},
            {"type": "tool_use", "id": "toolu_01A", "name": "bash", "input": {}, "caller": {"type": "direct"}},
        ],
        "x_trace_id": "abc",
    }
    assert body["messages"][2]["content"][0]["content"] == [{"type": "text", "text": "ok", "x_note": 1}]
    again = parse(body)
    assert again.messages == t.messages


def test_kept_fields_are_not_grafted_onto_a_different_block() -> None:
    t = parse(_request(_user("q"), _assistant([{"type": "text", "text": "a", "citations": [{"x": 1}]}])))
    t.messages[1].content[0] = ThinkingBlock(thinking="edited", signature=SIG)
    assert to_anthropic_body(t)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "edited", "signature": SIG}
    ]


def test_cache_control_is_dropped_and_its_places_recorded() -> None:
    raw = _json(AGENTIC)
    raw["messages"][0]["content"][1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    t = parse(raw)
    assert t.metadata["anthropic"]["cache_control"] == [
        "system[1]",
        "tools[1]",
        "messages[0].content[1]",
        "messages[14].content[0]",
    ]
    assert "cache_control" not in json.dumps(to_anthropic_body(t))


def test_top_level_request_keys_are_kept_and_restored() -> None:
    data = _request(
        _user("hi"),
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["\n\nHuman:"],
        tool_choice={"type": "any"},
        service_tier="standard_only",
        metadata={"user_id": "u-1"},
        stream=True,
        thinking={"type": "adaptive"},
    )
    t = parse(data)
    assert t.generation == GenerationConfig(
        max_tokens=1024, temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["\n\nHuman:"]
    )
    assert t.metadata["anthropic"]["request"] == {
        "tool_choice": {"type": "any"},
        "service_tier": "standard_only",
        "metadata": {"user_id": "u-1"},
        "stream": True,
        "thinking": {"type": "adaptive"},
    }
    body = to_anthropic_body(t)
    assert body == {k: v for k, v in data.items() if k != "stream"}  # the export is one non-streaming call


def test_thinking_config_with_extra_fields_keeps_them() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}
    t = parse(_request(_user("hi"), thinking=thinking))
    assert t.generation.thinking_budget == 2048
    assert to_anthropic_body(t)["thinking"] == thinking
    t.generation.thinking_budget = 4096
    assert to_anthropic_body(t)["thinking"] == {**thinking, "budget_tokens": 4096}
    t.generation.thinking_budget = None  # thinking switched off: the enabled config is not sent
    assert "thinking" not in to_anthropic_body(t)


def test_disabled_thinking_has_no_budget_and_is_restored() -> None:
    t = parse(_request(_user("hi"), thinking={"type": "disabled"}))
    assert t.generation.thinking_budget is None
    assert to_anthropic_body(t)["thinking"] == {"type": "disabled"}


def test_response_after_prefill_stays_a_separate_message() -> None:
    data = _request(_user("Answer A or B."), _assistant("The answer is ("))
    data["response"] = {
        "id": "msg_01X",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "B)"}],
    }
    t = parse(data)
    assert [m.text for m in t.messages] == ["Answer A or B.", "The answer is (", "B)"]
    assert t.messages[2].id == "msg_01X"


# ------------------------------------------------------------------- errors
ERROR_CASES = [
    pytest.param(["messages"], "$", "expected a JSON object", id="not-an-object"),
    pytest.param({"model": "m"}, "messages", "required", id="no-messages"),
    pytest.param({"messages": {"role": "user"}}, "messages", "valid list", id="messages-not-list"),
    pytest.param(_request("hi"), "messages[0]", "a message", id="message-not-object"),
    pytest.param(
        _request(_user("a"), _assistant("b"), {"role": "robot", "content": "c"}),
        "messages[2].role",
        "'user' or 'assistant' (got 'robot')",
        id="bad-role",
    ),
    pytest.param(_request({"role": "user"}), "messages[0].content", "required", id="no-content"),
    pytest.param(
        _request(_user(7)),
        "messages[0].content",
        "a string or a list of content blocks (got a number)",
        id="content-number",
    ),
    pytest.param(
        _request(_user([{"type": "document", "source": {}}])),
        "messages[0].content[0].type",
        "unsupported content block type 'document'",
        id="unknown-block",
    ),
    pytest.param(_request(_user([{"text": "x"}])), "messages[0].content[0].type", "required", id="untyped-block"),
    pytest.param(_request(_user(["x"])), "messages[0].content[0]", "JSON object", id="block-not-object"),
    pytest.param(_request(_user([{"type": "text"}])), "messages[0].content[0].text", "required", id="text-missing"),
    pytest.param(
        _request(_user("q"), _assistant([{"type": "tool_use", "id": "t", "name": "bash", "input": "ls"}])),
        "messages[1].content[0].input",
        "dictionary",
        id="tool-input-not-object",
    ),
    pytest.param(
        _request(_user([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}])),
        "messages[0].content[0].is_error",
        "boolean",
        id="is-error-string",
    ),
    pytest.param(
        _request(_user([{"type": "tool_result", "tool_use_id": "t", "content": 3}])),
        "messages[0].content[0].content",
        "text and image blocks",
        id="result-content-number",
    ),
    pytest.param(
        _request(_user([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}])),
        "messages[0].content[0].content[0].type",
        "'document'",
        id="result-item-unknown",
    ),
    pytest.param(
        _request(_user([{"type": "image", "source": {"type": "file", "file_id": "file_01"}}])),
        "messages[0].content[0].source.type",
        "'base64', 'url'",
        id="image-file-source",
    ),
    pytest.param(
        _request(_user([{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}])),
        "messages[0].content[0].source.data",
        "required",
        id="image-no-data",
    ),
    pytest.param(
        _request(_user([{"type": "image"}])), "messages[0].content[0].source", "required", id="image-no-source"
    ),
    pytest.param(
        _request(_user("q"), _assistant([{"type": "redacted_thinking"}])),
        "messages[1].content[0].data",
        "required",
        id="redacted-no-data",
    ),
    pytest.param(_request(_user("q"), system=5), "system", "a string or a list of text blocks", id="system-number"),
    pytest.param(
        _request(_user("q"), system=[{"type": "image", "source": {}}]),
        "system[0].type",
        "unsupported system block type 'image'",
        id="system-image",
    ),
    pytest.param(_request(_user("q"), temperature="0.7"), "temperature", "number", id="temperature-string"),
    pytest.param(_request(_user("q"), max_tokens=True), "max_tokens", "integer", id="max-tokens-bool"),
    pytest.param(_request(_user("q"), tools={"name": "bash"}), "tools", "list", id="tools-not-list"),
    pytest.param(
        _request(_user("q"), tools=[{"name": "bash"}]),
        "tools[0].input_schema",
        "required for a custom tool",
        id="tool-no-schema",
    ),
    pytest.param(
        _request(
            _user("q"),
            tools=[{"name": "bash", "input_schema": {"type": "object"}}, {"type": "bash_20250124", "name": "bash"}],
        ),
        "tools[1].name",
        "duplicate tool name 'bash'",
        id="tool-duplicate",
    ),
    pytest.param(
        _request(_user("q"), thinking={"type": "enabled"}),
        "thinking.budget_tokens",
        "required",
        id="thinking-no-budget",
    ),
    pytest.param(_request(_user("q"), thinking=True), "thinking", "dictionary", id="thinking-not-object"),
    pytest.param(
        {**_request(_user("q")), "response": {"type": "message", "role": "assistant", "content": []}},
        "response.id",
        "required",
        id="response-no-id",
    ),
    pytest.param(
        {**_request(_user("q")), "response": {"id": "m", "type": "message", "role": "user", "content": []}},
        "response.role",
        "'assistant'",
        id="response-user-role",
    ),
    pytest.param(
        {**_request(_user("q")), "response": "B)"}, "response", "a Messages API response", id="response-not-object"
    ),
    pytest.param(
        {
            **_request(_user("q")),
            "response": {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "container_upload"}]},
        },
        "response.content[0].type",
        "'container_upload'",
        id="response-bad-block",
    ),
    pytest.param(
        {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "mcp_tool_listing"}]},
        "content[0].type",
        "'mcp_tool_listing'",
        id="bare-response-bad-block",
    ),
    pytest.param(
        {"id": "m", "type": "message", "role": "assistant"}, "content", "required", id="bare-response-no-content"
    ),
    pytest.param(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "mcp_tool_use", "id": "x", "name": "n", "input": {}}],
        },
        "content[0].server_name",
        "required",
        id="mcp-call-without-server",
    ),
    pytest.param(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "web_search_tool_result", "tool_use_id": "x", "content": "hits"}],
        },
        "content[0].content",
        "",
        id="server-result-content-not-structured",
    ),
]


@pytest.mark.parametrize(("data", "location", "fragment"), ERROR_CASES)
def test_bad_input_raises_located_format_error(data: Any, location: str, fragment: str) -> None:
    with pytest.raises(FormatError) as info:
        parse(data, source="session.json")
    err = info.value
    assert err.source == "session.json"
    assert err.location == location
    assert fragment in err.detail


def test_unknown_block_error_lists_what_is_read() -> None:
    with pytest.raises(FormatError) as info:
        parse(_request(_user([{"type": "document", "source": {}}])))
    assert "'text', 'image', 'thinking', 'redacted_thinking', 'tool_use', 'tool_result'" in info.value.detail


def test_load_reports_json_syntax_errors_with_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"model": "m",\n "messages": [\n', encoding="utf-8")
    with pytest.raises(FormatError) as info:
        IMPORTER.load(path, _options())
    assert info.value.source == str(path)
    assert info.value.location.startswith("line ")


def test_load_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="file not found"):
        IMPORTER.load(tmp_path / "absent.json", _options())


def _options() -> Any:
    from tools.formats.base import LoadOptions

    return LoadOptions()


# ------------------------------------------------------------------- export
@pytest.mark.parametrize("path", [AGENTIC, REQUEST_RESPONSE, EXAMPLE], ids=lambda p: p.name)
def test_round_trip_of_requests_is_identical(path: Path) -> None:
    original = load_transcript(path)
    again = parse(to_anthropic_body(original))
    assert _content_view(again) == _content_view(original)
    assert again.metadata["anthropic"].get("system_blocks") == original.metadata["anthropic"].get("system_blocks")
    assert again.metadata["anthropic"].get("tools") == original.metadata["anthropic"].get("tools")
    assert again.metadata["anthropic"].get("request") == original.metadata["anthropic"].get("request")
    if original.metadata["anthropic"]["shape"] == "request":
        assert again.messages == original.messages
    else:  # a request cannot carry the response's id, stop reason and usage
        assert again.messages[:-1] == original.messages[:-1]
        assert again.messages[-1].id is None and again.messages[-1].metadata == {}


def test_round_trip_of_a_bare_response_adds_only_the_default_max_tokens() -> None:
    original = load_transcript(RESPONSE)
    again = parse(to_anthropic_body(original))
    expected = _content_view(original)
    expected["generation"]["max_tokens"] = DEFAULT_MAX_TOKENS
    assert _content_view(again) == expected


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_params_work_with_the_installed_sdk(path: Path) -> None:
    original = load_transcript(path)
    params = to_anthropic_params(original)
    sent, _ = _send_with_sdk(params)
    assert sent == to_anthropic_body(original)
    assert _content_view(parse(sent))["messages"] == _content_view(original)["messages"]


def test_sampling_settings_reach_the_wire_whatever_the_sdk_takes_as_keywords() -> None:
    t = _transcript(Message(role="user", content=[TextBlock(text="hi")]))
    t.generation = GenerationConfig(temperature=0.3, top_p=0.8, top_k=20, stop_sequences=["END"], max_tokens=50)
    params = to_anthropic_params(t)
    sent, _ = _send_with_sdk(params)
    assert {k: sent[k] for k in ("temperature", "top_p", "top_k", "stop_sequences", "max_tokens")} == {
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 20,
        "stop_sequences": ["END"],
        "max_tokens": 50,
    }
    keywords = set(params) - {"extra_body"}
    assert {"model", "max_tokens", "messages"} <= keywords


def test_bedrock_envelope_keys_are_not_sent_but_betas_become_a_header() -> None:
    data = {
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "max_tokens": 512,
        "messages": [_user("hi")],
    }
    t = parse(data)
    assert t.model is None
    t.model = "claude-sonnet-4-5-20250929"
    params = to_anthropic_params(t)
    assert params["extra_headers"] == {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    sent, headers = _send_with_sdk(params)
    assert "anthropic_version" not in sent and "anthropic_beta" not in sent
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_body_shape_for_a_transcript_from_another_format() -> None:
    t = Transcript(
        model="claude-sonnet-4-5-20250929",
        system="You are a coding agent.",
        tools=[ToolSpec(name="bash", input_schema={"type": "object", "properties": {"command": {"type": "string"}}})],
        messages=[
            Message(role="user", content=[TextBlock(text="Commit the fix.")]),
            Message(
                role="assistant",
                content=[
                    ThinkingBlock(thinking="Commit it.", signature=SIG),
                    ToolUseBlock(id="call_abc", name="bash", input={"command": "git commit -am fix"}),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResultBlock(tool_use_id="call_abc", content=[TextBlock(text="hook failed")], is_error=True)
                ],
            ),
        ],
    )
    assert to_anthropic_body(t) == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "You are a coding agent.",
        "messages": [
            {"role": "user", "content": "Commit the fix."},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Commit it.", "signature": SIG},
                    {"type": "tool_use", "id": "call_abc", "name": "bash", "input": {"command": "git commit -am fix"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_abc", "content": "hook failed", "is_error": True}
                ],
            },
        ],
        "tools": [{"name": "bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    }


def test_max_tokens_default_leaves_room_above_the_thinking_budget() -> None:
    t = _transcript(Message(role="user", content=[TextBlock(text="hi")]))
    assert to_anthropic_body(t)["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    t.generation.thinking_budget = 10000
    body = to_anthropic_body(t)
    assert body["max_tokens"] == 14096
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 10000}


def test_system_blocks_are_split_again_unless_the_prompt_was_edited() -> None:
    t = load_transcript(AGENTIC)
    raw = _json(AGENTIC)
    assert to_anthropic_body(t)["system"] == [{"type": "text", "text": block["text"]} for block in raw["system"]]
    t.system = (t.system or "") + " Always explain your commits."
    assert to_anthropic_body(t)["system"] == t.system


def test_anthropic_defined_tools_are_sent_as_defined() -> None:
    t = load_transcript(AGENTIC)
    tools = to_anthropic_body(t)["tools"]
    assert tools[1] == {"name": "str_replace_based_edit_tool", "type": "text_editor_20250728", "max_characters": 10000}
    assert tools[0]["name"] == "bash" and tools[0]["input_schema"]["required"] == ["command"]


def test_custom_tool_extra_fields_are_restored() -> None:
    tool = {"type": "custom", "name": "deploy", "input_schema": {"type": "object"}, "strict": True}
    t = parse(_request(_user("hi"), tools=[tool]))
    assert t.tools == [ToolSpec(name="deploy", input_schema={"type": "object"})]
    assert to_anthropic_body(t)["tools"] == [tool]


def test_mid_conversation_system_message_is_folded_in_place() -> None:
    t = _transcript(
        Message(role="user", content=[TextBlock(text="Commit the fix.")]),
        Message(role="assistant", content=[TextBlock(text="The hook fails.")]),
        Message(
            role="user", content=[TextBlock(text="Hooks may be skipped today.")], metadata={"source_role": "system"}
        ),
        Message(
            role="user", content=[TextBlock(text="Use the staging config.")], metadata={"source_role": "developer"}
        ),
    )
    messages = to_anthropic_body(t)["messages"]
    assert messages[2] == {
        "role": "user",
        "content": "<system-message>\nHooks may be skipped today.\n</system-message>",
    }
    assert messages[3] == {
        "role": "user",
        "content": "<developer-message>\nUse the staging config.\n</developer-message>",
    }


EXPORT_ERRORS = [
    pytest.param(
        Transcript(messages=[Message(role="user", content=[TextBlock(text="hi")])]), "no model", id="no-model"
    ),
    pytest.param(Transcript(model="m"), "no messages", id="no-messages"),
    pytest.param(
        _transcript(Message(role="user"), Message(role="assistant", content=[ThinkingBlock(thinking="x")])),
        "messages[1].content[0]: thinking without a signature",
        id="unsigned-thinking",
    ),
    pytest.param(
        _transcript(Message(role="user", content=[ThinkingBlock(thinking="x", signature=SIG)])),
        "thinking block in a user message",
        id="thinking-in-user",
    ),
    pytest.param(
        _transcript(
            Message(role="user"),
            Message(role="assistant", content=[ThinkingBlock(thinking="x", signature=SIG, redacted=True)]),
        ),
        "redacted thinking with visible text",
        id="redacted-with-text",
    ),
    pytest.param(
        _transcript(
            Message(role="user"), Message(role="assistant", content=[ThinkingBlock(thinking="", redacted=True)])
        ),
        "without its encrypted data",
        id="redacted-without-data",
    ),
    pytest.param(
        _transcript(Message(role="user", content=[ToolUseBlock(id="t", name="bash")])),
        "messages[0].content[0]: a tool call in a user message",
        id="tool-use-in-user",
    ),
    pytest.param(
        _transcript(Message(role="user"), Message(role="assistant", content=[ToolResultBlock(tool_use_id="t")])),
        "tool result in an assistant message",
        id="tool-result-in-assistant",
    ),
    pytest.param(
        _transcript(
            Message(role="user"),
            Message(role="assistant", content=[ToolUseBlock(id="t1", name="bash")]),
            Message(role="user", content=[TextBlock(text="go on")]),
        ),
        "messages[1].content[0]: tool call 't1' has no tool_result",
        id="unanswered-call",
    ),
    pytest.param(
        _transcript(
            Message(role="user"),
            Message(role="assistant"),
            Message(role="user", content=[ToolResultBlock(tool_use_id="t9")]),
        ),
        "messages[2].content[0]: tool_result for 't9'",
        id="result-without-call",
    ),
    pytest.param(
        _transcript(Message(role="user", content=[ImageBlock()])),
        "neither inline data nor a URL",
        id="image-without-source",
    ),
    pytest.param(
        _transcript(
            Message(role="user", content=[ImageBlock(media_type="image/png", data=PNG, url="https://x/y.png")])
        ),
        "both inline data and a URL",
        id="image-two-sources",
    ),
    pytest.param(
        _transcript(Message(role="user", content=[ImageBlock(media_type="image/svg+xml", data="PHN2Zz4=")])),
        "media type 'image/svg+xml'",
        id="image-bad-type",
    ),
    pytest.param(
        _transcript(
            Message(role="user"),
            Message(role="assistant", content=[ToolUseBlock(id="t", name="shot")]),
            Message(role="user", content=[ToolResultBlock(tool_use_id="t", content=[ImageBlock(data="eA==")])]),
        ),
        "messages[2].content[0].content[0]: inline image of media type None",
        id="result-image-bad-type",
    ),
    pytest.param(
        _transcript(
            Message(role="user", content=[TextBlock(text="hi")]),
            generation=GenerationConfig(seed=3, frequency_penalty=0.5),
        ),
        "frequency_penalty, seed have no Messages API parameter",
        id="openai-setting",
    ),
    pytest.param(
        _transcript(
            Message(role="user", content=[TextBlock(text="hi")]),
            tools=[ToolSpec(name="f", input_schema={"type": "string"})],
        ),
        "tools[0] (f): the Messages API needs an input_schema of JSON type 'object'",
        id="non-object-schema",
    ),
]


@pytest.mark.parametrize(("transcript", "fragment"), EXPORT_ERRORS)
def test_export_refuses_what_the_api_cannot_express(transcript: Transcript, fragment: str) -> None:
    with pytest.raises(ExportError) as info:
        to_anthropic_params(transcript)
    assert fragment in str(info.value)


def test_consecutive_same_role_messages_pair_as_one_turn() -> None:
    t = _transcript(
        Message(role="user", content=[TextBlock(text="go")]),
        Message(role="assistant", content=[ToolUseBlock(id="t1", name="bash")]),
        Message(role="assistant", content=[ToolUseBlock(id="t2", name="bash")]),
        Message(role="user", content=[ToolResultBlock(tool_use_id="t1")]),
        Message(role="user", content=[ToolResultBlock(tool_use_id="t2")], metadata={"source_role": "tool"}),
    )
    assert len(to_anthropic_body(t)["messages"]) == 5


def test_a_trailing_unanswered_call_is_allowed() -> None:
    t = load_transcript(RESPONSE)
    assert to_anthropic_body(t)["messages"][0]["role"] == "assistant"


@pytest.mark.parametrize("depth", [50, 120])
def test_deeply_nested_tool_input_survives_import_and_export(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    text = json.dumps(
        _request(_user("q"), _assistant([{"type": "tool_use", "id": "t", "name": "n", "input": {"x": "HERE"}}]))
    ).replace('"HERE"', nested)
    t = parse(parse_json(text, source="deep.json"), source="deep.json")
    body = to_anthropic_body(t)
    value = body["messages"][1]["content"][0]["input"]["x"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []


@pytest.mark.parametrize("depth", [500, 950])
def test_nesting_past_the_depth_limit_is_a_located_error(depth: int) -> None:
    # Past FORENSICS_MAX_DEPTH (128) the rest of the pipeline (pydantic's JSON, deep
    # copies of edited transcripts) could not hold the transcript, so it is refused at
    # reading, naming where.
    nested = "[" * depth + "]" * depth
    text = json.dumps(
        _request(_user("q"), _assistant([{"type": "tool_use", "id": "t", "name": "n", "input": {"x": "HERE"}}]))
    ).replace('"HERE"', nested)
    with pytest.raises(FormatError, match="nested more than 128 levels") as info:
        parse_json(text, source="deep.json")
    # located by its JSON path, or (past what the parser itself can nest) its line and column
    assert info.value.location.startswith(("messages[1].content[0].input.x", "line 1, column "))


def test_export_does_not_modify_the_transcript() -> None:
    t = load_transcript(AGENTIC)
    before = t.model_dump()
    params = to_anthropic_params(t)
    params["messages"][1]["content"][1]["input"]["command"] = "rm -rf /"
    params["tools"][0]["input_schema"]["required"].append("timeout")
    params["system"][0]["text"] = "changed"
    params["metadata"]["user_id"] = "someone else"
    assert t.model_dump() == before


# --------------------------------------------------------------------- fuzz
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIXTURE_BYTES = {path.name: path.read_bytes() for path in ALL_FILES}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON tree (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, sub in items:
        out.append((*prefix, key))
        out.extend(_paths(sub, (*prefix, key)))
    return out


FIXTURE_PATHS = {path.name: _paths(_json(path)) for path in ALL_FILES}


def _assert_clean_format_error(err: FormatError, source: str) -> None:
    assert err.source == source
    assert err.location or err.detail
    assert str(err).startswith(source)


def _check_parse(data: Any) -> None:
    """`parse` either raises FormatError, or succeeds and then sniff answers, export
    raises only ExportError, and what exports round-trips."""
    try:
        transcript = parse(data, source="fuzz.json")
    except FormatError as err:
        _assert_clean_format_error(err, "fuzz.json")
        return
    assert isinstance(sniff(Path("fuzz.json"), data), bool)
    try:
        body = to_anthropic_body(transcript)
        to_anthropic_params(transcript)
    except ExportError as err:
        assert str(err)
        return
    # Whatever exports reads back to the same content (max_tokens gets its default).
    again = _content_view(parse(body))
    expected = _content_view(transcript)
    if transcript.generation.max_tokens is None:
        expected["generation"]["max_tokens"] = again["generation"]["max_tokens"]
    assert again == expected


@FUZZ
@given(name=st.sampled_from(sorted(FIXTURE_BYTES)), data=st.data())
def test_fuzz_truncated_files_raise_only_format_errors(name: str, data: st.DataObject) -> None:
    raw = FIXTURE_BYTES[name]
    cut = data.draw(st.integers(0, len(raw) - 1))
    text = raw[:cut].decode("utf-8", errors="ignore")
    try:
        parse(parse_json(text, source=name), source=name)
    except FormatError as err:
        _assert_clean_format_error(err, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw[:cut])
        try:
            load_transcript(path, format="anthropic")
        except FormatError as err:
            _assert_clean_format_error(err, str(path))


@FUZZ
@given(name=st.sampled_from(sorted(FIXTURE_BYTES)), data=st.data(), value=JSON_VALUES)
def test_fuzz_substituted_values_raise_only_format_errors(name: str, data: st.DataObject, value: Any) -> None:
    doc = json.loads(FIXTURE_BYTES[name])
    where = data.draw(st.sampled_from(FIXTURE_PATHS[name]))
    target = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = copy.deepcopy(value)
    _check_parse(doc)


@FUZZ
@given(name=st.sampled_from(sorted(FIXTURE_BYTES)), data=st.data())
def test_fuzz_deleted_fields_raise_only_format_errors(name: str, data: st.DataObject) -> None:
    doc = json.loads(FIXTURE_BYTES[name])
    where = data.draw(st.sampled_from(FIXTURE_PATHS[name]))
    target = doc
    for key in where[:-1]:
        target = target[key]
    del target[where[-1]]
    _check_parse(doc)


@FUZZ
@given(value=JSON_VALUES)
def test_fuzz_arbitrary_json_raises_only_format_errors(value: Any) -> None:
    _check_parse(value)
    assert isinstance(sniff(Path("x.json"), value), bool)
    _check_parse({"messages": [value]})
    _check_parse({"messages": [{"role": "user", "content": [value]}]})
    _check_parse({"id": "m", "type": "message", "role": "assistant", "content": value})


# ------------------------------------------------------------- server-side tools
def test_server_tool_calls_and_results_are_server_side_pairs_in_the_assistant_message() -> None:
    t = load_transcript(SERVER_TOOLS)
    first = t.messages[1]
    kinds = [(b.type, getattr(b, "side", None)) for b in first.content]
    assert kinds == [
        ("text", None),
        ("tool_use", "server"),
        ("tool_result", "server"),
        ("text", None),
        ("tool_use", "server"),
        ("tool_result", "server"),
        ("tool_use", "client"),
    ]
    search = first.content[2]
    assert isinstance(search, ToolResultBlock)
    assert search.text.startswith("Releases · astral-sh/ruff\nhttps://github.com/astral-sh/ruff/releases")
    assert "encrypted_content" not in search.text  # opaque payloads stay out of the readable text
    bash = first.content[5]
    assert isinstance(bash, ToolResultBlock) and bash.text == "ruff (0.14.2)\n\n[return code 0]"
    # The turn holds its server results as well as the client result in the next message.
    turn0 = t.turns()[0]
    assert [r.tool_use_id for r in turn0.results] == [
        "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE",
        "srvtoolu_01Vb9kQzXr3Lm2Np8Tq5Ws7E",
        "toolu_01Hx7Ld3Kq9Pw2Rt5Zy8Nm4B",
    ]
    # An MCP call keeps its server name; a search that failed is an error result.
    mcp_fields = t.messages[3].metadata["anthropic"]["fields"]["content[0]"]
    assert mcp_fields == {"type": "mcp_tool_use", "server_name": "github"}
    failed = t.tool_result("srvtoolu_01Qw8Er4Ty6Ui2Op0As5Df3G")
    assert failed is not None
    assert failed[1].is_error and failed[1].status == "error"
    assert failed[1].text == "[web_search_tool_result error] max_uses_exceeded"


def test_compaction_block_is_typed_and_sent_back_unchanged() -> None:
    t = load_transcript(SERVER_TOOLS)
    block = t.messages[-1].content[0]
    assert isinstance(block, CompactionBlock)
    assert block.summary is not None and block.summary.startswith("The user asked to compare")
    assert block.signature == "EpYBCkYIBRgCKkB3c2lnbmF0dXJlLW9mLXRoZS1jb21wYWN0aW9u"
    body = to_anthropic_body(t)
    assert body["messages"][-1]["content"][0] == _json(SERVER_TOOLS)["response"]["content"][0]


def test_server_blocks_export_as_they_were_recorded() -> None:
    original = _json(SERVER_TOOLS)
    body = to_anthropic_body(load_transcript(SERVER_TOOLS))
    assert body["messages"][:5] == original["messages"][:5]
    assert body["messages"][5]["content"] == original["response"]["content"]
    assert body["mcp_servers"] == original["mcp_servers"]
    assert body["context_management"] == original["context_management"]


def test_an_edited_server_result_is_refused_on_export_not_silently_reverted() -> None:
    t = load_transcript(SERVER_TOOLS)
    result = t.messages[1].content[2]
    assert isinstance(result, ToolResultBlock) and isinstance(result.content[0], TextBlock)
    result.content[0].text = "ruff is deprecated; delete the linter"
    with pytest.raises(ExportError, match="was edited"):
        to_anthropic_body(t)


def test_an_edited_mcp_result_is_exported_with_the_edit() -> None:
    t = load_transcript(SERVER_TOOLS)
    result = t.messages[3].content[1]
    assert isinstance(result, ToolResultBlock) and isinstance(result.content[0], TextBlock)
    result.content[0].text = "Created issue #99"
    body = to_anthropic_body(t)
    assert body["messages"][3]["content"][1]["content"] == [{"type": "text", "text": "Created issue #99"}]


def test_server_results_must_follow_their_call() -> None:
    result = ToolResultBlock(tool_use_id="srvtoolu_x", content=[TextBlock(text="r")], side="server")
    call = ToolUseBlock(id="srvtoolu_x", name="web_search", side="server")
    user = Message(role="user", content=[TextBlock(text="search")])
    with pytest.raises(ExportError, match="no server-side tool call before it"):
        to_anthropic_body(_transcript(user, Message(role="assistant", content=[result])))
    with pytest.raises(ExportError, match="no server-side tool call before it"):
        to_anthropic_body(_transcript(user, Message(role="assistant", content=[result, call])))
    # Paired correctly, it gets past the pairing check to the result itself, which was
    # not recorded from the Anthropic API.
    with pytest.raises(ExportError, match="only the server tool results it produced"):
        to_anthropic_body(_transcript(user, Message(role="assistant", content=[call, result])))


def test_a_server_call_needs_no_result_in_the_next_user_message() -> None:
    t = load_transcript(SERVER_TOOLS)
    body = to_anthropic_body(t)  # would raise if server calls were paired like client calls
    assert body["messages"][2]["content"][0]["tool_use_id"] == "toolu_01Hx7Ld3Kq9Pw2Rt5Zy8Nm4B"


def test_a_server_result_from_another_provider_cannot_be_sent_to_anthropic() -> None:
    t = _transcript(
        Message(role="user", content=[TextBlock(text="search")]),
        Message(
            role="assistant",
            content=[
                ToolUseBlock(id="ws_1", name="web_search", input={"query": "q"}, side="server"),
                ToolResultBlock(tool_use_id="ws_1", content=[TextBlock(text="found")], side="server"),
            ],
        ),
    )
    with pytest.raises(ExportError, match="only the server tool results it produced"):
        to_anthropic_body(t)
