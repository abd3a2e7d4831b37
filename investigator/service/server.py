"""Running the service under uvicorn (what ``forensics serve`` calls)."""

from __future__ import annotations

import fcntl

import uvicorn

from investigator.executor import BATCH_FILE
from investigator.service.config import ServiceConfig
from investigator.service.errors import ServiceError


def preflight(config: ServiceConfig) -> None:
    """Refuse to start, with a clear reason, what would otherwise fail in the middle of
    uvicorn's start-up: no tokens (the service never runs open), or a service directory
    another server already owns."""
    if not config.tokens:
        raise ServiceError(
            "no API tokens are configured, and the service never runs without them: set FORENSICS_API_TOKENS "
            "(comma-separated) or list `tokens:` in the config file (--config)"
        )
    config.dir.mkdir(parents=True, exist_ok=True)
    lock = config.dir / f"{BATCH_FILE}.lock"
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ServiceError(
                f"{config.dir} is already served ({holder}); stop that server, or give this one another "
                "--dir / FORENSICS_SERVE_DIR"
            ) from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def serve(config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop it gracefully; running
    investigations are stopped and resume when the service starts again)."""
    from investigator.service.app import create_app

    preflight(config)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=15,
        )
    )
    server.run()
    if not server.started:
        raise ServiceError(f"the service did not start on {host}:{port}; the log above says why")
