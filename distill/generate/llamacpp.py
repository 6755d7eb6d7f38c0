"""llama.cpp as the local engine on CPUs: a GGUF file answering chat requests in-process (llama-cpp-python).

On a laptop or a CPU node, llama.cpp runs a small tool model several times faster than transformers in fp32
(measured in bench/generate_backends.py), from one file that carries the tokenizer, the chat template and the
stop token. Requests are answered one at a time (llama.cpp uses every core for one sequence), so progress moves
per answer. The chat template is the GGUF's own (the one the student was trained with, written by
`mga quantize --scheme gguf-*`), applied by llama-cpp-python; generation stops at the file's end-of-turn token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mga.distill.core.config import GenerationParams
from mga.distill.core.errors import MgaError
from mga.distill.generate.protocol import Completion

PACKAGE = "llama-cpp-python==0.3.36"
DEFAULT_CONTEXT = 4096


def default_threads() -> int:
    """One core fewer than the machine has (at least one). llama.cpp's threads spin at every barrier: measured
    here on 2 cores with other work running, 2 threads generated 1.1 tokens/s and 1 thread 36.6, so a core is
    left for the Python side (tokenizing, judging, writing) and for whatever else runs."""
    return max(1, (os.cpu_count() or 2) - 1)


def engine_count(threads: int) -> int:
    """How many single-request engines share the cores: cores // threads (at least one). Several one-thread
    engines use a small machine's cores without llama.cpp's spinning barriers: measured here on 2 cores, two
    one-thread engines answered 1.46x faster than one while another process kept both cores busy, where one
    engine of 2 threads ran 6x slower than of 1 (prompt processing); the model file is memory-mapped once."""
    return max(1, (os.cpu_count() or 2) // threads)


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix == ".gguf"


class LlamaCppEngine:
    """One loaded GGUF model; `complete` answers one chat request as an OpenAI-compatible server would."""

    def __init__(self, gguf_file: str | Path, *, n_ctx: int = DEFAULT_CONTEXT, threads: int | None = None):
        path = Path(gguf_file)
        if not path.is_file():
            raise MgaError(f"{path}: no such GGUF file")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MgaError(f"backend llamacpp needs llama-cpp-python: pip install -c constraints.txt {PACKAGE}") from None
        try:
            threads = threads or default_threads()
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                             verbose=False, logits_all=False)
        except (ValueError, RuntimeError) as e:
            raise MgaError(f"cannot load the GGUF file {path}: {str(e).splitlines()[0]}") from None

    def complete(self, messages: list[dict[str, str]], params: GenerationParams,
                 response_format: dict[str, Any] | None = None) -> Completion:
        """Greedy at temperature 0 (top-k 1), seeded sampling otherwise; "length" when max_tokens cut it.
        `response_format` constrains the answer to a JSON-schema grammar (`structured.llamacpp_response_format`)."""
        greedy = params.temperature == 0
        options: dict[str, Any] = {
            "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": 1.0 if greedy else params.top_p,
            "top_k": 1 if greedy else 0, "min_p": 0.0, "repeat_penalty": params.repetition_penalty,
            "seed": params.seed if params.seed is not None else 0,
        }
        self.llm.reset()
        answer = self.llm.create_chat_completion(messages=messages, response_format=response_format, **options)
        choice, usage = answer["choices"][0], answer.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason") or "stop",
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)))
