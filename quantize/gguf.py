"""GGUF for llama.cpp and Ollama: convert, quantize, export, verify.

A Qwen2/Llama checkpoint is written with the `gguf` package (the llama.cpp project's own writer), then quantized
by llama.cpp's quantizer (`llama_model_quantize` via llama-cpp-python). The file carries what a chat model needs
to be served as trained: the BPE vocabulary, merges and pre-tokenizer, the chat template (without transformers'
`{% generation %}` training markers), and the end-of-turn token as both eos and eot, so llama.cpp and Ollama
stop where the model was trained to stop. `gguf` 0.19 ships no converter script: this module is the converter
for the two architectures the toolkit trains (others are refused).

`export_gguf` runs the `gguf-f16` / `gguf-q8_0` / `gguf-q4_k_m` schemes end to end, into one folder ready for
llama.cpp and Ollama, written to a `.partial` sibling and renamed when complete and verified:

    OUT/model-<type>.gguf   weights, tokenizer, chat template, stop tokens (llama.cpp, llama-server, Ollama)
    OUT/Modelfile           `ollama create NAME -f OUT/Modelfile`: TEMPLATE and stop match the training template
    OUT/mga_quantize.json   scheme, source, library versions, and the verification run in llama.cpp

`verify_gguf` checks the file in llama.cpp itself, loaded as a user loads it: it must tokenize text exactly as
the transformers tokenizer does, render the chat template it carries exactly as the checkpoint's, and answer
chat prompts greedily like the full model (share of identical answers, token overlap), stopping at the
end-of-turn token when the full model does.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from mga.distill.core.console import console, track
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.core.weights import stored_digest, weight_files
from mga.distill.generate.llamacpp import default_threads
from mga.quantize.checkpoint import check_checkpoint
from mga.quantize.evaluate import agreement, chat_prompt, greedy, llama_greedy, load_llama
from mga.quantize.export_lint import SAMPLE_CHAT

GGUF_SCHEMES = {"gguf-f16": ("f16", "MOSTLY_F16"), "gguf-q8_0": ("q8_0", "MOSTLY_Q8_0"), "gguf-q4_k_m": ("q4_k_m", "MOSTLY_Q4_K_M")}
ARCHS = {"qwen2": "QWEN2", "llama": "LLAMA"}
PACKAGES = "llama-cpp-python==0.3.36 gguf==0.19.0"
# Pre-tokenizer regexes llama.cpp knows by name (convert_hf_to_gguf.py identifies them the same way).
_QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_RE = _QWEN2_RE.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
_GENERATION_TAGS = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def check_gguf_libraries() -> None:
    import importlib.util

    missing = [name for name in ("gguf", "llama_cpp") if importlib.util.find_spec(name) is None]
    if missing:
        raise MgaError(f"GGUF export needs {' and '.join(missing)}, not installed: pip install -c constraints.txt {PACKAGES}")


def check_gguf_architecture(config: dict[str, Any]) -> str:
    """The checkpoint's model_type when GGUF export supports it (Qwen2, Llama), else a clear refusal."""
    model_type = config.get("model_type", "?")
    if model_type not in ARCHS:
        raise MgaError(f"GGUF export supports Qwen2 and Llama checkpoints, not '{model_type}': use --scheme gptq-w4 "
                       "or w8a8 (vLLM), or llama.cpp's own convert_hf_to_gguf.py for this architecture")
    rope = config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or (config.get("rope_parameters") or {}).get("rope_type", "default")
    if rope_type not in (None, "default"):
        raise MgaError(f"GGUF export: rope scaling '{rope_type}' is not supported by this converter")
    return model_type


def strip_generation_tags(template: str) -> str:
    """transformers' `{% generation %}` markers only mask training loss; llama.cpp's Jinja does not know them."""
    return _GENERATION_TAGS.sub("", template)


def chat_template_of(checkpoint: Path) -> str:
    jinja, config = checkpoint / "chat_template.jinja", checkpoint / "tokenizer_config.json"
    template = jinja.read_text(encoding="utf-8") if jinja.exists() else None
    if template is None and config.exists():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    if not isinstance(template, str):
        raise MgaError(f"{checkpoint}: no chat template (chat_template.jinja or tokenizer_config.json): a tool model "
                       "served by llama.cpp/Ollama needs the template it was trained with")
    return strip_generation_tags(template)


def _pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise MgaError("GGUF export supports byte-level BPE tokenizers (GPT-2/Qwen2/Llama-3 style) only; "
                       "this tokenizer is not one (sentencepiece or byte-fallback BPE)")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel" and steps[0].get("use_regex", True):
        return "gpt-2"
    splits = [s.get("pattern", {}).get("Regex") for s in steps if s.get("type") == "Split"]
    if splits == [_QWEN2_RE]:
        return "qwen2"
    if splits == [_LLAMA3_RE]:
        return "llama-bpe"
    raise MgaError("GGUF export: the tokenizer's pre-tokenizer is none llama.cpp knows by name (gpt-2, qwen2, "
                   "llama-bpe); tokens would split differently in llama.cpp")


def _vocab(checkpoint: Path, vocab_size: int):
    """(tokens, token types, pre-tokenizer name) in id order, padded to the model's embedding rows.

    Read from the tokenizer as transformers loads it, not from tokenizer.json: for a `qwen2` checkpoint
    transformers swaps in Qwen2's pre-tokenizer, and that is how the model saw its training text."""
    import gguf
    from transformers import AutoTokenizer

    data = json.loads(AutoTokenizer.from_pretrained(checkpoint).backend_tokenizer.to_str())
    pre = _pre_tokenizer(data)
    by_id = {i: t for t, i in data["model"]["vocab"].items()}
    kinds = {i: gguf.TokenType.NORMAL for i in by_id}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    size = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    types = [kinds.get(i, gguf.TokenType.UNUSED) for i in range(size)]
    return tokens, types, pre


def _permute(weights, n_head: int):
    """HF Llama stores q/k rotated-half; llama.cpp's LLAMA graph applies interleaved RoPE (as convert_hf_to_gguf)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensors(checkpoint: Path, config: dict[str, Any], arch: str):
    """(gguf name, numpy array) for every weight, in the checkpoint's precision (f32 stays f32, else f16)."""
    import gguf
    import numpy as np
    import torch
    from safetensors import safe_open

    n_layers = config["num_hidden_layers"]
    names = gguf.TensorNameMap(getattr(gguf.MODEL_ARCH, ARCHS[arch]), n_layers)
    files = weight_files(checkpoint)
    if any(f.suffix != ".safetensors" for f in files):
        raise MgaError(f"{checkpoint}: GGUF export reads safetensors weights; re-save the checkpoint with safetensors")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.endswith("rotary_emb.inv_freq") or (key == "lm_head.weight" and config.get("tie_word_embeddings")):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise MgaError(f"GGUF export: no llama.cpp tensor for '{key}' in {file.name}")
                tensor = f.get_tensor(key)
                array = tensor.to(torch.float32).numpy()
                if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
                    heads = config["num_attention_heads"] if "q_proj" in key else config.get(
                        "num_key_value_heads", config["num_attention_heads"])
                    array = _permute(array, heads)
                half = array.ndim > 1 and tensor.dtype != torch.float32
                yield name, np.ascontiguousarray(array.astype(np.float16 if half else np.float32))


def write_gguf(checkpoint: Path, out_file: Path) -> Path:
    """The full-precision GGUF of a Qwen2/Llama checkpoint (weights, tokenizer, chat template, stop tokens)."""
    import gguf

    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    arch = check_gguf_architecture(config)
    if not (checkpoint / "tokenizer.json").exists():
        raise MgaError(f"{checkpoint}: no tokenizer.json (a fast tokenizer is needed for GGUF export)")
    tokenizer_config = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokens, types, pre = _vocab(checkpoint, config["vocab_size"])
    eos_text = tokenizer_config.get("eos_token")
    eos_text = eos_text.get("content") if isinstance(eos_text, dict) else eos_text
    if eos_text not in tokens:
        raise MgaError(f"{checkpoint}: the tokenizer has no eos token: the exported model would never stop")
    end_of_turn = tokens.index(eos_text)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    rope_theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)

    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, ARCHS[arch])])
    writer.add_name(checkpoint.name)
    writer.add_context_length(config.get("max_position_embeddings", 4096))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads", heads))
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_dimension_count(config.get("head_dim") or hidden // heads)
    writer.add_vocab_size(len(tokens))
    tensors = list(_tensors(checkpoint, config, arch))
    half = any(str(array.dtype) == "float16" for _, array in tensors)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if half else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(checkpoint, load_merges=True, n_vocab=len(tokens))
    special.chat_template = chat_template_of(checkpoint)
    special.special_token_ids["eos"] = end_of_turn  # generation stops at the end-of-turn token it was trained on
    special.add_to_gguf(writer, quiet=True)
    writer.add_eot_token_id(end_of_turn)
    if "bos" not in special.special_token_ids:
        writer.add_add_bos_token(False)
    for name, array in tensors:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


def llama_quantize(source: Path, out_file: Path, scheme: str, threads: int = 2) -> dict[str, Any]:
    """llama.cpp's own quantizer (`llama_model_quantize`) from the full-precision GGUF to `scheme`.

    Its per-tensor log goes to a file, not the user's terminal; returns what it said about fallbacks (K-quants
    need rows a multiple of 256 wide; narrower tensors fall back to legacy types)."""
    import tempfile

    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(gguf.LlamaFileType, GGUF_SCHEMES[scheme][1]))
    params.nthread = threads
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), ctypes.byref(params))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", errors="replace")
    if status != 0 or not out_file.exists():
        raise MgaError(f"llama.cpp could not quantize {source} to {scheme} (status {status}): {text[-500:]}")
    fallback = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback", text)
    return {"fallback_tensors": f"{fallback.group(1)} of {fallback.group(2)}" if fallback else "0"}


TOKENIZER_SAMPLES = [
    "The quick brown fox, 1234 times: don't stop!\n\n  Indented\tline.",
    "<|im_start|>user\nHello<|im_end|>\n",
    "Unicode: café, naïve, 中文, emoji 🙂.",
]


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


MARKER = "mga_quantize.json"


def gguf_file_name(scheme: str) -> str:
    return f"model-{GGUF_SCHEMES[scheme][0]}.gguf"


def _settings(checkpoint: Path, scheme: str) -> dict[str, Any]:
    """What makes a finished export reusable: the scheme and the source's bytes (`stored_digest`), not its path."""
    return {"scheme": scheme, "source_digest": stored_digest(checkpoint)}


def _reusable(out_dir: Path, scheme: str, settings: dict[str, Any]) -> bool:
    marker = out_dir / MARKER
    if not marker.exists() or not (out_dir / gguf_file_name(scheme)).exists():
        return False
    return json.loads(marker.read_text(encoding="utf-8")).get("settings") == settings


def export_gguf(
    checkpoint: Path,
    out_dir: Path,
    scheme: str,
    *,
    rows: list[dict[str, Any]] | None = None,
    rows_used: str = "",
    verify: bool = True,
    verify_rows: int = 8,
    verify_tokens: int = 128,
    threads: int | None = None,
) -> Path:
    """Convert, quantize with llama.cpp, write the Modelfile and verify in llama.cpp; returns `out_dir`."""
    from mga.quantize.ollama import modelfile
    from transformers import AutoTokenizer

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if scheme not in GGUF_SCHEMES:
        raise MgaError(f"unknown GGUF scheme '{scheme}': choose {', '.join(GGUF_SCHEMES)}")
    check_gguf_libraries()
    check_gguf_architecture(check_checkpoint(checkpoint))
    settings = _settings(checkpoint, scheme)
    if _reusable(out_dir, scheme, settings):
        console.print(f"  {out_dir}: finished {scheme} output with the same settings, reused", markup=False)
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise MgaError(f"{out_dir}: exists and is not an `mga quantize` output; choose another --output")
    threads = threads or min(8, default_threads())
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    console.print(f"  {scheme}: converting {checkpoint} -> {out_dir}", markup=False)
    started = time.time()
    source = write_gguf(checkpoint, partial / "model-full.gguf")
    converted = time.time()
    target = partial / gguf_file_name(scheme)
    quantizer = llama_quantize(source, target, scheme, threads=threads)
    source.unlink()
    quantized = time.time()
    stop = [tokenizer.eos_token]
    (partial / "Modelfile").write_text(modelfile(target.name, tokenizer, stop), encoding="utf-8")
    record: dict[str, Any] = {
        "scheme": scheme, "method": "gguf", "format": f"gguf {GGUF_SCHEMES[scheme][0]}", "source": str(checkpoint),
        "settings": settings, "file": target.name, "bytes": target.stat().st_size, "stop_tokens": stop, **quantizer,
        "library": f"gguf {importlib.metadata.version('gguf')}, llama-cpp-python {importlib.metadata.version('llama-cpp-python')}",
        "timings": {"convert_s": round(converted - started, 3), "quantize_s": round(quantized - converted, 3)},
    }
    if verify:
        record["verification"] = verify_gguf(target, checkpoint, rows or [], rows_used=rows_used,
                                                threads=threads, max_rows=verify_rows, max_new_tokens=verify_tokens)
        record["timings"]["verify_s"] = round(time.time() - quantized, 3)
    write_json(partial / MARKER, record)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    console.print(f"  {scheme}: {record['bytes'] / 1e6:.1f} MB in {time.time() - started:.1f}s -> "
                  f"{out_dir / target.name}", markup=False)
    return out_dir


def local_gguf(checkpoint: Path) -> Path:
    """The GGUF file that llama.cpp runs for a local generation backend: the file of a GGUF output folder, or an
    f16 export of a checkpoint beside it (`<checkpoint>.gguf-f16/`, reused while the checkpoint's digest is the
    one it was exported from: retrained weights are exported again, touched or copied ones are not).
    f16 keeps greedy answers as the checkpoint's (tests/test_llamacpp_backend.py); tokenizer and template are
    checked at export."""
    checkpoint = Path(checkpoint)
    marker = checkpoint / MARKER
    if marker.exists() and checkpoint.is_dir():
        record = json.loads(marker.read_text(encoding="utf-8"))
        if record.get("method") == "gguf":
            return checkpoint / record["file"]
    out_dir = checkpoint.with_name(f"{checkpoint.name}.gguf-f16")
    export_gguf(checkpoint, out_dir, "gguf-f16", verify=True)
    return out_dir / gguf_file_name("gguf-f16")
