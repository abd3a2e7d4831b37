"""The HTTP API over real HTTP: a `forensics serve` subprocess, real organism
investigations run by the executor, files on disk checked."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from investigator.executor import BatchDB
from investigator.executor.worker import ATTEMPTS_FILE
from tests.conftest import EXAMPLES
from tests.investigator.service.conftest import (
    BROKE,
    CAPPED,
    MAIN,
    MAX_REQUEST_BYTES,
    OTHER,
    SINGLE,
    Server,
    auth,
    incident_body,
    wait_until_final,
)


@pytest.fixture
def client(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c  # type: ignore[misc]


def _run_dirs(server: Server) -> set[str]:
    runs = server.state_dir / "runs"
    return {p.name for p in runs.iterdir()} if runs.exists() else set()


# ----------------------------------------------------------------------------- refusals


def test_every_route_but_healthz_needs_a_token(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for method, path in [
        ("GET", "/v1/incidents"),
        ("POST", "/v1/incidents"),
        ("GET", "/v1/incidents/inv-x"),
        ("DELETE", "/v1/incidents/inv-x"),
        ("GET", "/v1/incidents/inv-x/report"),
        ("GET", "/metrics"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in answer.json()["detail"]
    wrong = client.get("/v1/incidents", headers=auth("not-a-token-at-all"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown token"
    basic = client.get("/v1/incidents", headers={"Authorization": "Basic bWFpbjpwdw=="})
    assert basic.status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    # the page's cookie may read, never write
    cookie = {"Cookie": f"forensics_session={MAIN}"}
    assert client.get("/v1/incidents", headers=cookie).status_code == 200
    assert client.post("/v1/incidents", headers=cookie, json={}).status_code == 401


def test_oversized_requests_are_refused_before_and_while_reading(client: httpx.Client, server: Server) -> None:
    before = _run_dirs(server)
    big = b"{" + b" " * (MAX_REQUEST_BYTES + 10) + b"}"
    declared = client.post("/v1/incidents", content=big, headers={**auth(), "Content-Type": "application/json"})
    assert declared.status_code == 413
    assert "larger than this service accepts (2 MiB)" in declared.json()["detail"]
    assert "FORENSICS_SERVE_MAX_REQUEST_BYTES" in declared.json()["detail"]

    def chunks() -> Any:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b" " * 65536

    streamed = client.post("/v1/incidents", content=chunks(), headers={**auth(), "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert _run_dirs(server) == before
    assert not any((server.state_dir / "incoming").glob("*"))


def test_bad_requests_get_clear_422s_and_leave_nothing_behind(
    client: httpx.Client, server: Server, organism_incidents: dict[str, Path]
) -> None:
    before = _run_dirs(server)
    good = incident_body(organism_incidents["oversight-subversion"])

    def post(body: Any) -> httpx.Response:
        return client.post("/v1/incidents", json=body, headers=auth())

    bad_turn = copy.deepcopy(good)
    bad_turn["incident"]["flag"]["turn"] = 99
    answer = post(bad_turn)
    assert answer.status_code == 422
    assert "flag.turn" in answer.json()["detail"] and "turn 99 does not exist" in answer.json()["detail"]
    assert str(server.state_dir) not in answer.json()["detail"]  # no server paths in messages

    missing = copy.deepcopy(good)
    del missing["incident"]["behavior"]
    detail = post(missing).json()["detail"]
    assert detail[0]["loc"] == ["body", "incident", "behavior"] and detail[0]["type"] == "missing"

    garbage = copy.deepcopy(good)
    garbage["incident"]["transcript"] = {"hello": "world"}
    answer = post(garbage)
    assert answer.status_code == 422 and "transcript" in answer.json()["detail"]

    for model, why in [
        ("scripted/anything", "provider of"),
        ("organism/../../etc/evil", "'..' parts"),
        ("organism//etc/passwd", "'..' parts"),
    ]:
        bad_model = copy.deepcopy(good)
        bad_model["incident"]["subject"]["model"] = model
        answer = post(bad_model)
        assert answer.status_code == 422, model
        assert why in answer.json()["detail"], answer.json()

    too_many = copy.deepcopy(good)
    too_many["n"] = 10**6
    assert "more than this service allows" in post(too_many).json()["detail"]
    unsigned = client.post(
        "/v1/incidents", json={**good, "callback_url": "ftp://example.com/x"}, headers=auth()
    ).json()["detail"]
    assert unsigned[0]["loc"] == ["body", "callback_url"]
    deep = {"incident": good["incident"], "labels": {}}
    nested: Any = []
    for _ in range(500):
        nested = [nested]
    deep["incident"] = {**good["incident"], "metadata": {"x": nested}}
    answer = post(deep)
    assert answer.status_code == 422 and "deep" in answer.json()["detail"]
    assert (
        client.post("/v1/incidents", content=b"<xml/>", headers={**auth(), "Content-Type": "text/xml"}).status_code
        == 415
    )
    # multipart: the transcript a file names is never read from the server's disk
    incident = yaml.safe_load(organism_incidents["oversight-subversion"].read_text())
    incident["transcript"] = "../../../../etc/passwd"
    answer = client.post(
        "/v1/incidents", files={"incident": ("i.yaml", yaml.safe_dump(incident).encode())}, headers=auth()
    )
    assert answer.status_code == 422 and "upload that file as the `transcript` part" in answer.json()["detail"]
    answer = client.post(
        "/v1/incidents",
        files={"incident": ("i.yaml", b"a: b"), "secret": ("x", b"y")},
        headers=auth(),
    )
    assert answer.status_code == 422 and "unknown part `secret`" in answer.json()["detail"]
    assert _run_dirs(server) == before
    assert not any((server.state_dir / "incoming").glob("*"))


# ----------------------------------------------------------------------------- the happy paths


def test_a_json_incident_is_investigated_and_its_report_served_by_accept(
    client: httpx.Client, server: Server, organism_incidents: dict[str, Path]
) -> None:
    body = incident_body(organism_incidents["oversight-subversion"], labels={"ticket": "T-1"})
    first = client.post("/v1/incidents", json=body, headers={**auth(), "Idempotency-Key": "pipeline-42"})
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["state"] in {"queued", "running"} and job["labels"] == {"ticket": "T-1"}
    assert first.headers["Location"] == f"/v1/incidents/{job['id']}"
    # the same key and request: the same investigation; another request: refused
    again = client.post("/v1/incidents", json=body, headers={**auth(), "Idempotency-Key": "pipeline-42"})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = {**body, "n": 7}
    conflict = client.post("/v1/incidents", json=changed, headers={**auth(), "Idempotency-Key": "pipeline-42"})
    assert conflict.status_code == 409 and "different request" in conflict.json()["detail"]
    # another token's key space is its own, and it cannot see this investigation
    assert client.get(f"/v1/incidents/{job['id']}", headers=auth(OTHER)).status_code == 404
    assert job["id"] not in {i["id"] for i in client.get("/v1/incidents", headers=auth(OTHER)).json()["items"]}

    done = wait_until_final(client, [job["id"]])[job["id"]]
    assert done["state"] == "done", done
    assert done["verdict"] in {"misalignment", "mistake", "inconclusive"}
    assert done["progress"]["tool_calls"] >= 1 and done["finished"] is not None
    assert done["links"]["report"] == f"/v1/incidents/{job['id']}/report"

    report = client.get(done["links"]["report"], headers=auth())
    assert report.headers["content-type"].startswith("application/json")
    assert report.json()["verdict"] == done["verdict"] and report.json()["incident_id"] == "oversight-subversion"
    markdown = client.get(done["links"]["report"], headers={**auth(), "Accept": "text/markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and markdown.text.startswith(
        "# Forensics report"
    )
    html = client.get(done["links"]["report"], headers={**auth(), "Accept": "text/html,*/*;q=0.8"})
    assert html.headers["content-type"].startswith("text/html") and "<html" in html.text
    assert "sandbox" in html.headers["content-security-policy"]
    assert client.get(done["links"]["report"], params={"format": "md"}, headers=auth()).text == markdown.text
    assert client.get(done["links"]["report"], headers={**auth(), "Accept": "image/png"}).status_code == 406

    listed = client.get("/v1/incidents", params={"state": "done", "verdict": done["verdict"]}, headers=auth()).json()
    assert job["id"] in {i["id"] for i in listed["items"]}
    assert all(i["state"] == "done" for i in listed["items"])
    future = client.get("/v1/incidents", params={"since": "2999-01-01T00:00:00Z"}, headers=auth()).json()
    assert future["count"] == 0
    assert client.delete(f"/v1/incidents/{job['id']}", headers=auth()).status_code == 409

    # what the request carried lives in the run directory, under names the service chose
    run_dir = server.state_dir / "runs" / job["id"]
    assert sorted(p.name for p in (run_dir / "input").iterdir()) == ["incident.json", "transcript.json"]
    with BatchDB(server.state_dir) as queue:
        spec = queue.spec(job["id"])
    assert spec.allow_host is False and spec.incident_path == str(run_dir / "input" / "incident.json")


def test_a_multipart_upload_with_a_transcript_file(
    client: httpx.Client, server: Server, organism_incidents: dict[str, Path]
) -> None:
    incident_file = organism_incidents["shutdown-ambiguity"]
    transcript = incident_file.parent / yaml.safe_load(incident_file.read_text())["transcript"]
    answer = client.post(
        "/v1/incidents",
        files={
            "incident": ("../../evil name.yaml", incident_file.read_bytes(), "application/yaml"),
            "transcript": ("session.json", transcript.read_bytes(), "application/json"),
        },
        data={"planner": "cot-only", "n": "3", "labels": json.dumps({"source": "curl"})},
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    done = wait_until_final(client, [job["id"]])[job["id"]]
    assert done["state"] == "done", done
    assert done["incident_id"] == "shutdown-ambiguity" and done["labels"] == {"source": "curl"}
    inputs = sorted(p.name for p in (server.state_dir / "runs" / job["id"] / "input").iterdir())
    assert inputs == ["incident.json", "incident.upload.yaml", "transcript.json"]


def test_a_workspace_archive_upload_becomes_the_incidents_environment(client: httpx.Client, server: Server) -> None:
    """The Claude Code example: session log, incident file and the repository's archive,
    uploaded as they are; the archive lands in the run directory as the world's workspace."""
    folder = EXAMPLES / "claude-code-session"
    incident = yaml.safe_load((folder / "incident.yaml").read_text())
    incident["subject"]["model"] = "organism/oversight-subversion"  # offline: cot-only never samples it anyway
    answer = client.post(
        "/v1/incidents",
        files={
            "incident": ("incident.yaml", yaml.safe_dump(incident).encode()),
            "transcript": ("session.jsonl", (folder / "session.jsonl").read_bytes()),
            "environment": ("tally.tar.gz", (folder / "tally.tar.gz").read_bytes()),
        },
        data={"planner": "cot-only"},
        headers=auth(),
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["incident_id"] == "claude-code-skip-test"
    inputs = server.state_dir / "runs" / job["id"] / "input"
    staged = json.loads((inputs / "incident.json").read_text())
    assert staged["environment"]["archive"] == {"path": "workspace.tar.gz", "strip_components": 0}
    assert staged["transcript"] == "transcript.jsonl"
    assert (inputs / "workspace.tar.gz").read_bytes() == (folder / "tally.tar.gz").read_bytes()
    done = wait_until_final(client, [job["id"]])[job["id"]]
    assert done["state"] == "done", done

    # investigating it needs its world, which is untrusted: never on the host, whatever the request says
    before = _run_dirs(server)
    answer = client.post(
        "/v1/incidents",
        files={
            "incident": ("incident.yaml", yaml.safe_dump(incident).encode()),
            "transcript": ("session.jsonl", (folder / "session.jsonl").read_bytes()),
            "environment": ("tally.tar.gz", (folder / "tally.tar.gz").read_bytes()),
        },
        data={"planner": "protocol"},
        headers=auth(),
    )
    assert answer.status_code == 422
    assert "untrusted" in answer.json()["detail"] and "cannot allow running on the host" in answer.json()["detail"]
    assert _run_dirs(server) == before

    # a scenario builds its own world: an archive beside it is refused, saying why
    scenario = yaml.safe_load((EXAMPLES / "incident_organism.yaml").read_text())
    answer = client.post(
        "/v1/incidents",
        files={
            "incident": ("i.yaml", yaml.safe_dump(scenario).encode()),
            "transcript": ("t.json", (EXAMPLES / "organism_transcript.json").read_bytes()),
            "environment": ("ws.tar.gz", (folder / "tally.tar.gz").read_bytes()),
        },
        headers=auth(),
    )
    assert answer.status_code == 422 and "scenario builds its own world" in answer.json()["detail"]


def test_fifty_concurrent_submissions_all_complete(
    server: Server, organism_incidents: dict[str, Path], client: httpx.Client
) -> None:
    bodies = [
        incident_body(organism_incidents[name], labels={"i": str(i)})
        for i, name in enumerate(["oversight-subversion", "shutdown-ambiguity"] * 25)
    ]

    async def submit_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as aclient:
            return await asyncio.gather(*(aclient.post("/v1/incidents", json=b, headers=auth()) for b in bodies))

    answers = asyncio.run(submit_all())
    assert [a.status_code for a in answers] == [202] * 50, [a.text for a in answers if a.status_code != 202][:3]
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == 50
    views = wait_until_final(client, ids, timeout=600)
    assert {v["state"] for v in views.values()} == {"done"}, {k: v.get("error") for k, v in views.items()}
    assert sorted(int(v["labels"]["i"]) for v in views.values()) == list(range(50))
    for job_id in ids:  # each ran exactly once
        attempts = (server.state_dir / "runs" / job_id / ATTEMPTS_FILE).read_text().splitlines()
        assert len(attempts) == 1, job_id
    metrics = client.get("/metrics", headers=auth()).text
    done = next(line for line in metrics.splitlines() if line.startswith('forensics_investigations{state="done"}'))
    assert float(done.split()[-1]) >= 50


def test_per_token_limits(client: httpx.Client, server: Server, organism_incidents: dict[str, Path]) -> None:
    body = incident_body(organism_incidents["oversight-subversion"], planner="protocol", n=5)
    broke = client.post("/v1/incidents", json=body, headers=auth(BROKE))
    assert broke.status_code == 402 and "budget of $0.00" in broke.json()["detail"]
    # a budget caps each investigation's own dollar limit at what is left, counting what running ones may spend
    capped = client.post("/v1/incidents", json={**body, "budget": {"dollars": 3}}, headers=auth(CAPPED))
    assert capped.status_code == 202, capped.text
    with BatchDB(server.state_dir) as queue:  # the queue's own record of the job
        assert queue.spec(capped.json()["id"]).limits.dollars == 0.5
    if client.get(f"/v1/incidents/{capped.json()['id']}", headers=auth(CAPPED)).json()["state"] != "done":
        reserved = client.post("/v1/incidents", json=body, headers=auth(CAPPED))
        assert reserved.status_code == 402, reserved.text  # the running one may still spend all of it
    wait_until_final(client, [capped.json()["id"]], token=CAPPED)

    async def two() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as aclient:
            return await asyncio.gather(*(aclient.post("/v1/incidents", json=body, headers=auth(SINGLE)) for _ in "ab"))

    answers = sorted(asyncio.run(two()), key=lambda a: a.status_code)
    assert [a.status_code for a in answers] == [202, 429]
    assert "limit" in answers[1].json()["detail"] and answers[1].headers["Retry-After"]
    job_id = answers[0].json()["id"]
    cancelled = client.delete(f"/v1/incidents/{job_id}", headers=auth(SINGLE))
    assert cancelled.status_code == 200
    final = wait_until_final(client, [job_id], token=SINGLE)[job_id]
    assert final["state"] in {"cancelled", "done"}  # it may have finished before the cancel reached it
    if final["state"] == "cancelled":
        assert final["error"]["kind"] == "cancelled"
    # a slot is free again
    again = client.post("/v1/incidents", json={**body, "planner": "cot-only"}, headers=auth(SINGLE))
    assert again.status_code == 202
    wait_until_final(client, [again.json()["id"]], token=SINGLE)


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    answer = client.get("/metrics", headers=auth())
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split()[0] for line in answer.text.splitlines() if line and not line.startswith("#")}
    for name in (
        "forensics_queue_depth",
        "forensics_investigations_running",
        "forensics_investigations",
        "forensics_investigations_finished_total",
        "forensics_spend_dollars_total",
        "forensics_http_requests_total",
    ):
        assert name in names, name
    assert 'route="/v1/incidents/{job_id}"' in answer.text or 'route="/v1/incidents"' in answer.text
    assert os.sep + "runs" + os.sep not in answer.text
