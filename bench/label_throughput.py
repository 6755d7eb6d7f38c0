"""Teacher-client throughput, rerun cost and kill -9 resume cost against a loopback OpenAI-compatible server.

    python bench/label_throughput.py [--requests 1000] [--concurrency 64] [--latency 0.2] [--kill-requests 6400] [--repeats 5]

The server runs in its own process with a fixed latency L per request. Printed:
- achieved requests/s of the toolkit (`OpenAIGenerator`, cache on) over the bound C/L, and over a bare
  `AsyncOpenAI(max_retries=0)` + `asyncio.Semaphore(C)` loop measured in the same run against the same server;
- the same with two servers (processes) behind one teacher (`teacher.base_url: [A, B]`, C per endpoint): the
  endpoint pool's aggregate requests/s over a bare loop spread round-robin over the same two endpoints (one
  client and one Semaphore(C) each), target >= 0.95x, and the pool's client CPU per request beyond it;
- the toolkit's client CPU time per request beyond the bare loop's (process CPU, both measured alike, paired
  by repeat), and the same with the request cache off, which tells the durable cache's share apart;
- requests sent by an immediate rerun (target 0);
- after `mga label --stage rewrite` is killed (SIGKILL) at about 50% and rerun: requests the server received
  twice. Every answer is committed to the cache before its worker takes the next request, so these are at
  most the C requests in flight at the kill, whatever the run's size: C/N of the run (1% at N = 100 C).
  Some of them the server had already answered, but the answers still sat unread in the socket buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _serve(latency: float, log_path: str, conn) -> None:
    from tests.fake_openai import FakeOpenAI, Reply

    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)

    def digest(body: dict) -> str:
        return hashlib.sha1(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:16]

    def note(kind: str, body: dict) -> None:
        with lock:
            log.write(f"{kind} {digest(body)}\n")

    def respond(body: dict) -> Reply:
        note("R", body)
        return Reply(content="rewritten " + digest(body))

    server = FakeOpenAI(respond, latency=latency, on_answered=lambda body: note("A", body))
    server._httpd.handle_error = lambda *a: None  # a killed client's broken pipes are expected here
    server.start()
    conn.send(server.url)
    threading.Event().wait()


def read_log(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def messages(i: int, tag: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You rewrite."}, {"role": "user", "content": f"{tag} document {i} " * 40}]


def bare_loop(url: str | list[str], n: int, concurrency: int, tag: str = "bare") -> tuple[float, float]:
    """A bare AsyncOpenAI loop; with several URLs, requests go round-robin, one client and Semaphore(C) each."""
    from openai import AsyncOpenAI

    urls = [url] if isinstance(url, str) else url

    async def main() -> None:
        clients = [AsyncOpenAI(api_key="EMPTY", base_url=u, max_retries=0, timeout=60) for u in urls]
        semaphores = [asyncio.Semaphore(concurrency) for _ in urls]

        async def one(i: int) -> None:
            k = i % len(urls)
            async with semaphores[k]:
                r = await clients[k].chat.completions.create(model="m", messages=messages(i, tag), max_tokens=64)
                assert r.choices[0].message.content

        await asyncio.gather(*(one(i) for i in range(n)))
        for client in clients:
            await client.close()

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(main())
    return time.perf_counter() - wall, time.process_time() - cpu


def toolkit_run(url: str | list[str], n: int, concurrency: int, cache_path: Path | None, tag: str = "toolkit") -> tuple[float, float, int]:
    from mga.distill.core.config import GenerationParams, TeacherConfig
    from mga.distill.generate.accounting import Accounting
    from mga.distill.generate.protocol import Request
    from mga.distill.generate.teacher import make_generator

    cfg = TeacherConfig(base_url=url, model="m", concurrency=concurrency, timeout_s=60, api_key_env="MGA_BENCH_NO_KEY")
    accounting = Accounting()
    gen = make_generator(cfg, cache_path=cache_path, accounting=accounting, stage="bench")
    params = GenerationParams(max_tokens=64)
    requests = [Request(str(i), messages(i, tag), params) for i in range(n)]
    wall, cpu = time.perf_counter(), time.process_time()
    ok = sum(r.ok for r in gen.run(requests, description="toolkit"))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert ok == n, f"{n - ok} requests failed"
    return wall, cpu, accounting.stage("bench").requests


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _walls_cpus(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall time and median CPU time of a case's runs, each taken on its own."""
    return _median([wall for wall, _ in runs]), _median([cpu for _, cpu in runs])


def _beyond(runs: list[tuple[float, float]], base: list[tuple[float, float]], n: int) -> str:
    """CPU ms per request of a case beyond the base case, paired by repeat (runs side by side share the host's
    speed, which drifts by tens of percent on a VM): the median difference and the range."""
    diffs = sorted((cpu - base_cpu) / n * 1000 for (_, cpu), (_, base_cpu) in zip(runs, base))
    return f"{_median(diffs):+.2f} ms/request (repeats {diffs[0]:+.2f} to {diffs[-1]:+.2f})"


def kill_and_resume(url: str, n: int, concurrency: int, log_path: Path, work: Path) -> dict[str, float]:
    """`mga label --stage rewrite` over n rewrites: SIGKILL at ~50% answered, rerun, count repeats."""
    pairs = work / "pairs.jsonl"
    with open(pairs, "w") as f:
        for doc in range(n // 5):
            meta = {"docid": f"d{doc}", "chunk_id": 0, "source": "bench", "raw_text": f"Document {doc}. " * 30}
            row = {"meta": meta, "pairs": [{"genre": f"genre {k}", "audience": f"audience {k}"} for k in range(5)],
                   "status": "ok"}
            f.write(json.dumps(row) + "\n")
    out = work / "run" / "rewrites.jsonl"
    cmd = [sys.executable, "-c", "from mga.distill.cli.main import main; main()", "label", "--stage", "rewrite",
           "--input", str(pairs), "--output", str(out), "--base-url", url, "--model", "m",
           "--concurrency", str(concurrency), "--set", "teacher.api_key_env=MGA_BENCH_NO_KEY"]
    start = len(read_log(log_path))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        answered = sum(kind == "A" for kind, _ in read_log(log_path)[start:])
        if answered >= n // 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    first = read_log(log_path)[start:]
    middle = len(read_log(log_path))
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = read_log(log_path)[middle:]
    rows = sum(1 for _ in open(out))
    received = Counter(key for kind, key in first + second if kind == "R")
    answered_first = {key for kind, key in first if kind == "A"}
    asked_again = {key for kind, key in second if kind == "R"}
    return {
        "rows": rows,
        "answered_before_kill": len(answered_first),
        "sent": sum(received.values()),
        "duplicates": sum(c - 1 for c in received.values()),
        "lost_answers": len(answered_first & asked_again),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--kill-requests", type=int, default=6400)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each case; medians are printed")
    args = ap.parse_args()
    n, c, latency = args.requests, args.concurrency, args.latency
    bound = c / latency

    work = Path(tempfile.mkdtemp(prefix="mga-bench-"))
    log_path = work / "server.log"
    log_path.touch()
    servers, urls = [], []
    for name in ("server", "server-b"):
        parent, child = multiprocessing.Pipe()
        log = log_path if name == "server" else work / f"{name}.log"
        servers.append(multiprocessing.get_context("fork").Process(target=_serve, args=(latency, str(log), child), daemon=True))
        servers[-1].start()
        urls.append(parent.recv())
    url = urls[0]
    try:
        bare_loop(url, 64, c)  # warm-up: imports, connection pool
        bare_loop(urls, 64, c, "warm-two")
        runs: dict[str, list[tuple[float, float]]] = {
            "bare": [], "toolkit": [], "no-cache": [], "bare-two": [], "toolkit-two": []}
        for r in range(args.repeats):  # interleaved, medians printed: a shared machine's load drifts
            runs["bare"].append(bare_loop(url, n, c, f"bare-{r}"))
            runs["toolkit"].append(toolkit_run(url, n, c, work / f"cache-{r}.sqlite", f"toolkit-{r}")[:2])
            runs["no-cache"].append(toolkit_run(url, n, c, None, f"no-cache-{r}")[:2])
            runs["bare-two"].append(bare_loop(urls, n, c, f"bare-two-{r}"))
            runs["toolkit-two"].append(toolkit_run(urls, n, c, work / f"cache-two-{r}.sqlite", f"toolkit-two-{r}")[:2])
        (bare_wall, bare_cpu), (tk_wall, tk_cpu), (two_bare_wall, two_bare_cpu), (two_wall, two_cpu) = (
            _walls_cpus(runs[k]) for k in ("bare", "toolkit", "bare-two", "toolkit-two"))
        before = len(read_log(log_path))
        _, _, rerun_sent = toolkit_run(url, n, c, work / "cache-0.sqlite", "toolkit-0")
        rerun_received = sum(kind == "R" for kind, _ in read_log(log_path)[before:])
        kill = kill_and_resume(url, args.kill_requests, c, log_path, work)
    finally:
        for server in servers:
            server.kill()

    bare_rate, tk_rate = n / bare_wall, n / tk_wall
    print(f"loopback server: latency L={latency * 1000:.0f} ms, concurrency C={c}, {n} requests, bound C/L={bound:.0f} req/s; "
          f"medians of {args.repeats} interleaved runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"bare AsyncOpenAI + Semaphore: {bare_rate:7.1f} req/s  ({bare_rate / bound:.2f} of bound), "
          f"client CPU {bare_cpu / n * 1000:.2f} ms/request")
    print(f"toolkit OpenAIGenerator:      {tk_rate:7.1f} req/s  ({tk_rate / bound:.2f} of bound, "
          f"{tk_rate / bare_rate:.2f} of bare), client CPU {tk_cpu / n * 1000:.2f} ms/request")
    print(f"toolkit CPU beyond the bare client: {_beyond(runs['toolkit'], runs['bare'], n)} (target <= 0.3 ms); "
          f"with the request cache off: {_beyond(runs['no-cache'], runs['bare'], n)}, so the rest is the cache, "
          f"which commits every answer with its cost before the worker takes the next request")
    two_bare, two_rate = n / two_bare_wall, n / two_wall
    print(f"two endpoints, C={c} each (bound 2C/L={2 * bound:.0f} req/s), {n} requests:")
    print(f"  bare loop round-robin over both: {two_bare:7.1f} req/s ({two_bare / (2 * bound):.2f} of bound), "
          f"client CPU {two_bare_cpu / n * 1000:.2f} ms/request")
    print(f"  toolkit endpoint pool:           {two_rate:7.1f} req/s ({two_rate / (2 * bound):.2f} of bound, "
          f"{two_rate / two_bare:.2f} of bare; target >= 0.95), client CPU {two_cpu / n * 1000:.2f} ms/request, "
          f"{_beyond(runs['toolkit-two'], runs['bare-two'], n)} beyond the bare loop (target <= 0.3)")
    print(f"immediate rerun: {rerun_received} requests received by the server (client counted {rerun_sent}; target 0)")
    k = kill
    print(
        f"kill -9 at ~50% of {args.kill_requests} rewrites ({k['answered_before_kill']} answered by the server before "
        f"the kill), then rerun: {k['rows']} rows, {k['sent']} requests sent, {k['duplicates']} duplicates "
        f"({k['duplicates'] / args.kill_requests:.2%} of the run, target <= 1%; bound: C={c} in flight); "
        f"{k['lost_answers']} of them had been answered but not yet read by the client"
    )

if __name__ == "__main__":
    main()
