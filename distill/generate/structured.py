"""Structured outputs: how each backend is asked to constrain an answer to its JSON schema.

A stage that has a schema for its answer (stage-1 pairs, the judge's verdict) puts it on the request; the
sampling parameters say how to use it (`structured_output`: json_schema, json_object, auto, off). Servers and
engines spell the same request differently, and vLLM renamed its parameter (`guided_decoding` until 0.11,
`structured_outputs` from 0.12), so the spelling lives here, once. The toolkit's own answer checks run on every
answer either way: a schema gives the shape, not distinct or meaningful content.

`auto` means "the schema where the backend takes it": vLLM and llama.cpp in-process take it; transformers has no
constrained decoding and answers unconstrained; an OpenAI-compatible endpoint gets `json_schema` until it
refuses it (`refused`), and from then on, for the rest of the run, none (`mga.distill.generate.pool`).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from mga.distill.core.errors import MgaError
from mga.distill.generate.protocol import Request

SCHEMA_NAME = "mga_answer"
# words of a 400/422 that refuses the response_format itself (OpenAI, vLLM/xgrammar, llama-cpp-python's server)
_REFUSAL_WORDS = ("response_format", "json_schema", "structured output", "guided", "grammar")


def wanted(request: Request) -> str | None:
    """The mode this request asks for, or None (no schema, or structured output off)."""
    mode = request.params.structured_output
    return None if request.schema is None or mode == "off" else mode


def openai_response_format(request: Request) -> dict[str, Any] | None:
    """The `response_format` of an OpenAI-compatible chat request (OpenAI, vLLM, SGLang, llama.cpp's server)."""
    mode = wanted(request)
    if mode is None:
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": request.schema}}


def refused(status: int | None, message: str) -> bool:
    """Did an endpoint refuse the request because of its `response_format`? A 400 or 422 that names it (OpenAI,
    vLLM, FastAPI validation), or a server error that names `response_format` itself: llama-cpp-python's server
    (0.3.36) answers a json_schema format with a 500 carrying its validation error (measured, docs/labeling.md)."""
    text = message.lower()
    if status in (400, 422):
        return any(word in text for word in _REFUSAL_WORDS)
    return status is not None and status >= 500 and "response_format" in text


def llamacpp_response_format(request: Request) -> dict[str, Any] | None:
    """llama-cpp-python's `response_format`: a JSON-schema grammar, or its generic JSON grammar."""
    mode = wanted(request)
    if mode is None:
        return None
    return {"type": "json_object"} if mode == "json_object" else {"type": "json_object", "schema": request.schema}


def _parameter_names(cls: type) -> set[str]:
    """Constructor parameters of a class; vLLM's SamplingParams is a msgspec Struct (its fields are the names)."""
    names = set(getattr(cls, "__struct_fields__", ()))
    try:
        names |= set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        pass
    return names


def vllm_sampling_options(sampling_params_cls: type, request: Request) -> dict[str, Any]:
    """Keyword arguments for vLLM's `SamplingParams`, by the parameter the installed version has. The parameter
    classes are looked up beside `SamplingParams` (both live in `vllm.sampling_params` in every version)."""
    mode = wanted(request)
    if mode is None:
        return {}
    names, module = _parameter_names(sampling_params_cls), sys.modules[sampling_params_cls.__module__]
    spec = {"json_object": True} if mode == "json_object" else {"json": request.schema}
    for parameter, params_class in (("structured_outputs", "StructuredOutputsParams"),  # vLLM >= 0.12
                                    ("guided_decoding", "GuidedDecodingParams")):  # vLLM 0.6 - 0.11
        if parameter in names and hasattr(module, params_class):
            return {parameter: getattr(module, params_class)(**spec)}
    if mode == "auto":
        return {}
    raise MgaError(f"this vLLM's SamplingParams has neither structured_outputs nor guided_decoding: set "
                   f"structured_output: auto or off (asked: {mode})")


def unsupported(backend: str, request: Request) -> None:
    """A backend without constrained decoding (transformers) answers `auto` unconstrained and refuses the rest."""
    mode = wanted(request)
    if mode is not None and mode != "auto":
        raise MgaError(f"structured_output: {mode} needs constrained decoding, which the {backend} backend has not: "
                       "use backend llamacpp or vllm, or structured_output: auto (falls back) or off")
