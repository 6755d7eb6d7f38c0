"""One checkpoint identity in `mga run`: the marker that stands for a checkpoint among later stages' inputs holds
its weights' digest, never a time, so those stages rerun exactly when the weights change; round 0 has the
packaged student's file as its input, so another file reruns it."""

from __future__ import annotations

from pathlib import Path

from mga.distill.core.weights import checkpoint_digest
from mga.distill.pipeline import stages
from mga.distill.pipeline.iterative_filtering import round_zero
from mga.distill.pipeline.recipe import validate_recipe
from mga.distill.pipeline.runner import Runner
from mga.distill.train import base_model
from mga.distill.train.base_model import BASE_MODELS, BaseModel


def _recipe(tmp_path: Path, student: str):
    return validate_recipe({"name": "identity", "run_dir": str(tmp_path / "run"), "train": {"student": student}})


def test_the_marker_holds_the_weights_digest_and_a_rerun_with_the_same_weights_writes_the_same_marker(tmp_path):
    cfg = _recipe(tmp_path, "tiny:qwen2:xs")
    marker = tmp_path / "round-0" / stages.MARKER
    stages.base_student(marker, cfg, tmp_path / "students")
    first = marker.read_text(encoding="utf-8")
    stages.base_student(marker, cfg, tmp_path / "students")
    assert marker.read_text(encoding="utf-8") == first  # a time would differ on every write
    path, digest = first.splitlines()
    assert digest == checkpoint_digest(Path(path))

    weights = Path(path) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight byte: another model
    weights.write_bytes(bytes(data))
    stages.base_student(marker, cfg, tmp_path / "students")
    assert marker.read_text(encoding="utf-8").splitlines()[1] == checkpoint_digest(Path(path)) != digest


def test_round_zero_reruns_when_the_packaged_student_file_changes(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "fake_student").mkdir(parents=True)
    (site / "fake_student" / "__init__.py").write_text("")
    gguf = site / "fake_student" / "student.gguf"
    gguf.write_bytes(b"GGUF one")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(BASE_MODELS, "fake-student", BaseModel(
        name="Fake", package="fake-student", version="0", module="fake_student", file="student.gguf", system_prompt="",
        license="MIT"))

    def convert(name: str, out: Path) -> Path:
        """Stands in for the GGUF conversion (tests/test_base_model.py runs the real one): the file's bytes as weights."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(base_model.gguf_path(name).read_bytes())
        return out

    monkeypatch.setattr(base_model, "build_base_model", convert)
    cfg = _recipe(tmp_path, "fake-student")
    runner = Runner(cfg.out_dir, cfg.teacher)

    def ran() -> bool:
        return runner.summary[-1]["ran"]

    first = round_zero(runner, cfg)
    digest = first.marker.read_text().splitlines()[1]
    assert ran() and digest == checkpoint_digest(first.path)
    round_zero(runner, cfg)
    assert not ran()  # nothing changed: skipped
    gguf.write_bytes(b"GGUF two")
    again = round_zero(runner, cfg)
    assert ran(), "another packaged file must rerun round 0"
    assert again.marker.read_text().splitlines()[1] == checkpoint_digest(again.path) != digest
