"""SFT with TRL on the tiny model: loss goes down (full and LoRA), the loss mask is exactly the assistant
tokens, an overfit model stops with EOS and reproduces its answers, merged LoRA equals base + adapter,
and a student without a chat template is refused before any training."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from mga.distill.core.io import write_json, write_rows
from mga.distill.train.config import TrainConfig

ANSWERS = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "fish swim in the sea"]
PROMPTS = ["Cats and mats.", "Dogs in parks.", "Birds at dawn.", "Fish in the sea."]



def chat_rows() -> list[dict]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Rewrite the text."},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ],
            "docid": f"d{i}",
            "key": f"d{i}#0",
        }
        for i, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS, strict=True))
    ]


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    path = write_rows(tmp_path / "data" / "train.jsonl", chat_rows())
    write_json(tmp_path / "data" / "split.json", {"train": [r["docid"] for r in chat_rows()], "eval": []})
    return path


def losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e]


def cfg(**overrides) -> TrainConfig:
    base = dict(learning_rate=5e-3, num_train_epochs=10, per_device_train_batch_size=4, logging_steps=1,
                max_length=256, save_strategy="no", warmup_steps=0.0)
    return TrainConfig(**{**base, **overrides})


def run_cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    from mga.distill.cli.main import main

    monkeypatch.setattr(sys, "argv", ["mga", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0, capsys.readouterr().err


def test_mga_train_full_lowers_loss_and_fills_the_run_dir(tiny_model_dir, tmp_path, monkeypatch, capsys):
    rows = []
    for doc in range(6):
        meta = {"docid": f"doc{doc}", "chunk_id": 0, "source": "t", "raw_text": f"Cats {doc} sit on mats.",
                "genre": "a fable", "audience": "children", "pair_id": 0}
        rows.append({"meta": meta, "content_split": f"Once upon a time cat {doc} sat.", "variant": "base",
                     "status": "ok", "judge": {"score": 4, "status": "scored"}})
    write_rows(tmp_path / "kept.jsonl", rows)
    out = tmp_path / "run"
    args = ["train", "--stage", "rewrite", "--input", str(tmp_path / "kept.jsonl"), "--output", str(out),
            "--set", f"train.student={tiny_model_dir}", "--set", "train.learning_rate=3e-3",
            "--set", "train.num_train_epochs=2", "--set", "train.per_device_train_batch_size=2",
            "--set", "train.logging_steps=1", "--set", "train.eval_fraction=0.2", "--set", "train.warmup_steps=0",
            "--set", "train.save_strategy='no'"]
    code, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    assert f"checkpoint: {out / 'model'}" in err
    curve = losses(out)
    assert len(curve) >= 4 and curve[-1] < curve[0]
    for name in ("loss.png", "log_history.json", "train_config.json", "split.json", "model/config.json",
                 "model/tokenizer.json", "model/chat_template.jinja", "model/generation_config.json"):
        assert (out / name).exists(), name
    split = json.loads((out / "split.json").read_text())
    assert split["eval"] and not set(split["eval"]) & set(split["train"])
    generation = json.loads((out / "model" / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    assert generation["eos_token_id"] == AutoTokenizer.from_pretrained(out / "model").convert_tokens_to_ids("<|im_end|>")
    stamp = (out / "log_history.json").stat().st_mtime
    code, err = run_cli(monkeypatch, capsys, args)  # same config and data: nothing to redo
    assert code == 0 and "already trained" in err
    assert (out / "log_history.json").stat().st_mtime == stamp


def test_assistant_mask_is_exactly_the_answer_and_eos(tiny_model_dir, chat_data, tmp_path):
    from mga.distill.train.sft import build_trainer

    for packing in (False, True):
        trainer = build_trainer(chat_data, None, tmp_path / f"mask-{packing}", cfg(packing=packing),
                                student=str(tiny_model_dir))
        tok = trainer.processing_class
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
        runs = []  # decoded runs of consecutive trained positions
        for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
            current: list[int] = []
            for token, label in zip(ids, labels, strict=True):
                if label != -100:
                    assert label == token
                    current.append(token)
                elif current:
                    runs.append(tok.decode(current))
                    current = []
            if current:
                runs.append(tok.decode(current))
        assert sorted(runs) == sorted(a + "<|im_end|>" for a in ANSWERS), (packing, runs)
        if packing:  # padding-free: one flat row, no pad tokens at all
            assert batch["input_ids"].shape[0] == 1 and tok.pad_token_id not in batch["input_ids"].tolist()[0]


def test_overfit_model_stops_with_eos_and_reproduces_answers(tiny_model_dir, chat_data, tmp_path):
    from mga.distill.core.config import GenerationParams
    from mga.distill.generate.local import LocalGenerator
    from mga.distill.generate.protocol import Request
    from mga.distill.train.sft import train_tool_model

    checkpoint = train_tool_model(chat_data, None, tmp_path / "run", cfg(num_train_epochs=80, logging_steps=10),
                                  student=str(tiny_model_dir), stage="rewrite")
    assert checkpoint == tmp_path / "run" / "model"
    generator = LocalGenerator(str(checkpoint), batch_size=4)
    requests = [Request(r["key"], r["messages"][:-1], GenerationParams(temperature=0, max_tokens=24)) for r in chat_rows()]
    answers = {r.request.key: r.completion for r in generator.run(requests)}
    for row, expected in zip(chat_rows(), ANSWERS, strict=True):
        completion = answers[row["key"]]
        assert completion.finish_reason == "stop", completion
        assert completion.text == expected
        assert completion.completion_tokens < 24


def test_lora_lowers_loss_and_merge_equals_base_plus_adapter(tiny_model_dir, chat_data, tmp_path):
    import torch
    from mga.distill.train.merge import merge_lora
    from mga.distill.train.sft import train_tool_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
    out = tmp_path / "lora"
    checkpoint = train_tool_model(chat_data, None, out, cfg(lora=lora, learning_rate=1e-2, num_train_epochs=12),
                                  student=str(tiny_model_dir), stage="pairs")
    curve = losses(out)
    assert curve[-1] < curve[0] - 0.5
    assert checkpoint == out / "model" and (out / "adapter" / "adapter_config.json").exists()

    ids = torch.tensor([[5, 17, 99, 230, 7, 42, 1000, 12]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(out / "adapter")).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()(ids).logits
    assert (adapted - plain).abs().max() > 1e-2  # the adapter learned something
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)

    from mga.distill.core.errors import MgaError

    with pytest.raises(MgaError, match="not a LoRA adapter"):
        merge_lora(checkpoint, tmp_path / "again")


def test_lora_recipe_on_student_without_chat_template_fails_before_training(tiny_model_dir, tmp_path, monkeypatch, capsys):
    student = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, student)
    (student / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((student / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (student / "tokenizer_config.json").write_text(json.dumps(config))
    rows = [{"meta": {"docid": f"d{i}", "chunk_id": 0, "source": "", "raw_text": f"Text {i}."},
             "pairs": [{"genre": f"g{j}", "audience": f"a{j}"} for j in range(5)], "status": "ok"} for i in range(3)]
    write_rows(tmp_path / "pairs.jsonl", rows)
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(
        f"name: lora-test\ntrain:\n  student: {student}\n  lora: {{r: 8, lora_alpha: 16, target_modules: all-linear}}\n"
    )
    out = tmp_path / "run"
    code, err = run_cli(monkeypatch, capsys, ["train", "--stage", "pairs", "--input", str(tmp_path / "pairs.jsonl"),
                                              "--output", str(out), "--recipe", str(recipe)])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "no chat template" in errors[0], err
    assert "Traceback" not in err
    assert not (out / "trainer").exists() and not (out / "model").exists() and not (out / "log_history.json").exists()
