"""A checkpoint folder's weight files, and a digest of what the model is (for content-keyed resume)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_READ = 8 << 20
DIGEST_FILE = "mga_digest.json"
_DIGESTED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def weight_files(folder: Path) -> list[Path]:
    """The full-model weight files of a checkpoint folder (a LoRA adapter's own weights do not count)."""
    folder = Path(folder)
    files = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return sorted(f for f in files if not f.name.startswith("adapter_model"))


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes (a packaged GGUF, an SFT data file, a GGUF tool model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digest(folder: Path) -> str:
    """A digest of the model in `folder`: its config, generation config, tokenizer and every weight byte.

    Bytes, not names or times: a tool model retrained into the same folder is another model, and a copy moved
    to another machine is the same one. Reading the weights once costs seconds for a 3B model."""
    digest = hashlib.blake2b(digest_size=16)
    for path in _digested_files(Path(folder)):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(_READ):
                digest.update(block)
    return digest.hexdigest()


def _digested_files(folder: Path) -> list[Path]:
    paths = [*(folder / n for n in _DIGESTED), *weight_files(folder),
             *sorted(folder.glob("adapter_model*")), *sorted(folder.glob("adapter_config.json"))]
    return [p for p in paths if p.is_file()]


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in _digested_files(folder)}


def stored_digest(folder: Path) -> str:
    """`checkpoint_digest(folder)`, computed once and kept in `folder/mga_digest.json`: the one identity of a
    checkpoint for every "already done?" check (quantize, the GGUF backend, train markers).

    The stored value is reused only while it still describes the folder: the same file names and sizes, and
    the digest file strictly newer than every file it covers. Training or copying into the folder writes newer
    files, so the bytes are read again; `cp -p` or a move keeps the times and the stored digest, which still
    describes the same bytes. A folder that cannot be written (a read-only install) gets its digest computed
    each time, and so does one written to while it was read."""
    folder = Path(folder)
    before = _stats(folder)
    sizes = {name: size for name, (size, _) in before.items()}
    stored = folder / DIGEST_FILE
    if stored.is_file():
        try:
            record = json.loads(stored.read_text(encoding="utf-8"))
            newest = max((mtime for _, mtime in before.values()), default=0)
            if record.get("files") == sizes and stored.stat().st_mtime_ns > newest:
                return record["digest"]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            pass
    digest = checkpoint_digest(folder)
    if _stats(folder) != before:
        return digest
    partial = stored.with_name(f".{DIGEST_FILE}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps({"digest": digest, "files": sizes}), encoding="utf-8")
        os.replace(partial, stored)
    except OSError:
        partial.unlink(missing_ok=True)
    return digest


def local_model_id(path: Path) -> str:
    """What a local model's answers are keyed by: its name and its bytes (a checkpoint folder's digest, a GGUF
    file's SHA-256), so a model retrained or re-exported under the same name never reuses the old one's rows."""
    path = Path(path)
    return f"{path.name}@{stored_digest(path) if path.is_dir() else file_digest(path)}"
