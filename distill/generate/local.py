"""A local checkpoint (full, merged LoRA, LoRA adapter or GPTQ) as a `Generator`: the SLM answering prompts.

Batched `generate` with left padding over the chat template (with the generation prompt), greedy at
temperature 0 and seeded sampling otherwise; `finish_reason` is "stop" when EOS was produced and "length"
otherwise, as an OpenAI-compatible server reports it. So `mga label --teacher-model PATH` writes rows with the
same schema as the teacher's, and the judge and the report treat SLM and teacher outputs alike.
With `backend="vllm"` (optional extra, CUDA only) the same requests go through vLLM's offline engine; with
`backend="llamacpp"` a GGUF file answers them through llama.cpp on CPUs (`mga.distill.generate.llamacpp`), one
request per engine, as many engines side by side as `engine_count` gives, so progress moves per answer or two.
A backend is one `_generate_<backend>(jobs, params)` returning a batch's completions; which answers are re-asked, and how often, is `mga.distill.generate.reask`'s to decide
(a re-ask here samples, seeded per attempt). Structured output (`mga.distill.generate.structured`): llama.cpp
gets the answer's JSON-schema grammar, vLLM its structured-outputs parameter; transformers has no constrained
decoding, so `auto` answers unconstrained there and `json_schema`/`json_object` end the run with an error.
`repetition_penalty` reaches all three.

Fail loud: a batch in which every request fails to generate (an exception, not a rejected answer) is held
back; `max_failed_batches` such batches in a row, or a run in which no request generates at all, raise
`LocalGenerationFailed` (a broken checkpoint or out-of-memory must stop the stage, not become rows of
"generation failed" and a 0% model). Held-back batches are never written, so a rerun answers them again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mga.distill.core.config import GenerationParams
from mga.distill.core.console import progress_task
from mga.distill.core.errors import MgaError
from mga.distill.core.weights import local_model_id
from mga.distill.generate import structured
from mga.distill.generate.llamacpp import LlamaCppEngine, default_threads, engine_count, is_gguf
from mga.distill.generate.protocol import Completion, Request, Result, Validator
from mga.distill.generate.reask import Asking

RETRY_TEMPERATURE = 0.7  # a rejected greedy answer would come back identical: retries sample
MAX_FAILED_BATCHES = 3


class LocalGenerationFailed(MgaError):
    """The local model could not generate: every request of several batches in a row (or of the run) failed."""


def _params(job: Asking) -> GenerationParams:
    """The sampling parameters of a job's next attempt: a re-ask samples, seeded per attempt."""
    p = job.request.params
    if job.attempt == 0:
        return p
    seed = None if p.seed is None else p.seed + job.attempt
    return p.model_copy(update={"temperature": p.temperature or RETRY_TEMPERATURE, "seed": seed})


def _group_key(job: Asking) -> tuple:
    """Jobs generated in one batch share their sampling parameters and structured output (mode and schema)."""
    p, mode = _params(job), structured.wanted(job.request)
    schema = json.dumps(job.request.schema, sort_keys=True) if mode else None
    return (p.temperature, p.top_p, p.max_tokens, p.seed, p.repetition_penalty, mode, schema)


class LocalGenerator:
    """`Generator` over a local checkpoint; see the module docstring."""

    def __init__(self, model_path: str, *, batch_size: int = 8, backend: str = "transformers", device: str | None = None,
                 max_failed_batches: int = MAX_FAILED_BATCHES, threads: int | None = None):
        if backend not in ("transformers", "vllm", "llamacpp"):
            raise MgaError(f"unknown local backend '{backend}' (choose transformers, vllm or llamacpp)")
        path = Path(model_path)
        if backend == "llamacpp":
            if not is_gguf(path) or not path.is_file():
                raise MgaError(f"{model_path}: backend llamacpp needs a .gguf file (mga quantize CHECKPOINT --scheme gguf-f16)")
        elif not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise MgaError(f"{model_path}: not a local checkpoint (no config.json or adapter_config.json)")
        self.model_path = str(path)
        self.model_name, self.model_id = path.name, local_model_id(path)
        self.batch_size = max(1, int(batch_size))
        self.max_failed_batches = max(1, int(max_failed_batches))
        self.backend = backend
        if backend == "vllm":
            self._init_vllm()
        elif backend == "llamacpp":
            threads = threads or default_threads()
            self.engines = [LlamaCppEngine(path, threads=threads) for _ in range(engine_count(threads))]
            self.batch_size = len(self.engines)
        else:
            self._init_transformers(device)

    # ---- loading -------------------------------------------------------------------------------------------

    def _init_transformers(self, device: str | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = Path(self.model_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            if (path / "adapter_config.json").exists():
                from peft import AutoPeftModelForCausalLM

                model = AutoPeftModelForCausalLM.from_pretrained(self.model_path, dtype=self._dtype(None))
            else:
                from transformers import AutoConfig

                quantized = getattr(AutoConfig.from_pretrained(self.model_path), "quantization_config", None)
                model = AutoModelForCausalLM.from_pretrained(
                    self.model_path, dtype=self._dtype(quantized), **({"device_map": self.device} if quantized else {})
                )
        except (OSError, ValueError, ImportError) as e:
            raise MgaError(f"cannot load the checkpoint {self.model_path}: {str(e).splitlines()[0]}") from None
        if not getattr(self.tokenizer, "chat_template", None):
            raise MgaError(f"{self.model_path}: the tokenizer has no chat template; cannot format prompts")
        self.model = model.to(self.device) if not getattr(model, "hf_device_map", None) else model
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        gen_eos = self.model.generation_config.eos_token_id
        ids = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        self.eos_ids = [i for i in dict.fromkeys([*ids, self.tokenizer.eos_token_id]) if i is not None]
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)

    def _dtype(self, quantized: Any):
        import torch

        if quantized or self.device != "cpu":
            return "auto"
        return torch.float32  # CPU: half precision is slow or unsupported for many kernels

    def _init_vllm(self) -> None:
        import torch

        try:
            import vllm
        except ImportError:
            raise MgaError(
                "backend vllm: vllm is not installed (pip install 'mga-toolkit[vllm]'), or use backend transformers"
            ) from None
        if not torch.cuda.is_available():
            raise MgaError("backend vllm needs a CUDA GPU; on this machine use backend transformers")
        self.llm = vllm.LLM(model=self.model_path)
        self.tokenizer = self.llm.get_tokenizer()

    # ---- generation ----------------------------------------------------------------------------------------

    def _prompts(self, jobs: list[Asking]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(j.request.messages, tokenize=False, add_generation_prompt=True)
            for j in jobs
        ]

    def _generate_transformers(self, jobs: list[Asking], params: GenerationParams) -> list[Completion]:
        import torch

        for job in jobs:
            structured.unsupported("transformers", job.request)  # `auto` answers unconstrained
        enc = self.tokenizer(self._prompts(jobs), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        max_new = params.max_tokens
        if self.max_positions:
            max_new = min(max_new, self.max_positions - prompt_len)
        if max_new <= 0:
            raise ValueError(f"the prompt ({prompt_len} tokens) fills the model's {self.max_positions} positions")
        sample = params.temperature > 0
        if sample and params.seed is not None:
            torch.manual_seed(params.seed)
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": max_new, "eos_token_id": self.eos_ids,
                                   "pad_token_id": self.tokenizer.pad_token_id,
                                   "repetition_penalty": params.repetition_penalty}
        if sample:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **options)
        completions = []
        for row, mask in zip(out[:, prompt_len:].tolist(), enc["attention_mask"].tolist(), strict=True):
            end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            tokens = row if end is None else row[:end]
            completions.append(
                Completion(
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    finish_reason="length" if end is None else "stop",
                    prompt_tokens=int(sum(mask)),
                    completion_tokens=len(tokens) + (0 if end is None else 1),
                )
            )
        return completions

    def _generate_vllm(self, jobs: list[Asking], params: GenerationParams) -> list[Completion]:
        from vllm import SamplingParams

        sampling = SamplingParams(
            temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens, seed=params.seed,
            repetition_penalty=params.repetition_penalty,
            **structured.vllm_sampling_options(SamplingParams, jobs[0].request),  # one schema a batch (`_group_key`)
        )
        outputs = self.llm.chat([j.request.messages for j in jobs], sampling, use_tqdm=False)
        return [
            Completion(
                text=o.outputs[0].text,
                finish_reason=o.outputs[0].finish_reason,
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]

    def _generate_llamacpp(self, jobs: list[Asking], params: GenerationParams) -> list[Completion]:
        """One job per engine, side by side (llama.cpp releases the GIL while it computes)."""
        def answer(engine: LlamaCppEngine, job: Asking) -> Completion:
            return engine.complete(job.request.messages, params, structured.llamacpp_response_format(job.request))

        if len(jobs) == 1:
            return [answer(self.engines[0], jobs[0])]
        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(answer, self.engines, jobs))

    def _generate(self, jobs: list[Asking], params: GenerationParams) -> list[Completion | str]:
        """Completions for a batch, or per request an error string; a failing batch is retried one by one."""
        run = {"vllm": self._generate_vllm, "llamacpp": self._generate_llamacpp}.get(self.backend, self._generate_transformers)
        try:
            return list(run(jobs, params))
        except MgaError:  # a setting this backend cannot honour (structured output): the run's error, not a row's
            raise
        except Exception as e:  # noqa: BLE001 - one bad request must not end the run
            if len(jobs) == 1:
                return [f"generation failed: {e.__class__.__name__}: {e}"]
            return [self._generate([j], params)[0] for j in jobs]

    def _answer_batch(self, jobs: list[Asking]) -> Iterator[Result]:
        """Generate for `jobs` (grouped by sampling parameters), and again for those `reask` says to re-ask."""
        pending = jobs
        while pending:
            groups: dict[tuple, list[Asking]] = {}
            for job in pending:
                groups.setdefault(_group_key(job), []).append(job)
            pending = []
            for group in groups.values():
                for job, outcome in zip(group, self._generate(group, _params(group[0])), strict=True):
                    result = job.failed(outcome) if isinstance(outcome, str) else job.take(outcome)
                    if result is None:
                        pending.append(job)
                    else:
                        yield result

    def run(
        self,
        requests: Iterable[Request],
        *,
        validate: Validator | None = None,
        max_attempts: int = 1,
        description: str = "generate",
    ) -> Iterator[Result]:
        """Answer every request in batches of `batch_size`; yields each batch's results as it finishes."""
        total = len(requests) if hasattr(requests, "__len__") else None  # type: ignore[arg-type]
        held: list[Result] = []  # results of consecutive batches where nothing generated
        failed_in_row, generated_any = 0, False
        with progress_task(f"{description} ({self.model_name})", total) as advance:
            for batch in self._batches(requests):
                results = list(self._answer_batch([Asking(r, validate, max_attempts) for r in batch]))
                if all(r.completion is None for r in results):
                    failed_in_row += 1
                    held += results
                    if failed_in_row >= self.max_failed_batches:
                        self._fail(f"{failed_in_row} batches in a row", results)
                    continue
                generated_any, failed_in_row = True, 0
                for result in held + results:
                    advance()
                    yield result
                held = []
            if held and not generated_any:
                self._fail("every batch", held)
            for result in held:
                advance()
                yield result

    def _batches(self, requests: Iterable[Request]) -> Iterator[list[Request]]:
        batch: list[Request] = []
        for request in requests:
            batch.append(request)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _fail(self, what: str, results: list[Result]) -> None:
        raise LocalGenerationFailed(
            f"local model {self.model_path}: {what} failed to generate (last error: {results[-1].error}); "
            "stopping - check the checkpoint, memory and `teacher.batch_size`, then rerun to resume")
