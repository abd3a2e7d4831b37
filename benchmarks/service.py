"""Service benchmark: request latency under load, and investigations per hour through
``forensics serve`` against the same jobs through ``forensics audit``, side by side.

One run, on this machine, 127.0.0.1 only:

1. Organism incidents are made as a monitor makes them (caught in their scenarios).
2. A ``forensics serve`` subprocess starts on a free port (its own state directory,
   local sandbox backend, the same planner settings as the audit below).
3. **Throughput (service):** every incident is POSTed (JSON, transcript inline), and the
   clock runs from the first POST until the last investigation is done.
4. **Latency under load:** the incidents are POSTed again as a second batch while a
   bounded load generator (httpx, a fixed number of requests at a fixed concurrency)
   sends GETs of single investigations and of the list, and idempotent replays of the
   POSTs (full intake: parse, stage, validate); p50/p99 of each kind are printed.
5. **Throughput (audit):** ``forensics audit`` on the same incident files, the same
   planner, n, budget, sandbox backend and number of workers, timed as a user runs it
   (process start included: an audit is a command, the service is already running).

Prints the latencies, both rates (investigations per hour) and their ratio.

    python -m benchmarks.service [--jobs 8] [--requests 300] [--concurrency 8] [--workers 2]
                                 [--planner protocol] [--n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.batch import make_incidents  # the same organism incidents as the batch benchmark

TOKEN = "bench-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def body(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["transcript"] = json.loads((path.parent / data["transcript"]).read_text(encoding="utf-8"))
    return {"incident": data}


def _env() -> dict[str, str]:
    env = {**os.environ, "FORENSICS_NO_EMBEDDINGS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    for name in ("FORENSICS_API_TOKENS", "FORENSICS_SERVE_CONFIG", "FORENSICS_SERVE_DIR"):
        env.pop(name, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(root: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "tokens": [{"name": "bench", "token": TOKEN, "max_concurrent": 10_000}],
        "sandbox_backend": "local",
        "workers": args.workers,
        "defaults": {"planner": args.planner, "n": args.n, "budget": {"tool_calls": args.tool_calls, "samples": 400}},
        "poll_interval_s": 0.5,
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "investigator.cli", "serve", "--host", HOST, "--port", str(port)),
            *("--dir", str(root / "state"), "--config", str(root / "serve.yaml"), "--log-level", "warning"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
    )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start in 300 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_done(client: httpx.AsyncClient, ids: set[str], timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = (await client.get("/v1/incidents", params={"limit": 1000})).json()["items"]
        states = {i["id"]: i["state"] for i in listing if i["id"] in ids}
        bad = {k: v for k, v in states.items() if v in {"failed", "cancelled"}}
        if bad:
            raise SystemExit(f"investigations did not finish: {bad}")
        if len(states) == len(ids) and all(v == "done" for v in states.values()):
            return
        await asyncio.sleep(1.0)
    raise SystemExit("investigations did not finish in time")


async def throughput(url: str, bodies: list[dict[str, Any]]) -> float:
    """Seconds from the first POST until every investigation is done, once the service
    is warm (one investigation done before the clock starts: a running service has its
    workers' fork server ready, a fresh one is still importing the investigator)."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300) as client:
        warm = await client.post("/v1/incidents", json={**bodies[0], "planner": "cot-only"})
        await wait_done(client, {warm.json()["id"]})
        started = time.monotonic()
        answers = await asyncio.gather(*(client.post("/v1/incidents", json=b) for b in bodies))
        if any(a.status_code != 202 for a in answers):
            raise SystemExit(f"a submission was refused: {[a.text for a in answers if a.status_code != 202][:1]}")
        await wait_done(client, {a.json()["id"] for a in answers})
        return time.monotonic() - started


async def latency(url: str, bodies: list[dict[str, Any]], requests: int, concurrency: int) -> dict[str, list[float]]:
    """Latencies by kind of request while a batch runs (see module doc)."""
    timings: dict[str, list[float]] = {"POST new": [], "POST replay": [], "GET one": [], "GET list": []}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as client:

        async def timed(kind: str, method: str, path: str, **kw: Any) -> httpx.Response:
            async with gate:
                t = time.perf_counter()
                answer = await client.request(method, path, **kw)
                timings[kind].append(time.perf_counter() - t)
            if answer.status_code >= 400:
                raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
            return answer

        keys = [f"bench-latency-{i}" for i in range(len(bodies))]
        firsts = await asyncio.gather(
            *(
                timed("POST new", "POST", "/v1/incidents", json=b, headers={"Idempotency-Key": k})
                for b, k in zip(bodies, keys, strict=True)
            )
        )
        ids = [a.json()["id"] for a in firsts]
        load = []
        for i in range(max(0, requests - len(bodies))):
            match i % 4:
                case 0:
                    j = i % len(bodies)
                    replay = {"Idempotency-Key": keys[j]}
                    load.append(timed("POST replay", "POST", "/v1/incidents", json=bodies[j], headers=replay))
                case 1:
                    load.append(timed("GET list", "GET", "/v1/incidents", params={"limit": 100}))
                case _:
                    load.append(timed("GET one", "GET", f"/v1/incidents/{ids[i % len(ids)]}"))
        await asyncio.gather(*load)
        await wait_done(client, set(ids))
    return timings


def audit(root: Path, incidents: list[Path], args: argparse.Namespace) -> float:
    """Wall seconds of ``forensics audit`` over the incident files."""
    started = time.monotonic()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "investigator.cli", "audit", *map(str, incidents), "--out", str(root / "audit")),
            *("--planner", args.planner, "--n", str(args.n), "--workers", str(args.workers), "--backend", "local"),
            *("--job-tool-calls", str(args.tool_calls), "--job-samples", "400"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"forensics audit failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    summary = json.loads((root / "audit" / "audit.json").read_text(encoding="utf-8"))
    states = [row["state"] for row in summary["rows"]]
    if len(states) != len(incidents) or any(s != "done" for s in states):
        raise SystemExit(f"the audit did not finish every job: {states}")
    return wall


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8, help="Investigations per batch.")
    parser.add_argument("--requests", type=int, default=300, help="Requests sent by the load generator.")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
    parser.add_argument("--workers", type=int, default=2, help="Investigations at once (service and audit).")
    parser.add_argument("--planner", default="protocol", choices=["protocol", "cot-only"])
    parser.add_argument("--n", type=int, default=5, help="Samples per arm.")
    parser.add_argument("--tool-calls", type=int, default=6, help="Most tool calls per investigation.")
    args = parser.parse_args(argv)
    os.environ["FORENSICS_NO_EMBEDDINGS"] = "1"
    with tempfile.TemporaryDirectory(prefix="forensics-service-bench-") as tmp:
        root = Path(tmp)
        (root / "incidents").mkdir()
        incidents = asyncio.run(make_incidents(root / "incidents", args.jobs))
        bodies = [body(p) for p in incidents]
        print(
            f"{args.jobs} organism incidents · planner {args.planner}, n={args.n}, {args.tool_calls} tool calls ·"
            f" {args.workers} workers · load: {args.requests} requests at concurrency {args.concurrency}"
        )
        proc, url = start_server(root, args)
        try:
            served = asyncio.run(throughput(url, bodies))
            timings = asyncio.run(latency(url, bodies, args.requests, args.concurrency))
        finally:
            stop_server(proc)
        audited = audit(root, incidents, args)

    print("\nlatency under load (ms)        n      p50      p99")
    for kind, values in timings.items():
        ms = [v * 1000 for v in values]
        print(f"  {kind:24} {len(ms):6d} {pct(ms, 0.5):8.1f} {pct(ms, 0.99):8.1f}")
    everything = [v * 1000 for k, vs in timings.items() for v in vs if k.startswith("POST")]
    gets = [v * 1000 for k, vs in timings.items() for v in vs if k.startswith("GET")]
    print(f"  {'POST (all)':24} {len(everything):6d} {pct(everything, 0.5):8.1f} {pct(everything, 0.99):8.1f}")
    print(f"  {'GET (all)':24} {len(gets):6d} {pct(gets, 0.5):8.1f} {pct(gets, 0.99):8.1f}")
    per_hour_service = args.jobs / served * 3600
    per_hour_audit = args.jobs / audited * 3600
    print("\ninvestigations per hour")
    print(f"  forensics serve  {per_hour_service:10.0f}   ({args.jobs} in {served:.1f} s, first POST to last done)")
    print(f"  forensics audit  {per_hour_audit:10.0f}   ({args.jobs} in {audited:.1f} s, command start to exit)")
    print(f"  ratio serve/audit {per_hour_service / per_hour_audit:9.2f}")


if __name__ == "__main__":
    main()
