"""SFT of one tool model (stage `pairs` or `rewrite`) with TRL's `SFTTrainer`: full fine-tune, LoRA or QLoRA.

Loss on assistant tokens only (the template's `{% generation %}` span, which includes the end-of-turn EOS, so
the model learns to stop); the tokenizer is checked before any weights load (`mga.distill.train.tokenizer_check`).
`SFTConfig` fields come straight from the recipe's `train:` section; on CPU `use_cpu=True, bf16=False` are
filled in, on CUDA bf16 where the GPU supports it.

Run directory (`out_dir`):
    model/             the checkpoint to use downstream: full fine-tune, or LoRA merged into the base
    adapter/           the LoRA adapter (LoRA runs); it is the checkpoint when `merge` is off
    trainer/           trainer checkpoints while training (a rerun resumes from them; removed when done)
    train_config.json  the training config (no secrets: `mga.distill.core.secrets`), student, stage, data files
    split.json         train/eval document ids (copied from the SFT data folder)
    log_history.json   the trainer's log; loss.png its loss curve
    train_done.json    finished marker: a rerun with the same config and data returns at once
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows, write_json
from mga.distill.train.config import TrainConfig
from mga.distill.train.job import DONE, STARTED, TrainJob, plan_run
from mga.distill.train.tokenizer_check import check_tokenizer, sync_special_tokens


def _load_messages(path: Path | None):
    from datasets import Dataset

    if path is None or not Path(path).exists():
        return None
    rows = [{"messages": r["messages"]} for r in read_rows(path)]
    return Dataset.from_list(rows) if rows else None


def _load_tokenizer(student: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(student)
    except (OSError, ValueError) as e:
        raise MgaError(f"cannot load the student's tokenizer from '{student}': {str(e).splitlines()[0]}") from None


def _sft_kwargs(cfg: TrainConfig, out_dir: Path, has_eval: bool) -> dict[str, Any]:
    """`cfg.sft_kwargs()` plus run-directory paths and device-safe defaults (recipe values always win)."""
    import torch

    kwargs = cfg.sft_kwargs()
    kwargs["output_dir"] = str(out_dir / "trainer")
    cuda = torch.cuda.is_available() and not kwargs.get("use_cpu")
    if cuda:
        kwargs.setdefault("bf16", torch.cuda.is_bf16_supported())
    else:
        kwargs.setdefault("use_cpu", True)
        kwargs.setdefault("bf16", False)
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_total_limit", 2)
    if has_eval:
        kwargs.setdefault("eval_strategy", "epoch")
    elif kwargs.get("eval_strategy", "no") != "no":
        console.print("note: no evaluation examples; eval_strategy set to 'no'", markup=False, soft_wrap=True)
        kwargs["eval_strategy"] = "no"
    if kwargs.get("padding_free") and not kwargs.get("packing"):
        # TRL enforces no max_length when padding-free without packing; BFD packing is padding-free *and*
        # respects max_length (sequences are concatenated without padding, attention stays per sequence).
        kwargs["packing"] = True
        kwargs.setdefault("packing_strategy", "bfd")
    return kwargs


def _load_model(student: str, cfg: TrainConfig, args: Any):
    import torch
    from transformers import AutoModelForCausalLM

    bf16 = bool(args.bf16)
    extra: dict[str, Any] = {}
    if cfg.qlora:
        if cfg.lora is None:
            raise MgaError("train.qlora needs train.lora (QLoRA trains a LoRA adapter on a 4-bit base)")
        if not torch.cuda.is_available():
            raise MgaError("train.qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use LoRA or a full fine-tune")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise MgaError("train.qlora needs bitsandbytes: pip install -c constraints.txt bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if bf16 else torch.float32, **extra)
    except (OSError, ValueError) as e:
        raise MgaError(f"cannot load the student model from '{student}': {str(e).splitlines()[0]}") from None
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    return model


def build_trainer(
    train_path: str | Path,
    eval_path: str | Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    student: str,
):
    """A ready `SFTTrainer` (tokenizer checked, model loaded, LoRA applied): what `train_tool_model` runs."""
    from mga.distill.train.sft_args import sft_config
    from peft import LoraConfig
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    train_ds = _load_messages(Path(train_path))
    if train_ds is None:
        raise MgaError(f"{train_path}: no training examples")
    eval_ds = _load_messages(Path(eval_path)) if eval_path else None
    kwargs = _sft_kwargs(cfg, out_dir, eval_ds is not None)
    tokenizer = _load_tokenizer(student)
    for name in ("eos_token", "pad_token"):  # recipe overrides first, so the check sees what training uses
        if kwargs.get(name):
            setattr(tokenizer, name, kwargs[name])
    try:
        args = sft_config(kwargs)
    except (ValueError, TypeError) as e:
        raise MgaError(f"train: invalid SFT settings: {str(e).splitlines()[0]}") from None
    check_tokenizer(tokenizer, assistant_only_loss=args.assistant_only_loss)
    try:
        peft_config = LoraConfig(**{"task_type": "CAUSAL_LM", **cfg.lora}) if cfg.lora is not None else None
    except (ValueError, TypeError) as e:
        raise MgaError(f"train.lora: {str(e).splitlines()[0]}") from None
    model = _load_model(student, cfg, args)
    sync_special_tokens(model, tokenizer)
    try:
        return SFTTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    except ValueError as e:
        raise MgaError(f"train: {str(e).splitlines()[0]}") from None


def _final_checkpoint(trainer: Any, out_dir: Path, cfg: TrainConfig, main: bool = True) -> Path:
    """Every process takes part in saving (FSDP and ZeRO-3 gather the shards); the main one writes the rest."""
    tokenizer = trainer.processing_class
    if cfg.lora is None:
        model_dir = out_dir / "model"
        sync_special_tokens(trainer.model, tokenizer)
        trainer.save_model(str(model_dir))
        if main:
            tokenizer.save_pretrained(model_dir)
        return model_dir
    adapter_dir = out_dir / "adapter"
    trainer.save_model(str(adapter_dir))
    if main:
        tokenizer.save_pretrained(adapter_dir)
    if not cfg.merge:
        return adapter_dir
    if not main:
        return out_dir / "model"
    from mga.distill.train.merge import merge_lora

    return merge_lora(adapter_dir, out_dir / "model")


def fit(job: TrainJob, cfg: TrainConfig) -> Path:
    """Train and save; in every process of a multi-process run (the main process alone writes files)."""
    from mga.distill.train.loss_plot import plot_loss

    train_path, eval_path, out_dir, student, stage = job.train_path, job.eval_path, job.out_dir, job.student, job.stage

    started_file, trainer_dir = out_dir / STARTED, out_dir / "trainer"
    resume = any(trainer_dir.glob("checkpoint-*"))
    trainer = build_trainer(train_path, eval_path, out_dir, cfg, student=student)
    main = trainer.is_world_process_zero()
    if main:
        write_json(started_file, {"fingerprint": job.fingerprint})
        write_json(
            out_dir / "train_config.json",
            {"stage": stage, "student": student, "train": str(train_path), "eval": str(eval_path) if eval_path else None,
             "config": cfg.model_dump(mode="json"), "processes": trainer.args.world_size},
        )
        if (split := train_path.parent / "split.json").exists():
            shutil.copyfile(split, out_dir / "split.json")
    say = console.print if main else (lambda *a, **k: None)
    if resume:
        say(f"train ({stage}): resuming from {trainer_dir}", markup=False, soft_wrap=True)
    kind = "LoRA" if cfg.lora is not None else "full"
    if len(trainer.train_dataset) == 0:
        raise MgaError(
            f"{train_path}: every example lost its answer to truncation at train.max_length={trainer.args.max_length} "
            "tokens; raise train.max_length"
        )
    say(f"train ({stage}): {kind} fine-tune of {student}, {len(trainer.train_dataset)} examples", markup=False, soft_wrap=True)
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    checkpoint = _final_checkpoint(trainer, out_dir, cfg, main)
    trainer.accelerator.wait_for_everyone()
    if main:
        log_history = trainer.state.log_history
        write_json(out_dir / "log_history.json", log_history)
        plot_loss(log_history, out_dir / "loss.png", title=f"SFT loss ({stage}, {kind})")
        shutil.rmtree(trainer_dir, ignore_errors=True)
        write_json(out_dir / DONE, {"fingerprint": job.fingerprint, "checkpoint": str(checkpoint), "metrics": result.metrics})
        started_file.unlink(missing_ok=True)
        say(f"train ({stage}): checkpoint -> {checkpoint}", markup=False, soft_wrap=True)
    return checkpoint


def train_tool_model(
    train_path: str | Path,
    eval_path: str | Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    student: str,
    stage: str,
) -> Path:
    """Fine-tune `student` on the SFT files in this process; returns the checkpoint to use downstream
    (out_dir/model, or out_dir/adapter for LoRA without merge). Resumes from trainer checkpoints; a finished
    run is not redone. Several processes: `mga.distill.train.launch.train`."""
    job = plan_run(train_path, eval_path, out_dir, cfg, student=student, stage=stage)
    return job.done or fit(job, cfg)
