"""The retry policy of teacher calls: which failures are worth another try, and how long to wait.

Rate limits (429), timeouts, conflicts and server errors (5xx) are retried with exponential backoff and
jitter, or after the delay a `Retry-After` / `retry-after-ms` header asks for; other 4xx are final.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

from mga.distill.core.secrets import redact

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
GAVE_UP = "gave up after"  # how a request that failed on transient errors only is reported (worth a rerun)
MAX_SERVER_DELAY_S = 600.0


def retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` in seconds or as a date)."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            date = email.utils.parsedate_to_datetime(value)
            return max(0.0, date.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, base_s: float, max_s: float, server_delay: float | None = None) -> float:
    """Delay before attempt `attempt + 1`: the server's own delay (plus up to 10% jitter), else exponential."""
    if server_delay is not None:
        return min(server_delay, MAX_SERVER_DELAY_S) * (1 + random.random() / 10)
    delay = min(max_s, base_s * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


@dataclass
class Failure:
    """One failed call, classified: why, whether the host is unreachable, whether to try again, and when."""

    reason: str
    status: int | None = None
    unreachable: bool = False
    final: bool = False
    delay: float | None = None


def classify(error: Exception, timeout_s: float, api_key: str | None) -> Failure:
    """What an `openai` client error means for the retry loop."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return Failure(f"no answer within {timeout_s:g}s (timeout)")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return Failure(redact(f"connection error: {cause.__class__.__name__}: {cause}".rstrip(": "), api_key),
                       unreachable=True)
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = redact(str(getattr(error, "message", error)), api_key)[:300]
        return Failure(f"HTTP {status}: {message}", status=status, final=not retryable(status),
                       delay=retry_after(error.response))
    return Failure(redact(f"{error.__class__.__name__}: {error}", api_key)[:300])  # unparseable body: try again


def gave_up(reason: str | None) -> bool:
    """True for a request that failed on transient errors only (a later run may well get an answer)."""
    return bool(reason) and reason.startswith(GAVE_UP)
