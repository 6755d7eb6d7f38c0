"""A loopback fake of the OpenAI files and batches APIs (`/v1/files`, `/v1/batches`) for the batch-mode tests.

Each created batch follows a script, by creation order: `complete` (every line answered), `partial` (every
third line fails with a 500 in the error file), `expire` (status `expired`, only the first half answered),
`fail` (status `failed`, nothing answered) or `hold` (stays `in_progress` until `release()`). Answers are
"answer: <last user message>", also online at `/v1/chat/completions`. It never contacts anything else.
"""

from __future__ import annotations

import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeBatchAPI:
    def __init__(self, script: list[str] | None = None, polls_to_finish: int = 2):
        self.script = list(script or [])
        self.polls_to_finish = polls_to_finish
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.uploads = 0
        self.online: list[dict[str, Any]] = []  # chat requests sent online (batch_fallback: online)
        self.lock = threading.Lock()
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/files"):
                    self._send(200, fake._upload(self.headers.get("Content-Type", ""), body))
                elif self.path.endswith("/batches"):
                    self._send(200, fake._create(json.loads(body)))
                elif self.path.endswith("/chat/completions"):  # the online fallback
                    with fake.lock:
                        fake.online.append(json.loads(body))
                    self._send(200, _answer(json.loads(body)))
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.split("?")[0].rstrip("/").split("/")
                if parts[-2] == "batches":
                    self._send(200, fake._retrieve(parts[-1]))
                elif parts[-1] == "content" and parts[-3] == "files":
                    self._send(200, None, raw=fake.files[parts[-2]])
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ---- the API -----------------------------------------------------------------------------------------

    def _new_file(self, data: bytes, purpose: str, name: str) -> dict[str, Any]:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    def _upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        with self.lock:
            self.uploads += 1
        data = fields["file"].get_payload(decode=True)
        return self._new_file(data, fields["purpose"].get_content().strip(), fields["file"].get_filename() or "input")

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            batch_id = f"batch-{len(self.batches) + 1}"
            behaviour = self.script[len(self.batches)] if len(self.batches) < len(self.script) else "complete"
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
                "metadata": body.get("metadata"), "behaviour": behaviour,
            }
            self.polls[batch_id] = 0
            return self._public(batch_id)

    def _public(self, batch_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[batch_id].items() if k != "behaviour"}

    def _retrieve(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self.batches[batch_id]
            self.polls[batch_id] += 1
            if batch["status"] in ("validating", "in_progress"):
                if batch["behaviour"] == "hold" and not self.released.is_set():
                    batch["status"] = "in_progress"
                elif self.polls[batch_id] >= self.polls_to_finish:
                    self._finish(batch)
                else:
                    batch["status"] = "in_progress"
            return self._public(batch_id)

    def _finish(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines() if line.strip()]
        behaviour = batch["behaviour"]
        if behaviour == "fail":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid", "message": "scripted failure"}]}
            return
        answered = lines[: len(lines) // 2] if behaviour == "expire" else lines
        out, err = [], []
        for i, line in enumerate(answered):
            if behaviour == "partial" and i % 3 == 0:
                err.append({"id": f"req-{i}", "custom_id": line["custom_id"],
                            "response": {"status_code": 500, "body": {"error": {"message": "scripted 500"}}}, "error": None})
                continue
            out.append({"id": f"req-{i}", "custom_id": line["custom_id"], "response": {"status_code": 200, "body": _answer(line["body"])},
                        "error": None})
        batch["status"] = "expired" if behaviour == "expire" else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        if out:
            batch["output_file_id"] = self._new_file_locked(out)
        if err:
            batch["error_file_id"] = self._new_file_locked(err)

    def _new_file_locked(self, rows: list[dict[str, Any]]) -> str:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return file_id

    # ---- test helpers ------------------------------------------------------------------------------------

    def submitted_ids(self) -> list[str]:
        """custom_ids of every line of every created batch, duplicates kept."""
        ids = []
        for batch in self.batches.values():
            ids += [json.loads(line)["custom_id"] for line in self.files[batch["input_file_id"]].splitlines() if line.strip()]
        return ids

    def release(self) -> None:
        self.released.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeBatchAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    content = "answer: " + str(body["messages"][-1]["content"])
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion_tokens = len(content.split())
    return {
        "id": "chatcmpl-batch", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
