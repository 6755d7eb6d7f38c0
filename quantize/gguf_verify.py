"""A GGUF export checked in llama.cpp itself (llama-cpp-python): tokens, chat template, greedy answers, stopping.

Loaded as a user loads it, the file must tokenize text exactly as the transformers tokenizer does, render the
chat template it carries exactly as the checkpoint's, and answer chat prompts greedily like the full model
(share of identical answers, token overlap), stopping at the end-of-turn token when the full model does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mga.distill.core.console import track
from mga.distill.core.errors import MgaError
from mga.quantize.export_lint import SAMPLE_CHAT
from mga.quantize.task_checks import agreement, chat_prompt, greedy

TOKENIZER_SAMPLES = [
    "The quick brown fox, 1234 times: don't stop!\n\n  Indented\tline.",
    "<|im_start|>user\nHello<|im_end|>\n",
    "Unicode: café, naïve, 中文, emoji 🙂.",
]


def load_llama(gguf_file: Path, n_ctx: int, threads: int):
    from llama_cpp import Llama

    return Llama(model_path=str(gguf_file), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
                 verbose=False)


def llama_greedy(llm, prompt: list[int], max_new_tokens: int) -> dict[str, Any]:
    """Greedy tokens from llama.cpp until an end-of-generation token or `max_new_tokens`."""
    import llama_cpp

    ids: list[int] = []
    for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            return {"ids": ids, "stopped": True}
        ids.append(token)
        if len(ids) >= max_new_tokens:
            break
    return {"ids": ids, "stopped": False}


def template_matches(llm, tokenizer) -> bool:
    """The template inside the file, rendered the way llama-cpp-python renders it, equals the checkpoint's."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return False
    ours = Jinja2ChatFormatter(template, eos_token=tokenizer.eos_token or "", bos_token=tokenizer.bos_token or "",
                               add_generation_prompt=True)(messages=SAMPLE_CHAT).prompt
    return ours == tokenizer.apply_chat_template(SAMPLE_CHAT, tokenize=False, add_generation_prompt=True)


def verify_gguf(
    gguf_file: Path,
    checkpoint: Path,
    rows: list[dict[str, Any]],
    *,
    rows_used: str,
    max_rows: int = 8,
    max_new_tokens: int = 128,
    threads: int = 2,
) -> dict[str, Any]:
    """Checks of `gguf_file` against the full `checkpoint`; a tokenizer or template mismatch is an error."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    rows = [r for r in rows if isinstance(r.get("messages"), list) and r["messages"]][:max_rows]
    prompts = [chat_prompt(tokenizer, r) for r in rows]
    n_ctx = max([len(p) for p in prompts] + [256]) + max_new_tokens + 8
    llm = load_llama(gguf_file, n_ctx, threads)
    samples = TOKENIZER_SAMPLES + [tokenizer.decode(p) for p in prompts]
    differ = [s for s in samples if llm.tokenize(s.encode(), add_bos=False, special=True)
              != tokenizer(s, add_special_tokens=False)["input_ids"]]
    if differ:
        raise MgaError(f"{gguf_file.name}: llama.cpp tokenizes {len(differ)} of {len(samples)} test texts differently "
                       f"from the checkpoint's tokenizer (first: {differ[0][:60]!r})")
    if not template_matches(llm, tokenizer):
        raise MgaError(f"{gguf_file.name}: the chat template in the file does not render as the checkpoint's")
    result: dict[str, Any] = {"tokenizer_texts_checked": len(samples), "chat_template_identical": True,
                              "rows_used": rows_used, "prompts": len(prompts), "max_new_tokens": max_new_tokens}
    if prompts:
        full = greedy(checkpoint, prompts, max_new_tokens, "greedy full")
        ours = [llama_greedy(llm, p, max_new_tokens) for p in track(prompts, f"greedy {gguf_file.name}")]
        result["agreement"] = agreement([o["ids"] for o in full], [o["ids"] for o in ours])
        result["stopped_at_end_of_turn"] = {"full": round(sum(o["stopped"] for o in full) / len(full), 4),
                                            "gguf": round(sum(o["stopped"] for o in ours) / len(ours), 4)}
        result["examples"] = [{"full": tokenizer.decode(f["ids"]), "gguf": tokenizer.decode(o["ids"])}
                              for f, o in list(zip(full, ours))[:3]]
    llm.close()
    return result
