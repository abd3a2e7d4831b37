"""The request size limit, enforced on the bytes actually received.

A request whose ``Content-Length`` is over the limit is answered 413 before its body is
read; a body that grows past the limit while streaming (chunked, or a lying
``Content-Length``) stops the handler with the same 413 at the first chunk over.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.formats.base import human_bytes


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than this service accepts ({human_bytes(limit)}); the operator sets "
        "FORENSICS_SERVE_MAX_REQUEST_BYTES (or max_request_bytes in the config file)"
    )


class BodyLimit:
    """ASGI middleware refusing request bodies over `limit` bytes (see module doc)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await self._answer(send, 400, "the Content-Length header is not a number of bytes")
                return
            if size > self.limit:
                await self._answer(send, 413, too_large_message(self.limit))
                return
        received = 0

        async def receiving() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, too_large_message(self.limit))
            return message

        await self.app(scope, receiving, send)

    @staticmethod
    async def _answer(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
