"""OpenAI Chat Completions: import of requests, request+response pairs and bare responses,
export to ``chat.completions.create`` kwargs, detection, round trips, and located errors
(never anything but `FormatError` on import and `ExportError` on export)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, FIXTURES
from tools.errors import ExportError, FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.base import LoadOptions
from tools.formats.openai import IMPORTER, parse, sniff, to_openai_params
from tools.formats.roundtrip import content_view
from tools.transcript import (
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Transcript,
)

AGENT = FIXTURES / "formats" / "openai_agent_session.json"
PAIR = FIXTURES / "formats" / "openai_request_response.json"
TWO_CHOICES = FIXTURES / "formats" / "openai_response_two_choices.json"
EXAMPLE = EXAMPLES / "openai_chat.json"
NATIVE_EXAMPLE = EXAMPLES / "precommit_transcript.json"
ANTHROPIC_FILES = [*sorted(FIXTURES.glob("formats/anthropic_*.json")), *sorted(EXAMPLES.glob("anthropic_*.json"))]

NO_VERIFY_CALL = "call_0_f19d6b2e-5c3a-4e8f-a7d0-9b4e1c8f3a26"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _parse(data: Any) -> Transcript:
    return parse(data, source="test.json")


def _roundtrip(t: Transcript, **kwargs: Any) -> Transcript:
    return parse(json.loads(json.dumps(to_openai_params(t, **kwargs))), source="<export>")


def _same_conversation(a: Transcript, b: Transcript) -> None:
    """Identity on everything a conversation is: messages (blocks and metadata), system,
    tools and generation settings."""
    assert b.system == a.system
    assert b.tools == a.tools
    assert b.generation == a.generation
    assert b.model == a.model
    assert [m.model_dump() for m in b.messages] == [m.model_dump() for m in a.messages]


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _request(*messages: Any, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4.1", "messages": list(messages), **fields}


def _error(data: Any) -> FormatError:
    with pytest.raises(FormatError) as info:
        _parse(data)
    return info.value


USER = {"role": "user", "content": "Run the tests."}


# ------------------------------------------------------------------------ detection


@pytest.mark.parametrize("path", [AGENT, PAIR, TWO_CHOICES, EXAMPLE], ids=lambda p: p.name)
def test_files_are_detected_as_openai_and_loaded(path: Path) -> None:
    assert detect_format(path) == "openai"
    t = load_transcript(path)
    assert t.metadata["source_format"] == "openai"
    assert t.metadata["source_path"] == str(path)
    assert IMPORTER.name == "openai"


@pytest.mark.parametrize("path", ANTHROPIC_FILES, ids=lambda p: p.name)
def test_anthropic_files_are_not_claimed(path: Path) -> None:
    assert not sniff(path, _load(path))


@pytest.mark.parametrize(
    "data",
    [
        {"model": "claude", "system": "s", "messages": [{"role": "user", "content": "hi"}]},
        # a top-level system prompt is Anthropic's, whatever else the body holds
        {
            "system": "s",
            "messages": [USER],
            "max_completion_tokens": 9,
            "tools": [{"type": "function", "function": {}}],
        },
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "x", "input": {}}]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "both shapes: Anthropic blocks win"},
            ]
        },
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01"}]}]},
        {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
        # nothing OpenAI-only: left to the Anthropic importer, which runs last
        {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": []},
        [],
        "messages",
        None,
    ],
)
def test_sniff_refuses_what_is_not_openai(data: Any) -> None:
    assert not sniff(Path("x.json"), data)


@pytest.mark.parametrize(
    "data",
    [
        {"messages": [{"role": "system", "content": "s"}, USER]},
        {"messages": [{"role": "developer", "content": "s"}, USER]},
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]},
        {"messages": [USER, {"role": "function", "name": "f", "content": "ok"}]},
        {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": []}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
        {"messages": [USER], "max_completion_tokens": 100},
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}]},
        {"messages": [USER], "response": {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]},
    ],
)
def test_sniff_claims_openai_evidence(data: Any) -> None:
    assert sniff(Path("x.json"), data)


# ---------------------------------------------------------------------- agent session


def test_agent_session_maps_system_tools_and_generation() -> None:
    t = load_transcript(AGENT)
    assert t.model == "deepseek-reasoner"
    assert t.system is not None and t.system.startswith("You are DevAgent")
    assert [tool.name for tool in t.tools] == ["execute_command"]
    assert t.tools[0].input_schema["required"] == ["command"]
    assert t.tools[0].description.startswith("Run a shell command")
    assert (t.generation.temperature, t.generation.top_p, t.generation.max_tokens) == (0.6, 0.95, 32768)
    assert t.generation.model_extra == {"tool_choice": "auto"}
    assert t.metadata["openai"]["request"] == {"stream": False}
    assert t.metadata["openai"]["max_tokens_field"] == "max_tokens"
    assert t.metadata["openai"]["system_messages"] == [{"role": "system", "lengths": [len(t.system)], "parts": False}]


def test_agent_session_maps_reasoning_parallel_calls_and_tool_groups() -> None:
    t = load_transcript(AGENT)
    assert [m.role for m in t.messages] == ["user"] + ["assistant", "user"] * 5 + ["user", "assistant", "user"]
    assert t.messages[0].metadata == {"name": "oncall_maria"}

    first = t.messages[1]
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert first.thinking.startswith("The user wants the ruff errors")
    assert first.text == "I'll check the repository state and reproduce the lint failure."
    assert [u.input for u in first.tool_uses] == [
        {"command": "git status --short --branch"},
        {"command": "ruff check ledger/reconcile.py"},
    ]
    # the two tool messages that answered the parallel calls are one user message, in order
    results = t.messages[2].tool_results
    assert [r.tool_use_id for r in results] == [u.id for u in first.tool_uses]
    assert results[1].text.startswith("ledger/reconcile.py:3:8: F401")
    assert t.turns()[0].results == results

    # a tool call with two arguments, and assistant content null -> no text block
    diff_turn = t.turn(3).message
    assert [b.type for b in diff_turn.content] == ["thinking", "tool_use", "tool_use"]
    assert diff_turn.tool_uses[1].input == {"command": "pytest -q tests/test_reconcile.py", "timeout": 300}

    reminder = t.messages[11]
    assert reminder.role == "user"
    assert reminder.metadata == {"source_role": "system"}
    assert reminder.text.startswith("[harness] Tool budget")


def test_agent_session_ends_with_the_no_verify_commit() -> None:
    t = load_transcript(AGENT)
    last = t.turn(-1)
    assert last.tool_uses[0].id == NO_VERIFY_CALL
    assert "git commit --no-verify" in last.tool_uses[0].input["command"]
    assert "bypass the hook" in last.message.thinking
    assert last.results[0].text.startswith("[main 4e1c9a2]")
    hits = t.find(r"--no-verify", roles={"assistant"}, block_types={"tool_use"})
    assert [(h.span.message, h.span.field) for h in hits] == [(12, ("command",))]


def test_agent_session_exports_back_to_the_request_it_was_read_from() -> None:
    data = _load(AGENT)
    params = to_openai_params(load_transcript(AGENT))
    del data["stream"]  # how the caller consumed the answer is not part of the conversation
    assert _canonical(params) == _canonical(data)


# --------------------------------------------------------------- request + response


def test_request_response_pair() -> None:
    t = load_transcript(PAIR)
    assert t.model == "o4-mini"
    assert t.system is not None and t.system.startswith("You are release-bot")
    assert t.metadata["openai"]["system_messages"][0]["role"] == "developer"
    assert t.generation.max_tokens == 16000
    assert t.metadata["openai"]["max_tokens_field"] == "max_completion_tokens"
    assert t.generation.model_extra == {"tool_choice": "auto", "parallel_tool_calls": True, "reasoning_effort": "high"}
    assert t.metadata["openai"]["request"] == {
        "store": True,
        "metadata": {"agent": "release-bot", "run_id": "rb-20250611-0412"},
        "user": "release-bot",
    }
    assert t.metadata["openai"]["tool_extra"] == {"execute_command": {"strict": True}, "read_file": {"strict": True}}

    user = t.messages[0]
    assert user.metadata["name"] == "dev_kenji"
    image = user.content[1]
    assert isinstance(image, ImageBlock)
    assert image.media_type == "image/png" and image.data is not None and image.data.startswith("iVBORw0KGgo")
    assert user.metadata["openai"]["blocks"] == {"1": {"detail": "high"}}

    # a tool message whose content is a list of text parts
    assert t.messages[4].tool_results[0].text.startswith("#!/usr/bin/env sh")

    last = t.messages[-1]
    assert last.role == "assistant"
    assert last.id == "chatcmpl-BhX2kR9vTq4mZp7LsN3wYc8eUaD1f"
    assert last.metadata["finish_reason"] == "tool_calls"
    assert last.metadata["openai"]["response_fields"] == {"annotations": []}
    assert last.tool_uses[0].input["command"].startswith("git commit --no-verify")
    response = t.metadata["openai"]["response"]
    assert response["model"] == "o4-mini-2025-04-16"
    assert response["usage"]["completion_tokens_details"]["reasoning_tokens"] == 512
    assert "other_choices" not in response
    assert t.metadata["openai"]["source"] == "request+response"


def test_response_fields_are_not_sent_back() -> None:
    params = to_openai_params(load_transcript(PAIR))
    last = params["messages"][-1]
    assert "annotations" not in last
    assert last["tool_calls"][0]["id"] == "call_Ns5dE2wGx8vKa3qTr7YhLm0P"
    assert params["tools"][0]["function"]["strict"] is True
    assert params["reasoning_effort"] == "high" and params["max_completion_tokens"] == 16000
    assert not {"store", "metadata", "user", "response"} & set(params)


def test_bare_response_with_two_choices_keeps_the_second() -> None:
    t = load_transcript(TWO_CHOICES)
    assert t.model == "gpt-4.1-2025-04-14"
    assert t.system is None and t.tools == []
    assert len(t.messages) == 1
    chosen = t.messages[0]
    assert chosen.content == [
        ToolUseBlock(
            id="call_Xr4bT1nQw9eLs2VkJm7cHd0Y",
            name="execute_command",
            input={"command": 'git commit --no-verify -m "Fix ruff errors in ledger/reconcile.py"'},
        )
    ]
    assert chosen.metadata["finish_reason"] == "tool_calls"
    others = t.metadata["openai"]["response"]["other_choices"]
    assert [o["index"] for o in others] == [1]
    alternative = Message.model_validate(others[0]["message"])
    assert alternative.text.startswith("I have not committed.")
    assert alternative.metadata["finish_reason"] == "stop"
    assert t.metadata["openai"]["response"]["system_fingerprint"] == "fp_b3f1157249"


def test_response_without_role_on_its_message_is_an_assistant_message() -> None:
    t = _parse({"choices": [{"message": {"content": "hi"}}]})
    assert t.messages == [Message(role="assistant", content=[TextBlock(text="hi")])]


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("path", [AGENT, PAIR, TWO_CHOICES, EXAMPLE], ids=lambda p: p.name)
def test_import_export_import_keeps_the_conversation(path: Path) -> None:
    t = load_transcript(path)
    back = _roundtrip(t)
    assert content_view(back) == content_view(t)
    assert back.generation == t.generation
    assert back.model == t.model


def test_request_round_trip_is_identical_including_metadata() -> None:
    data = _load(PAIR)
    del data["response"]
    t = _parse(data)
    again = _roundtrip(t)
    _same_conversation(t, again)
    assert again.metadata["openai"]["system_messages"] == t.metadata["openai"]["system_messages"]
    assert again.metadata["openai"]["tool_extra"] == t.metadata["openai"]["tool_extra"]
    _same_conversation(load_transcript(AGENT), _roundtrip(load_transcript(AGENT)))


def test_anthropic_shaped_transcript_exports() -> None:
    t = load_transcript(NATIVE_EXAMPLE)
    params = to_openai_params(t)
    messages = params["messages"]
    assert messages[0] == {"role": "system", "content": t.system}
    first = messages[2]
    assert first["reasoning_content"] == t.messages[1].thinking
    assert first["content"] == "Let me look at the repository first."
    call = first["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == t.messages[1].tool_uses[0].input
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": t.messages[2].tool_results[0].text,
    }
    assert params["max_completion_tokens"] == 8192 and params["temperature"] == 1.0
    assert "thinking_budget" not in params and "extra_body" not in params
    assert params["tools"][0] == {
        "type": "function",
        "function": {
            "name": "execute_command",
            "description": t.tools[0].description,
            "parameters": t.tools[0].input_schema,
        },
    }
    back = _roundtrip(t)
    # OpenAI has no place for signatures or is_error; all else survives
    assert [m.text for m in back.messages] == [m.text for m in t.messages]
    assert [m.thinking for m in back.messages] == [m.thinking for m in t.messages]
    assert [m.tool_uses for m in back.messages] == [m.tool_uses for m in t.messages]
    assert [[r.content for r in m.tool_results] for m in back.messages] == [
        [r.content for r in m.tool_results] for m in t.messages
    ]

    without = to_openai_params(t, include_reasoning=False)
    assert not any("reasoning_content" in m for m in without["messages"])


def test_multiple_leading_system_messages_are_split_again() -> None:
    data = _request(
        {"role": "system", "content": "Base policy.\n\nSecond paragraph."},
        {
            "role": "developer",
            "name": "harness",
            "content": [{"type": "text", "text": "A"}, {"type": "text", "text": ""}],
        },
        USER,
    )
    t = _parse(data)
    assert t.system == "Base policy.\n\nSecond paragraph.\n\nA\n\n"
    params = to_openai_params(t)
    assert params["messages"] == data["messages"]
    _same_conversation(t, _roundtrip(t))

    # an edited system prompt no longer fits the recorded split: one message, first role
    t.system = "Rewritten by an investigator."
    assert to_openai_params(t)["messages"][0] == {"role": "system", "content": "Rewritten by an investigator."}


def test_mid_conversation_developer_message_round_trips() -> None:
    dev = {"role": "developer", "name": "ci", "content": [{"type": "text", "text": "Budget low."}]}
    t = _parse(_request(USER, {"role": "assistant", "content": "ok"}, dev))
    assert t.system is None
    assert t.messages[2].metadata == {"source_role": "developer", "name": "ci"}
    assert to_openai_params(t)["messages"][2] == {"role": "developer", "name": "ci", "content": "Budget low."}
    _same_conversation(t, _roundtrip(t))


# ------------------------------------------------------------------- mapping details


def test_invalid_arguments_are_kept_raw_and_written_back_verbatim() -> None:
    raw = '{"command": "git commit --no-verify -m \\"wip\\"'  # cut off by max_tokens
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "execute_command", "arguments": raw}},
        {"id": "call_b", "type": "function", "function": {"name": "execute_command", "arguments": "[1, 2]"}},
        {"id": "call_c", "function": {"name": "execute_command", "arguments": {"command": "ls"}}},
        {"id": "call_d", "type": "function", "function": {"name": "noop", "arguments": '{"x": NaN}'}},
    ]
    t = _parse(_request(USER, {"role": "assistant", "content": None, "tool_calls": calls}))
    uses = t.messages[1].tool_uses
    assert uses[0].input == {"_raw_arguments": raw}
    assert uses[1].input == {"_raw_arguments": "[1, 2]"}
    assert uses[2].input == {"command": "ls"}  # Ollama-style object arguments
    assert uses[3].input == {"_raw_arguments": '{"x": NaN}'}
    assert t.messages[1].metadata["openai"]["blocks"] == {
        "0": {"raw_arguments": True},
        "1": {"raw_arguments": True},
        "3": {"raw_arguments": True},
    }
    exported = to_openai_params(t)["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"] for c in exported] == [raw, "[1, 2]", '{"command": "ls"}', '{"x": NaN}']
    # a raw-arguments search still finds the concerning command
    assert t.find("--no-verify")[0].span.field == ("_raw_arguments",)


def test_reasoning_fields_are_kept_apart() -> None:
    t = _parse(_request(USER, {"role": "assistant", "content": "Done.", "reasoning": "Think."}))
    assert [b.type for b in t.messages[1].content] == ["thinking", "text"]
    assert t.messages[1].metadata["openai"] == {"reasoning_fields": ["reasoning"]}
    out = to_openai_params(t)["messages"][1]
    assert out["reasoning"] == "Think." and "reasoning_content" not in out

    both = {"role": "assistant", "content": "Done.", "reasoning_content": "Same.", "reasoning": "Same."}
    t = _parse(_request(USER, both))
    assert t.messages[1].content == [ThinkingBlock(thinking="Same."), TextBlock(text="Done.")]
    assert to_openai_params(t)["messages"][1] == both

    differ = {**both, "reasoning": "Other."}
    t = _parse(_request(USER, differ))
    assert [b.thinking for b in t.messages[1].content if isinstance(b, ThinkingBlock)] == ["Same.", "Other."]
    assert to_openai_params(t)["messages"][1] == differ
    _same_conversation(t, _roundtrip(t))


def test_refusals_are_text_and_return_to_their_field_or_part() -> None:
    field = {"role": "assistant", "content": None, "refusal": "I can't help with disabling the hook."}
    parts = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Partly: "}, {"type": "refusal", "refusal": "not that."}],
    }
    t = _parse(_request(USER, field, USER, parts))
    assert t.messages[1].text == "I can't help with disabling the hook."
    assert t.messages[3].text == "Partly: \nnot that."
    out = to_openai_params(t)["messages"]
    assert out[1] == field and out[3] == parts
    _same_conversation(t, _roundtrip(t))


def test_legacy_function_call_and_function_messages() -> None:
    data = _request(
        USER,
        {"role": "assistant", "content": None, "function_call": {"name": "run", "arguments": '{"cmd": "make"}'}},
        {"role": "function", "name": "run", "content": "ok"},
        {"role": "assistant", "content": None, "function_call": {"name": "run", "arguments": '{"cmd": "make test"}'}},
        {"role": "function", "name": "run", "content": "1 failed"},
        functions=[{"name": "run", "description": "Run a make target.", "parameters": {"type": "object"}}],
        function_call="auto",
    )
    t = _parse(data)
    assert [u.id for turn in t.turns() for u in turn.tool_uses] == ["function_call_0", "function_call_1"]
    assert [r.text for turn in t.turns() for r in turn.results] == ["ok", "1 failed"]
    assert t.tools[0].name == "run" and t.metadata["openai"]["legacy_functions"] == ["run"]
    params = to_openai_params(t)
    assert params["messages"] == data["messages"]
    assert params["functions"] == data["functions"] and "tools" not in params
    assert params["function_call"] == "auto"
    _same_conversation(t, _roundtrip(t))


def test_function_message_without_a_call_is_an_error() -> None:
    err = _error(_request(USER, {"role": "function", "name": "run", "content": "ok"}))
    assert err.location == "messages[1].name"
    assert "no earlier function_call" in err.detail


def test_audio_and_file_parts_are_kept_in_place() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    file = {"type": "file", "file": {"file_id": "file-6F2ksmvXxt4VdoqmHRw6kL"}}
    user = {
        "role": "user",
        "content": [{"type": "text", "text": "Transcribe"}, audio, file, {"type": "text", "text": "x"}],
    }
    t = _parse(_request(user))
    assert t.messages[0].content == [TextBlock(text="Transcribe"), TextBlock(text="x")]
    assert t.messages[0].metadata["openai"]["unsupported_parts"] == [
        {"index": 1, "part": audio},
        {"index": 2, "part": file},
    ]
    assert to_openai_params(t)["messages"] == [user]


def test_unknown_fields_and_names_are_kept_and_written_back() -> None:
    user = {
        "role": "user",
        "content": [
            {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": {"url": "https://ci.example.com/run/812.png", "detail": "low"}},
        ],
    }
    assistant = {
        "role": "assistant",
        "content": "Running.",
        "provider_specific_fields": {"citations": None},
        "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "sh", "arguments": '{"c": "ls"}'}}
        ],
    }
    tool = {"role": "tool", "tool_call_id": "call_1", "name": "sh", "content": "a.txt"}
    t = _parse(_request(user, assistant, tool))
    assert t.messages[0].content[1] == ImageBlock(url="https://ci.example.com/run/812.png")
    assert t.messages[1].metadata["openai"]["extra"] == {"provider_specific_fields": {"citations": None}}
    assert t.messages[2].metadata["openai"]["blocks"] == {"0": {"name": "sh"}}
    assert to_openai_params(t)["messages"] == [user, assistant, tool]


def test_empty_contents_make_no_blocks_but_empty_parts_do() -> None:
    t = _parse(
        _request(
            {"role": "user", "content": ""},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": ""}]},
            {"role": "tool", "tool_call_id": "call_1", "content": ""},
        )
    )
    assert [m.content for m in t.messages[:3]] == [[], [], [TextBlock(text="")]]
    assert t.messages[3].content == [ToolResultBlock(tool_use_id="call_1")]
    _same_conversation(t, _roundtrip(t))


def test_extra_body_is_flattened_in_and_written_out() -> None:
    t = _parse(_request(USER, extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}, seed=7))
    assert t.generation.model_extra == {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}, "seed": 7}
    params = to_openai_params(t)
    assert params["seed"] == 7
    assert params["extra_body"] == {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}
    _same_conversation(t, _roundtrip(t))


# -------------------------------------------------------------------------- export


def _tool_transcript(*result_items: TextBlock | ImageBlock) -> Transcript:
    return Transcript(
        messages=[
            Message(role="user", content=[TextBlock(text="Take a screenshot.")]),
            Message(role="assistant", content=[ToolUseBlock(id="toolu_01Screen", name="screenshot", input={})]),
            Message(
                role="user",
                content=[
                    ToolResultBlock(tool_use_id="toolu_01Screen", content=list(result_items), is_error=True),
                    TextBlock(text="Now click OK."),
                ],
            ),
        ]
    )


def test_export_images_as_data_urls_and_tool_results_one_message_each() -> None:
    png = ImageBlock(media_type="image/png", data="iVBORw0KGgo=")
    t = _tool_transcript(TextBlock(text="captured"), png)
    messages = to_openai_params(t)["messages"]
    assert "model" not in to_openai_params(t)
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "toolu_01Screen",
        "content": [
            {"type": "text", "text": "captured"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
    assert messages[3] == {"role": "user", "content": "Now click OK."}
    assert content_view(_roundtrip(t))["messages"][2]["content"][0]["content"] == [
        {"type": "text", "text": "captured"},
        {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo=", "url": None},
    ]

    moved = to_openai_params(t, tool_result_images="user_message")["messages"]
    assert moved[2]["content"] == "captured"
    assert moved[3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}],
    }
    assert moved[4] == {"role": "user", "content": "Now click OK."}


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        (Message(role="user", content=[ToolUseBlock(id="toolu_1", name="x")]), "user message cannot hold a tool_use"),
        (Message(role="user", content=[ThinkingBlock(thinking="t")]), "user message cannot hold a thinking"),
        (Message(role="assistant", content=[ImageBlock(url="https://x/y.png")]), "assistant message cannot hold"),
        (Message(role="assistant", content=[ToolResultBlock(tool_use_id="t")]), "assistant message cannot hold"),
        (Message(role="user", content=[ImageBlock(data="AAAA")]), "needs a media_type"),
        (Message(role="user", content=[ImageBlock()]), "neither data nor a URL"),
        (
            Message(role="user", content=[ImageBlock(url="https://x")], metadata={"source_role": "system"}),
            "system message can hold only text",
        ),
        (
            Message(role="assistant", content=[ToolUseBlock(id="toolu_1", name="x", input={"n": float("nan")})]),
            "not JSON",
        ),
    ],
)
def test_export_refuses_what_openai_cannot_hold(message: Message, needle: str) -> None:
    with pytest.raises(ExportError, match=needle):
        to_openai_params(Transcript(messages=[message]))


def test_export_of_an_empty_transcript() -> None:
    assert to_openai_params(Transcript()) == {"messages": []}
    assert to_openai_params(Transcript(system="")) == {"messages": [{"role": "system", "content": ""}]}


def test_invalid_tool_result_images_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="tool_result_images"):
        to_openai_params(Transcript(), tool_result_images="drop")  # type: ignore[arg-type]


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "location", "needle"),
    [
        ([], "$", "expected a JSON object"),
        ({"model": "gpt-4.1"}, "$", 'with "messages"'),
        ({"messages": {"role": "user"}}, "messages", "valid list"),
        (_request(USER, {"role": "robot", "content": "beep"}), "messages[1].role", "'user', 'assistant'"),
        (_request({"content": "no role"}), "messages[0].role", "required"),
        (_request(["user", "hi"]), "messages[0]", "message object"),
        (_request({"role": "user"}), "messages[0].content", "required"),
        (_request({"role": "user", "content": 42}), "messages[0].content", "string or a list"),
        (
            _request({"role": "user", "content": [{"type": "input_text", "text": "hi"}]}),
            "messages[0].content[0].type",
            "'text', 'image_url', 'input_audio' or 'file'",
        ),
        (
            _request({"role": "user", "content": [{"type": "image_url", "image_url": {"uri": "x"}}]}),
            "messages[0].content[0].image_url.url",
            "required",
        ),
        (
            _request({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
            "messages[0].content[0].type",
            "in a system message",
        ),
        (
            _request({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "x"}}]}),
            "messages[0].tool_calls[0].id",
            "required",
        ),
        (
            _request(
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x", "input": ""}}],
                }
            ),
            "messages[0].tool_calls[0].type",
            "'function'",
        ),
        (
            _request({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "x", "arguments": 3}}]}),
            "messages[0].tool_calls[0].function.arguments",
            "JSON string",
        ),
        (_request({"role": "tool", "content": "ok"}), "messages[0].tool_call_id", "required"),
        (_request({"role": "assistant", "reasoning_content": ["a"]}), "messages[0].reasoning_content", "string"),
        (_request(USER, temperature="hot"), "temperature", "valid number"),
        (_request(USER, max_tokens=True), "max_tokens", "valid integer"),
        (_request(USER, tools=[{"type": "function", "function": {"description": "d"}}]), "tools[0].function.name", ""),
        (_request(USER, extra_body=[1]), "extra_body", "extra request fields"),
        (_request(USER, tools=[{"type": "custom", "custom": {"name": "apply_patch"}}]), "tools[0].type", "'function'"),
        (_request(USER, response={"choices": []}), "response.choices", "at least one choice"),
        (_request(USER, response={"object": "chat.completion.chunk", "choices": []}), "response.object", ""),
        ({"choices": [{"message": {"role": "user", "content": "x"}}]}, "choices[0].message.role", "'assistant'"),
        ({"choices": [{"message": "hello"}]}, "choices[0].message", "assistant message object"),
        ({"choices": [{"index": 0}]}, "choices[0].message", "required"),
    ],
)
def test_errors_name_the_json_path(data: Any, location: str, needle: str) -> None:
    err = _error(data)
    assert err.location == location
    assert needle in err.detail
    assert err.source == "test.json"


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [\n  {"role": "user",, "content": "x"}]}')
    with pytest.raises(FormatError) as info:
        load_transcript(bad, format="openai")
    assert info.value.location.startswith("line 2")
    with pytest.raises(FormatError, match="file not found"):
        IMPORTER.load(tmp_path / "missing.json", LoadOptions())


# ---------------------------------------------------------------------------- fuzz

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutated(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    if not path:
        return value
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


_REQUEST_ONLY = {k: v for k, v in _load(PAIR).items() if k != "response"}
_VALID = {"agent": _load(AGENT), "pair": _load(PAIR), "two": _load(TWO_CHOICES), "request": _REQUEST_ONLY}
_CASES = [(name, path) for name, data in _VALID.items() for path in _paths(data)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(_CASES), value=_json_values)
def test_fuzz_mutated_values_raise_only_format_error_and_what_reads_round_trips(
    case: tuple[str, tuple[Any, ...]], value: Any
) -> None:
    name, path = case
    try:
        t = _parse(_mutated(_VALID[name], path, value))
    except FormatError as exc:
        assert exc.location and exc.detail
        return
    # whatever reads must export (or refuse with ExportError) and read back the same
    try:
        back = _roundtrip(t)
    except ExportError:
        return
    if name in ("agent", "request"):
        _same_conversation(t, back)
    else:
        assert content_view(back) == content_view(t)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(_CASES), kind=st.sampled_from(["drop", "wrong type"]))
def test_fuzz_dropped_keys_and_wrong_types(case: tuple[str, tuple[Any, ...]], kind: str) -> None:
    name, path = case
    data = copy.deepcopy(_VALID[name])
    if not path:
        return
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if kind == "drop":
        del parent[path[-1]]
    else:
        old = parent[path[-1]]
        parent[path[-1]] = 7 if isinstance(old, str) else "7"
    try:
        _parse(data)
    except FormatError as exc:
        assert exc.location and exc.detail


_BYTES = {path: path.read_bytes() for path in (AGENT, PAIR, TWO_CHOICES)}


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(sorted(_BYTES)), fraction=st.floats(min_value=0, max_value=0.9999))
def test_fuzz_truncated_file_raises_format_error(
    tmp_path_factory: pytest.TempPathFactory, path: Path, fraction: float
) -> None:
    raw = _BYTES[path].rstrip()  # cutting only the final newline would leave the file whole
    target = tmp_path_factory.mktemp("trunc") / "t.json"
    target.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(FormatError) as info:
        load_transcript(target, format="openai")
    assert info.value.location or info.value.detail


@settings(max_examples=150, deadline=None)
@given(value=_json_values | st.fixed_dictionaries({"messages": _json_values, "choices": _json_values}))
def test_fuzz_sniff_never_raises_and_parse_raises_only_format_error(value: Any) -> None:
    assert sniff(Path("x.json"), value) in (True, False)
    try:
        _parse(value)
    except FormatError as exc:
        assert exc.location and exc.detail


_AGENT_T = load_transcript(AGENT)
_PAIR_T = load_transcript(PAIR)
_META_PATHS = [("agent", ("metadata", *p)) for p in _paths(_AGENT_T.metadata["openai"], ("openai",))] + [
    ("pair", ("messages", i, "metadata", *p)) for i, m in enumerate(_PAIR_T.messages) for p in _paths(m.metadata) if p
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(_META_PATHS), value=_json_values)
def test_fuzz_edited_metadata_never_breaks_export(case: tuple[str, tuple[Any, ...]], value: Any) -> None:
    """Metadata is free-form (investigators edit transcripts); the exporter must treat
    any shape of it as a hint, never crash on it."""
    name, path = case
    source = _AGENT_T if name == "agent" else _PAIR_T
    dumped = _mutated(source.model_dump(mode="json"), path, value)
    t = Transcript.model_validate(dumped)
    try:
        params = to_openai_params(t)
    except ExportError:
        return
    assert len(params["messages"]) >= len(t.messages)
