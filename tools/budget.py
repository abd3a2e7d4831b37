"""Investigation budgets: tool calls, samples, tokens and dollars.

A `Budget` is charged as work happens and refuses work that would exceed a limit
(`BudgetExceeded`), so an investigation ends with an honest "inconclusive: budget
exhausted" rather than silently overspending.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.errors import ForensicsError


class BudgetExceeded(ForensicsError):
    """A limit was reached; the message says which."""


class BudgetLimits(BaseModel):
    """Limits; None means unlimited."""

    tool_calls: int | None = Field(default=60, ge=0)
    samples: int | None = Field(default=5000, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    dollars: float | None = Field(default=None, ge=0)


class Budget(BaseModel):
    """What has been spent against the limits."""

    limits: BudgetLimits = Field(default_factory=BudgetLimits)
    tool_calls: int = 0
    samples: int = 0
    tokens: int = 0
    dollars: float = 0.0

    def samples_left(self) -> int | None:
        return None if self.limits.samples is None else max(0, self.limits.samples - self.samples)

    def exhausted(self) -> str | None:
        """Which limit is used up, or None."""
        limits = self.limits
        if limits.tool_calls is not None and self.tool_calls >= limits.tool_calls:
            return f"tool-call budget ({limits.tool_calls}) used up"
        if limits.samples is not None and self.samples >= limits.samples:
            return f"sample budget ({limits.samples}) used up"
        if limits.tokens is not None and self.tokens >= limits.tokens:
            return f"token budget ({limits.tokens}) used up"
        if limits.dollars is not None and self.dollars >= limits.dollars:
            return f"dollar budget (${limits.dollars:.2f}) used up"
        return None

    def charge_tool_call(self) -> None:
        if self.limits.tool_calls is not None and self.tool_calls >= self.limits.tool_calls:
            raise BudgetExceeded(f"tool-call budget ({self.limits.tool_calls}) used up")
        self.tool_calls += 1

    def allow_samples(self, wanted: int) -> int:
        """How many of `wanted` samples may be taken now (raises when none may)."""
        reason = self.exhausted()
        if reason and not reason.startswith("tool-call"):
            raise BudgetExceeded(reason)
        left = self.samples_left()
        if left is None:
            return wanted
        if left <= 0:
            raise BudgetExceeded(f"sample budget ({self.limits.samples}) used up")
        return min(wanted, left)

    def charge_usage(self, *, samples: int = 0, tokens: int = 0, dollars: float = 0.0) -> None:
        self.samples += samples
        self.tokens += tokens
        self.dollars += dollars

    def line(self) -> str:
        """One line for live display."""

        def part(name: str, used: float, limit: float | None, fmt: str = "{:.0f}") -> str:
            shown = fmt.format(used)
            return f"{name} {shown}" + (f"/{fmt.format(limit)}" if limit is not None else "")

        return " · ".join(
            [
                part("tool calls", self.tool_calls, self.limits.tool_calls),
                part("samples", self.samples, self.limits.samples),
                part("tokens", self.tokens, self.limits.tokens),
                part("$", self.dollars, self.limits.dollars, "{:.2f}"),
            ]
        )
