"""GPTQ 4/8-bit through GPTQModel (the maintained successor of AutoGPTQ; same checkpoint format, runs on CPU)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mga.distill.core.errors import MgaError


def _gptqmodel_env() -> None:
    """GPTQModel's CPU worker pool needs at least 2 workers even on a 2-core machine (read on first use)."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))


def supported_model_types() -> set[str]:
    _gptqmodel_env()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # GPTQModel prints a banner on import
        from gptqmodel.models.auto import SUPPORTED_MODELS

    return set(SUPPORTED_MODELS)


@contextlib.contextmanager
def _quiet_gptqmodel():
    """GPTQModel prints progress bars, tables and saved configs to stdout and writes timing logs to ./logs:
    keep all of it out of the user's way (its warnings and errors still surface as exceptions or on stderr)."""
    _gptqmodel_env()
    with tempfile.TemporaryDirectory(prefix="mga-gptq-logs-") as tmp, open(os.devnull, "w") as sink, \
            contextlib.redirect_stdout(sink):
        from gptqmodel.looper import loop_processor
        from logbar import LogBar

        bar = LogBar.shared()
        level, log_dir = bar.level, loop_processor._PROJECT_LOG_DIR
        bar.setLevel(logging.WARNING)
        loop_processor._PROJECT_LOG_DIR = Path(tmp)
        try:
            yield
        finally:
            loop_processor._PROJECT_LOG_DIR = log_dir
            bar.setLevel(level)


def quantize_gptq(
    checkpoint: Path,
    out_dir: Path,
    texts: list[str],
    *,
    tokenizer,
    bits: int,
    group_size: int,
    desc_act: bool,
    max_length: int,
    device: str | None,
) -> dict[str, Any]:
    """Quantize `checkpoint` into `out_dir` (GPTQ format, `quant_method: gptq`); returns timings in seconds."""
    calibration = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        calibration.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    with _quiet_gptqmodel():
        from gptqmodel import GPTQModel, QuantizeConfig

        config = QuantizeConfig(bits=bits, group_size=group_size, desc_act=desc_act, sym=True, device=device)
        started = time.perf_counter()
        model = GPTQModel.load(str(checkpoint), config, device=device)
        loaded = time.perf_counter()
        try:
            model.quantize(calibration, tokenizer=tokenizer, batch_size=1, calibration_data_min_length=1)
        except ValueError as e:
            raise MgaError(f"GPTQ quantization failed: {e}") from None
        quantized = time.perf_counter()
        model.save(str(out_dir))
    return {"load_s": loaded - started, "quantize_s": quantized - loaded, "save_s": time.perf_counter() - quantized}
