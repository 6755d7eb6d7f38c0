"""`quantize_checkpoint`: one entry point for every scheme; checks the input, calibrates, writes a loadable folder.

The output folder is what vLLM and transformers load as is: quantized weights, `config.json` with its
`quantization_config`, the source's tokenizer, chat template and generation config copied verbatim, and
`mga_quantize.json` recording the scheme, the calibration rows (ids and hashes) and timings. It is written
to a `.partial` sibling and renamed when complete, so a rerun with the same settings reuses a finished
output and never mistakes a half-written one for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.core.weights import stored_digest, weight_files
from mga.quantize.calibration import text_hash
from mga.quantize.checkpoint import check_checkpoint

MARKER = "mga_quantize.json"
MIN_CALIBRATION_ROWS = 8
# Files that make the folder usable as a chat model; copied verbatim from the source so nothing drifts.
CARRIED_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json", "generation_config.json",
)


@dataclass(frozen=True)
class Scheme:
    name: str
    method: str  # "gptq" (GPTQModel) or "w8a8" (llm-compressor)
    bits: int
    library: str  # import name
    packages: str  # what to install when the library is missing
    format: str


SCHEMES = {
    "gptq-w4": Scheme("gptq-w4", "gptq", 4, "gptqmodel", "gptqmodel==7.6.0 optimum==2.3.0", "gptq"),
    "gptq-w8": Scheme("gptq-w8", "gptq", 8, "gptqmodel", "gptqmodel==7.6.0 optimum==2.3.0", "gptq"),
    "w8a8": Scheme("w8a8", "w8a8", 8, "llmcompressor", "llmcompressor==0.14.0.1 compressed-tensors==0.19.0",
                   "compressed-tensors int-quantized"),
    "gguf-f16": Scheme("gguf-f16", "gguf", 16, "llama_cpp", "llama-cpp-python==0.3.36 gguf==0.19.0", "gguf f16"),
    "gguf-q8_0": Scheme("gguf-q8_0", "gguf", 8, "llama_cpp", "llama-cpp-python==0.3.36 gguf==0.19.0", "gguf q8_0"),
    "gguf-q4_k_m": Scheme("gguf-q4_k_m", "gguf", 4, "llama_cpp", "llama-cpp-python==0.3.36 gguf==0.19.0", "gguf q4_k_m"),
}


def get_scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise MgaError(f"unknown quantization scheme '{name}': choose {', '.join(SCHEMES)}")
    scheme = SCHEMES[name]
    if importlib.util.find_spec(scheme.library) is None:
        raise MgaError(f"scheme {name} needs {scheme.library}, which is not installed: "
                       f"pip install -c constraints.txt {scheme.packages}")
    return scheme


def check_architecture(config: dict[str, Any], scheme: Scheme, group_size: int) -> None:
    model_type = config.get("model_type", "?")
    if scheme.method == "gptq":
        from mga.quantize.gptq import supported_model_types

        if model_type not in supported_model_types():
            raise MgaError(f"architecture '{model_type}' is not supported by GPTQModel; "
                           "use a Llama/Qwen/Mistral-family student, or --scheme w8a8")
    widths = {name: config[name] for name in ("hidden_size", "intermediate_size") if isinstance(config.get(name), int)}
    if scheme.method == "gptq" and group_size > 0:
        bad = {name: width for name, width in widths.items() if width % group_size}
        if bad:
            raise MgaError(f"group size {group_size} does not divide {', '.join(f'{k}={v}' for k, v in bad.items())}; "
                           "pick a divisor (e.g. 32, 64, 128) or -1 for per-channel")
    elif scheme.method == "gptq" and group_size != -1:
        raise MgaError(f"group size must be positive or -1 (per channel), got {group_size}")


def check_device(device: str | None) -> str | None:
    """`None` lets the libraries pick (GPU when visible, else CPU); asking for CUDA without one is an error."""
    if device is None or device == "cpu":
        return device
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MgaError(f"--device {device} needs a CUDA GPU and none is visible; "
                       "omit --device to quantize on CPU (all three schemes quantize on CPU)")
    return device


def _finished(out_dir: Path, settings: dict[str, Any]) -> bool:
    marker = out_dir / MARKER
    if not marker.exists() or not weight_files(out_dir):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("settings") == settings
    except json.JSONDecodeError:
        return False


def _carry_files(checkpoint: Path, out_dir: Path) -> list[str]:
    carried = []
    for name in CARRIED_FILES:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, out_dir / name)
            carried.append(name)
    return carried


def _lint(checkpoint: Path, exported: Path) -> None:
    """A folder a serving engine would misread is an error now, not a surprise at serving (`export_lint`)."""
    from mga.quantize.export_lint import lint_export

    problems = lint_export(checkpoint, exported)
    if problems:
        raise MgaError(f"export check failed for {exported} (not published):\n" + "\n".join(f"  {p}" for p in problems))


def default_calibration(checkpoint: Path, tokenizer, *, num_samples: int, max_length: int, seed: int):
    """The SFT rows `mga train` saved beside the checkpoint (`../data/train.jsonl`), with the sample corpus."""
    from mga.distill.core.config import default_corpus_path
    from mga.quantize.calibration import build_calibration

    sft_train = checkpoint.parent / "data" / "train.jsonl"
    if not sft_train.exists():
        console.print(f"  calibration: no {sft_train}; using general corpus text only (pass --calibration "
                      "SFT_TRAIN_JSONL to calibrate on the tool's own prompts)", markup=False)
    return build_calibration(tokenizer, sft_rows=sft_train if sft_train.exists() else None,
                             corpus_path=default_corpus_path(), num_samples=num_samples,
                             max_length=max_length, seed=seed)


def quantize_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    scheme: str,
    *,
    group_size: int = 128,
    desc_act: bool = False,
    calibration: list[str] | None = None,
    num_samples: int = 512,
    max_length: int = 2048,
    seed: int = 0,
    calibration_record: list[dict] | None = None,
    device: str | None = None,
    heldout: Path | None = None,
    verify_rows: int = 8,
    verify_tokens: int = 128,
) -> Path:
    """Quantize a full or merged checkpoint with `scheme` (gptq-w4, gptq-w8, w8a8, gguf-*) into `out_dir`; returns it.

    `calibration` holds ready texts (see `mga.quantize.calibration.build_calibration`, whose record can be passed
    as `calibration_record`); when None, the SFT rows beside the checkpoint and the sample corpus are used.
    At most `num_samples` texts are used, each cut to `max_length` tokens. `heldout`: the rows a GGUF export
    is compared on greedily (default: those `evaluate.eval_rows` finds beside the checkpoint): `verify_rows`
    prompts of `verify_tokens` new tokens each, the full model answering in transformers (the slow half on CPUs).
    """
    from transformers import AutoTokenizer

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    spec = get_scheme(scheme)
    if spec.method == "gguf":  # no calibration: llama.cpp's quantizer is data-free
        from mga.quantize.gguf import export_gguf
        from mga.quantize.evaluate import eval_rows

        try:
            rows, rows_used, _ = eval_rows(checkpoint, heldout)
        except MgaError:
            rows, rows_used = [], "no SFT rows beside the checkpoint: greedy answers not compared"
        return export_gguf(checkpoint, out_dir, scheme, rows=rows, rows_used=rows_used, verify_rows=verify_rows,
                           verify_tokens=verify_tokens)
    config = check_checkpoint(checkpoint)
    check_architecture(config, spec, group_size)
    device = check_device(device)
    if desc_act and spec.method != "gptq":
        raise MgaError("--desc-act applies to the GPTQ schemes only")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if calibration is None:
        calibration, calibration_record = default_calibration(
            checkpoint, tokenizer, num_samples=num_samples, max_length=max_length, seed=seed)
    picked = [(i, t) for i, t in enumerate(calibration[:num_samples]) if isinstance(t, str) and t.strip()]
    if len(picked) < MIN_CALIBRATION_ROWS:
        raise MgaError(f"too little calibration data: {len(picked)} non-empty texts, need at least "
                       f"{MIN_CALIBRATION_ROWS} (about 512 recommended); pass --calibration SFT_TRAIN_JSONL "
                       "or raise --samples")
    if len(picked) < num_samples:
        console.print(f"  calibration: {len(picked)} texts available, fewer than the {num_samples} asked",
                      markup=False)
    texts = [t for _, t in picked]
    if calibration_record is None or len(calibration_record) != len(calibration):
        rows = [{"source": "given", "index": i, "sha256": text_hash(t)} for i, t in picked]
    else:
        rows = [calibration_record[i] for i, _ in picked]

    settings = {
        "scheme": spec.name, "bits": spec.bits, "group_size": group_size if spec.method == "gptq" else None,
        "desc_act": desc_act, "max_length": max_length, "seed": seed, "source_digest": stored_digest(checkpoint),
        "calibration_sha256": hashlib.sha256("".join(text_hash(t) for t in texts).encode()).hexdigest()[:16],
    }
    if _finished(out_dir, settings):
        console.print(f"  {out_dir}: finished {spec.name} output with the same settings, reused", markup=False)
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise MgaError(f"{out_dir}: exists and is not an `mga quantize` output; choose another --output")

    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    console.print(f"  quantizing {checkpoint} -> {out_dir} ({spec.name}, {len(texts)} calibration texts)", markup=False)
    started = time.time()
    if spec.method == "gptq":
        from mga.quantize.gptq import quantize_gptq

        timings = quantize_gptq(checkpoint, partial, texts, tokenizer=tokenizer, bits=spec.bits, group_size=group_size,
                                desc_act=desc_act, max_length=max_length, device=device)
    else:
        from mga.quantize.w8a8 import quantize_w8a8

        timings = quantize_w8a8(checkpoint, partial, texts, tokenizer=tokenizer, max_length=max_length,
                                device=device, seed=seed)
    carried = _carry_files(checkpoint, partial)
    _lint(checkpoint, partial)
    tokens = sum(len(tokenizer(t, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"])
                 for t in texts)
    write_json(partial / MARKER, {
        "scheme": spec.name, "method": spec.method, "bits": spec.bits, "format": spec.format,
        "group_size": settings["group_size"], "desc_act": desc_act,
        "library": f"{spec.library} {importlib.metadata.version(spec.library)}",
        "device": device or "auto", "source": str(checkpoint), "settings": settings, "carried_files": carried,
        "calibration": {"rows": len(texts), "tokens": tokens, "max_length": max_length,
                        "sources": {s: sum(r.get("source") == s for r in rows) for s in {r.get("source") for r in rows}},
                        "used": rows},
        "timings": {**{k: round(v, 3) for k, v in timings.items()}, "total_s": round(time.time() - started, 3)},
    })
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    console.print(f"  {spec.name}: done in {time.time() - started:.1f}s -> {out_dir}", markup=False)
    return out_dir
