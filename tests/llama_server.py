"""llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`, from `llama-cpp-python[server]`) on
127.0.0.1, for tests and the recording script: started on a free port, ready once GET /v1/models answers,
killed (SIGKILL, as a crash) or stopped, and restarted on the same port. It never listens beyond loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ALIAS = "smollm2"  # the served model name (`--model_alias`); without it the id would be the file's path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`with LlamaServer(gguf) as server: TeacherConfig(base_url=server.url, model=server.alias)`."""

    def __init__(self, model: str | Path, *, alias: str = ALIAS, n_ctx: int = 2048, threads: int = 1,
                 port: int | None = None, log: Path | None = None, ready_timeout_s: float = 120.0):
        self.model, self.alias, self.n_ctx, self.threads = Path(model), alias, n_ctx, threads
        self.port = port or free_port()
        self.log = log
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias,
                   "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                   "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads), "--verbose", "False"]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, "OMP_NUM_THREADS": str(self.threads)})
        if self.log:
            out.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode} (log: {self.log})")
            try:
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server not ready within {self.ready_timeout_s:.0f} s (log: {self.log})")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as a crashed or preempted one does."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> LlamaServer:
        """The same model on the same port (what a supervisor restarting a crashed server does)."""
        self.stop()
        return self.start()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # python -m tests.llama_server MODEL.gguf: serve until Ctrl-C
    server = LlamaServer(sys.argv[1]).start()
    print(server.url, server.alias, flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
