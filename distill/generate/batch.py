"""`teacher.mode: batch`: answers through the OpenAI Batch API (`/v1/files` + `/v1/batches`) at its discount.

The requests not yet in the request cache are written as batch JSONL (`custom_id` = the cache key), split at
the API's limits (`batch_max_requests` lines, `batch_max_bytes` bytes), uploaded, and submitted; the batches
are polled with a growing interval and their output is downloaded into the request cache, so everything
downstream (validation, rows, resume) is the online path's. Tokens are billed at `batch_price_factor` of the
online prices. Every uploaded file and created batch is recorded at once in `<run dir>/batches.json`: a
killed run polls its batches again instead of submitting them twice. Requests a batch did not answer
(expired, failed, an error line) are resubmitted up to `batch_max_resubmits` times, or sent online with
`batch_fallback: online`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.generate.cache import request_key
from mga.distill.generate.pool import pool_for
from mga.distill.generate.protocol import Completion, Request, Result, Validator
from mga.distill.generate.reask import Asking

ENDPOINT = "/v1/chat/completions"
FINISHED = {"completed", "failed", "expired", "cancelled"}
_STATE_LOCK = threading.Lock()


class BatchGenerator:
    """A `Generator` over the Batch API that shares cache, accounting and budget with `online`."""

    def __init__(self, online: Any, *, state_dir: str | Path, sleep: Any = time.sleep):
        cfg = online.cfg
        if len(online.base_urls) > 1:
            raise MgaError("teacher.mode batch takes one endpoint: give teacher.base_url a single URL")
        if online.cache is None:
            raise MgaError("teacher.mode batch needs the request cache (the answers land there)")
        self.online, self.cfg, self.cache = online, cfg, online.cache
        self.model_name, self.model_id = online.model_name, online.model_id
        self.account = online.account
        self.state_path = Path(state_dir) / "batches.json"
        self._sleep = sleep
        self._client: Any = None

    # ---- state in the run directory ------------------------------------------------------------------------

    def _state(self) -> list[dict[str, Any]]:
        if not self.state_path.exists():
            return []
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))["batches"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise MgaError(f"{self.state_path}: unreadable batch record; it lists batches already paid for, "
                           "fix it rather than delete it") from None

    def _record(self, entry: dict[str, Any]) -> None:
        with _STATE_LOCK:
            batches = [b for b in self._state() if b["input_file_id"] != entry["input_file_id"]] + [entry]
            write_json(self.state_path, {"batches": batches})

    # ---- the API -------------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(api_key=self.online._api_key, base_url=self.online.base_url, max_retries=5,
                                  timeout=self.cfg.timeout_s)
        return self._client

    def _parts(self, todo: dict[str, Request]) -> list[list[tuple[str, bytes]]]:
        """Batch input lines, split at the per-batch request and byte limits."""
        parts: list[list[tuple[str, bytes]]] = [[]]
        size = 0
        for key, request in todo.items():
            body = self.online._kwargs(request)
            body.update(body.pop("extra_body", {}))  # a client argument online; the body's own fields here
            line = (json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body},
                               ensure_ascii=False) + "\n").encode()
            if parts[-1] and (len(parts[-1]) >= self.cfg.batch_max_requests or size + len(line) > self.cfg.batch_max_bytes):
                parts.append([])
                size = 0
            parts[-1].append((key, line))
            size += len(line)
        return [p for p in parts if p]

    def _submit(self, todo: dict[str, Request], stage: str) -> None:
        budget = self.online.budget
        for number, part in enumerate(self._parts(todo)):
            if budget is not None:  # a batch is paid whole: reserve its worst case before it is uploaded
                budget.reserve(sum(budget.bound(todo[k].messages, todo[k].params.max_tokens)
                                   for k, _ in part))
            data = b"".join(line for _, line in part)
            uploaded = self.client.files.create(file=(f"mga-{stage}-{number}.jsonl", data), purpose="batch")
            entry = {"id": None, "input_file_id": uploaded.id, "stage": stage, "keys": [k for k, _ in part],
                     "status": "uploaded", "done": False}
            self._record(entry)  # before creating the batch: a kill here re-uses the file
            self._create(entry)

    def _create(self, entry: dict[str, Any]) -> None:
        batch = self.client.batches.create(input_file_id=entry["input_file_id"], endpoint=ENDPOINT,
                                           completion_window=self.cfg.batch_completion_window,
                                           metadata={"mga_stage": entry["stage"]})
        entry.update(id=batch.id, status=batch.status)
        self._record(entry)
        console.print(f"batch {batch.id}: {len(entry['keys'])} requests submitted", markup=False)

    def _poll(self, entries: list[dict[str, Any]]) -> None:
        """Wait for every batch in `entries` to finish, then download its answers into the cache."""
        delay = self.cfg.batch_poll_s
        waiting = list(entries)
        while waiting:
            still = []
            for entry in waiting:
                batch = self.client.batches.retrieve(entry["id"])
                if batch.status in FINISHED:
                    self._download(entry, batch)
                else:
                    still.append(entry)
            waiting = still
            if waiting:
                counts = ", ".join(f"{e['id']} {len(e['keys'])} requests" for e in waiting)
                console.print(f"batch: waiting {delay:.0f}s for {counts}", markup=False, soft_wrap=True)
                self._sleep(delay)
                delay = min(self.cfg.batch_poll_max_s, delay * 2)

    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self.client.files.content(file_id).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _download(self, entry: dict[str, Any], batch: Any) -> None:
        errors: dict[str, str] = {}
        for line in self._lines(getattr(batch, "output_file_id", None)) + self._lines(getattr(batch, "error_file_id", None)):
            key, response = line.get("custom_id"), line.get("response") or {}
            if key not in entry["keys"]:
                continue
            if response.get("status_code") == 200 and isinstance(response.get("body"), dict):
                self._store(key, response["body"])
            else:
                error = line.get("error") or (response.get("body") or {}).get("error") or {}
                errors[key] = f"HTTP {response.get('status_code')}: {error.get('message', error)}"[:300]
        entry.update(status=batch.status, done=True, errors=errors)
        self._record(entry)
        console.print(f"batch {entry['id']}: {batch.status}, {len(entry['keys']) - len(errors)} answers", markup=False)

    def _store(self, key: str, body: dict[str, Any]) -> None:
        if self.cache.get(key) is not None:  # downloaded before a kill: not paid twice in the accounting
            return
        choices = body.get("choices") or [{}]
        usage = body.get("usage") or {}
        completion = Completion(
            text=((choices[0].get("message") or {}).get("content")) or "",
            finish_reason=choices[0].get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0) or 0,
            completion_tokens=usage.get("completion_tokens", 0) or 0,
        )
        self.account.answered(key, completion, self.model_name, requests=1, **completion.tokens,
                              **{f"batch_{k}": v for k, v in completion.tokens.items()})

    # ---- answering -----------------------------------------------------------------------------------------

    def answers(self, keyed: dict[str, Request]) -> dict[str, Completion | str]:
        """A completion (from the cache or a batch) or the reason there is none, for each cache key."""
        out: dict[str, Completion | str] = {}
        missing = {}
        for key, request in keyed.items():
            if (completion := self.cache.get(key)) is not None:
                self.account.count(cache_hits=1)
                out[key] = completion
            else:
                missing[key] = request
        stage, reasons = self.online.stage, {}
        for _ in range(self.cfg.batch_max_resubmits + 1):
            if not missing:
                break
            ours = [b for b in self._state() if not b["done"] and set(b["keys"]) & missing.keys()]
            for entry in ours:
                if entry["id"] is None:
                    self._create(entry)  # uploaded, then killed before the batch was created
            covered = {k for b in ours for k in b["keys"]}
            if uncovered := {k: r for k, r in missing.items() if k not in covered}:
                self._submit(uncovered, stage)
            self._poll([b for b in self._state() if not b["done"] and set(b["keys"]) & missing.keys()])
            for entry in self._state():
                reasons.update({k: v for k, v in entry.get("errors", {}).items() if k in missing})
                for key in entry["keys"]:
                    if key in missing and key not in entry.get("errors", {}):
                        reasons.setdefault(key, f"batch {entry['id']} {entry['status']} without answering it")
            for key in list(missing):
                if (completion := self.cache.get(key)) is not None:
                    out[key] = completion
                    del missing[key]
            if missing and self.cfg.batch_fallback == "online":
                out.update(self._online(missing))
                missing = {}
        for key in missing:
            out[key] = f"the Batch API did not answer: {reasons.get(key, 'no answer')}"
        if self.online.budget is not None:
            self.online.budget.held = 0.0  # batches are settled: the accounting now holds what they cost
        return out

    def _online(self, todo: dict[str, Request]) -> dict[str, Completion | str]:
        """Send `todo` online (batch_fallback: online), caching each answer under its batch key."""
        console.print(f"batch: {len(todo)} requests unanswered by the Batch API, sent online", markup=False)

        async def main() -> dict[str, Completion | str]:
            async with pool_for(self.online) as pool:
                async def one(key: str, request: Request) -> tuple[str, Completion | str]:
                    completion, error = await self.online._call(pool, request, key, (None, None))  # caches it
                    return key, completion if completion is not None else error or "failed"

                return dict(await asyncio.gather(*(one(k, r) for k, r in todo.items())))

        return asyncio.run(main())

    def run(
        self,
        requests: Iterable[Request],
        *,
        validate: Validator | None = None,
        max_attempts: int = 1,
        description: str = "generate",
    ) -> Iterator[Result]:
        """Answer every request; each validation round is one set of batches (a rejected answer is asked
        again with the next attempt's cache key, as online)."""
        started = time.perf_counter()
        pending = [Asking(r, validate, max_attempts) for r in requests]
        try:
            while pending:
                keyed = {request_key(self.model_name, a.request, a.attempt, self.online.endpoint_id): a
                         for a in pending}
                console.print(f"{description}: {len(keyed)} requests (batch mode, attempt {pending[0].attempt + 1})",
                              markup=False)
                answers = self.answers({key: a.request for key, a in keyed.items()})
                pending = []
                for key, asking in keyed.items():
                    answer = answers[key]
                    result = asking.failed(answer) if isinstance(answer, str) else asking.take(answer)
                    if asking.last_rejected:
                        self.account.count(invalid=1)
                    if result is None:
                        pending.append(asking)
                    else:
                        self.account.count(results=1, failures=int(result.error is not None))
                        yield result
        finally:
            self.account.count(wall_s=time.perf_counter() - started)


def batch_mode(online: Any, cache_path: Path | None) -> BatchGenerator:
    """`online` answering through the Batch API: answers into its cache, batch ids beside the cache."""
    return BatchGenerator(online, state_dir=cache_path.parent if cache_path is not None else Path("."))
