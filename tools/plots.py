"""Figures for reports: forest plots, dose-response curves, turn and sentence importance.

Every function returns the PNG bytes of one figure (`data_uri` turns them into an
``<img src=...>`` value for self-contained HTML). Figures are drawn on matplotlib's
Agg canvas through `matplotlib.figure.Figure`, never `pyplot`: no global state, no
display needed, safe to call from worker threads. Intervals follow tools.stats: Wilson
95% for a rate, Newcombe 95% for a difference of rates, the logistic fit's pointwise
95% band for a dose-response.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from tools.importance import SentenceImportance, TurnImportance
from tools.stats import DoseResponseFit, Rate, compare

__all__ = [
    "data_uri",
    "dose_response_plot",
    "forest_plot",
    "sentence_importance_plot",
    "turn_importance_plot",
]

_ARM = "#1f4e79"
_BASE = "#9e9e9e"
_UP = "#b03a2e"
_DOWN = "#1e8449"
_DPI = 110


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI for an HTML ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _errors(centre: float, low: float, high: float) -> tuple[float, float]:
    """Matplotlib's (below, above) error lengths, never negative."""
    return max(centre - low, 0.0), max(high - centre, 0.0)


def _pct(ax: Axes, axis: str = "x") -> None:
    """Show a 0-1 axis as percentages."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(PercentFormatter(xmax=1.0))


def _upper(highs: Sequence[float]) -> float:
    """An axis top a little above the highest interval end, at least 10%, at most 100%."""
    top = max((h for h in highs if not math.isnan(h)), default=1.0)
    return min(1.0, max(0.1, top * 1.15))


def _symmetric(reach: float) -> tuple[float, float]:
    """Limits around zero that show every interval, at least ±10 points."""
    half = min(1.0, max(0.1, reach * 1.15))
    return -half, half


def _empty_note(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=_BASE)


# --------------------------------------------------------------------------- forest


def forest_plot(
    arms: Sequence[tuple[str, Rate]],
    *,
    baseline: tuple[str, Rate] | None = None,
    differences: bool = False,
    title: str = "Interventions",
) -> bytes:
    """Each arm's rate with its Wilson interval, the baseline as a shaded band; or,
    with ``differences=True``, each arm minus the baseline with its Newcombe interval
    around a zero line (significant differences at the 5% level of the pooled z-test
    in colour). Arms with no samples are listed without a point."""
    if differences and baseline is None:
        raise ValueError("differences=True needs a baseline to subtract")
    rows = list(arms)
    figure, ax = _figure(7.0, 1.2 + 0.42 * max(len(rows), 1))
    labels = [f"{name}  ({rate.k}/{rate.n})" for name, rate in rows]
    ys = list(range(len(rows)))[::-1]
    if differences:
        assert baseline is not None
        base_name, base = baseline
        ax.axvline(0.0, color=_BASE, linewidth=1)
        for y, (_, rate) in zip(ys, rows, strict=True):
            if rate.n == 0 or base.n == 0:
                continue
            c = compare(rate, base)
            colour = (_UP if c.difference > 0 else _DOWN) if c.significant else _ARM
            ax.errorbar(
                c.difference,
                y,
                xerr=[[_errors(c.difference, *c.ci)[0]], [_errors(c.difference, *c.ci)[1]]],
                fmt="o",
                color=colour,
                capsize=4,
            )
        reach = max((abs(x) for _, r in rows if r.n and base.n for x in compare(r, base).ci), default=0.0)
        ax.set_xlabel(f"difference from {base_name} ({base}), Newcombe 95% CI")
        ax.set_xlim(*_symmetric(reach))
    else:
        if baseline is not None and baseline[1].n:
            low, high = baseline[1].ci
            ax.axvspan(low, high, color=_BASE, alpha=0.2, linewidth=0)
            ax.axvline(baseline[1].rate, color=_BASE, linewidth=1.5, label=f"{baseline[0]}: {baseline[1]}")
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        for y, (_, rate) in zip(ys, rows, strict=True):
            if rate.n == 0:
                continue
            below, above = _errors(rate.rate, *rate.ci)
            ax.errorbar(rate.rate, y, xerr=[[below], [above]], fmt="o", color=_ARM, capsize=4)
        highs = [r.ci[1] for _, r in rows if r.n] + ([baseline[1].ci[1]] if baseline and baseline[1].n else [])
        ax.set_xlabel("behaviour rate, Wilson 95% CI")
        ax.set_xlim(0.0, _upper(highs))
    _pct(ax)
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.7, max(len(rows) - 0.3, 0.7))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, loc="left")
    if not rows:
        _empty_note(ax, "no arms")
    return _png(figure)


# --------------------------------------------------------------------------- dose-response


def dose_response_plot(
    fit: DoseResponseFit,
    *,
    dose_label: str = "dose",
    title: str = "Dose-response",
    points: int = 200,
) -> bytes:
    """Observed rates per dose (Wilson intervals) and, when the logistic fit exists,
    the fitted curve with its 95% band; the fit's status and slope test in the legend."""
    figure, ax = _figure(7.0, 4.2)
    observed = fit.observed()
    doses = [d for d, _ in observed]
    if fit.ok and len(doses) >= 2:
        lo, hi = min(doses), max(doses)
        grid = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
        band = fit.band(grid)
        xs = [p.dose for p in band]
        ax.fill_between(xs, [p.low for p in band], [p.high for p in band], color=_ARM, alpha=0.15, linewidth=0)
        ax.plot(
            xs,
            [p.rate for p in band],
            color=_ARM,
            label=f"logistic fit: slope {fit.slope:.3g}/unit, p = {fit.slope_p:.2g}",
        )
    elif observed:
        ax.plot([], [], " ", label=f"no logistic fit: {fit.status}")
    for dose, rate in observed:
        if rate.n == 0:
            continue
        below, above = _errors(rate.rate, *rate.ci)
        ax.errorbar(dose, rate.rate, yerr=[[below], [above]], fmt="o", color=_UP, capsize=3)
    if observed:
        ax.errorbar([], [], yerr=[], fmt="o", color=_UP, capsize=3, label="observed, Wilson 95% CI")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    else:
        _empty_note(ax, "no dose levels")
    highs = [r.ci[1] for _, r in observed if r.n]
    if fit.ok and len(doses) >= 2:
        highs.append(max(p.high for p in fit.band(doses)))
    ax.set_ylim(-0.01, _upper(highs))
    _pct(ax, "y")
    ax.set_xlabel(dose_label)
    ax.set_ylabel("behaviour rate")
    ax.grid(alpha=0.3)
    ax.set_title(title, loc="left")
    return _png(figure)


# --------------------------------------------------------------------------- importance


def turn_importance_plot(result: TurnImportance, *, title: str | None = None) -> bytes:
    """The behaviour rate resampled from each start turn (bars, Wilson intervals),
    the half-of-flagged-rate bar as a dashed line, the turn where the behaviour
    becomes likely in colour."""
    figure, ax = _figure(7.0, 4.0)
    turns = [p.turn for p in result.points]
    rates = [p.rate for p in result.points]
    heights = [0.0 if math.isnan(r.rate) else r.rate for r in rates]
    colours = [_UP if t == result.likely_turn else _ARM for t in turns]
    ax.bar(turns, heights, color=colours, alpha=0.85, width=0.6)
    for t, rate, height in zip(turns, rates, heights, strict=True):
        if rate.n:
            below, above = _errors(height, *rate.ci)
            ax.errorbar(t, height, yerr=[[below], [above]], fmt="none", color="black", capsize=4, linewidth=1)
    if result.target is not None:
        ax.axhline(result.target, color=_BASE, linestyle="--", linewidth=1, label="half the flagged-turn rate")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_xticks(turns, [f"{t}\n(flagged)" if t == result.flagged_turn else str(t) for t in turns] if turns else [])
    ax.set_xlabel("resampled from the start of turn")
    ax.set_ylabel("behaviour rate")
    ax.set_ylim(0.0, _upper([r.ci[1] for r in rates if r.n]))
    _pct(ax, "y")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or f"Turn importance ({result.method}, n = {result.n_per_turn} per turn)", loc="left")
    if not turns:
        _empty_note(ax, "no turns measured")
    elif result.target is None:
        _empty_note(ax, "the behaviour never occurred when the flagged turn was resampled")
    return _png(figure)


def sentence_importance_plot(
    result: SentenceImportance, *, counterfactual: bool = True, title: str | None = None
) -> bytes:
    """Each CoT sentence's resampling importance (rate kept − rate regenerated, Newcombe
    interval) as a horizontal bar, and its counterfactual importance as a diamond."""
    rows = result.sentences
    figure, ax = _figure(9.0, 1.6 + 0.45 * max(len(rows), 1))
    ys = list(range(len(rows)))[::-1]
    ax.axvline(0.0, color=_BASE, linewidth=1)
    for y, score in zip(ys, rows, strict=True):
        diff = score.resampling.difference
        if math.isnan(diff):
            continue
        colour = (_UP if diff > 0 else _DOWN) if score.resampling.significant else _ARM
        below, above = _errors(diff, *score.resampling.ci)
        ax.barh(y, diff, color=colour, alpha=0.8, height=0.55)
        ax.errorbar(diff, y, xerr=[[below], [above]], fmt="none", color="black", capsize=3, linewidth=1)
        if counterfactual and score.counterfactual is not None:
            ax.plot(score.counterfactual.difference, y, marker="D", color="black", markersize=5, linestyle="none")
    if counterfactual and any(s.counterfactual is not None for s in rows):
        ax.plot([], [], marker="D", color="black", linestyle="none", label="counterfactual importance")
        figure.legend(loc="outside lower right", fontsize=8, frameon=False)
    ax.set_yticks(ys, [f"[{s.index}] {_clip(s.text)}" for s in rows])
    ax.set_ylim(-0.7, max(len(rows) - 0.3, 0.7))
    reach = max(
        (abs(x) for s in rows for x in (*s.resampling.ci, *(s.counterfactual.ci if s.counterfactual else ()))),
        default=0.0,
    )
    ax.set_xlim(*_symmetric(reach))
    ax.set_xlabel(f"rate kept − rate resampled (k = {result.k} per arm)")
    _pct(ax)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"Sentence importance, turn {result.turn}", loc="left")
    if not rows:
        _empty_note(ax, "no sentences")
    return _png(figure)
