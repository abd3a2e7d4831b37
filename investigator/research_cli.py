"""Researcher commands on the `forensics` app: run one experiment, compare two, and
find the turns and CoT sentences that drive the behaviour.

* ``forensics resample INCIDENT`` — one experiment (a variant from an edit file ×
  mode × n, optionally with sequential stopping) into a run's ledger;
* ``forensics compare RUN EXP_A EXP_B`` — two stored experiments side by side;
* ``forensics importance INCIDENT --turns/--sentences`` — turn and sentence
  importance (tools.importance), optionally as a PNG.

Every experiment lands in the ledger of a run directory (``--run``, default
``runs/<incident id>``), so rerunning a command resumes it instead of paying for its
samples twice, and `compare` can read it later. The subject is the incident's own
(``organism/<id>`` subjects run offline) unless ``--subject`` names another; an
incident gets its world for rollouts from `tools.world` (a scenario's, or one rebuilt
from the incident's snapshot); the case is opened by investigator.case.open_case, as for
investigations. Problems the user can fix raise
`ForensicsError`, which the app prints as one line (exit status 2).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tools.errors import ForensicsError

if TYPE_CHECKING:
    from investigator.case import Case
    from tools.edit import Variant
    from tools.experiments import ExperimentRole
    from tools.importance import SentenceImportance, TurnImportance

console = Console()


def register(app: typer.Typer) -> None:
    """Add the researcher commands to the main app."""
    app.command("resample")(resample_command)
    app.command("compare")(compare_command)
    app.command("importance")(importance_command)


class ModeChoice(StrEnum):
    next_turn = "next_turn"
    rollout = "rollout"
    probe = "probe"


class MethodChoice(StrEnum):
    scan = "scan"
    binary = "binary"


IncidentArg = Annotated[Path, typer.Argument(metavar="INCIDENT", help="The incident file (YAML/JSON).")]
RunOpt = Annotated[
    Path | None, typer.Option("--run", help="Run directory holding the ledger (default: runs/<incident id>).")
]
SubjectOpt = Annotated[
    str | None,
    typer.Option(
        "--subject", help="Model to resample, e.g. organism/precommit-lazy-unaware (default: the incident's)."
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        help="Sandbox backend: docker (default; shipped scenarios played by organisms fall back to local), "
        "local (bubblewrap on this machine; untrusted incidents also need --allow-host) or simulated."
    ),
]
AllowHostOpt = Annotated[
    bool,
    typer.Option(
        "--allow-host",
        help="Let an untrusted incident's commands run on this machine in the local bubblewrap sandbox "
        "(no Docker engine, or --backend local). Printed, logged and recorded in the report.",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the first sample.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only a JSON summary.")]


# --------------------------------------------------------------------------- shared set-up


def _case(
    incident_path: Path, run: Path | None, subject: str | None, backend: str | None, allow_host: bool = False
) -> Case:
    """The case every command works on (investigator.case.open_case): the incident, its
    run's ledger (default ``runs/<incident id>``), the subject, the world. The sandbox
    policy decides when a world is first needed (a next-turn resample needs none); its
    note reaches the output as an experiment note."""
    from investigator.case import open_case
    from tools.incident import load_incident

    incident = load_incident(incident_path)
    return open_case(
        incident,
        run if run is not None else Path("runs") / incident.id,
        subject=subject,
        backend=backend,
        allow_host=allow_host,
        check_sandbox=False,
    )


@contextmanager
def _progress(label: str, total: int | None, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields the callback experiments advance it with."""
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True) if quiet else console,
        disable=quiet,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda k: bar.advance(task, k)


def _rate_text(k: int, n: int) -> str:
    from tools.stats import Rate

    return str(Rate(k, n))


def _print_diff(diff: str) -> None:
    for line in diff.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        console.print(Text(line, style=style), highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- resample


def _default_label(variant: Variant, mode: ModeChoice, start_turn: int | None, question: str | None) -> str:
    """A label that tells experiments of one run apart: the variant, then the design
    when it is not the default (next_turn at the flagged turn)."""
    name = "baseline" if variant.is_original else variant.description or variant.id
    if question is not None:
        shown = question if len(question) <= 50 else question[:49] + "…"
        name += f", probe {shown!r}"
    elif mode is ModeChoice.rollout:
        name += ", rollout"
    if start_turn is not None:
        name += f", from turn {start_turn}"
    return name


def _default_role(variant: Variant, mode: ModeChoice, question: str | None) -> ExperimentRole:
    """What a researcher's experiment is, when nothing else says: the unedited flagged
    turn is the baseline, a question is a probe, whole episodes are rollouts, anything
    else is exploratory."""
    from tools.experiments import BaselineRole, ExploratoryRole, ProbeRole, RolloutRole

    if question is not None or mode is ModeChoice.probe:
        return ProbeRole(test="other")
    if mode is ModeChoice.rollout:
        return RolloutRole(tag=None if variant.is_original else variant.description or variant.id)
    return BaselineRole() if variant.is_original else ExploratoryRole()


def resample_command(
    incident_path: IncidentArg,
    edit: Annotated[Path | None, typer.Option("--edit", help="YAML file of edits (the variant to run).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Samples (the budget when sequential).")] = 50,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Stop as soon as an anytime-valid test answers the question.")
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="With --sequential: is the rate above or below this?")
    ] = None,
    vs_baseline: Annotated[
        bool, typer.Option("--vs-baseline", help="With --sequential: does the rate differ from the unedited incident?")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Sequential batch size.")] = 10,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Sequential error rate.")] = 0.05,
    mode: Annotated[ModeChoice | None, typer.Option(help="next_turn (default), rollout or probe.")] = None,
    start_turn: Annotated[int | None, typer.Option(help="Turn to resample from (default: the flagged turn).")] = None,
    question: Annotated[str | None, typer.Option(help="Probe: the question asked after the prefix.")] = None,
    answer_pattern: Annotated[
        str | None, typer.Option(help="Probe: regex over the answer that counts as the behaviour.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Experiment label (default: the variant and the design).")] = None,
    run: RunOpt = None,
    subject: SubjectOpt = None,
    backend: BackendOpt = None,
    allow_host: AllowHostOpt = False,
    seed: SeedOpt = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Samples taken at once.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Resample the subject under a variant of the incident and print the rate with its Wilson interval."""
    from tools.edit import Variant, load_variant
    from tools.incident import RegexDetector
    from tools.resample import ExperimentSpec, SequentialRule, run_experiment

    if (question is None) != (answer_pattern is None):
        raise typer.BadParameter("--question and --answer-pattern go together")
    if question is not None and mode not in (None, ModeChoice.probe):
        raise typer.BadParameter("--question asks a probe: leave --mode out or set it to probe")
    chosen = ModeChoice.probe if question is not None else (mode or ModeChoice.next_turn)
    if chosen is ModeChoice.probe and question is None:
        raise typer.BadParameter("--mode probe needs --question and --answer-pattern")
    if sequential and (threshold is None) == (not vs_baseline):
        raise typer.BadParameter("--sequential needs exactly one of --threshold X or --vs-baseline")
    if not sequential and (threshold is not None or vs_baseline):
        raise typer.BadParameter("--threshold and --vs-baseline are questions for --sequential")
    if vs_baseline and edit is None:
        raise typer.BadParameter("--vs-baseline compares a variant with the unedited incident: give --edit")
    variant = load_variant(edit) if edit is not None else Variant.original()
    detector = None
    if answer_pattern is not None:
        try:
            detector = RegexDetector(kind="regex", pattern=answer_pattern, target="text")
        except ValueError as exc:
            raise typer.BadParameter(f"--answer-pattern: {exc}") from None
    common: dict[str, Any] = {
        "mode": chosen.value,
        "start_turn": start_turn,
        "seed": seed,
        "question": question,
        "detector": detector,
    }
    rule = None
    if sequential:
        reference = None
        if vs_baseline:
            reference = ExperimentSpec(
                label=_default_label(Variant.original(), chosen, start_turn, question),
                role=_default_role(Variant.original(), chosen, question),
                n=n,
                **common,
            )
        rule = SequentialRule(
            kind="reference" if vs_baseline else "threshold",
            threshold=threshold,
            reference=reference,
            alpha=alpha,
            batch=batch,
        )
    name = label or _default_label(variant, chosen, start_turn, question)
    spec = ExperimentSpec(
        label=name, role=_default_role(variant, chosen, question), variant=variant, n=n, sequential=rule, **common
    )
    case = _case(incident_path, run, subject, backend, allow_host)
    try:
        with _progress(f"resampling {case.subject.model_string}", n, quiet=as_json) as advance:
            result = asyncio.run(
                run_experiment(
                    case.ledger,
                    case.incident,
                    spec,
                    subject=case.subject,
                    world=case.world if chosen is ModeChoice.rollout else None,
                    concurrency=concurrency,
                    progress=advance,
                )
            )
        reference_counts = None
        if rule is not None and rule.reference is not None:
            ref_id = rule.reference.experiment_id(case.incident.id, case.subject.model_string, result.start_turn)
            reference_counts = case.ledger.counts(ref_id)
        diff = "" if variant.is_original else variant.diff(case.incident.transcript, case.incident.environment)
    finally:
        case.close()
    summary = {
        **result.model_dump(mode="json"),
        "run": str(case.run_dir),
        "variant_description": variant.description,
        "diff": diff,
    }
    if reference_counts is not None:
        summary["reference"] = {"k": reference_counts.k, "n": reference_counts.n}
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    console.print(
        Text.assemble(
            (result.label, "bold"),
            f" ({result.mode} from turn {result.start_turn}): ",
            (_rate_text(result.k, result.n), "bold"),
            "  Wilson 95%",
        )
    )
    if reference_counts is not None:
        from tools.stats import Rate, compare

        console.print(f"baseline: {Rate(reference_counts.k, reference_counts.n)}")
        if reference_counts.n and result.n:
            console.print(
                f"difference: {compare(Rate(result.k, result.n), Rate(reference_counts.k, reference_counts.n))}"
            )
    console.print(f"stopped: {result.stop_reason}; samples saved: {result.samples_saved}")
    console.print(Text(f"experiment {result.id} in {case.run_dir}", style="dim"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"), highlight=False)
    if diff:
        console.print(Text(f"variant {variant.id}: {variant.description}", style="bold"))
        _print_diff(diff)
    else:
        console.print(Text("variant: the unedited incident", style="dim"))


# --------------------------------------------------------------------------- compare


def compare_command(
    run: Annotated[Path, typer.Argument(help="Run directory (or its case.sqlite).")],
    experiment_a: Annotated[str, typer.Argument(help="Experiment id, id prefix or label.")],
    experiment_b: Annotated[str, typer.Argument(help="Experiment id, id prefix or label.")],
    as_json: JsonOpt = False,
) -> None:
    """Compare two experiments of a run: rates, difference (Newcombe), pooled z-test and Fisher's exact test."""
    from tools.ledger import LEDGER_FILE, Ledger
    from tools.stats import Rate, compare, fisher_exact

    path = run / LEDGER_FILE if run.is_dir() else run
    if not path.is_file():
        raise ForensicsError(f"{run}: no ledger here (expected {path}); pass the --run directory of an experiment")
    with Ledger(path) as ledger:
        a, b = ledger.find_experiment(experiment_a), ledger.find_experiment(experiment_b)
        ca, cb = ledger.counts(a.id), ledger.counts(b.id)
    if a.id == b.id:
        raise ForensicsError(f"{experiment_a!r} and {experiment_b!r} are the same experiment ({a.id})")
    if not ca.n or not cb.n:
        empty = a if not ca.n else b
        raise ForensicsError(f"experiment {empty.id} ({empty.label}) has no judged samples to compare")
    ra, rb = Rate(ca.k, ca.n), Rate(cb.k, cb.n)
    c = compare(ra, rb)
    fisher = fisher_exact(ca.k, ca.n, cb.k, cb.n)
    notes = []
    if a.incident_id != b.incident_id:
        notes.append(f"the experiments are of different incidents ({a.incident_id} vs {b.incident_id})")
    if (a.mode, a.start_turn) != (b.mode, b.start_turn):
        notes.append(
            f"different designs: {a.mode} from turn {a.start_turn} vs {b.mode} from turn {b.start_turn} "
            "(the difference mixes the intervention with the design)"
        )
    if as_json:
        out = {
            "a": {"id": a.id, "label": a.label, "k": ca.k, "n": ca.n, "ci": list(ra.ci)},
            "b": {"id": b.id, "label": b.label, "k": cb.k, "n": cb.n, "ci": list(rb.ci)},
            "difference": c.difference,
            "difference_ci": list(c.ci),
            "z": c.z,
            "p_ztest": c.p,
            "p_fisher": fisher,
            "notes": notes,
        }
        sys.stdout.write(json.dumps(out) + "\n")
        return
    table = Table(title="comparison", title_justify="left")
    for column in ("arm", "experiment", "label", "rate (Wilson 95%)"):
        table.add_column(column)
    table.add_row("A", a.id[:16], Text(a.label), str(ra))
    table.add_row("B", b.id[:16], Text(b.label), str(rb))
    console.print(table)
    low, high = c.ci
    console.print(
        Text.assemble(
            "A − B: ",
            (f"{100 * c.difference:+.1f} points", "bold"),
            f" [{100 * low:+.1f}, {100 * high:+.1f}] (Newcombe 95%)",
        )
    )
    console.print(f"pooled z-test: z = {c.z:.2f}, p = {_p(c.p)};  Fisher's exact: p = {_p(fisher)}")
    for note in notes:
        console.print(Text(f"note: {note}", style="yellow"), highlight=False)


def _p(p: float) -> str:
    return "nan" if math.isnan(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


# --------------------------------------------------------------------------- importance


def importance_command(
    incident_path: IncidentArg,
    turns: Annotated[bool, typer.Option("--turns", help="Turn importance: resample from each turn's start.")] = False,
    sentences: Annotated[
        bool, typer.Option("--sentences", help="Sentence importance of the flagged turn's CoT (Thought Anchors).")
    ] = False,
    n: Annotated[int, typer.Option("--n", min=1, help="Samples per turn, or per sentence arm.")] = 50,
    method: Annotated[MethodChoice, typer.Option(help="Turns: scan every turn, or binary search.")] = (
        MethodChoice.scan
    ),
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a PNG here (with both analyses: NAME.turns.png and NAME.sentences.png)."),
    ] = None,
    run: RunOpt = None,
    subject: SubjectOpt = None,
    backend: BackendOpt = None,
    allow_host: AllowHostOpt = False,
    seed: SeedOpt = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Samples taken at once.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Which turns, and which sentences of the flagged turn's CoT, make the behaviour likely."""
    from tools.importance import cot_of, sentence_importance, turn_importance
    from tools.plots import sentence_importance_plot, turn_importance_plot

    if not turns and not sentences:
        raise typer.BadParameter("choose --turns, --sentences, or both")
    case = _case(incident_path, run, subject, backend, allow_host)
    summary: dict[str, Any] = {"run": str(case.run_dir)}
    plots: dict[str, bytes] = {}
    try:
        if turns:
            flagged = case.incident.flagged_turn_index
            steps = flagged + 1 if method is MethodChoice.scan else 1 + math.ceil(math.log2(flagged + 1))
            with _progress("turn importance", n * steps, quiet=as_json) as advance:
                ti = asyncio.run(
                    turn_importance(
                        case.ledger,
                        case.incident,
                        subject=case.subject,
                        world=case.world,
                        n_per_turn=n,
                        method=method.value,
                        seed=seed,
                        concurrency=concurrency,
                        progress=advance,
                    )
                )
            summary["turns"] = ti.model_dump(mode="json")
            plots["turns"] = turn_importance_plot(ti)
            if not as_json:
                _print_turns(ti)
        if sentences:
            from tools.edit import split_sentences

            arms = len(split_sentences(cot_of(case.incident.flagged_turn.message)[1])) + 1
            with _progress("sentence importance", n * arms, quiet=as_json) as advance:
                si = asyncio.run(
                    sentence_importance(
                        case.ledger,
                        case.incident,
                        subject=case.subject,
                        k=n,
                        seed=seed,
                        concurrency=concurrency,
                        progress=advance,
                    )
                )
            summary["sentences"] = si.model_dump(mode="json")
            plots["sentences"] = sentence_importance_plot(si)
            if not as_json:
                _print_sentences(si)
    finally:
        case.close()
    if plot is not None:
        written = []
        for kind, png in plots.items():
            target = plot if len(plots) == 1 else plot.with_name(f"{plot.stem}.{kind}{plot.suffix or '.png'}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
            written.append(str(target))
        summary["plots"] = written
        if not as_json:
            console.print(Text(f"plot: {', '.join(written)}", style="dim"))
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        console.print(Text(f"experiments in {case.run_dir}", style="dim"))


def _print_turns(result: TurnImportance) -> None:
    table = Table(title=f"turn importance ({result.method}, n = {result.n_per_turn} per turn)", title_justify="left")
    for column in ("from turn", "mode", "rate (Wilson 95%)", "", "experiment"):
        table.add_column(column, no_wrap=column != "rate (Wilson 95%)")
    for p in result.points:
        mark = "◀ likely" if p.turn == result.likely_turn else ""
        flagged = " (flagged)" if p.turn == result.flagged_turn else ""
        table.add_row(f"{p.turn}{flagged}", p.mode, str(p.rate), mark, p.experiment_id[:16])
    console.print(table)
    if result.likely_turn is None:
        console.print("the behaviour never occurred when resampling the flagged turn")
    else:
        bar = f"half the flagged-turn rate, {result.target:.1%}"
        console.print(f"the behaviour is likely (at least {bar}) from turn {result.likely_turn} on")
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"), highlight=False)


def _print_sentences(result: SentenceImportance) -> None:
    table = Table(
        title=f"sentence importance, turn {result.turn} (k = {result.k} per arm, 'different' by {result.similarity})",
        title_justify="left",
    )
    for column in ("#", "sentence", "resampling (kept − resampled)", "counterfactual (kept − different)"):
        table.add_column(column)
    for s in result.sentences:
        cf = str(s.counterfactual) if s.counterfactual is not None else "no resample differed"
        table.add_row(str(s.index), Text(s.text), str(s.resampling), f"{cf}\n({s.n_different} differed)")
    console.print(table)
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"), highlight=False)
