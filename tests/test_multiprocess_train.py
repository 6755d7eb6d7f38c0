"""Training in two CPU processes (torchrun, gloo): the loss falls as in one process; bad plans are refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json, write_rows
from mga.distill.train.config import TrainConfig
from mga.distill.train.launch import (
    NAMED,
    check_plan,
    command,
    config_path,
    strategy,
    train,
)

from tests.test_sft import chat_rows


def _losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e]


def _cfg(**kw) -> TrainConfig:
    base = dict(learning_rate=5e-3, num_train_epochs=6, logging_steps=1, max_length=256, save_strategy="no",
                warmup_steps=0.0, seed=0, eval_fraction=0.0)
    return TrainConfig(**{**base, **kw})


def test_two_processes_train_like_one(tiny_model_dir, tmp_path, monkeypatch):
    """Same effective batch (1 x 4 vs 2 x 2), same steps: both runs' losses fall, to about the same level."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rows = chat_rows() * 2
    data = write_rows(tmp_path / "data" / "train.jsonl", rows)
    write_json(tmp_path / "data" / "split.json", {"train": [r["docid"] for r in rows], "eval": []})
    one = train(data, None, tmp_path / "one", _cfg(per_device_train_batch_size=4), student=str(tiny_model_dir),
                stage="rewrite")
    assert one == tmp_path / "one" / "model"
    two = train(data, None, tmp_path / "two", _cfg(per_device_train_batch_size=2, num_processes=2),
                student=str(tiny_model_dir), stage="rewrite")
    assert two == tmp_path / "two" / "model" and (two / "config.json").exists() and (two / "tokenizer.json").exists()
    config = json.loads((tmp_path / "two" / "train_config.json").read_text())
    assert config["processes"] == 2
    single, multi = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(single) == len(multi) >= 10
    assert multi[-1] < 0.5 * multi[0] and single[-1] < 0.5 * single[0]
    assert abs(multi[-1] - single[-1]) < 0.25 * single[0]
    assert not (tmp_path / "two" / "trainer").exists()
    # a rerun with the same config and data starts no process
    again = train(data, None, tmp_path / "two", _cfg(per_device_train_batch_size=2, num_processes=2),
                  student=str(tiny_model_dir), stage="rewrite")
    assert again == two


def test_shipped_configs_name_their_strategy():
    assert [strategy(config_path(name)) for name in NAMED] == ["ddp", "fsdp", "zero3"]
    assert strategy(None) == "ddp"
    with pytest.raises(MgaError, match="file not found"):
        config_path("no-such.yaml")


def test_known_bad_combinations_are_refused(tiny_model_dir):
    student = str(tiny_model_dir)
    with pytest.raises(MgaError, match="needs CUDA GPUs"):
        check_plan(_cfg(num_processes=2), student, "fsdp", cuda_devices=0)
    with pytest.raises(MgaError, match="lora with ZeRO-3 is refused"):
        check_plan(_cfg(num_processes=2, lora={"r": 8}), student, "zero3", cuda_devices=2)
    with pytest.raises(MgaError, match="ties its input and output embeddings"):
        check_plan(_cfg(num_processes=2), student, "fsdp", cuda_devices=2)
    with pytest.raises(MgaError, match="only 2 CUDA GPU"):
        check_plan(_cfg(num_processes=4), student, "ddp", cuda_devices=2)
    check_plan(_cfg(num_processes=2, lora={"r": 8}), student, "ddp", cuda_devices=0)  # fine: DDP over gloo


def test_launch_command_lines(tmp_path):
    spec = tmp_path / "launch.json"
    gpu = command(_cfg(num_processes=8), spec, config_path("zero3"), cuda=True)
    assert gpu[1:3] == ["-m", "accelerate.commands.launch"] and "--config_file" in gpu and "8" in gpu
    assert gpu[-3:] == ["-m", "mga.distill.train.worker", str(spec)]
    cpu = command(_cfg(num_processes=2), spec, None, cuda=False)
    assert cpu[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node" in cpu
    assert os.path.basename(cpu[0]).startswith("python")


def test_the_pipeline_refuses_a_bad_plan_before_any_stage(tmp_path):
    from mga.distill.pipeline.pipeline import run_pipeline
    from mga.distill.pipeline.recipe import validate_recipe

    cfg = validate_recipe({"name": "bad", "run_dir": str(tmp_path / "run"), "label": {"reference": "bundled"},
                           "judge": {"backend": "heuristic"},
                           "train": {"num_processes": 2, "accelerate_config": "zero3", "lora": {"r": 8}}})
    with pytest.raises(MgaError, match="needs CUDA GPUs"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()
