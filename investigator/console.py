"""Rich rendering of transcripts and incidents for the terminal.

Chain of thought is dimmed, tool calls are highlighted, tool results are boxed, and
the flagged step is marked with the monitor's reason. All transcript text is shown as
literal text (rich markup in it is escaped), since it is untrusted data.
"""

from __future__ import annotations

import json

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text

from tools.incident import Incident
from tools.transcript import (
    CompactionBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Transcript,
)


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + f"\n…[{len(text) - max_chars} more characters]"
    return text


def _tool_use(block: ToolUseBlock, max_chars: int | None, flagged: bool) -> RenderableType:
    command = block.input.get("command") or block.input.get("cmd")
    body: RenderableType
    if isinstance(command, str) and len(block.input) == 1:
        body = Syntax(_clip(command, max_chars), "bash", theme="ansi_dark", word_wrap=True)
    else:
        body = Syntax(_clip(json.dumps(block.input, indent=2, ensure_ascii=False), max_chars), "json", word_wrap=True)
    title = Text.assemble(("tool call ", "bold cyan"), (block.name, "bold"), (f"  {block.id}", "dim"))
    if block.side == "server":
        title.append("  server-side", style="dim")
    if flagged:
        title.append("  ◀ FLAGGED", style="bold red")
    return Panel(body, title=title, title_align="left", border_style="red" if flagged else "cyan")


def _tool_result(block: ToolResultBlock, max_chars: int | None) -> RenderableType:
    text = Text(_clip(block.text, max_chars))
    images = sum(1 for item in block.content if isinstance(item, ImageBlock))
    if images:
        text.append(f"\n[{images} image(s)]", style="dim")
    style = "red" if block.is_error or block.status != "ok" else "green"
    title = Text.assemble(("result", f"bold {style}"), (f"  {block.tool_use_id}", "dim"))
    if block.status != "ok":
        title.append(f"  {block.status}", style="bold red")
    elif block.is_error:
        title.append("  error", style="bold red")
    return Panel(text, title=title, title_align="left", border_style=style, style="dim" if not block.is_error else "")


def message_renderables(
    msg: Message,
    *,
    max_chars: int | None,
    flagged_tool_use_id: str | None = None,
    flag_all_calls: bool = False,
) -> list[RenderableType]:
    """The blocks of one message as rich renderables."""
    out: list[RenderableType] = []
    for block in msg.content:
        if isinstance(block, TextBlock):
            out.append(Text(_clip(block.text, max_chars)))
        elif isinstance(block, ThinkingBlock):
            label = "thinking (redacted)" if block.redacted else "thinking"
            out.append(Text.assemble((f"[{label}] ", "dim bold"), (_clip(block.thinking, max_chars), "dim italic")))
        elif isinstance(block, ToolUseBlock):
            flagged = flag_all_calls or block.id == flagged_tool_use_id
            out.append(_tool_use(block, max_chars, flagged))
        elif isinstance(block, ToolResultBlock):
            out.append(_tool_result(block, max_chars))
        elif isinstance(block, CompactionBlock):
            summary = block.summary if block.summary is not None else "(opaque summary, not readable)"
            out.append(Text.assemble(("[compaction] ", "dim bold"), (_clip(summary, max_chars), "dim")))
        else:
            out.append(Text(f"[image {block.media_type or block.url or ''}]", style="dim"))
    return out


def render_transcript(
    console: Console,
    transcript: Transcript,
    *,
    max_chars: int | None = 2000,
    flagged_turn: int | None = None,
    flagged_tool_use_id: str | None = None,
    flag_reason: str | None = None,
) -> None:
    """Print a transcript: system prompt, tools, then every message in order."""
    meta = []
    if transcript.model:
        meta.append(f"model: {transcript.model}")
    if transcript.metadata.get("source_format"):
        meta.append(f"format: {transcript.metadata['source_format']}")
    meta.append(f"{len(transcript.messages)} messages, {len(transcript.turns())} assistant turns")
    console.print(Rule(Text(" · ".join(meta), style="bold")))
    if transcript.system:
        console.print(
            Panel(Text(_clip(transcript.system, max_chars)), title="system", title_align="left", border_style="magenta")
        )
    if transcript.tools:
        console.print(Text.assemble(("tools: ", "bold"), ", ".join(t.name for t in transcript.tools)))
    turn = 0
    for i, msg in enumerate(transcript.messages):
        is_flagged = False
        header = Text.assemble((f"[{i}] ", "dim"), (msg.role, "bold blue" if msg.role == "user" else "bold yellow"))
        if msg.role == "assistant":
            is_flagged = flagged_turn is not None and turn == flagged_turn
            header.append(f"  turn {turn}", style="dim")
            turn += 1
        source_role = msg.metadata.get("source_role")
        if source_role:
            header.append(f"  (source role: {source_role})", style="dim")
        if msg.metadata.get("sidechain"):
            header.append("  (sidechain)", style="dim")
        body = message_renderables(
            msg,
            max_chars=max_chars,
            flagged_tool_use_id=flagged_tool_use_id if is_flagged else None,
            flag_all_calls=is_flagged and flagged_tool_use_id is None,
        )
        if is_flagged:
            header.append("  ◀ FLAGGED", style="bold red")
            if flag_reason:
                body.append(Text.assemble(("monitor: ", "bold red"), (flag_reason, "red")))
            console.print(Panel(Group(*body), title=header, title_align="left", border_style="bold red"))
        else:
            console.print(header)
            for renderable in body:
                console.print(renderable)
        console.print()


def render_incident(console: Console, incident: Incident, *, max_chars: int | None = 2000) -> None:
    """Print an incident's summary, then its transcript with the flagged step marked."""
    env = incident.environment
    world = env.describe()
    summary = Text()
    summary.append("incident ", style="bold")
    summary.append(incident.id)
    summary.append("\nsubject  ", style="bold")
    summary.append(incident.subject.model)
    summary.append("\nworld    ", style="bold")
    summary.append(world)
    summary.append("\nflag     ", style="bold")
    summary.append(f"turn {incident.flagged_turn_index}")
    if incident.flag.tool_use_id:
        summary.append(f", call {incident.flag.tool_use_id}")
    summary.append(f" — {incident.flag.reason}", style="red")
    summary.append("\ndetector ", style="bold")
    summary.append(incident.behavior.model_dump_json(exclude_defaults=True))
    console.print(Panel(summary, title="incident", title_align="left", border_style="red"))
    render_transcript(
        console,
        incident.transcript,
        max_chars=max_chars,
        flagged_turn=incident.flagged_turn_index,
        flagged_tool_use_id=incident.flag.tool_use_id,
        flag_reason=incident.flag.reason,
    )
