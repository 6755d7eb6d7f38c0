"""Validate and re-ask: the one rule every generator (teacher online, Batch API, local checkpoint) follows.

A request with a check (its own `Request.check`, else the run's `validate`) is answered up to `max_attempts`
times (`label.max_validation_attempts` for the labeling stages and expansion); one without a check once.
Each answer goes to the check; a rejected answer is recorded (its reason in `Result.history`, the answer in
`Result.rejected`, which the stages write to `*.rejected.jsonl`) and asked again while attempts remain. A
check that raises is a rejection whose reason names the error: a validator bug must not end the run.
Generators differ only in how they get the answer of attempt n (a new cache key online and in batches,
sampling locally), so that is all they do; the counting and the decisions are here.
"""

from __future__ import annotations

from typing import Any

from mga.distill.generate.protocol import Completion, Request, Result, Validator


class Asking:
    """One request's attempts: `attempt` answers taken so far, which is also the index of the next one."""

    def __init__(self, request: Request, validate: Validator | None, max_attempts: int):
        self.request = request
        self.check = request.check or validate
        self.max_attempts = max(1, max_attempts) if self.check is not None else 1
        self.attempt = 0
        self.history: list[str] = []
        self.rejected: list[dict[str, Any]] = []
        self.last_rejected = False  # the answer just taken was rejected (for the generators' `invalid` count)

    def failed(self, error: str) -> Result:
        """The result when the next attempt got no answer at all (a transport or generation error)."""
        self.last_rejected = False
        return Result(self.request, None, error=error, attempts=self.attempt + 1, history=self.history,
                      rejected=self.rejected)

    def take(self, completion: Completion) -> Result | None:
        """The final result once `completion` is checked, or None: ask again."""
        self.attempt += 1
        self.last_rejected = False
        if self.check is None:
            return Result(self.request, completion, attempts=self.attempt)
        try:
            parsed, reason = self.check(completion)
        except Exception as e:  # noqa: BLE001 - a validator bug must not kill the run
            parsed, reason = None, f"validator error: {e.__class__.__name__}: {e}"
        if reason is None:
            return Result(self.request, completion, attempts=self.attempt, parsed=parsed, history=self.history,
                          rejected=self.rejected)
        self.last_rejected = True
        self.history.append(reason)
        self.rejected.append({"attempt": self.attempt, "reason": reason, "text": completion.text,
                              "finish_reason": completion.finish_reason})
        if self.attempt < self.max_attempts:
            return None
        return Result(self.request, completion, error=reason, attempts=self.attempt, history=self.history,
                      rejected=self.rejected)
