"""`--until` and `--from` name stage kinds, and every instance of a kind (one per variant, per scheme) is honoured."""

from __future__ import annotations

import json

import pytest
from mga.distill.pipeline import stages
from mga.distill.pipeline.pipeline import Pipeline, run_pipeline
from mga.distill.pipeline.runner import Runner, StopPipeline
from mga.distill.pipeline.stages import Checkpoint

from tests.test_dry_run import _kind, _recipe, teacher
from tests.test_reask import corpus  # noqa: F401 (fixture)


def _records(run_dir) -> set[str]:
    return set(json.loads((run_dir / "manifest.json").read_text())["stages"])


def test_until_label_rewrites_labels_every_variant(tmp_path, corpus, fake_openai):  # noqa: F811
    server = fake_openai(teacher)
    cfg = _recipe(tmp_path, corpus, server.url)  # variants base and strict
    run_dir = run_pipeline(cfg, until="label-rewrites")
    assert {"label-rewrites@base", "label-rewrites@strict"} <= _records(run_dir)
    assert all((run_dir / "labels" / f"rewrites.{v}.jsonl").exists() for v in ("base", "strict"))
    assert not any(_kind(body) == "judge" for body in server.requests)  # nothing of a later kind ran

    sent = len(server.requests)
    run_pipeline(cfg, from_stage="label-rewrites", until="label-rewrites")  # redone, every variant: from the cache
    assert len(server.requests) == sent
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(manifest[f"label-rewrites@{v}"]["info"]["rows_out"] > 0 for v in ("base", "strict"))


def test_until_quantize_exports_every_scheme(tmp_path, corpus, monkeypatch):  # noqa: F811
    """The quantize stages of every scheme run; the first judge-quantized stage of each ends only that scheme."""
    exported = []

    def fake_quantize(checkpoint, out_dir, scheme, cfg, corpus, heldout=None):
        exported.append((checkpoint.name, scheme))
        (out_dir / "mga_quantize.json").write_text("{}")
        return {"checkpoint": str(out_dir)}

    monkeypatch.setattr(stages, "quantize", fake_quantize)
    raw = _recipe(tmp_path, corpus, "http://127.0.0.1:9/v1").model_dump(mode="json")
    raw["quantize"]["schemes"] = ["gptq-w4", "gptq-w8", "gguf-q8_0"]
    from mga.distill.pipeline.recipe import validate_recipe

    cfg = validate_recipe(raw)
    pipeline = Pipeline(cfg, Runner(cfg.out_dir, cfg.teacher, until="quantize"))
    heldout = tmp_path / "heldout.jsonl"  # the eval documents' rows (no split in this test)
    heldout.write_text("")
    monkeypatch.setattr(pipeline, "heldout_rows", lambda stage: heldout)
    checkpoints = {}
    for stage in ("pairs", "rewrite"):
        checkpoint = tmp_path / "models" / stage
        checkpoint.mkdir(parents=True)
        marker = checkpoint / "mga_checkpoint.txt"
        marker.write_text(str(checkpoint))
        checkpoints[stage] = Checkpoint(checkpoint, marker)
    with pytest.raises(StopPipeline, match="judge-quantized"):
        pipeline.quantize(checkpoints, tmp_path / "eval.jsonl", "base", {})
    assert sorted(exported) == sorted((stage, scheme) for stage in ("pairs", "rewrite") for scheme in cfg.quantize.schemes)
