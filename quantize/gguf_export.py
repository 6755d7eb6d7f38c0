"""`export_gguf`: the `gguf-f16` / `gguf-q8_0` / `gguf-q4_k_m` schemes end to end, into one folder ready for llama.cpp and Ollama.

    OUT/model-<type>.gguf   weights, tokenizer, chat template, stop tokens (llama.cpp, llama-server, Ollama)
    OUT/Modelfile           `ollama create NAME -f OUT/Modelfile`: TEMPLATE and stop match the training template
    OUT/mga_quantize.json   scheme, source, library versions, and the verification run in llama.cpp

Written to a `.partial` sibling and renamed when complete and verified, like the other schemes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.core.weights import weight_files
from mga.distill.generate.llamacpp import default_threads
from mga.quantize.checkpoint import check_checkpoint
from mga.quantize.gguf import (
    GGUF_SCHEMES,
    check_gguf_architecture,
    check_gguf_libraries,
    llama_quantize,
    write_gguf,
)

MARKER = "mga_quantize.json"


def gguf_file_name(scheme: str) -> str:
    return f"model-{GGUF_SCHEMES[scheme][0]}.gguf"


def _settings(checkpoint: Path, scheme: str) -> dict[str, Any]:
    return {"scheme": scheme, "source": str(checkpoint.resolve()),
            "source_weights": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in weight_files(checkpoint)]}


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
        from mga.quantize.gguf_verify import verify_gguf

        record["verification"] = verify_gguf(target, checkpoint, rows or [], rows_used=rows_used, threads=threads)
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
    f16 export of a checkpoint beside it (`<checkpoint>.gguf-f16/`, reused while the weights are unchanged).
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
