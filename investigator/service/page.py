"""The live page: the list of investigations, polled from the API by a little vanilla
JavaScript (no front-end build). Templates are ``prompts/service/*.html.j2``, rendered
with autoescaping; the page's script and style carry a per-response nonce and the
Content-Security-Policy allows nothing else, so text from an incident can never run."""

from __future__ import annotations

import secrets

import jinja2
from fastapi.responses import HTMLResponse

from investigator.service.config import TokenPolicy

POLL_MS = 1000

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("prompts", "service"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def _page(template: str, status: int = 200, **values: object) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _ENV.get_template(template).render(nonce=nonce, **values)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": _csp(nonce),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def main_page(token: TokenPolicy) -> HTMLResponse:
    """The investigations page for `token`."""
    return _page("index.html.j2", token_name=token.name, poll_ms=POLL_MS)


def login_page(*, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The sign-in form (sets the session cookie the page reads the API with)."""
    return _page("login.html.j2", status=status, error=error)
