"""Export evaluation: a quantized export against its full model on rows the model was not trained on.

Measured (`compare`): perplexity on the held-out answers, weight bytes, load time, generation speed; both models
loaded the way a user loads them (`AutoModelForCausalLM.from_pretrained`, dtype from the checkpoint). Perplexity
is measured on what the tool model is for: the assistant answer of each held-out SFT conversation (the prompt is
context, not scored); plain `text` rows are scored whole.

On the task (`task_checks`): pairs model (SLM-1), the share of prompts answered with valid JSON of exactly 5
distinct pairs, full vs quantized; rewrite model (SLM-2), greedy-output agreement with the full model (share of
identical outputs, mean token-level overlap) and, when the caller passes a judge, judged Rate(>=3) of both on
the same prompts; both, the share of outputs that end at the end-of-turn token. The checks of validity and the
judge come from the caller (`mga.judge`), so this step depends on no other step.

Rows (`eval_rows`): the held-out SFT rows beside the checkpoint (`../data/eval.jsonl`) when there are any, else
the training rows, and the result says which (`rows_used`), so no table calls training rows held out.
`evaluate_export` runs both into QUANTIZED/compare.json; `compare_section` renders it for the report.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mga.distill.core.console import track
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json, write_rows
from mga.distill.core.markdown import records_table

PairsCheck = Callable[[str], "str | None"]  # answer -> why it is not 5 valid distinct pairs, None when it is
JudgeRate = Callable[[list[dict[str, Any]], str], float]  # (rewrite rows, label) -> Rate(>=3) in percent


def eval_rows(checkpoint: Path, given: Path | None = None) -> tuple[list[dict[str, Any]], str, Path]:
    """(rows, honest label, file): `given`, else held-out SFT rows beside the checkpoint, else its training rows."""
    data = Path(checkpoint).parent / "data"
    train = data / "train.jsonl"
    if given is not None:
        rows = read_rows(given)
        if train.exists():
            seen = {json.dumps(r.get("messages"), sort_keys=True) for r in read_rows(train)}
            trained = sum(json.dumps(r.get("messages"), sort_keys=True) in seen for r in rows)
            return rows, f"given rows {given} ({trained} of {len(rows)} are in the training data {train})", given
        return rows, f"given rows {given} (training data unknown)", given
    if (data / "eval.jsonl").exists() and (rows := read_rows(data / "eval.jsonl")):
        return rows, f"held-out SFT rows, not trained on ({data / 'eval.jsonl'})", data / "eval.jsonl"
    if train.exists():
        return read_rows(train), f"SFT training rows: the model was trained on them, no held-out rows exist ({train})", train
    raise MgaError(f"no rows to check the export on: no {data / 'eval.jsonl'} or {train}; pass --heldout ROWS_JSONL")


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """Share of identical outputs; mean token overlap = positions with the same token / the longer output's length."""
    if len(reference) != len(other) or not reference:
        raise MgaError("agreement needs the same, non-empty set of prompts on both sides")
    identical = sum(a == b for a, b in zip(reference, other))
    overlaps = [sum(x == y for x, y in zip(a, b)) / max(len(a), len(b)) if (a or b) else 1.0
                for a, b in zip(reference, other)]
    return {"identical": round(identical / len(reference), 4), "token_overlap": round(sum(overlaps) / len(overlaps), 4)}


def gguf_file(folder: Path) -> Path | None:
    """The model file of a GGUF export folder (`mga quantize --scheme gguf-*`), None for a transformers folder."""
    marker = Path(folder) / "mga_quantize.json"
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text(encoding="utf-8"))
    return Path(folder) / record["file"] if record.get("method") == "gguf" else None


def load_llama(gguf_file: Path, n_ctx: int, threads: int, *, logits_all: bool = False):
    from llama_cpp import Llama

    return Llama(model_path=str(gguf_file), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
                 verbose=False, logits_all=logits_all)


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


def greedy(folder: Path, prompts: list[list[int]], max_new_tokens: int, description: str) -> list[dict[str, Any]]:
    """Greedy continuations of `prompts` with the model in `folder` on the engine that serves it (llama.cpp for a
    GGUF export, else transformers): new token ids and whether it stopped at an end-of-generation token."""
    if (file := gguf_file(folder)) is not None:
        from mga.distill.generate.llamacpp import default_threads

        llm = load_llama(file, max([len(p) for p in prompts] + [1]) + max_new_tokens + 8, default_threads())
        outputs = [llama_greedy(llm, ids, max_new_tokens) for ids in track(prompts, description)]
        llm.close()
        return outputs
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    model.eval()
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    outputs = []
    with torch.no_grad():
        for ids in track(prompts, description):
            x = torch.tensor([ids], device=model.device)
            new = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=max_new_tokens)[0, x.shape[1]:].tolist()
            stopped = bool(new) and new[-1] in stops
            outputs.append({"ids": new[:-1] if stopped else new, "stopped": stopped})
    return outputs


def chat_prompt(tokenizer, row: dict[str, Any]) -> list[int]:
    turns = row["messages"][:-1] if row["messages"][-1].get("role") == "assistant" else row["messages"]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stage_of(checkpoint: Path, rows: list[dict[str, Any]], pairs_check: PairsCheck | None) -> str:
    """`pairs` or `rewrite`: from train_config.json beside the checkpoint, else from the reference answers."""
    config = Path(checkpoint).parent / "train_config.json"
    if config.exists() and (stage := json.loads(config.read_text()).get("stage")) in ("pairs", "rewrite"):
        return stage
    answers = [r["messages"][-1]["content"] for r in rows if r["messages"][-1].get("role") == "assistant"]
    if pairs_check and answers and sum(pairs_check(a) is None for a in answers) > len(answers) / 2:
        return "pairs"
    return "rewrite"


def task_checks(
    full: Path,
    quantized: Path,
    rows: list[dict[str, Any]],
    out_dir: Path,
    *,
    rows_used: str,
    stage: str,
    pairs_check: PairsCheck | None = None,
    judge_rate: JudgeRate | None = None,
    max_rows: int = 32,
    max_new_tokens: int = 256,
    memo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Both models answer the same chat prompts greedily; writes out_dir/task_outputs.jsonl; returns the checks.
    `memo` keeps the full model's answers and judged rate for the next export compared on the same prompts."""
    from transformers import AutoTokenizer

    rows = [r for r in rows if isinstance(r.get("messages"), list) and r["messages"]][:max_rows]
    if not rows:
        raise MgaError(f"{rows_used}: no rows with chat 'messages'")
    tokenizer = AutoTokenizer.from_pretrained(full)
    prompts = [chat_prompt(tokenizer, r) for r in rows]
    memo = {} if memo is None else memo
    reference = memo.setdefault(json.dumps([str(full), prompts, max_new_tokens]), {})
    if "answers" not in reference:
        reference["answers"] = greedy(full, prompts, max_new_tokens, "greedy full")
    runs = {"full": reference["answers"], "quantized": greedy(quantized, prompts, max_new_tokens, "greedy quantized")}
    texts = {name: [tokenizer.decode(o["ids"], skip_special_tokens=True) for o in outs] for name, outs in runs.items()}
    result: dict[str, Any] = {
        "stage": stage, "rows_used": rows_used, "prompts": len(rows), "max_new_tokens": max_new_tokens,
        "agreement": agreement([o["ids"] for o in runs["full"]], [o["ids"] for o in runs["quantized"]]),
        "stopped_at_end_of_turn": {name: round(sum(o["stopped"] for o in outs) / len(outs), 4) for name, outs in runs.items()},
    }
    if stage == "pairs" and pairs_check is not None:
        result["valid_5_pairs"] = {name: round(sum(pairs_check(t) is None for t in ts) / len(ts), 4) for name, ts in texts.items()}
    if stage == "rewrite" and judge_rate is not None:
        judged = [r for r in rows if isinstance(r.get("meta"), dict) and r["meta"].get("raw_text")]
        if len(judged) == len(rows):
            if "rate_ge3" not in reference:
                reference["rate_ge3"] = _judged(judge_rate, rows, texts["full"], "full")
            result["rate_ge3"] = {"full": reference["rate_ge3"],
                                  "quantized": _judged(judge_rate, rows, texts["quantized"], "quantized")}
        else:
            result["rate_ge3"] = "not judged: the rows carry no meta.raw_text/genre/audience (SFT data from an older mga)"
    write_rows(Path(out_dir) / "task_outputs.jsonl", [
        {"key": r.get("key", i), "full": texts["full"][i], "quantized": texts["quantized"][i],
         "identical": runs["full"][i]["ids"] == runs["quantized"][i]["ids"]} for i, r in enumerate(rows)])
    return result


def _judged(judge_rate: JudgeRate, rows: list[dict[str, Any]], texts: list[str], label: str) -> float:
    return judge_rate([{**r, "key": r.get("key") or str(i), "content_split": t} for i, (r, t) in enumerate(zip(rows, texts))],
                      label)


def _safetensors_sizes(folder: Path) -> dict[str, int]:
    """Bytes of every tensor in the folder's safetensors files, read from the headers only."""
    sizes: dict[str, int] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                sizes[name] = end - start
    return sizes


def linear_layer_names(model) -> set[str]:
    """Names of the linear layers a quantizer touches: every nn.Linear-like module except the LM head."""
    import torch

    head = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if module is head or not name:
            continue
        if isinstance(module, torch.nn.Linear) or hasattr(module, "qweight"):
            names.add(name)
    return names


def checkpoint_sizes(folder: Path, linear_names: set[str], linear_params: int) -> dict[str, Any]:
    """Total weight bytes, bytes of the linear layers (with their scales and zeros), and that over fp16."""
    sizes = _safetensors_sizes(folder)
    linear = sum(size for name, size in sizes.items() if name.rsplit(".", 1)[0] in linear_names)
    return {
        "total_bytes": sum(sizes.values()),
        "linear_bytes": linear,
        "linear_bytes_over_fp16": round(linear / (2 * linear_params), 4) if linear_params else None,
    }


def scored_example(tokenizer, row: dict[str, Any], max_length: int):
    """(input ids, labels) with -100 on the prompt: the answer of a `messages` row, or all of a `text` row."""
    if isinstance(row.get("messages"), list) and row["messages"] and row["messages"][-1].get("role") == "assistant":
        messages = row["messages"]
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
        if len(ids) > max_length:  # keep the answer: cut the prompt from the left
            ids, labels = ids[-max_length:], labels[-max_length:]
        return ids, labels
    if isinstance(row.get("text"), str) and row["text"].strip():
        ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"][:max_length]
        return ids, list(ids)
    return None


def prompt_of(tokenizer, row: dict[str, Any], max_length: int) -> list[int]:
    if isinstance(row.get("messages"), list) and row["messages"]:
        turns = row["messages"][:-1] if row["messages"][-1].get("role") == "assistant" else row["messages"]
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    return tokenizer(row["text"], add_special_tokens=False)["input_ids"][: max_length // 2]


def perplexity(model, examples: list[tuple[list[int], list[int]]], description: str) -> float:
    """exp(mean negative log-likelihood over all scored tokens), one example at a time (no padding effects)."""
    import torch

    nll, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in track(examples, description):
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
            target = torch.tensor(labels[1:], device=logits.device)
            mask = target != -100
            if mask.any():
                nll += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
                count += int(mask.sum())
    return _perplexity(nll, count)


def _perplexity(nll: float, count: int) -> float:
    if not count:
        raise MgaError("held-out rows have no answer tokens to score")
    return math.exp(nll / count)


def llama_perplexity(llm, examples: list[tuple[list[int], list[int]]], description: str) -> float:
    """`perplexity` in llama.cpp: the same scored tokens, from the logits of a model loaded with `logits_all`."""
    import numpy as np

    nll, count = 0.0, 0
    for ids, labels in track(examples, description):
        target = np.asarray(labels[1:])
        mask = target != -100
        if not mask.any():
            continue
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1])[mask].astype(np.float64)
        top = logits.max(axis=1)
        log_z = np.log(np.exp(logits - top[:, None]).sum(axis=1)) + top
        nll += float((log_z - logits[np.arange(len(logits)), target[mask]]).sum())
        count += int(mask.sum())
    return _perplexity(nll, count)


def llama_speed(llm, prompts: list[list[int]], gen_tokens: int) -> float:
    """`generation_speed` in llama.cpp: exactly `gen_tokens` greedy tokens per prompt (end-of-turn not honoured)."""
    produced, seconds = 0, 0.0
    for ids in prompts:
        started = time.perf_counter()
        for produced_here, _ in enumerate(llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                                                       repeat_penalty=1.0, reset=True), start=1):
            if produced_here >= gen_tokens:
                break
        seconds += time.perf_counter() - started
        produced += gen_tokens
    return produced / seconds if seconds else 0.0


def generation_speed(model, tokenizer, prompts: list[list[int]], gen_tokens: int) -> float:
    """Greedy new tokens per second, forcing exactly `gen_tokens` per prompt so both models do the same work."""
    import torch

    produced, seconds = 0, 0.0
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=model.device)
            started = time.perf_counter()
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=gen_tokens, min_new_tokens=gen_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
            seconds += time.perf_counter() - started
            produced += out.shape[1] - x.shape[1]
    return produced / seconds if seconds else 0.0


def measure(folder: Path, examples, prompts, tokenizer, gen_tokens: int, linear_params: int | None) -> dict[str, Any]:
    """Perplexity, load time, tokens/s and weight bytes of the model in `folder`, on the engine that serves it."""
    if (file := gguf_file(folder)) is not None:
        return _measure_gguf(folder, file, examples, prompts, gen_tokens, linear_params)
    import torch
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    model.eval()
    load_s = time.perf_counter() - started
    torch.manual_seed(0)
    ppl = perplexity(model, examples, f"perplexity {folder.name}")
    names = linear_layer_names(model)
    if linear_params is None:
        linear_params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                            for n, m in model.named_modules() if n in names)
    speed = generation_speed(model, tokenizer, prompts, gen_tokens)
    return {"path": str(folder), "backend": "transformers", "threads": torch.get_num_threads(),
            "perplexity": round(ppl, 4), "load_s": round(load_s, 3),
            "tokens_per_s": round(speed, 2), "dtype": str(model.dtype).removeprefix("torch."),
            "linear_params": linear_params, **checkpoint_sizes(folder, names, linear_params)}


def _measure_gguf(folder: Path, file: Path, examples, prompts, gen_tokens: int, linear_params: int | None) -> dict[str, Any]:
    """`measure` for a GGUF export, in llama.cpp with the threads the llama.cpp backend uses. The file holds
    every weight (its size is `total_bytes`); linear-layer bytes are not split out."""
    from mga.distill.generate.llamacpp import default_threads

    threads = default_threads()
    n_ctx = max([len(ids) for ids, _ in examples] + [len(p) + gen_tokens for p in prompts]) + 8
    started = time.perf_counter()
    llm = load_llama(file, n_ctx, threads, logits_all=True)
    load_s = time.perf_counter() - started
    ppl = llama_perplexity(llm, examples, f"perplexity {file.name}")
    speed = llama_speed(llm, prompts, gen_tokens)
    llm.close()
    record = json.loads((folder / "mga_quantize.json").read_text(encoding="utf-8"))
    return {"path": str(folder), "backend": "llama.cpp", "threads": threads, "perplexity": round(ppl, 4),
            "load_s": round(load_s, 3), "tokens_per_s": round(speed, 2), "dtype": record.get("format", "gguf"),
            "linear_params": linear_params, "total_bytes": file.stat().st_size, "linear_bytes": None,
            "linear_bytes_over_fp16": None}


def compare(
    full: Path,
    quantized: Path,
    heldout: Path | list[dict],
    out_json: Path,
    *,
    max_rows: int = 64,
    gen_tokens: int = 32,
    gen_prompts: int = 4,
    max_length: int = 1024,
    memo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure both checkpoints on the same held-out rows and write the comparison (with ratios) to `out_json`.
    `memo` keeps the full model's measurement for the next export measured on the same rows."""
    from transformers import AutoTokenizer

    full, quantized = Path(full), Path(quantized)
    rows = read_rows(heldout) if isinstance(heldout, (str, Path)) else list(heldout)
    tokenizer = AutoTokenizer.from_pretrained(full)
    scored = [(row, ex) for row in rows[:max_rows] if (ex := scored_example(tokenizer, row, max_length))]
    if not scored:
        raise MgaError(f"{heldout if isinstance(heldout, (str, Path)) else 'heldout'}: no rows with "
                       "'messages' ending in an assistant answer, or with 'text'")
    examples = [ex for _, ex in scored]
    prompts = [prompt_of(tokenizer, row, max_length) for row, _ in scored[:gen_prompts]]
    memo = {} if memo is None else memo
    reference = json.dumps([str(full), examples, prompts, gen_tokens])
    if reference not in memo:
        memo[reference] = measure(full, examples, prompts, tokenizer, gen_tokens, None)
    full_m = memo[reference]
    quant_m = measure(quantized, examples, prompts, tokenizer, gen_tokens, full_m["linear_params"])
    marker = quantized / "mga_quantize.json"
    info = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}

    def ratio(key: str) -> float | None:
        return round(quant_m[key] / full_m[key], 4) if full_m.get(key) and quant_m.get(key) is not None else None

    result = {
        "scheme": info.get("scheme"), "heldout": str(heldout) if isinstance(heldout, (str, Path)) else None,
        "rows": len(examples), "scored_tokens": sum(sum(1 for t in labels[1:] if t != -100) for _, labels in examples),
        "gen_tokens": gen_tokens, "full": full_m, "quantized": quant_m,
        "ratios": {"perplexity": ratio("perplexity"), "total_bytes": ratio("total_bytes"),
                   "linear_bytes": ratio("linear_bytes"), "load_s": ratio("load_s"),
                   "tokens_per_s": ratio("tokens_per_s")},
    }
    write_json(out_json, result)
    return result


def evaluate_export(
    full: Path,
    quantized: Path,
    *,
    heldout: Path | None = None,
    stage: str | None = None,
    pairs_check: PairsCheck | None = None,
    judge_rate: JudgeRate | None = None,
    max_rows: int = 32,
    max_new_tokens: int = 256,
    memo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """compare() plus task checks on the rows `eval_rows` picks; writes and returns QUANTIZED/compare.json.
    QUANTIZED is a transformers folder (GPTQ, W8A8) or a GGUF export, each run on its own engine."""
    full, quantized = Path(full), Path(quantized)
    memo = {} if memo is None else memo
    rows, rows_used, source = eval_rows(full, heldout)
    result = compare(full, quantized, rows, quantized / "compare.json", memo=memo)
    result["heldout"] = str(source)
    result["rows_used"] = rows_used
    result["task"] = task_checks(full, quantized, rows, quantized, rows_used=rows_used,
                                 stage=stage or stage_of(full, rows, pairs_check), pairs_check=pairs_check,
                                 judge_rate=judge_rate, max_rows=max_rows, max_new_tokens=max_new_tokens, memo=memo)
    write_json(quantized / "compare.json", result)
    return result


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else str(value)


def task_rows(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Task checks as (check, full, quantized) records."""
    rows = []
    if isinstance(task.get("valid_5_pairs"), dict):
        rows.append({"check": "valid JSON, 5 distinct pairs", "full": _pct(task["valid_5_pairs"]["full"]),
                     "quantized": _pct(task["valid_5_pairs"]["quantized"])})
    agree = task.get("agreement") or {}
    rows.append({"check": "greedy answers identical to full", "full": "", "quantized": _pct(agree.get("identical"))})
    rows.append({"check": "greedy token overlap with full", "full": "", "quantized": _pct(agree.get("token_overlap"))})
    stops = task.get("stopped_at_end_of_turn") or {}
    rows.append({"check": "stopped at end-of-turn", "full": _pct(stops.get("full")), "quantized": _pct(stops.get("quantized"))})
    if isinstance(task.get("rate_ge3"), dict):
        rows.append({"check": "judged Rate(>=3)", "full": f"{task['rate_ge3']['full']:.2f}%",
                     "quantized": f"{task['rate_ge3']['quantized']:.2f}%"})
    return rows


def compare_section(path: Path) -> str:
    """compare.json as Markdown: metrics (full, quantized, ratio), task checks, and which rows were used."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    metrics = [m for m in ("perplexity", "total_bytes", "linear_bytes", "load_s", "tokens_per_s") if m in data.get("full", {})]
    text = records_table([{"metric": m, "full": data["full"][m], "quantized": data["quantized"].get(m, ""),
                           "ratio": data.get("ratios", {}).get(m, "")} for m in metrics])
    if data.get("task"):
        text += "\n\n" + records_table(task_rows(data["task"]))
    used = data.get("rows_used") or f"rows from {data.get('heldout', '?')}"
    return text + f"\n\nRows: {data.get('rows', '?')}, {used}."


# -- every format side by side, and the quality gate ------------------------------------------------------------

FORMATS_CAVEAT = ("Inside the interval is not equivalence: the interval is the full model's own sampling error on these "
                  "prompts, wide when they are few, and overlapping intervals on few items cannot show that a format "
                  "does the task as well as the full model.")


def task_rate(task: dict[str, Any], side: str) -> dict[str, Any] | None:
    """The task rate of `side` ("full" or "quantized") as part/total, percent and 95% Wilson interval: valid pairs
    for the pairs model, judged Rate(>=3) for the rewrite model (its count recovered from the percentage)."""
    from mga.judge.scores import percent, wilson_ci

    total = task.get("prompts") or 0
    if isinstance(task.get("valid_5_pairs"), dict):
        metric, share = "valid pairs", task["valid_5_pairs"].get(side)
    elif isinstance(task.get("rate_ge3"), dict):
        metric, share = "Rate(>=3)", task["rate_ge3"].get(side)
        share = None if share is None else share / 100
    else:
        return None
    if share is None or not total:
        return None
    part = round(share * total)
    return {"metric": metric, "part": part, "total": total, "rate": percent(part, total), "ci95": wilson_ci(part, total)}


def quality_gate(reference: dict[str, Any], formats: list[dict[str, Any]]) -> dict[str, Any]:
    """The smallest format whose task-rate point estimate lies inside the full model's 95% Wilson interval.

    `reference` and each format carry `format`, `bytes` and `task` (`task_rate`'s record, or None). Formats of
    equal size are told apart by the higher rate, then by name, so the answer never depends on their order."""
    if not reference.get("task"):
        return {"format": None, "interval": None,
                "reason": "the full model has no task rate (pairs model: valid pairs; rewrite model: pass --judge)"}
    low, high = reference["task"]["ci95"]
    inside = [f for f in formats if f.get("task") and low <= f["task"]["rate"] <= high]
    if not inside:
        return {"format": None, "interval": [low, high], "candidates": [],
                "reason": "no format's task rate lies inside the full model's interval"}
    best = min(inside, key=lambda f: (f["bytes"], -f["task"]["rate"], f["format"]))
    return {"format": best["format"], "bytes": best["bytes"], "interval": [low, high],
            "candidates": [f["format"] for f in sorted(inside, key=lambda f: (f["bytes"], f["format"]))]}


def formats_table(compares: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per format, the full model first, from the compare.json results of one full model on the same
    rows; with the quality gate."""
    if not compares:
        raise MgaError("no quantized export to tabulate")
    first = compares[0]

    def row(name: str, measured: dict[str, Any], task: dict[str, Any], side: str) -> dict[str, Any]:
        agree = task.get("agreement") if side == "quantized" else {"identical": 1.0, "token_overlap": 1.0}
        return {"format": name, "backend": measured.get("backend", "transformers"), "dtype": measured.get("dtype"),
                "bytes": measured.get("total_bytes"), "tokens_per_s": measured.get("tokens_per_s"),
                "perplexity": measured.get("perplexity"), "task": task_rate(task, side),
                "identical": (agree or {}).get("identical"), "token_overlap": (agree or {}).get("token_overlap")}

    rows = [row("full", first["full"], first.get("task") or {}, "full")]
    rows += [row(c.get("scheme") or Path(c["quantized"]["path"]).name, c["quantized"], c.get("task") or {}, "quantized")
             for c in compares]
    return {"rows_used": first.get("rows_used"), "heldout": first.get("heldout"), "rows": first.get("rows"),
            "prompts": (first.get("task") or {}).get("prompts"), "gen_tokens": first.get("gen_tokens"),
            "formats": rows, "gate": quality_gate(rows[0], rows[1:]), "caveat": FORMATS_CAVEAT}


def gate_line(table: dict[str, Any]) -> str:
    gate, metric = table["gate"], next((r["task"]["metric"] for r in table["formats"] if r.get("task")), "task rate")
    if gate.get("interval") is None:
        return f"Quality gate: none ({gate['reason']})."
    low, high = gate["interval"]
    if gate["format"] is None:
        return f"Quality gate: none (no format's {metric} rate lies inside the full model's 95% interval {low:.1f}-{high:.1f}%)."
    return (f"Quality gate: {gate['format']} ({gate['bytes'] / 1e6:.1f} MB), the smallest format whose {metric} rate "
            f"lies inside the full model's 95% interval {low:.1f}-{high:.1f}%.")


def formats_markdown(table: dict[str, Any]) -> str:
    """The formats table, the gate line, what the gate cannot tell and which rows were used."""
    def task_cell(task: dict[str, Any] | None) -> str:
        if not task:
            return "-"
        return f"{task['part']}/{task['total']} = {task['rate']:.1f}% [{task['ci95'][0]:.1f}, {task['ci95'][1]:.1f}]"

    metric = next((r["task"]["metric"] for r in table["formats"] if r.get("task")), "task rate")
    records = [{"format": r["format"], "backend": r["backend"],
                "size MB": f"{r['bytes'] / 1e6:.1f}" if isinstance(r["bytes"], int) else "-",
                "tokens/s": r["tokens_per_s"], "perplexity": r["perplexity"],
                f"{metric} (95% CI)": task_cell(r["task"]),
                "identical to full": _pct(r["identical"]), "token overlap": _pct(r["token_overlap"])}
               for r in table["formats"]]
    return (records_table(records) + f"\n\n{gate_line(table)} {table['caveat']}\n\n"
            f"Rows: {table.get('rows', '?')} scored for perplexity, {table.get('prompts', '?')} prompts answered greedily; "
            f"{table.get('rows_used')}.")



def formats_section(compare_files: list[Path]) -> str:
    """The formats table and gate of one full model's exports, from their compare.json files (for `mga run`)."""
    return formats_markdown(formats_table([json.loads(Path(f).read_text(encoding="utf-8")) for f in compare_files]))
