"""`mga expand` resumes by content: a rerun redoes exactly the rows whose text, prompt, parameters or model
changed, never reuses a stale row in the output, and says how many rows on disk it does not reuse.

The tool models are the loopback server (`tool_models` of test_expand); each test deletes the request cache,
so every row redone is a request the server sees.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from mga.distill.core.io import iter_rows, read_rows, write_rows
from mga.distill.core.weights import checkpoint_digest

from tests.test_expand import _expand, _kept, corpus, tool_models  # noqa: F401 (corpus is a fixture)

ADDED = " This sentence was added after the first run."


def _rerun(corpus_path: Path, out: Path, server, **kwargs) -> tuple[dict, Counter]:
    """Expand again with no request cache; the stats and the requests sent, per model."""
    (out / ".mga-cache.sqlite").unlink(missing_ok=True)
    before = len(server.requests)
    stats = _expand(corpus_path, out, server, **kwargs)
    return stats, Counter(r["model"] for r in server.requests[before:])


def test_a_changed_document_redoes_its_rows_only_and_the_output_holds_its_new_text(corpus, tmp_path, fake_openai,  # noqa: F811
                                                                                   capsys):
    server = fake_openai(tool_models)
    docs = list(iter_rows(corpus))
    first = _expand(corpus, tmp_path / "out", server)
    changed = next(d for d in docs if d["id"] != "pydoc-break")
    kept_before = sum(r["meta"]["docid"] == changed["id"] for r in _kept(tmp_path / "out"))
    edited = write_rows(tmp_path / "edited.jsonl",
                        [{**d, "text": d["text"] + ADDED} if d["id"] == changed["id"] else d for d in docs])

    capsys.readouterr()
    again, sent = _rerun(edited, tmp_path / "out", server)
    assert sent == {"slm-pairs": 1, "slm-rewrite": 5}  # one chunk's pairs and its five rewrites, nothing else
    assert again["generated"] == {"pairs": 1, "rewrites": 5}
    assert "1 row(s) on disk were made from another text" in capsys.readouterr().err

    rows = [r for r in _kept(tmp_path / "out") if r["meta"]["docid"] == changed["id"]]
    assert len(rows) == kept_before > 0 and all(ADDED in r["meta"]["raw_text"] for r in rows)
    assert {k: again[k] for k in ("documents", "chunks", "rewrites", "expanded")} == {
        k: first[k] for k in ("documents", "chunks", "rewrites", "expanded")}

    back, sent = _rerun(corpus, tmp_path / "out", server)  # the original text: its rows are still on disk
    assert sent == {} and back["generated"] == {"pairs": 0, "rewrites": 0}
    assert not any(ADDED in r["meta"]["raw_text"] for r in _kept(tmp_path / "out"))


def test_another_rewrite_model_redoes_the_rewrites_only_and_a_temperature_both(corpus, tmp_path,  # noqa: F811
                                                                                      fake_openai):
    server = fake_openai(tool_models)
    first = _expand(corpus, tmp_path / "out", server)
    pairs_requests = sum(r["model"] == "slm-pairs" for r in server.requests)  # invalid answers are asked again
    _, sent = _rerun(corpus, tmp_path / "out", server, rewrite_model="slm-rewrite-v2")
    assert sent == {"slm-rewrite-v2": first["rewrites"]}
    assert {r["model"] for r in _kept(tmp_path / "out")} == {"slm-rewrite-v2"}

    _, sent = _rerun(corpus, tmp_path / "out", server, rewrite_model="slm-rewrite-v2", temperature=0.7)
    # the parameters are part of what made a row; the temperature applies to both tool models
    assert sent == {"slm-pairs": pairs_requests, "slm-rewrite-v2": first["rewrites"]}


def test_rows_without_digests_are_redone_not_trusted(corpus, tmp_path, fake_openai, capsys):  # noqa: F811
    server = fake_openai(tool_models)
    first = _expand(corpus, tmp_path / "out", server)
    pairs_requests = sum(r["model"] == "slm-pairs" for r in server.requests)
    for name in ("pairs.jsonl", "rewrites.jsonl"):  # as an older version wrote them
        path = tmp_path / "out" / name
        write_rows(path, [{k: v for k, v in r.items() if k != "digest"} for r in read_rows(path)])

    capsys.readouterr()
    again, sent = _rerun(corpus, tmp_path / "out", server)
    assert sent == {"slm-pairs": pairs_requests, "slm-rewrite": first["rewrites"]}
    err = capsys.readouterr().err
    assert f"{first['chunks']} row(s) on disk" in err and f"{first['rewrites']} row(s) on disk" in err
    assert again["expanded"] == first["expanded"]


def test_a_checkpoint_is_identified_by_its_bytes_not_its_name_or_time(tmp_path):
    model = tmp_path / "slm-2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    digest = checkpoint_digest(model)

    copy = shutil.copytree(model, tmp_path / "elsewhere" / "slm-2")  # new times, same bytes
    assert checkpoint_digest(copy) == digest
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[5000] ^= 1  # retrained in place: one byte differs
    (model / "model.safetensors").write_bytes(bytes(weights))
    assert checkpoint_digest(model) != digest
    (copy / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert checkpoint_digest(copy) != digest
