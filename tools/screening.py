"""Screening: localise what in the context drives the behaviour, before hypothesising.

A blind investigation does not know which part of the context matters. Screening
measures it: each *unit* of the context is deleted or neutralised in turn and the
flagged turn is resampled, so the drop (or rise) of the behaviour rate says how much the
behaviour depends on that unit. The units (`context_units`):

- the **system prompt** as a whole (replaced by a neutral one); when that is a
  discovery, each of its sentences in a second, separately adjusted family;
- each sentence of the **user's instructions** — user text before the flagged turn
  that is not a tool result (deleted);
- each **tool result** before the flagged turn (its text replaced by a neutral
  placeholder, so the call still has its answer); the result that drives the behaviour
  most is then screened part by part (paragraphs, or sentences and lines), again as a
  family of its own, so generators can aim at the driving passage;
- optionally the flagged turn's **CoT sentences** (`tools.importance.sentence_importance`,
  Thought Anchors resampling) and **earlier turns** (`tools.importance.turn_importance`,
  rollouts from each turn, by bisection on long trajectories); both are separate
  analyses with their own ledger events, run by `screen_context` when asked.

**Sequential budgets with exact curtailment.** Every unit is compared with the
baseline arm (the unedited turn, seeds 0, 1, ...; extended first to the per-unit
budget so each unit's batch *i* pairs with baseline samples of the same indices) by
the anytime-valid two-arm test of `tools.stats.TwoArmTest`. Units are sampled in
batches of `batch` up to `max_per_unit`, and a unit stops early when its question is
settled either way: its e-value already clears the strictest bar (``m / q``, a discovery
whatever the other units do), or no outcome of its remaining samples could lift it to
the loosest bar (``1 / q``: it cannot become a discovery at any rank). Stopping never
inflates the error: the e-process is valid at any stopping time.

**False-discovery control.** Each unit's anytime-valid p-value is ``p = 1 / max_t E_t``
(Ville's inequality), and the units are adjusted together with Benjamini–Hochberg at
level `fdr` (statsmodels ``multipletests(method="fdr_bh")``). BH is valid under
independence or positive dependence; units share the baseline's samples, a positive
dependence. A *discovery* is a unit whose BH-adjusted p (q-value) is below `fdr`.

The result is a ranked "what drives it" table (`Screening.ranked`), stored in the
ledger as a ``screening`` event and drawn in the report. A rare behaviour (a low
baseline rate) cannot be localised within a small per-unit budget: the curtailment
rule then stops every unit after its first batch and the table says so — absence of
evidence, reported as such.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field
from statsmodels.stats.multitest import multipletests

from tools.edit import Delete, Edit, Replace, SetSystem, Variant, split_sentences
from tools.experiments import BaselineRole, ImportanceRole
from tools.incident import Incident
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.resample import ExperimentSpec, judged_where_it_can_be, run_experiment
from tools.stats import Comparison, Rate, TwoArmTest, compare
from tools.transcript import Span, TextBlock, ToolResultBlock, Transcript
from tools.world import WorldFactory

__all__ = [
    "NEUTRAL_OUTPUT",
    "SCREENING_EVENT",
    "SCREEN_SEED",
    "ContextUnit",
    "Screening",
    "UnitResult",
    "context_units",
    "screen",
]

UnitKind = Literal["system_prompt", "system_sentence", "user_sentence", "tool_result", "tool_result_part"]

NEUTRAL_OUTPUT = "(output not available)"
"""What a neutralised tool result says instead of its output."""
SCREEN_SEED = 7_000_000
"""Seed base of screening arms (unit *u* uses ``SCREEN_SEED + u * 100_000`` onwards), so
no screening arm shares samples with the baseline or with another unit."""
SCREENING_EVENT = "screening"
_UNIT_STRIDE = 100_000
_MIN_SENTENCE = 3
"""Sentences shorter than this many characters (list markers, stray punctuation) are not units."""
NEUTRAL_SYSTEM = "You are a helpful assistant."
"""What the system prompt is replaced with when the screen removes it as a whole."""
_SOFT_BREAK = re.compile(r"(?<=\S)\n(?=[^\s\-*#>|`\d])")
"""A line break inside a paragraph (a wrapped line): not followed by a blank line, a list
marker, a heading, a quote, a table or a numbered item."""


def prose_sentences(text: str) -> list[tuple[int, int]]:
    """Sentences of prose whose lines may be wrapped: like `tools.edit.split_sentences`,
    but a line break inside a paragraph does not end a sentence. Offsets index `text`."""
    return split_sentences(_SOFT_BREAK.sub(" ", text))


class ContextUnit(BaseModel):
    """One part of the context a screen removes: where it is, what it says, and the edit."""

    index: int
    kind: UnitKind
    text: str = Field(description="the unit's text (clipped for display)")
    spans: tuple[Span, ...] = ()
    """Where the unit is (none for a system-prompt sentence, which spans cannot address)."""
    edits: list[Edit]

    @property
    def name(self) -> str:
        words = {
            "system_prompt": "system prompt (whole)",
            "system_sentence": "system prompt sentence",
            "user_sentence": "user instructions",
            "tool_result": "tool result",
            "tool_result_part": "part of a tool result",
        }
        return f"{words[self.kind]} #{self.index}"


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def context_units(incident: Incident) -> list[ContextUnit]:
    """The units of the context the flagged turn was sampled from (see module doc), in
    transcript order: system prompt sentences, user instruction sentences, tool results."""
    transcript = incident.transcript
    flagged_message = incident.flagged_turn.message_index
    units: list[ContextUnit] = []

    def add(kind: UnitKind, text: str, spans: tuple[Span, ...], edits: list[Edit]) -> None:
        units.append(ContextUnit(index=len(units), kind=kind, text=_clip(text), spans=spans, edits=edits))

    system = transcript.system or ""
    if system.strip() and system.strip() != NEUTRAL_SYSTEM:
        add("system_prompt", system, (), [SetSystem(text=NEUTRAL_SYSTEM)])
    for mi, message in enumerate(transcript.messages[:flagged_message]):
        if message.role != "user":
            continue
        for bi, block in enumerate(message.content):
            if isinstance(block, TextBlock) and not message.metadata.get("probe"):
                for start, end in prose_sentences(block.text):
                    if len(block.text[start:end].strip()) < _MIN_SENTENCE:
                        continue
                    span = Span(message=mi, block=bi, start=start, end=end)
                    add("user_sentence", block.text[start:end], (span,), [Delete(span=span)])
            elif isinstance(block, ToolResultBlock):
                spans = []
                for ii, item in enumerate(block.content):
                    if isinstance(item, TextBlock) and item.text.strip() and item.text != NEUTRAL_OUTPUT:
                        spans.append(Span(message=mi, block=bi, field=(ii,), start=0, end=len(item.text)))
                if not spans:
                    continue
                shown = block.text
                edits: list[Edit] = [Replace(span=spans[0], replacement=NEUTRAL_OUTPUT)]
                edits += [Replace(span=s, replacement="") for s in spans[1:]]
                add("tool_result", shown, tuple(spans), edits)
    return units


def system_sentence_units(incident: Incident, start_index: int) -> list[ContextUnit]:
    """Each sentence of the system prompt as a unit (the second family of a screen whose
    system-prompt unit was a discovery), numbered from `start_index`."""
    system = incident.transcript.system or ""
    units: list[ContextUnit] = []
    seen: set[str] = set()
    for start, end in prose_sentences(system):
        sentence = system[start:end]
        if len(sentence.strip()) < _MIN_SENTENCE or sentence in seen:
            continue
        seen.add(sentence)
        edit = Delete(pattern=sentence, literal=True, target="system", count=1)
        units.append(
            ContextUnit(index=start_index + len(units), kind="system_sentence", text=_clip(sentence), edits=[edit])
        )
    return units


_PARAGRAPH = re.compile(r"\n\s*\n")
MAX_PARTS = 8


def tool_result_part_units(incident: Incident, unit: ContextUnit, start_index: int) -> list[ContextUnit]:
    """The parts of a tool result found to drive the behaviour, as units of a further
    family: its paragraphs (blank-line separated) or, when it is one paragraph, its
    sentences and lines; at most `MAX_PARTS` (the longest, in order), each deleted."""
    if unit.kind != "tool_result" or not unit.spans:
        return []
    span = unit.spans[0]
    text = incident.transcript.field_text(span)
    cuts: list[tuple[int, int]] = []
    position = 0
    for match in _PARAGRAPH.finditer(text):
        cuts.append((position, match.start()))
        position = match.end()
    cuts.append((position, len(text)))
    parts = [(a, b) for a, b in cuts if text[a:b].strip()]
    if len(parts) <= 1:
        parts = [(a, b) for a, b in split_sentences(text) if len(text[a:b].strip()) >= _MIN_SENTENCE]
    if len(parts) <= 1:
        return []
    if len(parts) > MAX_PARTS:
        keep = sorted(sorted(parts, key=lambda p: p[0] - p[1])[:MAX_PARTS])
        parts = keep
    out: list[ContextUnit] = []
    for a, b in parts:
        part = Span(message=span.message, block=span.block, field=span.field, start=a, end=b)
        out.append(
            ContextUnit(
                index=start_index + len(out),
                kind="tool_result_part",
                text=_clip(text[a:b]),
                spans=(part,),
                edits=[Delete(span=part)],
            )
        )
    return out


class UnitResult(BaseModel):
    """One unit's arm: its counts, the baseline samples it was paired with, the
    difference, and the test."""

    unit: ContextUnit
    experiment_id: str
    k: int
    n: int
    base_k: int
    base_n: int
    difference: float
    ci: tuple[float, float]
    e_value: float = Field(description="the largest e-value the unit's e-process reached")
    p_value: float = Field(description="anytime-valid p = min(1, 1 / max e)")
    q_value: float = 1.0
    """Benjamini–Hochberg adjusted p across the units."""
    discovery: bool = False
    stop: str = ""

    @property
    def comparison(self) -> Comparison:
        return compare(Rate(self.k, self.n), Rate(self.base_k, self.base_n))


class Screening(BaseModel):
    """The screen of one incident: every unit's result, ranked by how much removing it
    lowers the rate."""

    incident_id: str
    baseline_id: str
    baseline_k: int
    baseline_n: int
    fdr: float
    max_per_unit: int
    batch: int
    results: list[UnitResult]
    notes: list[str] = Field(default_factory=list)

    @property
    def ranked(self) -> list[UnitResult]:
        """Units by effect: removing the first lowers the rate most (discoveries first on ties)."""
        return sorted(self.results, key=lambda r: (r.difference, not r.discovery, r.unit.index))

    @property
    def drivers(self) -> list[UnitResult]:
        """Discoveries whose removal lowers the rate, strongest first."""
        return [r for r in self.ranked if r.discovery and r.difference < 0]

    def result(self, index: int) -> UnitResult:
        return next(r for r in self.results if r.unit.index == index)

    @property
    def samples(self) -> int:
        return sum(r.n for r in self.results)

    def table(self) -> list[dict[str, object]]:
        """The ranked table as plain rows (for tools and reports)."""
        return [
            {
                "unit": r.unit.name,
                "text": r.unit.text,
                "rate": f"{r.k}/{r.n}",
                "baseline": f"{r.base_k}/{r.base_n}",
                "difference": round(r.difference, 4),
                "q": round(r.q_value, 4),
                "driver": r.discovery and r.difference < 0,
                "experiment_id": r.experiment_id,
            }
            for r in self.ranked
        ]


def _log_bar(alpha: float) -> float:
    return math.log(1.0 / alpha)


def _best_case_log_e(
    history: Sequence[tuple[int, int, int, int]], remaining: int, base_future: Sequence[bool], alpha: float
) -> float:
    """The largest log e-value a unit could still reach *as a driver*: the test replayed
    over its batches so far, then one more batch in which none of its remaining samples
    shows the behaviour (the baseline's samples for those indices are already known)."""
    best = -math.inf
    future = sum(base_future[:remaining])
    for outcome in (0,):
        trial = _e_process()
        for totals in history:
            trial.update(*totals)
        k1, n1, k2, n2 = history[-1]
        decision = trial.update(k1 + outcome * remaining, n1 + remaining, k2 + future, n2 + remaining)
        best = max(best, math.log(max(decision.e_value, 1e-300)))
    return best


PRIOR_SD = 3.0
"""Prior sd of the log odds ratio in the screening e-process: tuned to the large effects a
driver has (removing it changes the odds ten- to a hundredfold); affects power only."""


def _e_process() -> TwoArmTest:
    """The unit's e-process. Its own stopping rule is switched off (a tiny alpha): the
    screen stops units itself, by the bars in the module doc, and needs the e-value after
    the test would have stopped, which a stopped test no longer updates."""
    return TwoArmTest(alpha=1e-12, prior_sd=PRIOR_SD)


async def screen(
    ledger: Ledger,
    incident: Incident,
    *,
    subject: ModelClient,
    world: WorldFactory | None = None,
    units: Sequence[ContextUnit] | None = None,
    max_per_unit: int = 24,
    batch: int = 6,
    fdr: float = 0.1,
    grader: ModelClient | None = None,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    budget: Callable[[int], int] | None = None,
    refine: bool = True,
    seed: int = 0,
) -> Screening:
    """Screen the context units (see the module doc). `budget(wanted)` returns how many
    samples may still be taken (None: no limit); a unit that gets fewer is reported as
    cut short. Without explicit `units` (and with `refine`), a system prompt found to
    drive the behaviour is screened again sentence by sentence, and the tool result that
    drives it most part by part (further families, each adjusted on its own). `seed`: where
    the investigation's sample stream starts (`tools.agent_tools.seed_offset`), added to
    every arm's seed so that independent investigations draw disjoint samples."""
    notes: list[str] = []

    offset = seed

    def spec_of(label: str, variant: Variant, n: int, seed: int, role: BaselineRole | ImportanceRole) -> ExperimentSpec:
        spec = ExperimentSpec(label=label, role=role, variant=variant, n=n, seed=seed + offset)
        return judged_where_it_can_be(spec, incident, world)

    def allowed(wanted: int) -> int:
        return wanted if budget is None else max(0, min(wanted, budget(wanted)))

    base_spec = spec_of("baseline", Variant.original(), max(1, allowed(max_per_unit)), 0, BaselineRole())
    base = await run_experiment(
        ledger, incident, base_spec, subject=subject, world=world, grader=grader, concurrency=concurrency
    )
    base_samples = [bool(s.detected) for s in ledger.samples(base.id) if s.detected is not None]
    replicated = any(base_samples)

    async def one(unit: ContextUnit, m: int) -> UnitResult | None:
        strict, loose = _log_bar(fdr / m), _log_bar(fdr)
        variant = Variant.original().derive(unit.edits, f"screening: {unit.name} removed")
        try:
            variant.apply(incident)
        except Exception as exc:  # an edit that no longer applies is reported, not fatal
            notes.append(f"{unit.name} could not be removed: {exc}")
            return None
        seed = SCREEN_SEED + unit.index * _UNIT_STRIDE
        role = ImportanceRole(scan="context", unit=unit.name, index=unit.index, spans=unit.spans)
        test = _e_process()
        history: list[tuple[int, int, int, int]] = []
        done, max_log_e, stop = 0, -math.inf, "budget per unit spent"
        experiment_id = ""
        mine: list[bool] = []
        while done < max_per_unit:
            upto = min(max_per_unit, done + batch, len(base_samples))
            upto = done + allowed(upto - done)
            if upto <= done:
                stop = "sample budget spent"
                break
            spec = spec_of(f"screening: {unit.name} removed", variant, upto, seed, role)
            outcome = await run_experiment(
                ledger, incident, spec, subject=subject, world=world, grader=grader, concurrency=concurrency
            )
            experiment_id = outcome.id
            mine = [bool(s.detected) for s in ledger.samples(outcome.id) if s.detected is not None][:upto]
            if len(mine) <= done:
                stop = "no new samples"
                break
            done = len(mine)
            if progress is not None:
                progress(done)
            theirs = base_samples[:done]
            history.append((sum(mine), done, sum(theirs), done))
            decision = test.update(*history[-1])
            max_log_e = max(max_log_e, math.log(max(decision.e_value, 1e-300)))
            if max_log_e >= strict:
                stop = "decided: a driver at any rank"
                break
            remaining = min(max_per_unit, len(base_samples)) - done
            if remaining <= 0:
                break
            reach = _best_case_log_e(history, remaining, base_samples[done : done + remaining], fdr)
            if max(reach, max_log_e) < loose:
                stop = "curtailed: cannot become a discovery"
                break
        if not experiment_id or not done:
            notes.append(f"{unit.name}: not screened ({stop})")
            return None
        k = sum(mine)
        paired = Rate(sum(base_samples[:done]), done)
        comparison = compare(Rate(k, done), paired)
        return UnitResult(
            unit=unit,
            experiment_id=experiment_id,
            k=k,
            n=done,
            base_k=paired.k,
            base_n=paired.n,
            difference=comparison.difference,
            ci=comparison.ci,
            e_value=math.exp(min(max_log_e, 700.0)) if max_log_e > -math.inf else 0.0,
            p_value=min(1.0, math.exp(-max_log_e)) if max_log_e > -math.inf else 1.0,
            stop=stop,
        )

    async def family(chosen: Sequence[ContextUnit]) -> list[UnitResult]:
        found = [r for r in [await one(u, max(1, len(chosen))) for u in chosen] if r is not None]
        if found:
            reject, q, _, _ = multipletests([r.p_value for r in found], alpha=fdr, method="fdr_bh")
            for r, is_discovery, qv in zip(found, reject, q, strict=True):
                r.q_value = float(qv)
                r.discovery = bool(is_discovery)
        return found

    chosen = list(units if units is not None else context_units(incident))
    results = await family(chosen) if replicated else []
    if units is None and refine:
        next_index = max((u.index for u in chosen), default=-1) + 1
        whole = next((r for r in results if r.unit.kind == "system_prompt"), None)
        if whole is not None and whole.discovery:
            sentences = system_sentence_units(incident, start_index=next_index)
            if sentences:
                notes.append("the system prompt drives the behaviour: its sentences were screened as a further family")
                results += await family(sentences)
                next_index += len(sentences)
        top = next((r for r in sorted(results, key=lambda r: r.difference) if r.discovery and r.difference < 0), None)
        if top is not None and top.unit.kind == "tool_result":
            parts = tool_result_part_units(incident, top.unit, start_index=next_index)
            if parts:
                notes.append(f"{top.unit.name} drives the behaviour: its parts were screened as a further family")
                results += await family(parts)
    base_rate = Rate(sum(base_samples), len(base_samples))
    if base_rate.k == 0:
        notes.append("the baseline never showed the behaviour: nothing can be localised")
    elif not any(r.discovery for r in results):
        notes.append(
            f"no unit is a discovery at FDR {fdr:g} with at most {max_per_unit} samples per unit (baseline "
            f"{base_rate}): the screen could not localise the behaviour at this budget (absence of evidence)"
        )
    screening = Screening(
        incident_id=incident.id,
        baseline_id=base.id,
        baseline_k=base_rate.k,
        baseline_n=base_rate.n,
        fdr=fdr,
        max_per_unit=max_per_unit,
        batch=batch,
        results=results,
        notes=notes,
    )
    ledger.event(SCREENING_EVENT, incident_id=incident.id, result=screening.model_dump(mode="json"))
    return screening


def latest_screening(ledger: Ledger, incident_id: str) -> Screening | None:
    """The last screening recorded in the ledger for this incident."""
    for event in reversed(ledger.events(SCREENING_EVENT)):
        if event.get("incident_id") == incident_id and "result" in event:
            return Screening.model_validate(event["result"])
    return None


def unit_text(transcript: Transcript, unit: ContextUnit) -> str:
    """The full text of a unit (its `text` is clipped)."""
    if unit.kind == "system_sentence":
        return unit.text
    return "\n".join(transcript.field_text(s)[s.start : s.end] for s in unit.spans)


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]*")


def words(text: str) -> set[str]:
    """Lower-case content words of a text (for overlap scores)."""
    return {w.lower().strip(".-/") for w in _WORD.findall(text) if len(w) > 2}
