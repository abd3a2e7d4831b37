"""Write a `ForensicsReport` as ``report.json``, ``report.md`` and ``report.html``.

The three files say the same thing for three readers:

* ``report.json`` is the report itself (``model_dump_json``): what programs, the judge
  and the benchmark read.
* ``report.md`` is for people in a terminal or a code review: the verdict with its
  confidence, the two questions (intentional? knew the user would disapprove?) with
  probabilities and rationale, the summary, the hypothesis table, the experiments
  table (each arm's rate with its Wilson interval, the difference from the baseline
  with its Newcombe interval, p and Holm-adjusted p), dose-response series, key
  quotes with their exact spans, confounds, mitigations, limitations and cost.
* ``report.html`` is the same content styled, self-contained (inline CSS, plots as
  base64 PNG data URIs, a Content-Security-Policy that forbids scripts and any
  external fetch) so it can be mailed or attached to a ticket: a forest plot of the
  intervention effects per baseline, a dose-response plot per dose series and an
  importance plot per importance analysis recorded in the ledger (figures drawn by
  `tools.plots`).

Every number is computed here from the report's own experiment rows (which came from
the ledger), never re-typed. Much of a report's text derives from the subject's
transcript (quotes verbatim, rationales paraphrasing it), so none of it is trusted as
markup: the HTML template is rendered with Jinja2 autoescaping, and in Markdown,
table cells have ``|`` and line breaks neutralized and ``<``/``>``/``&`` written as
entities, while quotes are put in a code fence longer than any backtick run inside
them, so a quote can neither close its fence nor inject HTML into a Markdown viewer.

What each experiment arm is for is its typed role (`tools.experiments`), stored in the
ledger and copied into the report; labels are free text and are never parsed:

* **Baseline**: the `BaselineRole` arm of each mode and start turn (or, for whole
  episodes in the rebuilt world, the `RolloutRole` arm of the unedited world), as in
  `investigator.report.experiments_from_ledger`.
* **Controls**: `ControlRole` arms. A negative control is a change no hypothesis says
  should matter; a positive control is one known to move the rate, showing the setup
  can detect an effect.
* **Dose series**: `DoseRole` arms with the same knob, mode and start turn form one
  series; arms at the same dose are pooled. When the arms record the knob's
  `original` value, the baseline arm of the same mode and start turn is the series'
  level at that value. A series needs at least two distinct doses; it gets a
  Cochran–Armitage trend test and a logistic fit.
* **Importance**: the ledger events `tools.importance` records, ``turn_importance``
  and ``sentence_importance``. An event holding the whole result under ``result``
  (``TurnImportance`` / ``SentenceImportance`` dumped as JSON) is shown in full. The
  compact events are read with the ledger: a turn scan is rebuilt exactly from its
  rates and experiments; a sentence scan gets its table (each sentence's resampling
  importance with the Newcombe interval computed from its two arms' counts) but no
  plot, since the counterfactual intervals are not in the event. The arms of these
  analyses (`ImportanceRole`) are listed, but are neither interventions nor in the
  forest plot. An event that cannot be read is reported in the notes, never dropped
  silently.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, ValidationError

from investigator.report import ExperimentEntry, ForensicsReport, Judgement, Quote
from tools import plots as figures
from tools.experiments import DoseRole, ImportanceRole, is_reference
from tools.importance import SentenceImportance, TurnImportance, TurnPoint
from tools.ledger import Ledger
from tools.screening import SCREENING_EVENT, Screening
from tools.stats import Comparison, DoseResponseFit, Rate, cochran_armitage, compare, fit_dose_response, wilson_interval
from tools.transcript import Span

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
TEMPLATE_DIR = "report"
"""Templates live in ``prompts/report/`` (package data, so they ship in the wheel)."""

SIGNIFICANCE = 0.05
"""Holm-adjusted p below which an arm's difference from the baseline is called significant."""
TURN_IMPORTANCE_EVENT = "turn_importance"
SENTENCE_IMPORTANCE_EVENT = "sentence_importance"

ArmRole = Literal["baseline", "control", "dose", "importance", "probe", "intervention"]
"""How the report groups arms (`arm_role`)."""


# ----------------------------------------------------------------------------- arm roles


def arm_role(entry: ExperimentEntry) -> ArmRole:
    """How the report treats an arm, from its typed role: the reference of its group
    (baseline, or the unedited world of a rollout group), a control, a dose level, an
    importance arm, a probe, or an intervention (interventions, rollouts of a changed
    world and exploratory arms)."""
    role = entry.role
    if role.kind == "probe" or entry.mode == "probe":
        return "probe"
    if is_reference(role):
        return "baseline"
    if role.kind in {"control", "dose", "importance"}:
        return role.kind
    return "intervention"


def dose_of(entry: ExperimentEntry) -> tuple[str, float] | None:
    """``(knob, level)`` of a dose arm (None for any other arm, or a non-finite level)."""
    role = entry.role
    if not isinstance(role, DoseRole) or not math.isfinite(role.level):
        return None
    return role.knob, role.level


# ----------------------------------------------------------------------------- derived data


class DoseLevel(BaseModel):
    """One dose of a series: the pooled counts of every arm run at that dose."""

    model_config = ConfigDict(frozen=True)

    dose: float
    k: int
    n: int
    experiment_ids: tuple[str, ...]

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)


class DoseSeries(BaseModel):
    """Dose arms with the same knob, mode and start turn (and the baseline at the original level)."""

    model_config = ConfigDict(frozen=True)

    knob: str
    mode: str
    start_turn: int
    levels: tuple[DoseLevel, ...]
    trend_z: float
    trend_p: float
    fit: DoseResponseFit


def dose_series(experiments: Iterable[ExperimentEntry]) -> list[DoseSeries]:
    """The dose series among `experiments` (see the module doc), each with its
    Cochran–Armitage trend test and logistic fit. Groups with fewer than two distinct
    doses are not series and are left out."""
    entries = list(experiments)
    groups: dict[tuple[str, str, int], dict[float, list[ExperimentEntry]]] = {}
    originals: dict[tuple[str, str, int], float] = {}
    for entry in entries:
        parsed = dose_of(entry)
        if parsed is None or entry.mode == "probe" or entry.n == 0:
            continue
        knob, level = parsed
        key = (knob, entry.mode, entry.start_turn)
        groups.setdefault(key, {}).setdefault(level, []).append(entry)
        original = entry.role.original if isinstance(entry.role, DoseRole) else None
        if original is not None and math.isfinite(original):
            originals.setdefault(key, original)
    for key, original in originals.items():
        _, mode, start_turn = key
        base = next(
            (e for e in entries if e.n and is_reference(e.role) and e.mode == mode and e.start_turn == start_turn),
            None,
        )
        if base is not None:
            groups[key].setdefault(original, []).append(base)
    out: list[DoseSeries] = []
    for (knob, mode, start_turn), by_dose in groups.items():
        if len(by_dose) < 2:
            continue
        levels = tuple(
            DoseLevel(
                dose=dose,
                k=sum(e.k for e in arms),
                n=sum(e.n for e in arms),
                experiment_ids=tuple(e.id for e in arms),
            )
            for dose, arms in sorted(by_dose.items())
        )
        triples = [(lv.dose, lv.k, lv.n) for lv in levels]
        z, p = cochran_armitage(triples)
        out.append(
            DoseSeries(
                knob=knob,
                mode=mode,
                start_turn=start_turn,
                levels=levels,
                trend_z=z,
                trend_p=p,
                fit=fit_dose_response(triples),
            )
        )
    return out


ImportanceResult = TurnImportance | SentenceImportance | Screening


@dataclass(frozen=True)
class CompactSentenceScore:
    """One sentence of a compact ``sentence_importance`` event, with what the ledger adds."""

    index: int
    text: str
    resampling: Comparison | float
    """The comparison rebuilt from the two arms' counts, or the bare difference when they are missing."""
    counterfactual: float | None


def importance_results(
    ledger: Ledger, *, incident_id: str, subject: str
) -> tuple[list[ImportanceResult | list[CompactSentenceScore]], list[str]]:
    """The importance analyses recorded in `ledger` for `incident_id`, in the order they
    were recorded (see the module doc), and a note for each event that could not be
    read. `subject` fills the one field a compact turn event does not carry."""
    events = [
        *ledger.events(TURN_IMPORTANCE_EVENT),
        *ledger.events(SENTENCE_IMPORTANCE_EVENT),
        *ledger.events(SCREENING_EVENT),
    ]
    out: list[ImportanceResult | list[CompactSentenceScore]] = []
    notes: list[str] = []
    for event in sorted(events, key=lambda e: int(e["id"])):
        if event.get("incident_id", incident_id) != incident_id:
            continue
        try:
            if event["kind"] == TURN_IMPORTANCE_EVENT:
                out.append(_turn_result(event, ledger, subject))
            elif event["kind"] == SCREENING_EVENT:
                out.append(Screening.model_validate(event["result"]))
            elif "result" in event:
                out.append(SentenceImportance.model_validate(event["result"]))
            else:
                out.append(_compact_sentences(event, ledger))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(x) for x in err["loc"]) or "(top level)"
            notes.append(f"{event['kind']} event #{event['id']} was not shown: {where}: {err['msg']}")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            notes.append(
                f"{event['kind']} event #{event['id']} was not shown: unreadable ({type(exc).__name__}: {exc})"
            )
    return out, notes


def _turn_result(event: dict[str, Any], ledger: Ledger, subject: str) -> TurnImportance:
    """A `TurnImportance` from its event: the full result when recorded, else rebuilt
    from the compact event, which determines it (the flagged turn is always measured and
    is the last; the target is half its rate)."""
    if "result" in event:
        return TurnImportance.model_validate(event["result"])
    rates = {int(turn): (int(k), int(n)) for turn, (k, n) in dict(event["rates"]).items()}
    turns = sorted(rates)
    experiments = [str(e) for e in event["experiments"]]
    if not turns or len(experiments) != len(turns):
        raise ValueError(f"{len(experiments)} experiments for {len(turns)} measured turns")
    points = []
    for turn, experiment_id in zip(turns, experiments, strict=True):
        row = ledger.experiment(experiment_id)
        if row is None:
            raise ValueError(f"experiment {experiment_id} is not in the ledger")
        k, n = rates[turn]
        points.append(
            TurnPoint.model_validate({"turn": turn, "experiment_id": experiment_id, "mode": row.mode, "k": k, "n": n})
        )
    flagged = turns[-1]
    top_k, top_n = rates[flagged]
    return TurnImportance(
        incident_id=str(event["incident_id"]),
        subject=subject,
        flagged_turn=flagged,
        method=event["method"],
        n_per_turn=max(n for _, n in rates.values()),
        points=points,
        target=None if top_k == 0 else top_k / top_n / 2,
        likely_turn=event.get("likely_turn"),
    )


def _compact_sentences(event: dict[str, Any], ledger: Ledger) -> list[CompactSentenceScore]:
    """The sentences of a compact ``sentence_importance`` event; the resampling
    comparison of sentence *i* is rebuilt from arms *i* (before) and *i + 1* (after)."""
    arms: dict[int, Rate] = {}
    kept_list = event.get("kept")
    for position, experiment_id in enumerate(event["experiments"]):
        row = ledger.experiment(str(experiment_id))
        if row is None:
            continue
        if isinstance(kept_list, list) and position < len(kept_list):
            kept: int | None = int(kept_list[position])
        else:  # an event from before `kept` was recorded: the arm's own role says
            kept = row.role.index if isinstance(row.role, ImportanceRole) and row.role.scan == "sentence" else None
        if kept is not None:
            counts = ledger.counts(row.id)
            arms[kept] = Rate(counts.k, counts.n)
    out = []
    for score in event["scores"]:
        index = int(score["index"])
        before, after = arms.get(index), arms.get(index + 1)
        resampling: Comparison | float = (
            compare(after, before)
            if before is not None and after is not None and before.n and after.n
            else float(score["resampling"])
        )
        cf = score.get("counterfactual")
        out.append(
            CompactSentenceScore(
                index=index,
                text=str(score["text"]),
                resampling=resampling,
                counterfactual=None if cf is None else float(cf),
            )
        )
    if not out:
        raise ValueError("no sentences")
    return out


# ----------------------------------------------------------------------------- formatting


def fmt_pct(value: float) -> str:
    """A rate as a percentage with one decimal: ``0.1314`` -> ``"13.1%"``."""
    return f"{100 * value:.1f}%"


def fmt_ci(ci: tuple[float, float]) -> str:
    """A rate interval in percent: ``"[8.9, 18.9]"``."""
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def fmt_points(value: float) -> str:
    """A difference of rates in percentage points, signed: ``"+5.2 pts"`` (a difference
    that rounds to zero is ``"+0.0 pts"``, never ``"-0.0 pts"``)."""
    points = round(100 * value, 1)
    return f"{points + 0.0:+.1f} pts"


def fmt_p(p: float | None) -> str:
    """A p-value: three decimals, scientific below 0.001, an em dash when absent."""
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fmt_prob(p: float) -> str:
    """A probability as a percentage without decimals: ``0.85`` -> ``"85%"``."""
    return f"{100 * p:.0f}%"


def describe_span(span: Span) -> str:
    """Where a quote is, in words: ``"message 7, block 0, input.command, chars 12–40"``."""
    parts = [f"message {span.message}", f"block {span.block}"]
    if span.field:
        parts.append(".".join(str(f) for f in span.field))
    parts.append(f"chars {span.start}–{span.end}")
    return ", ".join(parts)


_BLOCK_START = re.compile(r"^([ \t]{0,3})(#|```|~~~)", re.MULTILINE)


def md_text(text: str) -> str:
    """Report prose for Markdown: kept as written, except that HTML is neutralized (a
    Markdown viewer renders raw HTML) and a line cannot start a heading or a code fence
    (which would forge a report section or swallow the rest of the page)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BLOCK_START.sub(lambda m: m[1] + "\\" + m[2], escaped)


def md_cell(text: str) -> str:
    """Text for one Markdown table cell: HTML neutralized, ``|`` escaped and line breaks
    flattened, so untrusted text cannot break the table."""
    flat = " ".join(md_text(text).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|") or " "


def md_fence(text: str, info: str = "text") -> str:
    """`text` in a fenced code block whose fence is longer than any backtick run inside
    it (CommonMark), so the text cannot close the block."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


# ----------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class ArmView:
    """One experiment row, formatted."""

    id: str
    label: str
    role: ArmRole
    mode: str
    start_turn: int
    description: str
    counts: str
    rate: str
    ci: str
    difference: str
    """The difference from the baseline with its interval, or an em dash."""
    p: str
    p_holm: str
    significant: bool
    stop_reason: str


@dataclass(frozen=True)
class JudgementView:
    question: str
    answer: str
    probability: str
    rationale: str
    evidence: list[str]


@dataclass(frozen=True)
class QuoteView:
    id: str
    where: str
    text: str
    why: str


@dataclass(frozen=True)
class PlotView:
    """A plot embedded in the HTML page."""

    id: str
    caption: str
    alt: str
    data_uri: str


@dataclass(frozen=True)
class DoseLevelView:
    dose: str
    counts: str
    rate: str
    ci: str
    experiments: str


@dataclass(frozen=True)
class DoseView:
    knob: str
    mode: str
    start_turn: int
    levels: list[DoseLevelView]
    trend: str
    fit: str
    plot: PlotView | None = None


@dataclass(frozen=True)
class ImportanceView:
    """One importance analysis as a table (and a plot in HTML when one can be drawn)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    caption: str
    plot: PlotView | None = None


@dataclass(frozen=True)
class ForestView:
    """The arms compared with one baseline (or, without one, their rates)."""

    title: str
    plot: PlotView


@dataclass(frozen=True)
class ReportView:
    """Everything the templates show, precomputed so both formats say the same thing."""

    report: ForensicsReport
    verdict: str
    confidence: str
    motivation: str
    judgements: list[JudgementView]
    arms: list[ArmView]
    baseline_note: str
    doses: list[DoseView]
    importance: list[ImportanceView]
    quotes: list[QuoteView]
    cost: list[tuple[str, str]]
    render_notes: list[str]
    forests: list[ForestView]


def _judgement(question: str, judgement: Judgement) -> JudgementView:
    return JudgementView(
        question=question,
        answer="Yes" if judgement.value else "No",
        probability=fmt_prob(judgement.probability),
        rationale=judgement.rationale,
        evidence=list(judgement.evidence),
    )


def _arm(entry: ExperimentEntry) -> ArmView:
    return ArmView(
        id=entry.id,
        label=entry.label,
        role=arm_role(entry),
        mode=entry.mode,
        start_turn=entry.start_turn,
        description=entry.variant_description,
        counts=f"{entry.k}/{entry.n}",
        rate=fmt_pct(entry.rate),
        ci=fmt_ci(entry.ci),
        difference=(
            f"{fmt_points(entry.difference)} {fmt_ci(entry.difference_ci)}"
            if entry.difference is not None and entry.difference_ci is not None
            else "—"
        ),
        p=fmt_p(entry.p_value),
        p_holm=fmt_p(entry.p_holm),
        significant=entry.p_holm is not None and entry.p_holm < SIGNIFICANCE,
        stop_reason=entry.stop_reason or "",
    )


def _dose_view(series: DoseSeries, index: int, *, plots: bool) -> DoseView:
    fit = series.fit
    if fit.ok:
        fit_text = (
            f"logistic fit: slope {fit.slope:.4g} per unit (SE {fit.slope_se:.2g}, p = {fmt_p(fit.slope_p)}), "
            f"deviance {fit.deviance:.2f} on {fit.df_resid} df"
        )
    else:
        fit_text = f"logistic fit: none ({fit.status}: {fit.message})"
    return DoseView(
        knob=series.knob,
        mode=series.mode,
        start_turn=series.start_turn,
        levels=[
            DoseLevelView(
                dose=f"{lv.dose:g}",
                counts=f"{lv.k}/{lv.n}",
                rate=fmt_pct(lv.rate),
                ci=fmt_ci(lv.ci),
                experiments=", ".join(lv.experiment_ids),
            )
            for lv in series.levels
        ],
        trend=f"Cochran–Armitage trend: z = {series.trend_z:.2f}, p = {fmt_p(series.trend_p)}",
        fit=fit_text,
        plot=PlotView(
            id=f"plot-dose-{index}",
            caption="Observed rate per dose with Wilson 95% intervals; the line and band are the logistic fit.",
            alt=f"Dose-response plot over {series.knob}",
            data_uri=_figure_uri(
                lambda: figures.dose_response_plot(
                    series.fit, dose_label=series.knob, title=f"Dose-response: {series.knob}"
                )
            ),
        )
        if plots
        else None,
    )


def _comparison_text(value: Comparison | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, Comparison):
        return f"{fmt_points(value.difference)} {fmt_ci(value.ci)}"
    return fmt_points(value)


def _importance_view(
    result: ImportanceResult | list[CompactSentenceScore], index: int, *, plots: bool
) -> ImportanceView:
    """A table (and plot) for one importance analysis."""
    plot_id, alt = f"plot-importance-{index}", "Importance plot"
    if isinstance(result, Screening):
        return _screening_view(result, plot_id, plots=plots)
    if isinstance(result, TurnImportance):
        return ImportanceView(
            title=f"Importance: turns before the flagged turn {result.flagged_turn} ({result.method})",
            headers=["Resampled from turn", "k/n", "Rate [95% CI]", ""],
            rows=[
                [
                    str(p.turn),
                    f"{p.k}/{p.n}",
                    f"{fmt_pct(p.rate.rate)} {fmt_ci(p.rate.ci)}" if p.n else "no samples",
                    "becomes likely here" if p.turn == result.likely_turn else "",
                ]
                for p in result.points
            ],
            caption=(
                "The behaviour rate when the episode is resampled from the start of each turn (Wilson 95% "
                "intervals); the behaviour becomes likely at the earliest turn reaching half the flagged turn's rate."
            ),
            plot=PlotView(plot_id, "", alt, _figure_uri(lambda: figures.turn_importance_plot(result)))
            if plots
            else None,
        )
    if isinstance(result, SentenceImportance):
        return ImportanceView(
            title=f"Importance: CoT sentences of turn {result.turn} (k = {result.k} per arm)",
            headers=["#", "Sentence", "Resampling importance [95% CI]", "Counterfactual importance [95% CI]"],
            rows=[
                [str(s.index), s.text, _comparison_text(s.resampling), _comparison_text(s.counterfactual)]
                for s in result.sentences
            ],
            caption=_SENTENCE_CAPTION + f" 'Different' judged by {result.similarity}.",
            plot=PlotView(plot_id, "", alt, _figure_uri(lambda: figures.sentence_importance_plot(result)))
            if plots
            else None,
        )
    return ImportanceView(
        title="Importance: CoT sentences of the flagged turn",
        headers=["#", "Sentence", "Resampling importance [95% CI]", "Counterfactual importance"],
        rows=[
            [str(s.index), s.text, _comparison_text(s.resampling), _comparison_text(s.counterfactual)] for s in result
        ],
        caption=_SENTENCE_CAPTION + " (The ledger event holds no counterfactual intervals, so no plot is drawn.)",
    )


def _screening_view(result: Screening, plot_id: str, *, plots: bool) -> ImportanceView:
    """The "what drives it" table: every context unit, ranked by how much removing it
    lowers the rate, with its paired baseline, difference, BH q-value and verdict."""
    ranked = result.ranked
    rows = [
        [
            str(i + 1),
            r.unit.name,
            r.unit.text,
            f"{r.k}/{r.n}",
            f"{r.base_k}/{r.base_n}",
            f"{fmt_points(r.difference)} {fmt_ci(r.ci)}",
            fmt_p(r.q_value),
            ("drives it" if r.difference < 0 else "suppresses it") if r.discovery else "",
            r.stop,
        ]
        for i, r in enumerate(ranked)
    ]
    caption = (
        f"Each unit of the context deleted (or, for a tool result, its output neutralised) and the flagged turn "
        f"resampled, against the baseline's samples of the same indices (baseline {result.baseline_k}/"
        f"{result.baseline_n}); at most {result.max_per_unit} samples per unit in batches of {result.batch}, "
        f"stopped early when settled. q: Benjamini–Hochberg adjusted anytime-valid p (FDR {result.fdr:g}). "
        + " ".join(result.notes)
    )
    plot = None
    if plots and ranked:
        arms = [(f"{r.unit.name}", Rate(r.k, r.n)) for r in ranked]
        base = Rate(result.baseline_k, result.baseline_n)

        def draw() -> bytes:
            return figures.forest_plot(arms, baseline=("baseline", base), differences=True, title="What drives it")

        plot = PlotView(plot_id, "", "What drives it: the context screen", _figure_uri(draw))
    return ImportanceView(
        title="What drives it: the context screen",
        headers=["Rank", "Unit", "Text", "k/n", "Baseline", "Δ [95% CI]", "q", "", "Stopped"],
        rows=rows,
        caption=caption,
        plot=plot,
    )


_SENTENCE_CAPTION = (
    "Resampling importance: behaviour rate with the sentence kept minus the rate when it is regenerated, "
    "in percentage points (Newcombe 95% interval); counterfactual importance counts only regenerations that "
    "differ in meaning."
)


def _cost(report: ForensicsReport) -> list[tuple[str, str]]:
    c = report.cost
    rows = [
        ("Samples", f"{c.samples:,}"),
        ("Subject input tokens", f"{c.input_tokens:,}"),
        ("Subject output tokens", f"{c.output_tokens:,}"),
        ("Planner tokens", f"{c.planner_tokens:,}"),
        ("Tool calls", f"{c.tool_calls:,}"),
        ("Dollars", f"${c.dollars:,.2f}"),
        ("Wall time", f"{c.wall_seconds:,.0f} s"),
    ]
    s = report.sampling
    if s is not None:
        rows += [
            (
                "Sequential arms",
                f"{s.sequential_arms} ({s.decided} decided, {s.futile} stopped for futility, "
                f"{s.undecided} not decided at their cap)",
            ),
            ("Samples in sequential comparisons", f"{s.samples:,} (the arms and their reference)"),
            (
                "Fixed-n design at the same error",
                f"{s.fixed_total:,} ({s.fixed_n_per_arm:,} per arm: two-sided α = {s.alpha:g}, power "
                f"{s.power:.0%} for an odds ratio of {s.odds_ratio:g} at the baseline's {fmt_pct(s.baseline_rate)})",
            ),
            ("Saved against fixed n", f"{s.saved:,} samples ({s.saved / max(1, s.fixed_total):.0%})"),
        ]
    return rows


def build_view(
    report: ForensicsReport,
    *,
    ledger: Ledger | None = None,
    plots: bool = False,
) -> ReportView:
    """The precomputed content of a report; `ledger` supplies the importance analyses.
    `plots` draws the figures (for the HTML page)."""
    arms = [_arm(e) for e in report.experiments]
    series = dose_series(report.experiments)
    results: list[ImportanceResult | list[CompactSentenceScore]] = []
    notes: list[str] = []
    if ledger is not None:
        results, notes = importance_results(ledger, incident_id=report.incident_id, subject=report.subject)
    has_baseline = any(a.role == "baseline" for a in arms)
    baseline_note = (
        "Differences are against the baseline arm with the same mode and start turn."
        if has_baseline
        else "No baseline arm was run, so no arm is compared with one."
    )
    return ReportView(
        report=report,
        verdict=report.verdict,
        confidence=fmt_prob(report.confidence),
        motivation=report.motivation or "none identified",
        judgements=[
            _judgement("Was the action intentional?", report.intentional),
            _judgement("Did it know the user would disapprove?", report.knew_disapproval),
        ],
        arms=arms,
        baseline_note=baseline_note,
        doses=[_dose_view(s, i, plots=plots) for i, s in enumerate(series)],
        importance=[_importance_view(r, i, plots=plots) for i, r in enumerate(results)],
        quotes=[_quote(q) for q in report.quotes],
        cost=_cost(report),
        render_notes=notes,
        forests=_forest_views(report.experiments) if plots else [],
    )


def _quote(quote: Quote) -> QuoteView:
    return QuoteView(id=quote.id, where=describe_span(quote.span), text=quote.text, why=quote.why)


# ----------------------------------------------------------------------------- plots


def _figure_uri(draw: Callable[[], bytes]) -> str:
    """Draw a figure with `tools.plots` and return it as a data URI."""
    return figures.data_uri(draw())


@dataclass(frozen=True)
class ForestGroup:
    """Arms that share a mode and start turn, with their baseline when there is one."""

    mode: str
    start_turn: int
    baseline: ExperimentEntry | None
    arms: list[ExperimentEntry]


def forest_groups(experiments: Sequence[ExperimentEntry]) -> list[ForestGroup]:
    """The arms a forest plot shows (interventions, controls, dose levels), grouped by
    the baseline they are compared with: same mode and start turn, as in
    `investigator.report.experiments_from_ledger`. Baselines, probes and importance arms
    are not plotted; a group without arms is left out."""
    groups: dict[tuple[str, int], ForestGroup] = {}
    for entry in experiments:
        role = arm_role(entry)
        if role in {"probe", "importance"} or entry.n == 0:
            continue
        key = (entry.mode, entry.start_turn)
        group = groups.setdefault(key, ForestGroup(entry.mode, entry.start_turn, None, []))
        if role == "baseline":
            if group.baseline is None:
                groups[key] = ForestGroup(group.mode, group.start_turn, entry, group.arms)
        else:
            group.arms.append(entry)
    return [g for g in groups.values() if g.arms]


def _forest_views(experiments: Sequence[ExperimentEntry]) -> list[ForestView]:
    views = []
    for i, group in enumerate(forest_groups(experiments)):
        arms = [(e.label, Rate(e.k, e.n)) for e in group.arms]
        where = f"{group.mode}, from turn {group.start_turn}"
        if group.baseline is not None:
            baseline = (group.baseline.label, Rate(group.baseline.k, group.baseline.n))
            title = f"Intervention effects ({where})"
            png = figures.forest_plot(arms, baseline=baseline, differences=True, title=title)
            caption = (
                "Each arm's difference from the baseline rate with its Newcombe 95% interval, coloured where the "
                "unadjusted z-test is significant (5% level); the table gives the Holm-adjusted p."
            )
        else:
            title = f"Behaviour rate per arm ({where}; no baseline)"
            png = figures.forest_plot(arms, title=title)
            caption = "Each arm's behaviour rate with its Wilson 95% interval (no baseline arm was run)."
        views.append(
            ForestView(
                title=title,
                plot=PlotView(f"plot-forest-{i}", caption, f"Forest plot: {title}", figures.data_uri(png)),
            )
        )
    return views


# ----------------------------------------------------------------------------- templates


def _package_templates() -> jinja2.BaseLoader:
    return jinja2.PackageLoader("prompts", TEMPLATE_DIR)


_FILTERS: dict[str, Callable[..., Any]] = {
    "md_text": md_text,
    "md_cell": md_cell,
    "md_fence": md_fence,
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_package_templates(),
        # HTML escaped, Markdown not (it has its own filters); anything else escaped by default.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("md.j2",), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_FILTERS)
    return env


_ENV = _environment()


def render_markdown(report: ForensicsReport, *, ledger: Ledger | None = None) -> str:
    """The report as Markdown (what ``report.md`` holds, and what the judge reads)."""
    return _ENV.get_template("report.md.j2").render(view=build_view(report, ledger=ledger))


def render_html(report: ForensicsReport, *, ledger: Ledger | None = None) -> str:
    """The report as one self-contained HTML page (what ``report.html`` holds)."""
    return _ENV.get_template("report.html.j2").render(view=build_view(report, ledger=ledger, plots=True))


# ----------------------------------------------------------------------------- files


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one,
    never a part: a temporary file in the same directory, flushed to disk, renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(report: ForensicsReport, run_dir: Path, *, ledger: Ledger | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into `run_dir`, each
    atomically; returns their paths keyed ``json``, ``md`` and ``html``. `ledger`, when
    given, supplies the importance scans (events of kind ``importance``) for the HTML
    and Markdown; the experiments come from the report itself."""
    run_dir = Path(run_dir)
    paths = {"json": run_dir / REPORT_JSON, "md": run_dir / REPORT_MD, "html": run_dir / REPORT_HTML}
    # Render everything before writing anything, so a rendering failure leaves no mix
    # of new and old files.
    texts = {
        "json": report.model_dump_json(indent=2) + "\n",
        "md": render_markdown(report, ledger=ledger),
        "html": render_html(report, ledger=ledger),
    }
    for key, path in paths.items():
        atomic_write_text(path, texts[key])
    return paths


__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "REPORT_MD",
    "ArmRole",
    "CompactSentenceScore",
    "DoseLevel",
    "DoseSeries",
    "ForestGroup",
    "ReportView",
    "arm_role",
    "atomic_write_text",
    "build_view",
    "dose_of",
    "dose_series",
    "forest_groups",
    "importance_results",
    "md_cell",
    "md_fence",
    "md_text",
    "render_html",
    "render_markdown",
    "write_report",
]
