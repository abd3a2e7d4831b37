"""``forensics serve``: the HTTP escalation endpoint a monitoring pipeline calls.

- `create_app(config)` — the FastAPI app (`app.py`): the ``/v1`` API, ``/healthz``,
  ``/metrics`` and the live page.
- `ServiceConfig` / `load_config` — where state lives, tokens and their limits, the
  webhook secret, defaults and maxima (`config.py`).
- `InvestigationService` — submissions, ownership, idempotency and per-token limits over
  the executor's durable queue (`investigations.py`); `intake.py` stages and validates
  request data; `webhooks.py` signs and delivers summaries; `metrics.py`, `limits.py`,
  `uploads.py`, `page.py` as named.
- `serve(config, host, port)` — run it under uvicorn (`server.py`).
"""

from investigator.service.app import create_app
from investigator.service.config import ServiceConfig, TokenPolicy, load_config
from investigator.service.investigations import InvestigationService
from investigator.service.server import serve

__all__ = ["InvestigationService", "ServiceConfig", "TokenPolicy", "create_app", "load_config", "serve"]
