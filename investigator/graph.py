"""The investigation as a LangGraph state machine with a SQLite checkpointer.

    triage ─▶ plan ─▶ act ─▶ plan … ─▶ report ─▶ judge ─▶ END

- **triage** opens the conversation (the incident, quoted as data) and the case.
- **plan** asks the planner for its next message; no tool call (or a submitted report,
  or an exhausted budget) moves on to **report**. When the planner's own model fails
  for good (`tools.models.base.ModelError` after its retries), the state records the
  `Fault` and moves on to **report**, which then says the investigation failed.
- **act** runs the tool calls (tools.agent_tools); errors go back to the planner as
  tool results, except faults (`tools.agent_tools.fault_of`: an API that keeps failing,
  an engine that is gone), which stop the investigation the same way.
- **report** builds the `ForensicsReport` (experiments from the ledger) and writes
  report.json / .md / .html; **judge** grades it (grade.json).

The state is plain JSON (conversation, variants, budget, conclusion), checkpointed
after every node in ``graph.sqlite`` in the run directory; the ledger (``case.sqlite``)
holds every sample. After a crash, `run_investigation(..., resume=True)` continues
from the last checkpoint (after a fault, from the one before the node that failed), and
any experiment that was under way resumes from the ledger, so no sample is paid for
twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from investigator.planners import Planner
from tools.agent_tools import Fault, ToolContext, call_tool, fault_of
from tools.budget import Budget
from tools.edit import Variant
from tools.experiments import ROLE_ADAPTER
from tools.models.base import ModelError
from tools.transcript import Message, TextBlock, ToolResultBlock

GRAPH_FILE = "graph.sqlite"


class InvestigationState(TypedDict, total=False):
    conversation: list[dict[str, Any]]
    variants: dict[str, dict[str, Any]]
    roles: dict[str, dict[str, Any]]
    budget: dict[str, Any]
    conclusion: dict[str, Any] | None
    stop_reason: str | None
    steps: int
    grace: int
    started: float
    report_files: dict[str, str]
    grade: dict[str, Any] | None
    failure: dict[str, Any] | None
    """A `tools.agent_tools.Fault`: why the investigation could not go on (then the
    report says so, with status "failed")."""


class Hooks:
    """Callbacks for live display: each receives a short line."""

    def __init__(self, on_step: Callable[[str], None] | None = None) -> None:
        self.on_step = on_step or (lambda _line: None)


def build_graph(
    ctx: ToolContext,
    planner: Planner,
    *,
    finish: Callable[[ToolContext, InvestigationState], Any],
    hooks: Hooks | None = None,
    max_steps: int = 200,
) -> StateGraph[InvestigationState]:
    """The graph, with nodes bound to this case (see module doc). `finish(ctx, state)`
    writes the report and grade and returns the state update."""
    hooks = hooks or Hooks()

    def sync_ctx(state: InvestigationState) -> None:
        for name, data in (state.get("variants") or {}).items():
            ctx.variants[name] = Variant.model_validate(data)
        for name, data in (state.get("roles") or {}).items():
            ctx.roles[name] = ROLE_ADAPTER.validate_python(data)
        if state.get("budget"):
            ctx.budget = Budget.model_validate(state["budget"])
        ctx.conclusion = state.get("conclusion")

    async def triage(state: InvestigationState) -> InvestigationState:
        opening: Message
        if hasattr(planner, "opening"):
            opening = planner.opening(ctx.incident)
        else:
            from tools.quoting import quote_inline

            text = f"Investigate incident {quote_inline(ctx.incident.id)}."
            opening = Message(role="user", content=[TextBlock(text=text)])
        hooks.on_step(f"triage: incident {ctx.incident.id}, flagged turn {ctx.incident.flagged_turn_index}")
        return {
            "conversation": [opening.model_dump(mode="json")],
            "variants": {},
            "budget": ctx.budget.model_dump(mode="json"),
            "conclusion": None,
            "stop_reason": None,
            "steps": 0,
            "started": time.time(),
        }

    async def plan(state: InvestigationState) -> InvestigationState:
        sync_ctx(state)
        conversation = [Message.model_validate(m) for m in state["conversation"]]
        try:
            message = await planner.next_message(conversation, ctx)
        except ModelError as exc:  # the investigator's own model failed for good: stop, and say so
            fault = fault_of(exc, stage="plan") or Fault(stage="plan", error_type=type(exc).__name__, error=str(exc))
            hooks.on_step(f"FAILED: {fault.line()}")
            return {"failure": fault.model_dump(mode="json"), "stop_reason": fault.line()}
        return {"conversation": [*state["conversation"], message.model_dump(mode="json")], "steps": state["steps"] + 1}

    def after_plan(state: InvestigationState) -> str:
        if state.get("failure"):
            return "report"
        last = Message.model_validate(state["conversation"][-1])
        if not last.tool_uses or state.get("conclusion") is not None or state["steps"] >= max_steps:
            return "report"
        return "act"

    async def act(state: InvestigationState) -> InvestigationState:
        sync_ctx(state)
        last = Message.model_validate(state["conversation"][-1])
        results: list[ToolResultBlock] = []
        failure: Fault | None = None
        for call in last.tool_uses:
            outcome = await call_tool(ctx, call.name, call.input)
            hooks.on_step(f"{call.name}: {'ok' if outcome.ok else 'error'} · {ctx.budget.line()}")
            results.append(
                ToolResultBlock(tool_use_id=call.id, content=[TextBlock(text=outcome.content)], is_error=not outcome.ok)
            )
            if outcome.fault is not None:  # the API or the engine is failing: no later call can succeed
                failure = outcome.fault
                hooks.on_step(f"FAILED: {failure.line()}")
                break
        reply = Message(role="user", content=list(results))
        stop = ctx.budget.exhausted()
        grace = (state.get("grace") or 0) + (1 if stop and ctx.conclusion is None else 0)
        stop_reason = state.get("stop_reason")
        if failure is not None:
            stop_reason = failure.line()
        elif stop and ctx.conclusion is None:
            stop_reason = stop
        return {
            "grace": grace,
            "conversation": [*state["conversation"], reply.model_dump(mode="json")],
            "variants": {name: v.model_dump(mode="json") for name, v in ctx.variants.items()},
            "roles": {name: r.model_dump(mode="json") for name, r in ctx.roles.items()},
            "budget": ctx.budget.model_dump(mode="json"),
            "conclusion": ctx.conclusion,
            "stop_reason": stop_reason,
            "failure": failure.model_dump(mode="json") if failure is not None else None,
        }

    def after_act(state: InvestigationState) -> str:
        if state.get("conclusion") is not None or state.get("failure"):
            return "report"
        if (state.get("grace") or 0) > 1:
            return "report"  # the planner had its turn after the budget ran out
        return "plan"

    async def report(state: InvestigationState) -> InvestigationState:
        sync_ctx(state)
        update: InvestigationState = await finish(ctx, state)
        hooks.on_step("report written")
        return update

    graph: StateGraph[InvestigationState] = StateGraph(InvestigationState)
    graph.add_node("triage", triage)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("report", report)
    graph.add_edge(START, "triage")
    graph.add_edge("triage", "plan")
    graph.add_conditional_edges("plan", after_plan, {"act": "act", "report": "report"})
    graph.add_conditional_edges("act", after_act, {"plan": "plan", "report": "report"})
    graph.add_edge("report", END)
    return graph


async def run_graph(
    graph: StateGraph[InvestigationState], run_dir: Path, thread_id: str, *, resume: bool
) -> InvestigationState:
    """Compile with the SQLite checkpointer and run (or resume) to the end."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 1000}
    async with AsyncSqliteSaver.from_conn_string(str(run_dir / GRAPH_FILE)) as saver:
        app = graph.compile(checkpointer=saver)
        snapshot = await app.aget_state(config)
        started = bool(snapshot.values)
        failed = (snapshot.values or {}).get("failure")
        if resume and started and snapshot.next:
            result = await app.ainvoke(None, config, durability="sync")
        elif resume and started and failed:
            # The run stopped on a fault (an API down, an engine gone): take it up again
            # from the checkpoint before the node that failed. Samples already taken are
            # in the ledger, so nothing is paid for twice.
            stage = failed.get("stage")
            retry: RunnableConfig | None = None
            async for past in app.aget_state_history(config):
                if past.next == (stage,) and not (past.values or {}).get("failure"):
                    retry = past.config
                    break
            result = await app.ainvoke(None, retry, durability="sync") if retry else snapshot.values
        elif resume and started and not snapshot.next:
            result = snapshot.values
        else:
            result = await app.ainvoke(InvestigationState(), config, durability="sync")
    final: InvestigationState = result  # type: ignore[assignment]
    return final
