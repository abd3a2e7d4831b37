"""A case: what every investigation and researcher command works on.

`open_case` assembles, in one place, the incident, the run directory's ledger, the
subject model (the incident's own unless another is named; ``organism/<id>`` subjects
run offline), the world rollouts run in (for environments that can be rebuilt), and the
environment's investigation hints (`tools.hints`; none with ``blind``). The world comes
from `tools.world` (a scenario's world provider, or one rebuilt from the incident's
snapshot), so the investigator never imports the package that holds the scenarios. `investigate`
and the ``forensics resample / importance`` commands all open their case here, so the
subject, the world and the hints are chosen the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxes.registry import BackendChoice
from tools.hints import InvestigationHints, load_hints
from tools.incident import Incident
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.world import WorldFactory, choose_world_backend, has_world, world_factory

__all__ = ["Case", "open_case"]


@dataclass
class Case:
    """An open case (see module doc). `close()` releases the ledger."""

    incident: Incident
    run_dir: Path
    ledger: Ledger
    subject: ModelClient
    world: WorldFactory | None
    hints: InvestigationHints | None = None
    blind: bool = False
    notes: list[str] = field(default_factory=list)
    sandbox: BackendChoice | None = None
    """The sandbox policy's choice for the world (None: the incident has no world)."""

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def open_case(
    incident: Incident,
    run_dir: str | Path,
    *,
    subject: ModelClient | str | None = None,
    backend: str | None = None,
    allow_host: bool = False,
    blind: bool = False,
    sandbox: BackendChoice | None = None,
    check_sandbox: bool = True,
) -> Case:
    """Open (or reopen, to resume) the case of `incident` in `run_dir` (see module doc).
    The sandbox policy decides first (`tools.world.choose_world_backend`, or the
    `sandbox` choice already made): an untrusted incident that would run on this machine
    is refused before the run directory is touched. With `check_sandbox` off the policy
    decides when a world is first built instead (commands that may need none)."""
    from tools.models.registry import get_model

    client = get_model(subject or incident.subject.model) if subject is None or isinstance(subject, str) else subject
    if sandbox is None and check_sandbox and has_world(incident):
        sandbox = choose_world_backend(
            incident, backend=backend, allow_host=allow_host, subject_model=client.model_string
        )
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    hints = None if blind else load_hints(incident.environment)
    return Case(
        incident=incident,
        run_dir=out,
        ledger=Ledger(out),
        subject=client,
        world=(
            world_factory(
                incident, backend=backend, allow_host=allow_host, subject_model=client.model_string, choice=sandbox
            )
            if has_world(incident)
            else None
        ),
        hints=hints,
        blind=blind,
        sandbox=sandbox,
    )
