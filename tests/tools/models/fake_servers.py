"""Local fake model APIs: a real HTTP server on 127.0.0.1 (random port, background
thread) that records every request and answers from a script.

The model clients under test talk to these exactly as they would to the real services
(the Anthropic client through the real SDK), so the tests see the actual request JSON,
headers and retry traffic. Nothing listens beyond the loopback interface.

Responses come from a script consumed in order (one entry per request); when the script
runs out, `FakeServer.default` answers. An entry is a `Reply` or a function of the
recorded request returning one (to echo something back, or to vary by request body).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted HTTP answer. `delay` holds the response back (to observe concurrency)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    """A request the server received, with when its handling started and when its answer
    was about to be sent (``time.monotonic()``), so tests can tell sequential from
    concurrent calls: a request sent after another's answer arrived starts after it ended."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    started: float
    ended: float = 0.0


Script = Reply | Callable[[Recorded], Reply]


class FakeServer:
    """A threaded HTTP server answering POSTs from a script. Use `running()`."""

    def __init__(self, default: Script) -> None:
        self.default = default
        self.script: list[Script] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-model-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def then(self, *replies: Script) -> FakeServer:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self.script.extend(replies)
        return self

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def _next(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            entry = self.script.pop(0) if self.script else self.default
        return entry(request) if callable(entry) else entry

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # no Nagle delay between the headers and the body we write
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                recorded = Recorded(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    started=time.monotonic(),
                )
                reply = server._next(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                recorded.ended = time.monotonic()  # before the client can see the answer
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


# ------------------------------------------------------------------ Anthropic shapes
SONNET = "claude-sonnet-4-5-20250929"


def anthropic_message(
    content: list[dict[str, Any]],
    *,
    message_id: str = "msg_01XFDUDYJgAACzvnptvVoYEL",
    stop_reason: str = "end_turn",
    input_tokens: int = 2095,
    output_tokens: int = 503,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    model: str = SONNET,
) -> dict[str, Any]:
    """A Messages API response body as the API writes it."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache_creation_input_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        },
    }


def anthropic_error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None) -> Reply:
    """An error response in the API's shape (``{"type": "error", "error": {...}}``)."""
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return Reply(body=body, status=status, headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy", **(headers or {})})


# --------------------------------------------------------------------- OpenAI shapes
def openai_completion(
    messages: list[dict[str, Any]],
    *,
    completion_id: str = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    model: str = "Qwen/Qwen3-8B",
    prompt_tokens: int = 1187,
    completion_tokens: int = 96,
    cached_tokens: int | None = None,
    finish_reasons: list[str] | None = None,
) -> dict[str, Any]:
    """A chat completion with one choice per message, as vLLM or OpenAI write it."""
    reasons = finish_reasons or [("tool_calls" if m.get("tool_calls") else "stop") for m in messages]
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1764280000,
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", **m}, "logprobs": None, "finish_reason": reasons[i]}
            for i, m in enumerate(messages)
        ],
        "usage": usage,
        "system_fingerprint": "fp_44709d6fcb",
    }


def openai_error(
    status: int, message: str, *, kind: str = "server_error", headers: dict[str, str] | None = None
) -> Reply:
    return Reply(
        body={"error": {"message": message, "type": kind, "param": None, "code": None}},
        status=status,
        headers=headers or {},
    )
