"""What an expansion worker needs: the run's settings as plain values, the tool-model generators, sharding.

Kept apart from `expand.py` so the local and the Ray executor both import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mga.distill.core.config import MAX_VALIDATION_ATTEMPTS, GenerationParams, TeacherConfig
from mga.distill.core import tokens
from mga.distill.core.errors import MgaError
from mga.distill.core.tokens import TokenCounter
from mga.distill.core.sources import shard_of  # noqa: F401 (re-exported for the executors)
from mga.distill.core.weights import local_model_id
from mga.distill.generate.protocol import Generator
from mga.distill.label.rows import Job, pairs_job, rewrite_job

BACKENDS = ("transformers", "vllm", "openai", "llamacpp")
EXECUTORS = ("local", "ray")
DEFAULT_MIN_KEYWORD_COVERAGE = 0.05  # the paper: drop rewrites with "extremely low" keyword coverage
Which = Literal["pairs", "rewrite"]


@dataclass(frozen=True)
class ExpandSpec:
    """What a worker needs to run either half of the step; plain values, so it ships to Ray actors."""

    pairs_model: str
    rewrite_model: str
    pairs_backend: str = "transformers"
    rewrite_backend: str = "transformers"
    language: str = "en"
    variant: str = "base"
    num_pairs: int = 5
    batch_size: int = 8
    max_new_tokens: int = 4096
    temperature: float = 0.0
    structured_output: str = "off"  # stage-1 answers under their JSON schema (`mga.distill.generate.structured`)
    base_url: str | None = None
    max_validation_attempts: int = MAX_VALIDATION_ATTEMPTS  # pairs and rewrites, as `label.max_validation_attempts`
    seed: int = 0  # local models re-ask a rejected answer by sampling: seeded, so reruns agree
    # what each tool model is, for the digests rows are resumed by (`with_model_ids`); the name if unset
    pairs_model_id: str = ""
    rewrite_model_id: str = ""

    def params(self, which: Which) -> GenerationParams:
        """One half's sampling parameters; only stage 1 has a schema, so a rewrite's (and its resume digest) never
        carries the structured-output mode."""
        return GenerationParams(temperature=self.temperature, max_tokens=self.max_new_tokens, seed=self.seed,
                                structured_output=self.structured_output if which == "pairs" else "off")

    def backend(self, which: Which) -> str:
        return self.pairs_backend if which == "pairs" else self.rewrite_backend

    def with_model_ids(self) -> ExpandSpec:
        """This spec with each local model identified by its bytes (`local_model_id`), an endpoint's model by its
        name: computed once by the driver, shipped to the workers."""
        def identify(which: Which) -> str:
            model = Path(self.pairs_model if which == "pairs" else self.rewrite_model)
            if self.backend(which) == "openai" or not model.exists():
                return str(model)
            return local_model_id(model)

        return replace(self, pairs_model_id=identify("pairs"), rewrite_model_id=identify("rewrite"))

    def pairs_job(self, meta: dict) -> Job:
        """The stage-1 job of a chunk; its digest covers the text, prompt, parameters and model."""
        return pairs_job(meta, self.language, self.num_pairs, self.params("pairs"), self.pairs_model_id or self.pairs_model)

    def rewrite_job(self, meta: dict) -> Job:
        """The stage-2 job of a (chunk, pair); its digest covers the text, pair, prompt, parameters and model."""
        model = self.rewrite_model_id or self.rewrite_model
        return rewrite_job(meta, self.variant, self.language, self.params("rewrite"), model)

    def generator(self, which: Which, cache_path: Path | None = None) -> Generator:
        """The tool model for one half of the step, on its backend."""
        model = self.pairs_model if which == "pairs" else self.rewrite_model
        backend = self.backend(which)
        if backend == "openai":
            from mga.distill.generate.teacher import make_generator

            cfg = TeacherConfig(backend="openai", model=model, base_url=self.base_url, batch_size=self.batch_size)
            return make_generator(cfg, cache_path=cache_path, stage=f"expand-{which}")
        if not Path(model).exists():
            raise MgaError(f"--{which}-model {model}: no such local checkpoint folder or GGUF file (backend {backend})")
        from mga.distill.generate.local import LocalGenerator

        return LocalGenerator(model, batch_size=self.batch_size, backend=backend)


def shard_dir(out_dir: Path, shard_index: int, num_shards: int) -> Path:
    return Path(out_dir) if num_shards == 1 else Path(out_dir) / f"shard-{shard_index}-of-{num_shards}"


def token_counter(spec: ExpandSpec) -> TokenCounter:
    """The rewrite model's tokenizer when it is a local checkpoint, else the estimate (`mga.distill.core.tokens`)."""
    local = spec.rewrite_backend != "openai" and Path(spec.rewrite_model).is_dir()
    return tokens.token_counter(spec.rewrite_model if local else None, key="--rewrite-model")
