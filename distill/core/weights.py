"""A checkpoint folder's weight files, and a digest of what the model is (for content-keyed resume)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_READ = 8 << 20


def weight_files(folder: Path) -> list[Path]:
    """The full-model weight files of a checkpoint folder (a LoRA adapter's own weights do not count)."""
    folder = Path(folder)
    files = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return sorted(f for f in files if not f.name.startswith("adapter_model"))


def checkpoint_digest(folder: Path) -> str:
    """A digest of the model in `folder`: its config, generation config, tokenizer and every weight byte.

    Bytes, not names or times: a tool model retrained into the same folder is another model, and a copy moved
    to another machine is the same one. Reading the weights once costs seconds for a 3B model."""
    folder = Path(folder)
    digest = hashlib.blake2b(digest_size=16)
    names = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    for path in [*(folder / n for n in names), *weight_files(folder),
                 *sorted(folder.glob("adapter_model*")), *sorted(folder.glob("adapter_config.json"))]:
        if not path.is_file():
            continue
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(_READ):
                digest.update(block)
    return digest.hexdigest()
