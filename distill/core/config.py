"""Typed configuration of the corpus, the teacher endpoint and the labeling stages.

Every recipe section is a pydantic model with `extra="forbid"`: an unknown key is an error, reported with the
key's full path and a "did you mean" by `mga.distill.pipeline.recipe`.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
)

Variant = Literal["base", "strict", "relaxed"]
VARIANTS: tuple[str, ...] = typing.get_args(Variant)  # the prompt variants, named once


class Section(BaseModel):
    """Base of every recipe section: unknown keys are refused, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class GenerationParams(Section):
    """Sampling parameters of one kind of call (pairs, rewrite or judge)."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: PositiveInt = 4096
    seed: int | None = None
    n: PositiveInt = 1


class CorpusConfig(Section):
    """Where the documents come from and how long ones are chunked."""

    path: Path | None = Field(None, description="JSONL/Parquet corpus; default: the bundled sample corpus")
    text_field: str = "text"
    id_field: str = "id"
    sample_size: PositiveInt | None = Field(None, description="documents to sample; default: all")
    chunk_tokens: PositiveInt = Field(4096, description="max tokens per chunk (the paper's 4k prompt cap)")
    tokenizer: str | None = Field(None, description="tokenizer (local path or hub id) that counts chunk tokens")


class TeacherConfig(Section):
    """The teacher: any OpenAI-compatible endpoint, or a local checkpoint (`backend: transformers`)."""

    backend: Literal["openai", "transformers", "vllm"] = "openai"
    model: str = Field("gpt-4o-mini", description="served model name, or a local checkpoint path")
    base_url: str | None = Field(None, description="endpoint; default: $OPENAI_BASE_URL, else OpenAI")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    api_key: SecretStr | None = Field(None, description="discouraged: prefer api_key_env")
    concurrency: PositiveInt = 64
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
    pairs: GenerationParams = GenerationParams(temperature=1.0, max_tokens=2048)
    rewrite: GenerationParams = GenerationParams(temperature=0.7, max_tokens=4096)
    judge: GenerationParams = GenerationParams(temperature=0.0, max_tokens=2048)


class LabelConfig(Section):
    """Stage-1 (pairs) and stage-2 (rewrite) labeling."""

    num_pairs: PositiveInt = 5
    variants: list[Variant] = Field(default_factory=lambda: ["base"], min_length=1)
    max_validation_attempts: PositiveInt = Field(3, description="tries before a pairs answer is a failure")
    reference: Path | None = Field(
        None, description="start from reference labels instead of the teacher; 'bundled' = data/reference/<language>.jsonl"
    )
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    cache_path: Path | None = Field(None, description="teacher request cache; default: <output dir>/.mga-cache.sqlite")


def default_corpus_path(language: str = "en") -> Path:
    """The bundled sample corpus of the language (its pack's `sample_corpus`), else the English one."""
    from mga.data import data_path
    from mga.distill.core.language import sample_corpus_path

    return sample_corpus_path(language) or data_path("sample", "corpus.jsonl")
