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

from tools.hints import InvestigationHints, load_hints
from tools.incident import Incident
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.world import WorldFactory, has_world, world_factory

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
) -> Case:
    """Open (or reopen, to resume) the case of `incident` in `run_dir` (see module doc)."""
    from tools.models.registry import get_model

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    client = get_model(subject or incident.subject.model) if subject is None or isinstance(subject, str) else subject
    hints = None if blind else load_hints(incident.environment)
    return Case(
        incident=incident,
        run_dir=out,
        ledger=Ledger(out),
        subject=client,
        world=(
            world_factory(incident, backend=backend, allow_host=allow_host, subject_model=client.model_string)
            if has_world(incident)
            else None
        ),
        hints=hints,
        blind=blind,
    )
