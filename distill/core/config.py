"""Typed configuration of the corpus, the teacher endpoint and the labeling stages.

Every recipe section is a pydantic model with `extra="forbid"`: an unknown key is an error, reported with the
key's full path and a "did you mean" by `mga.distill.pipeline.recipe`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

from mga.distill.core.secrets import HiddenValue, Secret, looks_like_secret
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

Variant = Literal["base", "strict", "relaxed"]
VARIANTS: tuple[str, ...] = typing.get_args(Variant)  # the prompt variants, named once


class Section(BaseModel):
    """Base of every recipe section: unknown keys are refused, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


StructuredOutput = Literal["auto", "json_schema", "json_object", "off"]


class GenerationParams(Section):
    """Sampling parameters of one kind of call (pairs, rewrite or judge)."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: PositiveInt = 4096
    seed: int | None = None
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=2.0, description="local backends and vLLM/SGLang/llama.cpp servers (sent as extra_body); "
        "1.0 = off. OpenAI's own API refuses it")
    structured_output: StructuredOutput = Field(
        "off", description="constrained decoding of the answer's JSON (stage-1 pairs, the judge's verdict): "
        "json_schema (the stage's schema), json_object (any JSON), auto (json_schema where the endpoint accepts it, "
        "else none, decided once per endpoint), off (JSON asked for in the prompt only)")

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict:
        """Keys added after the first release are dumped only when set: cache keys, resume digests and stage
        configs hash this dump, so answers paid for before the keys existed stay valid."""
        data = handler(self)
        for name in ("repetition_penalty", "structured_output"):
            if data.get(name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data


class CorpusConfig(Section):
    """Where the documents come from and how long ones are chunked."""

    path: Path | None = Field(None, description="JSONL/Parquet corpus; default: the bundled sample corpus")
    text_field: str = "text"
    id_field: str = "id"
    sample_size: PositiveInt | None = Field(None, description="documents to sample; default: all")
    chunk_tokens: PositiveInt = Field(4096, description="max tokens per chunk (the paper's 4k prompt cap)")
    tokenizer: str | None = Field(None, description="tokenizer (local path or hub id) that counts chunk tokens")


class TeacherConfig(Section):
    """The teacher: any OpenAI-compatible endpoint, or a local checkpoint (`backend: transformers`, `vllm`) or GGUF
    file (`backend: llamacpp`)."""

    backend: Literal["openai", "transformers", "vllm", "llamacpp"] = "openai"
    model: str = Field("gpt-4o-mini", description="served model name, or a local checkpoint path")
    base_url: str | list[str] | None = Field(
        None, description="endpoint, or a list served as one pool; default: $OPENAI_BASE_URL, else OpenAI"
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    api_key: Secret | None = Field(None, description="discouraged: prefer api_key_env; never written to the run")
    concurrency: PositiveInt = Field(64, description="requests in flight per endpoint")
    timeout_s: PositiveFloat = 120.0
    max_attempts: PositiveInt = Field(6, description="attempts per request on network/server errors")
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    backoff_base_s: PositiveFloat = Field(1.0, description="first retry delay; doubles per attempt, with jitter")
    backoff_max_s: PositiveFloat = Field(60.0, description="cap on one retry delay (a Retry-After header wins)")
    cache_namespace: str | None = Field(
        None, description="endpoint identity in the request cache key; default: base_url (name one to share answers "
        "between servers of the same weights)"
    )
    fail_fast_after: PositiveInt = Field(
        8, description="end the run when this many requests fail before any succeeds (wrong URL, key or model)"
    )
    price_input_per_million: NonNegativeFloat | None = None
    price_output_per_million: NonNegativeFloat | None = None
    batch_size: PositiveInt = Field(8, description="local backends: prompts per generate() batch")
    threads: PositiveInt | None = Field(
        None, description="llama.cpp backend: CPU threads per engine; default one fewer than the cores (its threads "
        "spin when a core is taken); cores // threads engines answer side by side (mga.distill.generate.llamacpp)")
    # -- several endpoints (mga.distill.generate.pool) --
    eject_after: PositiveInt = Field(3, description="connect failures in a row that take an endpoint out of the pool")
    eject_cooldown_s: PositiveFloat = Field(30.0, description="how long an ejected endpoint stays out")
    # -- spending (mga.distill.generate.budget) --
    max_budget_usd: NonNegativeFloat | None = Field(None, description="stop before a request could exceed this spend")
    # -- the OpenAI Batch API (mga.distill.generate.batch) --
    mode: Literal["online", "batch"] = Field("online", description="batch = the Batch API (cheaper, answers within a day)")
    batch_price_factor: float = Field(0.5, gt=0.0, le=1.0, description="batch price as a share of the online price")
    batch_fallback: Literal["resubmit", "online"] = Field(
        "resubmit", description="requests a batch did not answer (expired, failed): resubmit them, or send them online"
    )
    batch_max_resubmits: NonNegativeInt = 2
    batch_max_requests: PositiveInt = Field(50_000, description="requests per batch (the API's limit)")
    batch_max_bytes: PositiveInt = Field(190 * 1024**2, description="bytes per batch input file (API limit: 200 MB)")
    batch_poll_s: PositiveFloat = Field(15.0, description="first poll interval; doubles up to batch_poll_max_s")
    batch_poll_max_s: PositiveFloat = 300.0
    batch_completion_window: str = "24h"
    pairs: GenerationParams = GenerationParams(temperature=1.0, max_tokens=2048)
    rewrite: GenerationParams = GenerationParams(temperature=0.7, max_tokens=4096)
    judge: GenerationParams = GenerationParams(temperature=0.0, max_tokens=2048)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        """A name, never the key itself: the value of this field is written to recipe.yaml and shown in errors."""
        if looks_like_secret(value):  # HiddenValue: format_errors shows no value
            raise HiddenValue("this looks like an API key, not the name of the environment variable holding one: "
                              "export the key (export OPENAI_API_KEY=...) and give the name")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise HiddenValue("not an environment variable name (letters, digits and _, not starting with a digit)")
        return value

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or not all(u.strip() for u in value):
                raise ValueError("give at least one endpoint URL, none empty")
            if len(set(value)) != len(value):
                raise ValueError("an endpoint is listed twice")
            return value[0] if len(value) == 1 else value
        return value

    @field_validator("pairs", "rewrite", "judge", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial section (`teacher.judge: {max_tokens: 100}`, `--set teacher.pairs.structured_output=auto`)
        changes the keys it names; the others keep that call's own defaults (the judge's temperature 0), not
        the generic ones of `GenerationParams`."""
        if isinstance(value, dict):
            return {**cls.model_fields[info.field_name].default.model_dump(), **value}
        return value

    @model_validator(mode="after")
    def _structured_output(self) -> TeacherConfig:
        if self.rewrite.structured_output != "off":
            raise ValueError("teacher.rewrite.structured_output: a rewrite is free text, it has no JSON schema; "
                             "structured output applies to teacher.pairs and teacher.judge")
        for call in ("pairs", "judge"):
            mode = getattr(self, call).structured_output
            if self.backend == "transformers" and mode in ("json_schema", "json_object"):
                raise ValueError(f"teacher.{call}.structured_output: {mode} needs constrained decoding, which backend "
                                 "transformers has not: use backend llamacpp or vllm, or auto (unconstrained there) or off")
        return self

    @model_validator(mode="after")
    def _budget_needs_prices(self) -> TeacherConfig:
        if self.max_budget_usd is not None and self.price_input_per_million is None and self.price_output_per_million is None:
            raise ValueError("max_budget_usd needs teacher.price_input_per_million / price_output_per_million")
        return self

    @property
    def base_urls(self) -> list[str]:
        """The endpoints as a list (empty: $OPENAI_BASE_URL, else OpenAI)."""
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


MAX_VALIDATION_ATTEMPTS = 3  # answers per request before a rejected one is final (`label.max_validation_attempts`)


class LabelConfig(Section):
    """Stage-1 (pairs) and stage-2 (rewrite) labeling."""

    num_pairs: PositiveInt = 5
    variants: list[Variant] = Field(default_factory=lambda: ["base"], min_length=1)
    max_validation_attempts: PositiveInt = Field(
        MAX_VALIDATION_ATTEMPTS, description="answers per request (pairs, rewrite) before a rejected one is final; "
        "`mga run`, `mga label`, `mga expand` and their dry runs")
    reference: Path | None = Field(
        None, description="start from reference labels instead of the teacher; 'bundled' = data/reference/<language>.jsonl"
    )
    cache_path: Path | None = Field(None, description="teacher request cache; default: <output dir>/.mga-cache.sqlite")


def default_corpus_path(language: str = "en") -> Path:
    """The bundled sample corpus of the language (its pack's `sample_corpus`), else the English one."""
    from mga.data import data_path
    from mga.distill.core.language import sample_corpus_path

    return sample_corpus_path(language) or data_path("sample", "corpus.jsonl")
