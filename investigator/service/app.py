"""The HTTP application: FastAPI routes over the investigation service.

``create_app(config)`` builds the app; its lifespan starts the executor on the
service directory (recovering the queue a previous server left: queued jobs start,
running ones resume from their checkpoints), resumes undelivered webhooks, and stops
the executor at shutdown (running jobs stay `running`, to be resumed by the next start).

Routes (the OpenAPI schema is at ``/openapi.json``, the docs at ``/docs``):

- ``POST /v1/incidents`` — JSON (`InvestigationRequest`) or multipart (incident file,
  transcript, environment archive, options as fields); ``Idempotency-Key`` optional.
- ``GET /v1/incidents`` (filters), ``GET|DELETE /v1/incidents/{id}``,
  ``GET /v1/incidents/{id}/report`` (JSON, Markdown or HTML by ``Accept`` or ``?format=``).
- ``GET /healthz`` (no token), ``GET /metrics`` (Prometheus text).
- ``GET /`` — the live page; ``/login`` sets the session cookie the page reads with.

Every route but ``/healthz`` and the login form needs a token: ``Authorization:
Bearer <token>``, or, for reading (GET), the page's session cookie.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from investigator.executor import BatchDB, Executor, JobState
from investigator.service.config import ServiceConfig, TokenPolicy
from investigator.service.errors import RequestRejected
from investigator.service.intake import INCOMING_DIR, new_staging, stage_json, stage_multipart
from investigator.service.investigations import STATES_BY_NAME, InvestigationService
from investigator.service.limits import BodyLimit
from investigator.service.metrics import Metrics, MetricsMiddleware
from investigator.service.page import login_page, main_page
from investigator.service.schemas import (
    ID_PATTERN,
    Health,
    Investigation,
    InvestigationList,
    InvestigationRequest,
    Problem,
    StateName,
    VerdictName,
)
from investigator.service.webhooks import Webhooks

SESSION_COOKIE = "forensics_session"
log = structlog.get_logger("forensics.service")

bearer = HTTPBearer(
    auto_error=False,
    description="A token from FORENSICS_API_TOKENS or the service's config file.",
)


def _version() -> str:
    try:
        return version("model-forensics")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0"


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


COMMON: dict[int | str, dict[str, Any]] = {
    401: _problem("No token, or an unknown one."),
    413: _problem("The request body is over the size limit."),
    422: _problem("A parameter or the body is not valid; the detail says which and why."),
}
BY_ID: dict[int | str, dict[str, Any]] = {**COMMON, 404: _problem("No such investigation (for this token).")}
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="The investigation's id.")]


# ----------------------------------------------------------------------------- auth


def _service(request: Request) -> InvestigationService:
    service: InvestigationService = request.app.state.service
    return service


def presented_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    if request.method in {"GET", "HEAD"}:  # the page's cookie reads; it never writes (no CSRF)
        return request.cookies.get(SESSION_COOKIE) or None
    return None


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> TokenPolicy:
    """The caller's token policy, or 401."""
    config: ServiceConfig = request.app.state.config
    presented = presented_token(request, credentials)
    challenge = {"WWW-Authenticate": 'Bearer realm="model-forensics"'}
    if presented is None:
        raise RequestRejected(
            401,
            "this route needs a token: send `Authorization: Bearer <token>` (tokens come from FORENSICS_API_TOKENS "
            "or the service's config file)",
            headers=challenge,
        )
    policy = config.find_token(presented)
    if policy is None:
        raise RequestRejected(
            401, "unknown token", headers={**challenge, "WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    return policy


Caller = Annotated[TokenPolicy, Depends(authenticate)]


# ----------------------------------------------------------------------------- negotiation

REPORT_TYPES = {"json": "application/json", "md": "text/markdown", "html": "text/html"}
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def negotiate(accept: str | None) -> str | None:
    """The report format the ``Accept`` header prefers (json when it allows anything;
    None when it allows none of ours)."""
    if not accept or not accept.strip():
        return "json"
    candidates = {
        "application/json": "json",
        "text/markdown": "md",
        "text/x-markdown": "md",
        "text/html": "html",
        "application/xhtml+xml": "html",
        "*/*": "json",
        "application/*": "json",
        "text/*": "md",
    }
    best: tuple[tuple[float, int, int], str] | None = None
    for order, item in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        fmt = candidates.get(media.lower())
        if fmt is None or q <= 0:
            continue
        key = (q, 0 if "*" in media else 1, -order)  # quality, then the more specific, then the first
        if best is None or key > best[0]:
            best = (key, fmt)
    return best[1] if best else None


# ----------------------------------------------------------------------------- the app


def create_app(config: ServiceConfig) -> FastAPI:
    """The service's ASGI app for `config` (see module doc)."""
    config.dir.mkdir(parents=True, exist_ok=True)
    db = BatchDB(config.dir)
    metrics = Metrics(db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = Executor(
            db,
            backend=config.executor,
            address=config.address,
            workers=config.workers,
            max_attempts=config.max_attempts,
            poll_interval=config.poll_interval_s,
        )
        webhooks = Webhooks(
            db,
            secret=config.webhook_secret.get_secret_value() if config.webhook_secret else None,
            summary=lambda record: service.view(record).model_dump(mode="json"),
            attempts=config.webhook_attempts,
            timeout_s=config.webhook_timeout_s,
            backoff_s=config.webhook_backoff_s,
        )
        service = InvestigationService(config, executor, webhooks)
        executor.on_finish = webhooks.schedule
        await executor.start()  # takes the database's lock: one server per directory
        shutil.rmtree(config.dir / INCOMING_DIR, ignore_errors=True)  # half-received uploads of a dead server
        resent = webhooks.resume()
        app.state.service = service
        log.info(
            "serving",
            dir=str(config.dir),
            executor=config.executor,
            workers=executor.workers,
            recovered=len(executor.in_flight()),
            webhooks_resent=resent,
        )
        try:
            yield
        finally:
            await webhooks.close()
            await executor.stop()

    app = FastAPI(
        title="model-forensics",
        version=_version(),
        summary="Escalate a flagged agent incident; get back an evidence-cited forensics report.",
        description="See docs/service.md. Every route but /healthz needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        responses={},
    )
    app.state.config = config
    app.state.db = db
    app.add_middleware(BodyLimit, limit=int(config.max_request_bytes))
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestRejected)
    async def rejected(_request: Request, exc: RequestRejected) -> JSONResponse:
        detail = getattr(exc, "detail", None) or exc.message
        return JSONResponse({"detail": detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        reference = secrets.token_hex(6)
        log.exception("unhandled", path=request.url.path, reference=reference)
        return JSONResponse(
            {"detail": f"internal error (reference {reference}); the server's log has the traceback"}, status_code=500
        )

    # ------------------------------------------------------------------ health and metrics
    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness and queue size (no token).")
    def healthz(request: Request) -> Health:
        counts = db.counts()
        return Health(
            status="ok",
            version=_version(),
            executor=config.executor,
            queued=counts[JobState.pending],
            running=counts[JobState.running],
        )

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics: queue depth, running, done, failed, spend, HTTP.",
        response_class=Response,
        responses={**COMMON, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics_route(_caller: Caller) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ incidents
    @app.post(
        "/v1/incidents",
        status_code=202,
        response_model=Investigation,
        tags=["incidents"],
        summary="Escalate an incident: queue its investigation.",
        responses={
            **COMMON,
            200: {"model": Investigation, "description": "An idempotent retry: the investigation already queued."},
            402: _problem("The token's dollar budget is spent."),
            409: _problem("The Idempotency-Key was used with a different request."),
            415: _problem("The body is neither JSON nor multipart/form-data."),
            429: _problem("The token has as many investigations queued or running as it may."),
            503: _problem("No sandbox can run this incident now (the Docker engine is not reachable)."),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InvestigationRequest"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/InvestigationUpload"}},
                },
            }
        },
    )
    async def submit(
        request: Request,
        caller: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                max_length=255,
                pattern=r"^[\x21-\x7e]+$",
                description="Retrying with the same key returns the same investigation.",
            ),
        ] = None,
    ) -> Response:
        service = _service(request)
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "multipart/form-data" and not (media == "application/json" or media.endswith("+json")):
            raise RequestRejected(
                415, "send the incident as application/json (see InvestigationRequest) or multipart/form-data"
            )
        staging = new_staging(config.dir)
        try:
            if media == "multipart/form-data":
                intake = await stage_multipart(content_type, request.stream(), staging, config)
            else:
                intake = await stage_json(await request.body(), staging, config)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        record, created = await service.submit(caller, intake, idempotency_key=idempotency_key)
        view = service.view(record)
        return JSONResponse(
            view.model_dump(mode="json"),
            status_code=202 if created else 200,
            headers={"Location": view.links.self, **({} if created else {"Idempotent-Replayed": "true"})},
        )

    @app.get(
        "/v1/incidents",
        response_model=InvestigationList,
        tags=["incidents"],
        summary="List investigations, newest first.",
        responses=COMMON,
    )
    def list_incidents(
        request: Request,
        caller: Caller,
        state: Annotated[StateName | None, Query(description="Only investigations in this state.")] = None,
        verdict: Annotated[VerdictName | None, Query(description="Only those with this verdict.")] = None,
        since: Annotated[datetime | None, Query(description="Only those submitted at or after this time.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> InvestigationList:
        service = _service(request)
        records = service.records(
            caller,
            states=[STATES_BY_NAME[state]] if state else None,
            verdict=verdict,
            since=since.timestamp() if since else None,
        )
        records = sorted(records, key=lambda r: r.submitted, reverse=True)[:limit]
        events = service.webhook_events({r.id for r in records})
        items = [service.view(r, events.get(r.id, [])) for r in records]
        return InvestigationList(items=items, count=len(items))

    @app.get(
        "/v1/incidents/{job_id}",
        response_model=Investigation,
        tags=["incidents"],
        summary="An investigation: state, progress, verdict.",
        responses=BY_ID,
    )
    def get_incident(request: Request, caller: Caller, job_id: JobId) -> Investigation:
        service = _service(request)
        return service.view(service.get(job_id, caller))

    @app.delete(
        "/v1/incidents/{job_id}",
        response_model=Investigation,
        tags=["incidents"],
        summary="Cancel an investigation (a queued one at once, a running one as soon as its worker stops).",
        responses={**BY_ID, 409: _problem("It has already ended.")},
    )
    async def cancel_incident(request: Request, caller: Caller, job_id: JobId) -> Investigation:
        service = _service(request)
        record = await service.cancel(service.get(job_id, caller))
        return service.view(record)

    @app.get(
        "/v1/incidents/{job_id}/report",
        tags=["incidents"],
        summary="The report: JSON, Markdown or HTML, by Accept (or ?format=).",
        response_class=Response,
        responses={
            **BY_ID,
            200: {
                "description": "The report (JSON: a ForensicsReport).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ForensicsReport"}},
                    "text/markdown": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            406: _problem("The Accept header allows none of JSON, Markdown or HTML."),
            409: _problem("The investigation has not finished."),
        },
    )
    def report(
        request: Request,
        caller: Caller,
        job_id: JobId,
        format: Annotated[Literal["json", "md", "html"] | None, Query(description="Overrides Accept.")] = None,
    ) -> Response:
        service = _service(request)
        record = service.get(job_id, caller)
        chosen = format or negotiate(request.headers.get("accept"))
        if chosen is None:
            raise RequestRejected(406, "the report is available as application/json, text/markdown or text/html")
        path = service.report_file(record, chosen)
        headers = {"Vary": "Accept"}
        if chosen == "html":
            headers["Content-Security-Policy"] = REPORT_CSP
        media = REPORT_TYPES[chosen] + ("; charset=utf-8" if chosen != "json" else "")
        return FileResponse(path, media_type=media, headers=headers)

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    def page(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Response:
        presented = presented_token(request, credentials)
        policy = config.find_token(presented) if presented else None
        if policy is None:
            return RedirectResponse("/login", status_code=303)
        return main_page(policy)

    @app.get("/login", include_in_schema=False)
    def login_form() -> HTMLResponse:
        return login_page()

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        token = form.get("token")
        policy = config.find_token(token) if isinstance(token, str) and token else None
        if policy is None:
            return login_page(error="unknown token", status=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,  # type: ignore[arg-type]
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=12 * 3600,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ------------------------------------------------------------------ schema
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        body = InvestigationRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["InvestigationRequest"] = body
        from investigator.report import ForensicsReport  # heavy (statistics): imported when the schema is asked for

        report = ForensicsReport.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in report.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["ForensicsReport"] = report
        components["InvestigationUpload"] = upload_schema()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def upload_schema() -> dict[str, Any]:
    """The multipart form of ``POST /v1/incidents``."""
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["incident"],
        "properties": {
            "incident": {"type": "string", "format": "binary", "description": "The incident file (YAML or JSON)."},
            "transcript": {
                "type": "string",
                "format": "binary",
                "description": "The transcript, any supported format; its file name's suffix helps detection.",
            },
            "environment": {
                "type": "string",
                "format": "binary",
                "description": "The workspace as an archive (.tar, .tar.gz, .zip...), becoming environment.archive.",
            },
            "planner": {"type": "string", "enum": ["protocol", "llm", "cot-only"]},
            "model": text,
            "n": {"type": "integer", "minimum": 1},
            "blind": {"type": "boolean"},
            "callback_url": {"type": "string", "format": "uri"},
            "budget_samples": {"type": "integer", "minimum": 0},
            "budget_tool_calls": {"type": "integer", "minimum": 0},
            "budget_tokens": {"type": "integer", "minimum": 0},
            "budget_dollars": {"type": "number", "minimum": 0},
            "labels": {"type": "string", "description": "A JSON object of strings, echoed back."},
        },
    }
