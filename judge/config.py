"""Typed configuration of the judge, the filters and the reports."""

from __future__ import annotations

from typing import Literal

from mga.distill.core.config import Section, TeacherConfig
from pydantic import Field, NonNegativeInt, PositiveInt


class JudgeConfig(Section):
    backend: Literal["llm", "heuristic"] = Field("llm", description="llm = Limited-Consistency LLM judge")
    endpoint: TeacherConfig | None = Field(None, description="judge endpoint; default: the teacher's")
    max_parse_attempts: PositiveInt = Field(3, description="tries before an answer is stored as unscored")
    logprobs: bool = Field(False, description="also record the probability-weighted score where available")
    controls: NonNegativeInt = Field(20, description="documents sampled for the judge's controls (all if fewer; 0 = off)")
    min_positive_ge3: float = Field(0.8, ge=0.0, le=1.0, description="share of positive controls that must score >= 3")
    min_negative_le2: float = Field(0.8, ge=0.0, le=1.0, description="share of negative controls that must score <= 2")
    min_control_separation: float = Field(2.0, ge=0.0, le=4.0,
                                          description="mean score of positive minus negative controls, at least")


class FilterConfig(Section):
    min_score: int = Field(3, ge=1, le=5, description="keep judged rows scoring at least this (paper: 3)")
    boilerplate: list[str] | None = Field(None, description="line patterns to drop; default: the language's list")
    min_keyword_coverage: float = Field(0.05, ge=0.0, le=1.0, description="min share of original keywords kept")
    # corpus quality monitors (mga.judge.monitors); defaults measured on data/reference/en.jsonl, see docs/expand.md
    max_copy_rate: float = Field(0.5, ge=0.0, le=1.0,
                                 description="reject a rewrite with more than this share of its word 8-grams in the source "
                                             "(reference rewrites: at most 0.19)")
    min_diversity: float = Field(0.15, ge=0.0, le=1.0,
                                 description="reject a document's rewrites when 1 - their mean pairwise MiniLM cosine is "
                                             "below this (reference documents: at least 0.28; 0 = off)")
    reject_language_change: bool = Field(True, description="reject a rewrite whose language differs from its source's")
    near_duplicate_threshold: float | None = Field(
        0.8, gt=0.0, le=1.0, description="reject a rewrite whose MinHash Jaccard with an earlier kept one reaches this "
                                         "(word 5-gram shingles; null = off)")
    benchmarks: list[str] = Field(default_factory=list,
                                  description="eval-set files (.jsonl/.parquet rows with 'text') to decontaminate against")
    contamination_min_ngrams: PositiveInt = Field(1, description="word 13-grams shared with a benchmark that make a "
                                                                 "rewrite contaminated")


class ReportConfig(Section):
    """The run's report. Diff is always measured against the teacher (the method compares SLM with LLM);
    `mga report --reference-model` picks another reference for files compared by hand."""

    embed: bool = Field(True, description="draw the t-SNE embedding map (MiniLM)")
    max_failed_share: float = Field(0.10, ge=0.0, le=1.0,
                                    description="flag a model whose failed or unscored rows exceed this share")


class AnalyzeConfig(Section):
    """`analyze:` in a recipe: the token-level loss analysis (paper Figure 7) added to the run's report."""

    real_model: str = Field(description="causal LM trained on real data only (A)")
    synthetic_model: str = Field(description="causal LM trained with synthetic data (B), same tokenizer as A")
    texts: str = Field(description="held-out documents (.jsonl/.parquet rows with 'text')")
    k: float = Field(2.0, ge=0.0, description="anomaly threshold |mu| + k*sigma (the paper does not publish k)")
    max_length: PositiveInt = Field(2048, description="tokens scored per document")
