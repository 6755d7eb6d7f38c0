"""Train the tiny test model for a few steps with a plain torch loop (shared by the loss-analysis and export tests)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from mga.distill.core.config import default_corpus_path
from mga.distill.core.io import read_rows


def corpus_split(holdout: int = 10) -> tuple[list[dict], list[dict]]:
    """(train, held-out) documents of the sample corpus: every `holdout`-th document is held out."""
    docs = read_rows(default_corpus_path())
    return [d for i, d in enumerate(docs) if i % holdout], [d for i, d in enumerate(docs) if i % holdout == 0]


def degenerate(text: str, words: int = 10, repeats: int = 20) -> str:
    """Collapsed 'synthetic' text: the document's first few lowercase words, looped."""
    return " ".join(re.findall(r"[a-z]+", text.lower())[:words] * repeats)


def _step(model, optimizer, loss, schedule=None) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad()


def train_steps(folder: Path, texts: list[str], steps: int, *, seed: int = 0, batch: int = 8, length: int = 64,
                lr: float = 3e-3, one_cycle: bool = False, max_doc_tokens: int | None = None) -> Path:
    """`steps` AdamW steps of next-token loss on random windows of the concatenated `texts` (each cut to
    `max_doc_tokens`), with a one-cycle schedule if asked; saved in place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([t for text in texts for t in tokenizer(text, add_special_tokens=False)["input_ids"][:max_doc_tokens]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1) if one_cycle else None
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - length - 1, (batch,))
        x = torch.stack([ids[s : s + length] for s in starts])
        _step(model, optimizer, model(input_ids=x, labels=x).loss, schedule)
    model.eval()
    model.save_pretrained(folder)
    return folder


PAIRS = [("Lecture notes", "first-year students"), ("Short poem", "children"), ("Quiz", "engineers"),
         ("Blog post", "retirees"), ("FAQ", "teachers")]


def pairs_chat_rows() -> list[dict]:
    """Short chat rows in the pairs model's shape: a passage of a sample document -> one fixed, short JSON answer of
    5 pairs, so that a tiny model learns the shape (and to stop after it) in a hundred steps."""
    import json

    answer = json.dumps({"pairs": [{"genre": g, "audience": a} for g, a in PAIRS]})
    return [{"messages": [{"role": "user", "content": "Pairs for: " + " ".join(doc["text"].split()[:20])},
                          {"role": "assistant", "content": answer}], "docid": doc["id"], "key": f"{doc['id']}:pairs"}
            for doc in read_rows(default_corpus_path())]


def continue_chat_rows() -> list[dict]:
    """Chat rows whose answer depends on the prompt: 'Continue:' 30 words of a document -> its next 20 words."""
    rows = []
    for doc in read_rows(default_corpus_path()):
        words = doc["text"].split()
        rows.append({"messages": [{"role": "user", "content": "Continue: " + " ".join(words[:30])},
                                  {"role": "assistant", "content": " ".join(words[30:50])}],
                     "docid": doc["id"], "key": f"{doc['id']}:continue"})
    return rows


def train_chat(folder: Path, rows: list[dict], steps: int, *, seed: int = 0, batch: int = 8, max_length: int = 256,
               lr: float = 3e-3) -> Path:
    """`steps` AdamW steps on whole chat conversations (rendered with the model's template, eos included)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    examples = []  # (ids, labels): loss on the answer and its end-of-turn token only
    for r in rows:
        prompt = tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
        cut = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        examples.append((ids[-max_length:], ([-100] * cut + ids[cut:])[-max_length:]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        picked = [examples[i] for i in torch.randint(0, len(examples), (batch,)).tolist()]
        width = max(len(ids) for ids, _ in picked)
        x = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in picked])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in picked])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in picked])
        _step(model, optimizer, model(input_ids=x, attention_mask=mask, labels=labels).loss)
    model.eval()
    model.save_pretrained(folder)
    return folder


def pairs_run(root: Path, arch: str = "qwen2", steps: int = 120) -> Path:
    """root/model: a tiny `arch` model trained on pairs and continuation rows of 7 in 8 documents, the rest held
    out, with root/data/{train,eval}.jsonl
    and root/train_config.json (stage pairs) beside it, as `mga train` leaves them. Returns root/model."""
    import json

    from mga.distill.core.io import write_rows
    from mga.distill.train.tiny_model import build_tiny_model

    rows = [r for pair in zip(pairs_chat_rows(), continue_chat_rows()) for r in pair]  # both kinds, per document
    train, held = [r for i, r in enumerate(rows) if i // 2 % 8], [r for i, r in enumerate(rows) if i // 2 % 8 == 0]
    model = train_chat(build_tiny_model(root / "model", arch=arch, seed=0), train, steps)
    write_rows(root / "data" / "train.jsonl", train)
    write_rows(root / "data" / "eval.jsonl", held)
    (root / "train_config.json").write_text(json.dumps({"stage": "pairs"}))
    return model
