"""One checkpoint identity: the weights' digest, computed once and stored beside them (`stored_digest`), and the
reuse rules of quantized exports built on it."""

from __future__ import annotations

import json
import os
import shutil

from mga.distill.core.weights import DIGEST_FILE, checkpoint_digest, stored_digest


def _checkpoint(folder, weights: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _age(path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns - seconds * 10**9, stat.st_mtime_ns - seconds * 10**9))


def test_stored_digest_is_computed_once_and_kept_while_it_describes_the_folder(tmp_path):
    model = _checkpoint(tmp_path / "model", b"a" * 64)
    _age(model / "model.safetensors", 10)
    _age(model / "config.json", 10)
    digest = stored_digest(model)
    assert digest == checkpoint_digest(model)
    record = json.loads((model / DIGEST_FILE).read_text())
    assert record == {"digest": digest, "files": {"config.json": 23, "model.safetensors": 64}}
    # reused without reading the weights: a planted value comes back as long as the folder is unchanged
    (model / DIGEST_FILE).write_text(json.dumps({**record, "digest": "planted"}))
    assert stored_digest(model) == "planted"


def test_retrained_weights_are_digested_again_even_at_the_same_size(tmp_path):
    model = _checkpoint(tmp_path / "model", b"a" * 64)
    _age(model / "model.safetensors", 10)
    before = stored_digest(model)
    (model / "model.safetensors").write_bytes(b"b" * 64)  # same size, newer than the stored digest
    after = stored_digest(model)
    assert after != before and after == checkpoint_digest(model)
    assert json.loads((model / DIGEST_FILE).read_text())["digest"] == after


def test_a_copy_is_the_same_model_and_a_changed_size_is_not(tmp_path):
    model = _checkpoint(tmp_path / "model", b"a" * 64)
    digest = stored_digest(model)
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)  # copy2: times kept
    assert stored_digest(copy) == digest
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(model / name, plain / name)  # new times, no stored digest
    assert stored_digest(plain) == digest
    (copy / DIGEST_FILE).write_text(json.dumps({"digest": "stale", "files": {"config.json": 23, "model.safetensors": 63}}))
    os.utime(copy / DIGEST_FILE)
    assert stored_digest(copy) == digest  # sizes differ from the record: read again


def test_a_read_only_folder_still_gets_its_digest(tmp_path):
    model = _checkpoint(tmp_path / "model", b"a" * 64)
    model.chmod(0o555)
    try:
        assert stored_digest(model) == checkpoint_digest(model)
        assert not (model / DIGEST_FILE).exists() or os.geteuid() == 0
    finally:
        model.chmod(0o755)


def test_the_f16_gguf_of_a_checkpoint_is_reused_by_its_digest_not_by_its_times(tiny_model_dir, tmp_path):
    """`local_gguf` (the llama.cpp backend's file): touched weights are the same model, retrained ones are not."""
    import torch
    from mga.quantize.gguf import local_gguf
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    first = local_gguf(model)
    stamp = first.stat().st_mtime_ns
    weights = model / "model.safetensors"
    os.utime(weights)  # same bytes, newer time: what a size-and-mtime rule took for a new model
    assert local_gguf(model) == first and first.stat().st_mtime_ns == stamp
    moved = model.rename(tmp_path / "moved")  # another path, same bytes: the export beside it is still this model's
    (tmp_path / "model.gguf-f16").rename(tmp_path / "moved.gguf-f16")
    assert local_gguf(moved).stat().st_mtime_ns == stamp
    tensors = load_file(moved / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + torch.ones_like(tensors[name])  # retrained: same size, other bytes
    save_file(tensors, moved / "model.safetensors", metadata={"format": "pt"})
    again = local_gguf(moved)
    assert again.stat().st_mtime_ns != stamp
    record = json.loads((again.parent / "mga_quantize.json").read_text())
    assert record["settings"]["source_digest"] == checkpoint_digest(moved)
