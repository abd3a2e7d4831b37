"""Schemathesis against the running service's OpenAPI schema: generated requests, valid
and invalid, to every operation, with a token, must never get a 500, and every answer
must match the schema (status codes, content types, bodies, headers). Bounded: a fixed
number of examples per operation and mode, derandomized, no deadline."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.investigator.service.conftest import Server, auth

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 10
QUIET = list(HealthCheck)


def test_every_operation_answers_by_its_schema(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=120)  # built on first request: give it time
    assert document.status_code == 200
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert labels == [
        "DELETE /v1/incidents/{job_id}",
        "GET /healthz",
        "GET /metrics",
        "GET /v1/incidents",
        "GET /v1/incidents/{job_id}",
        "GET /v1/incidents/{job_id}/report",
        "POST /v1/incidents",
    ]
    calls: dict[str, int] = {}
    for operation in operations:
        for mode in GenerationMode:
            try:
                _exercise(operation, mode, server, calls)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to get wrong (GET /healthz)
    assert all(calls.get(label, 0) >= 1 for label in labels), calls
    print(f"schemathesis: {sum(calls.values())} requests checked", calls)


def _exercise(operation: Any, mode: GenerationMode, server: Server, calls: dict[str, int]) -> None:
    """Up to EXAMPLES generated requests to one operation, each answer checked."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=QUIET)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=server.url, headers=auth(), checks=CHECKS, timeout=60)
        calls[operation.label] = calls.get(operation.label, 0) + 1

    run()
