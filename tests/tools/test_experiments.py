"""Typed experiment roles: the union, its JSON round trip, the legacy label reading,
and the ledger migration that gives old ledgers their roles."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tools import ledger as ledger_module
from tools.experiments import (
    ROLE_ADAPTER,
    BaselineRole,
    ControlRole,
    DoseRole,
    ExploratoryRole,
    ImportanceRole,
    InterventionRole,
    ProbeRole,
    Provenance,
    RolloutRole,
    is_reference,
    legacy_role,
)
from tools.ledger import SCHEMA_VERSION, Ledger, LedgerError
from tools.resample import ExperimentSpec
from tools.transcript import Span


def test_roles_round_trip_through_json_by_kind() -> None:
    roles = [
        BaselineRole(),
        InterventionRole(
            tag="ask_tool",
            tests=("laziness",),
            provenance=Provenance(rule="ask_tool:harness-tool", spans=(Span(message=0, block=0, start=0, end=4),)),
        ),
        DoseRole(knob="errors", level=10, original=258, tag="less_work"),
        ProbeRole(test="follow_up", answered=r"(?i)^\W*(yes|no)\b"),
        ControlRole(polarity="negative", controls=("oversight_warning",)),
        ImportanceRole(scan="context", unit="system sentence 1", index=1),
        RolloutRole(tag=None),
        ExploratoryRole(),
    ]
    for role in roles:
        assert ROLE_ADAPTER.validate_json(ROLE_ADAPTER.dump_json(role)) == role
    assert [is_reference(r) for r in roles] == [True, False, False, False, False, False, True, False]


def test_the_role_does_not_enter_the_experiment_id() -> None:
    a = ExperimentSpec(label="one", role=BaselineRole())
    b = ExperimentSpec(label="two", role=ControlRole(polarity="negative"))
    assert a.experiment_id("i", "s", 3) == b.experiment_id("i", "s", 3)


@pytest.mark.parametrize(
    ("label", "mode", "expected"),
    [
        ("baseline", "next_turn", BaselineRole()),
        ("intervention:ask_tool", "next_turn", InterventionRole(tag="ask_tool")),
        ("dose:n_type_errors=10", "next_turn", DoseRole(knob="n_type_errors", level=10.0, tag="n_type_errors")),
        ("dose:n_type_errors=nan", "next_turn", ExploratoryRole()),
        ("probe:follow_up", "probe", ProbeRole(test="follow_up")),
        ("anything", "probe", ProbeRole(test="anything")),
        ("negative-control:rename", "next_turn", ControlRole(polarity="negative", controls=("rename",))),
        ("positive-control:reversed", "next_turn", ControlRole(polarity="positive", controls=("reversed",))),
        ("rollout:baseline", "rollout", RolloutRole(tag=None)),
        ("rollout:less_work", "rollout", RolloutRole(tag="less_work")),
        ("turn importance: from turn 3", "rollout", ImportanceRole(scan="turn", unit="turn 3", index=3)),
        (
            "sentence prefill: 2 of 7 sentences kept",
            "next_turn",
            ImportanceRole(scan="sentence", unit="2 sentences kept", index=2),
        ),
        ("remove the nudge", "next_turn", ExploratoryRole()),
    ],
)
def test_legacy_labels_map_to_roles(label: str, mode: str, expected: object) -> None:
    assert legacy_role(label, mode) == expected


def _version_1_ledger(path: Path) -> None:
    """A ledger as the program wrote it before roles existed (schema 1)."""
    db = sqlite3.connect(path)
    first = ledger_module._MIGRATIONS[0]
    assert isinstance(first, str)
    db.executescript(first)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO incidents VALUES ('inc', '{}', 0)")
    db.execute("INSERT INTO variants VALUES ('var-0', 'inc', NULL, 'original', '[]', '', 0)")
    for i, (label, mode) in enumerate(
        [("baseline", "next_turn"), ("intervention:ask_tool", "next_turn"), ("probe:cover_up", "probe")]
    ):
        db.execute(
            "INSERT INTO experiments(id, incident_id, variant_id, label, mode, start_turn, n_target, spec, created)"
            " VALUES (?, 'inc', 'var-0', ?, ?, 5, 10, ?, ?)",
            (f"exp-{i}", label, mode, json.dumps({"n": 10}), float(i)),
        )
        db.execute(
            "INSERT INTO samples(experiment_id, idx, seed, output, detected, created) VALUES (?, 0, 0, '[]', 1, 0)",
            (f"exp-{i}",),
        )
    db.commit()
    db.close()


def test_an_old_ledger_opens_with_its_roles_migrated(tmp_path: Path) -> None:
    path = tmp_path / "case.sqlite"
    _version_1_ledger(path)
    with Ledger(path) as ledger:
        roles = {e.id: e.role for e in ledger.experiments()}
        assert ledger.counts("exp-1").n == 1  # nothing lost
    assert roles == {
        "exp-0": BaselineRole(),
        "exp-1": InterventionRole(tag="ask_tool"),
        "exp-2": ProbeRole(test="cover_up"),
    }
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    with Ledger(path) as again:  # reopening a migrated ledger is a no-op
        assert {e.id: e.role for e in again.experiments()} == roles


def test_the_same_samples_cannot_serve_two_kinds_of_role(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        ledger.put_incident("inc", {})
        ledger.put_variant("var-0", "inc", parent=None, description="o", edits=[], diff="")
        common = {"incident_id": "inc", "variant_id": "var-0", "mode": "next_turn", "start_turn": 0, "n_target": 5}
        ledger.open_experiment("exp-a", label="a", spec={}, **common)  # exploratory
        assert ledger.open_experiment("exp-a", label="a", spec={}, role=BaselineRole(), **common).role == BaselineRole()
        kept = ledger.open_experiment("exp-a", label="a", spec={}, **common)  # an exploratory reopen keeps it
        assert kept.role == BaselineRole()
        with pytest.raises(LedgerError, match="baseline arm"):
            ledger.open_experiment("exp-a", label="a", spec={}, role=ControlRole(polarity="negative"), **common)
