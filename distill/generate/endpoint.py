"""Who the teacher endpoint is and whether it can serve: URL checks, the API key, a fast preflight.

`preflight` asks `GET /models` once before a run, with a short connect timeout apart from the read timeout,
so an unreachable host, a refused key or an unknown model fails in seconds with one line naming the URL,
instead of after every request's retries. `cache_scope` is the endpoint identity that enters the request
cache key (see `mga.distill.generate.cache`).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mga.distill.core.config import TeacherConfig
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError

OPENAI_URL = "https://api.openai.com/v1"
CONNECT_TIMEOUT_S = 3.0  # connecting to a live endpoint takes milliseconds; a dead one should fail fast
PREFLIGHT_READ_S = 2.0  # GET /models is cheap; a busy server that is slower only gets a warning


class TeacherUnavailable(MgaError):
    """The endpoint cannot serve this run at all (wrong key, unknown model, unreachable host)."""


def base_url_of(cfg: TeacherConfig) -> str | None:
    """The configured endpoint (recipe, else $OPENAI_BASE_URL), checked; None means OpenAI itself. The
    first one of a pool (`base_urls_of` gives them all)."""
    return base_urls_of(cfg)[0]


def base_urls_of(cfg: TeacherConfig) -> list[str | None]:
    """Every configured endpoint (one, or a pool: `teacher.base_url` as a list), each checked."""
    return [_checked(url) for url in cfg.base_urls] or [_checked(os.environ.get("OPENAI_BASE_URL") or None)]


def _checked(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise MgaError(f"teacher.base_url {display_url(url)!r} is not a URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MgaError(f"teacher.base_url {display_url(url)!r} is not an http(s) URL: write it like "
                       "http://localhost:8000/v1")
    del port
    return url


def display_url(url: str | None) -> str:
    """The endpoint for messages and cache keys, without any user:password part, query or trailing slash."""
    if not url:
        return OPENAI_URL
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return url.split("@")[-1]
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def cache_scope(cfg: TeacherConfig) -> str:
    """The endpoint identity in the cache key: `teacher.cache_namespace`, else the endpoint URL. A model
    served under the same name by another server is then a different model; name a namespace to share
    answers between servers you know serve the same weights (replicas, a restarted job on another node).
    A pool's identity is the sorted list of its URLs: which server of the pool answered does not matter."""
    return cfg.cache_namespace or ",".join(sorted(display_url(u) for u in base_urls_of(cfg)))


def api_key_of(cfg: TeacherConfig, base_url: str | None) -> str:
    if cfg.api_key is not None:
        return cfg.api_key.get_secret_value()
    key = os.environ.get(cfg.api_key_env) or ""
    if key:
        return key
    if base_url is None:
        raise MgaError(f"no API key for OpenAI: set ${cfg.api_key_env}, or teacher.base_url for a local server")
    return "EMPTY"  # local servers (vLLM, Ollama, llama.cpp) accept any key


def client_timeout(cfg: TeacherConfig) -> Any:
    """The client's timeouts, as the openai client's own HTTP library spells them (openai 3 ships `httpx2`,
    whose `Timeout` refuses an `httpx.Timeout`)."""
    import openai

    return openai.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, CONNECT_TIMEOUT_S))


def preflight(cfg: TeacherConfig, base_url: str | None, api_key: str) -> None:
    """Fail now, in one line naming the URL, if the endpoint is unreachable, refuses the key or does not
    list the model. Endpoints without a model list (404, empty list) and slow answers pass with a warning."""
    import httpx

    url = display_url(base_url)
    models_url = f"{(base_url or OPENAI_URL).rstrip('/')}/models"
    try:
        response = httpx.get(models_url, headers={"Authorization": f"Bearer {api_key}"},
                             timeout=httpx.Timeout(PREFLIGHT_READ_S, connect=CONNECT_TIMEOUT_S))
    except httpx.TimeoutException as e:
        if isinstance(e, httpx.ConnectTimeout):
            raise TeacherUnavailable(f"cannot reach the teacher at {url}: no connection within "
                                     f"{CONNECT_TIMEOUT_S:g}s") from None
        console.print(f"warning: the teacher at {url} did not list its models within {PREFLIGHT_READ_S:g}s; "
                      "going on", markup=False)
        return
    except httpx.HTTPError as e:
        cause = e.__cause__ or e
        raise TeacherUnavailable(f"cannot reach the teacher at {url}: {cause.__class__.__name__}: "
                                 f"{str(cause).replace(api_key, '***') if api_key else cause}"[:300]) from None
    if response.status_code in (401, 403):
        raise TeacherUnavailable(f"the teacher at {url} refused the API key ({response.status_code}); check "
                                 f"${cfg.api_key_env} or teacher.api_key")
    if response.status_code != 200:
        return  # no model list here (llama.cpp, proxies): the first chat call decides
    try:
        served = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return
    if served and cfg.model not in served:
        shown = ", ".join(map(str, served[:8])) + (", ..." if len(served) > 8 else "")
        raise TeacherUnavailable(f"the teacher at {url} has no model '{cfg.model}' (it serves: {shown}); "
                                 "check teacher.model / --model")


def preflight_all(cfg: TeacherConfig, base_urls: list[str | None], api_key: str) -> None:
    """`preflight` each endpoint; in a pool, one that fails is only a warning (the pool leaves it out) as
    long as another passes."""
    if len(base_urls) == 1:
        preflight(cfg, base_urls[0], api_key)
        return
    failures = []
    for url in base_urls:
        try:
            preflight(cfg, url, api_key)
        except TeacherUnavailable as e:
            failures.append(e)
    if len(failures) == len(base_urls):
        raise failures[0]
    for failure in failures:
        console.print(f"warning: {failure}; the pool goes on without it", markup=False, soft_wrap=True)
