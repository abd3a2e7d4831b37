"""The transcript model: turns, prefixes, regex search with spans, rendering."""

from __future__ import annotations

import re

import pytest

from tests.conftest import EXAMPLES
from tools.errors import TranscriptError
from tools.formats import load_transcript
from tools.transcript import (
    Message,
    Span,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Transcript,
)


@pytest.fixture
def precommit() -> Transcript:
    return load_transcript(EXAMPLES / "precommit_transcript.json")


def _tiny() -> Transcript:
    return Transcript(
        system="sys",
        messages=[
            Message(role="user", content=[TextBlock(text="do the task")]),
            Message(
                role="assistant",
                content=[
                    ThinkingBlock(thinking="I could skip the hook."),
                    ToolUseBlock(
                        id="t1", name="bash", input={"command": "git commit --no-verify", "opts": ["-q", "x"]}
                    ),
                    ToolUseBlock(id="t2", name="bash", input={"command": "ls"}),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResultBlock(tool_use_id="t1", content=[TextBlock(text="committed")]),
                    ToolResultBlock(tool_use_id="t2", content=[TextBlock(text="a\nb")], is_error=True),
                ],
            ),
            Message(role="assistant", content=[TextBlock(text="done")]),
        ],
    )


def test_turns_pair_calls_with_their_results() -> None:
    turns = _tiny().turns()
    assert [t.message_index for t in turns] == [1, 3]
    assert [r.tool_use_id for r in turns[0].results] == ["t1", "t2"]
    assert turns[0].results[1].is_error
    assert turns[1].results == []
    assert [u.id for u in turns[0].tool_uses] == ["t1", "t2"]


def test_turn_negative_index_and_missing_turn() -> None:
    t = _tiny()
    assert t.turn(-1).index == 1
    with pytest.raises(TranscriptError, match="has 2 assistant turns"):
        t.turn(5)


def test_prefix_is_what_the_subject_saw(precommit: Transcript) -> None:
    turns = precommit.turns()
    flagged = turns[5]
    prefix = precommit.prefix(5)
    assert len(prefix.messages) == flagged.message_index
    assert prefix.messages[-1].role == "user"
    assert prefix.turns() == turns[:5]
    assert precommit.prefix(len(turns)).messages == precommit.messages
    assert precommit.prefix(0).messages == precommit.messages[:1]
    # the prefix is a copy: editing it leaves the original alone
    prefix.messages[0].content[0] = TextBlock(text="changed")
    assert precommit.messages[0].content[0] != prefix.messages[0].content[0]
    with pytest.raises(TranscriptError):
        precommit.prefix(len(turns) + 1)


def test_find_returns_exact_spans_in_every_kind_of_block() -> None:
    t = _tiny()
    hits = t.find(r"--no-verify")
    assert len(hits) == 1
    span = hits[0].span
    assert span.field == ("command",)
    assert t.span_text(span) == "--no-verify"
    assert t.field_text(span) == "git commit --no-verify"

    thinking = t.find("skip", block_types={"thinking"})
    assert [h.span.message for h in thinking] == [1]
    assert t.span_text(thinking[0].span) == "skip"

    result = t.find(r"^b$", flags=re.M)
    assert result[0].span.field == (0,)
    assert result[0].span.message == 2

    nested = t.find(r"^x$")
    assert nested[0].span.field == ("opts", 1)

    assert t.find("done", roles={"user"}) == []
    assert len(t.find("done", roles={"assistant"})) == 1


def test_find_on_a_real_transcript(precommit: Transcript) -> None:
    hits = precommit.find(r"fixing 258 errors would be a huge task", flags=re.I)
    assert len(hits) == 1
    assert precommit.messages[hits[0].span.message].role == "assistant"


def test_span_pointing_nowhere_is_an_error() -> None:
    t = _tiny()
    with pytest.raises(TranscriptError):
        t.span_text(Span(message=9, block=0, start=0, end=1))
    with pytest.raises(TranscriptError):
        t.span_text(Span(message=1, block=1, field=("nope",), start=0, end=1))
    with pytest.raises(TranscriptError):
        t.span_text(Span(message=0, block=0, start=0, end=999))


def test_tool_use_lookup() -> None:
    index, block = _tiny().tool_use("t2")
    assert index == 1
    assert block.input == {"command": "ls"}
    with pytest.raises(TranscriptError):
        _tiny().tool_use("missing")


def test_render_marks_roles_thinking_tools_and_flag(precommit: Transcript) -> None:
    text = precommit.render(flagged_turn=5, max_chars=60)
    assert text.startswith("=== system ===")
    assert "=== tools: execute_command ===" in text
    assert "(turn 5)  <<< FLAGGED" in text
    assert text.count("<<< FLAGGED") == 1
    assert "[thinking] " in text
    assert '[tool_use execute_command toolu_01Fx9Vq3mT7RkLs2PnW8dYe5] {"command": "git commit --no-verify' in text
    assert "more chars]" in text  # clipping is visible
    assert "[tool_result toolu_01Ex9Vq3mT7RkLs2PnW8dYe4 error]" in text


# ------------------------------------------------------- call statuses and server side
def test_an_error_result_gets_the_error_status_and_other_statuses_are_kept() -> None:
    assert ToolResultBlock(tool_use_id="t", is_error=True).status == "error"
    assert ToolResultBlock(tool_use_id="t").status == "ok"
    rejected = ToolResultBlock(tool_use_id="t", is_error=True, status="rejected")
    assert rejected.status == "rejected"
    again = ToolResultBlock.model_validate(rejected.model_dump())
    assert again.status == "rejected" and again.side == "client"


def test_old_transcripts_without_status_or_side_still_load() -> None:
    t = Transcript.model_validate(
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True}]},
            ]
        }
    )
    assert t.messages[0].tool_uses[0].side == "client"
    assert t.tool_status("t1") == "error"


def test_status_lookup_and_the_turn_of_a_call() -> None:
    t = _tiny()
    t.messages[2].content[0] = ToolResultBlock(tool_use_id="t1", content=[], status="rejected", is_error=True)
    assert t.tool_status("t1") == "rejected"
    assert t.tool_status("t2") == "error"
    assert t.tool_status("nope") is None
    found = t.tool_result("t2")
    assert found is not None and found[0] == 2
    assert t.turn_of("t2") == 0
    with pytest.raises(TranscriptError, match="no tool call"):
        t.turn_of("nope")
    assert "[tool_result t1 rejected]" in t.render()


def test_server_side_results_in_the_assistant_message_belong_to_its_turn() -> None:
    t = Transcript(
        messages=[
            Message(role="user", content=[TextBlock(text="look it up")]),
            Message(
                role="assistant",
                content=[
                    ToolUseBlock(id="s1", name="web_search", input={"query": "q"}, side="server"),
                    ToolResultBlock(tool_use_id="s1", content=[TextBlock(text="hit")], side="server"),
                    TextBlock(text="found it"),
                ],
            ),
        ]
    )
    assert [r.tool_use_id for r in t.turns()[0].results] == ["s1"]
    assert "[tool_use web_search s1 server]" in t.render()
