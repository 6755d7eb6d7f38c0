"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API, with scripted answers
and scripted faults (status codes with Retry-After, slow answers, hangs, dropped connections, empty content,
finish_reason=length, bad JSON, a wrong key (401), an unknown model (404), a `response_format` it does not
take (400, as OpenAI words it)...). It counts what it received (`received`: every chat call, `model_lists`:
every GET /models). Used by tests and benchmarks; it never contacts anything else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the server answers to one request."""

    content: str | None = "ok"
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering
    hang: bool = False  # never answer (until the server stops)
    logprobs: list[dict[str, Any]] | None = None  # OpenAI `logprobs.content` entries
    error: str = "scripted error"


Responder = Callable[[dict[str, Any]], Reply]


# Scripted teachers and tool models answer with the document itself (plus a line): the corpus quality monitors
# would drop every such rewrite as a copy, a near-duplicate and a low-diversity document. Tests of the
# pipeline's mechanics loosen them with this `filter:` section (tests/test_monitors.py tests the monitors).
ECHO_TOLERANT_FILTER = {"max_copy_rate": 1.0, "min_diversity": 0.0, "near_duplicate_threshold": None}


def echo_last_user(request: dict[str, Any]) -> Reply:
    return Reply(content="echo: " + request["messages"][-1]["content"][:200])


def scripted(default: Responder, script: dict[str, list[Reply]]) -> Responder:
    """A responder that answers requests whose last user message contains a script key with that key's
    replies in turn (one per request: faults first, say), then falls back to `default`."""
    queues = {marker: list(replies) for marker, replies in script.items()}
    lock = threading.Lock()

    def respond(request: dict[str, Any]) -> Reply:
        text = str(request["messages"][-1].get("content", ""))
        with lock:
            for marker, replies in queues.items():
                if marker in text and replies:
                    return replies.pop(0)
        return default(request)

    return respond


class FakeOpenAI:
    """`with FakeOpenAI(responder) as server: client(base_url=server.url)`; `server.requests` logs bodies."""

    def __init__(
        self,
        responder: Responder = echo_last_user,
        latency: float = 0.0,
        api_key: str | None = None,
        on_answered: Callable[[dict[str, Any]], None] | None = None,
        models: list[str] | None = None,
        hang_models: bool = False,
        refuse_formats: tuple[str, ...] = (),
    ):
        self.responder = responder
        self.models = models  # served model names: GET /models lists them, other names get 404; None: any
        self.hang_models = hang_models  # GET /models never answers
        self.refuse_formats = refuse_formats  # response_format types answered with a 400 (e.g. "json_schema")
        self.received = 0  # chat calls received, refused ones included
        self.model_lists = 0
        self.stopping = threading.Event()
        self.latency = latency
        self.api_key = api_key
        self.on_answered = on_answered  # called with the body after a 200 answer was written in full
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - /v1/models
                with server.lock:
                    server.model_lists += 1
                if server.hang_models:
                    server.stopping.wait()
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                    return
                data = [{"id": name, "object": "model"} for name in server.models or []]
                self._send(200, {"object": "list", "data": data})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.received += 1
                if server.models is not None and body.get("model") not in server.models:
                    self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                               "type": "invalid_request_error", "code": "model_not_found"}})
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                    return
                with server.lock:
                    server.requests.append(body)
                kind = (body.get("response_format") or {}).get("type")
                if kind in server.refuse_formats:
                    self._send(400, {"error": {"message": f"Invalid parameter: 'response_format' of type '{kind}' is "
                                                          "not supported with this model.", "type": "invalid_request_error",
                                               "param": "response_format", "code": None}})
                    return
                reply = server.responder(body)
                if reply.hang:
                    server.stopping.wait()
                    return
                time.sleep(server.latency + reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error, "type": "server_error"}}, reply.headers)
                    return
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                completion_tokens = len((reply.content or "").split())
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                }
                if reply.logprobs is not None:
                    choice["logprobs"] = {"content": reply.logprobs}
                self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake-model"),
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                    reply.headers,
                )
                if server.on_answered is not None:
                    server.on_answered(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # the default backlog of 5 refuses connections at high concurrency

            def handle_error(self, request: Any, client_address: Any) -> None:
                """Clients that time out or drop the connection are part of the fault script: stay quiet."""

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # a standalone server for manual runs and benchmarks: python -m tests.fake_openai
    import sys

    srv = FakeOpenAI(latency=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0).start()
    print(srv.url, flush=True)
    threading.Event().wait()
