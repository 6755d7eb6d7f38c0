"""Training in several processes: `accelerate launch` on GPUs, `torchrun` (gloo) on CPU.

`train()` is what `mga train` and the pipeline's train stage call. With `train.num_processes` 1 and no
`train.accelerate_config` it trains in this process; otherwise this process checks the plan, clears stale
checkpoints, writes `<out>/launch.json` and starts N copies of `mga.distill.train.worker`, which train
together with TRL (data parallel, FSDP or ZeRO-3, as the accelerate config says) and save one checkpoint.
`accelerate launch --cpu` starts a single process, so on CPU the launcher is torchrun, which gives
accelerate's MULTI_CPU (gloo) mode. Combinations known to fail are refused before anything starts.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import write_json
from mga.distill.train.config import TrainConfig
from mga.distill.train.job import DONE, plan_run
from mga.distill.train.sft import train_tool_model

NAMED = ("ddp", "fsdp", "zero3")


def config_path(name: str) -> Path:
    """`ddp`, `fsdp`, `zero3` (package data: `data/accelerate/<name>.yaml`) or a path to a config file."""
    if name in NAMED:
        from mga.data import data_path

        path = data_path("accelerate", f"{name}.yaml")
        if not path.exists():
            raise MgaError(f"train.accelerate_config {name!r}: {path} is missing; give the path of an accelerate config")
        return path
    path = Path(name)
    if not path.is_file():
        raise MgaError(f"train.accelerate_config: file not found: {name} (or use one of {', '.join(NAMED)})")
    return path


def strategy(config: Path | None) -> str:
    """ddp, fsdp or zero3 (or zero1/zero2) from an accelerate config file; ddp without one."""
    if config is None:
        return "ddp"
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MgaError(f"{config}: invalid YAML: {e}") from None
    kind = str(data.get("distributed_type", "")).upper()
    if kind == "FSDP":
        return "fsdp"
    if kind == "DEEPSPEED":
        return f"zero{(data.get('deepspeed_config') or {}).get('zero_stage', 3)}"
    return "ddp"


def multi_process(cfg: TrainConfig) -> bool:
    return cfg.num_processes > 1 or cfg.accelerate_config is not None


def preflight(cfg: TrainConfig) -> None:
    """The checks that need no student, done before a pipeline spends anything on earlier stages."""
    if not multi_process(cfg):
        return
    import torch

    config = config_path(cfg.accelerate_config) if cfg.accelerate_config else None
    check_plan(cfg, None, strategy(config), torch.cuda.device_count() if torch.cuda.is_available() else 0)


def check_plan(cfg: TrainConfig, student: str | None, kind: str, cuda_devices: int) -> None:
    """Refuse, with the reason and the way out, the combinations known to fail (the student's own checks
    only when it is given)."""
    n = cfg.num_processes
    if kind != "ddp" and cuda_devices == 0:
        raise MgaError(f"train.accelerate_config {kind}: sharded training needs CUDA GPUs; on CPU only data "
                       "parallel (train.num_processes over gloo, no accelerate_config) runs")
    if cuda_devices and n > cuda_devices:
        raise MgaError(f"train.num_processes={n} but only {cuda_devices} CUDA GPU(s) are visible")
    if kind.startswith("zero"):
        if cfg.lora is not None or cfg.qlora:
            raise MgaError("train.lora with ZeRO-3 is refused: the sharded base cannot be merged with the adapter "
                           "and PEFT+ZeRO-3 saving is fragile; use accelerate_config ddp for LoRA (it fits one GPU)")
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise MgaError(f"train.accelerate_config {kind} needs DeepSpeed: pip install -c constraints.txt deepspeed") from None
    if kind == "fsdp":
        if cfg.qlora:
            raise MgaError("train.qlora with FSDP is refused (4-bit weights cannot be sharded here); use ddp")
        if student is None:
            return
        from transformers import AutoConfig

        try:
            tied = bool(getattr(AutoConfig.from_pretrained(student), "tie_word_embeddings", False))
        except (OSError, ValueError):
            tied = False
        if tied:
            raise MgaError(f"FSDP with '{student}' is refused: it ties its input and output embeddings (small Qwen2 "
                           "models do), which FSDP's wrapping breaks; use accelerate_config zero3 or ddp")


def command(cfg: TrainConfig, spec: Path, config: Path | None, cuda: bool) -> list[str]:
    """The launcher command line for N processes running `mga.distill.train.worker SPEC`."""
    worker = ["-m", "mga.distill.train.worker", str(spec)]
    launcher = cfg.launcher if cfg.launcher != "auto" else ("accelerate" if cuda else "torchrun")
    if launcher == "accelerate":
        args = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes)]
        if config is not None:
            args += ["--config_file", str(config)]
        if not cuda:
            args.append("--cpu")
        return [*args, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(cfg.num_processes), *worker]


def train(
    train_path: str | Path,
    eval_path: str | Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    student: str,
    stage: str,
) -> Path:
    """The checkpoint of `student` fine-tuned on the SFT files, in one process or several (see above)."""
    if not multi_process(cfg):
        return train_tool_model(train_path, eval_path, out_dir, cfg, student=student, stage=stage)
    import torch

    config = config_path(cfg.accelerate_config) if cfg.accelerate_config else None
    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    kind = strategy(config)
    job = plan_run(train_path, eval_path, out_dir, cfg, student=student, stage=stage)
    if job.done is not None:
        return job.done
    check_plan(cfg, job.student, kind, cuda_devices)
    out_dir = job.out_dir
    spec = write_json(out_dir / "launch.json", {"job": {k: str(v) if isinstance(v, Path) else v for k, v in vars(job).items()},
                                                "config": cfg.model_dump(mode="json")})
    cmd = command(cfg, spec, config, cuda_devices > 0)
    console.print(f"train ({stage}): {cfg.num_processes} processes, {kind}: {shlex.join(cmd)}", markup=False, soft_wrap=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    if cfg.hub_token is not None:  # launch.json holds no secret: the workers get the token as the Hub reads it
        env["HF_TOKEN"] = cfg.hub_token.get_secret_value()
    code = subprocess.run(cmd, env=env).returncode
    if code != 0:
        raise MgaError(f"train ({stage}): the {cfg.num_processes} training processes failed (exit {code}); see their "
                       f"output above; rerun to resume from the last trainer checkpoint in {out_dir / 'trainer'}")
    done_file = out_dir / DONE
    if not done_file.exists():
        raise MgaError(f"train ({stage}): the training processes ended without writing {done_file}")
    return Path(json.loads(done_file.read_text())["checkpoint"])
