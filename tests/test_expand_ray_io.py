"""The Ray executor's files: blocks cut for load balance, and a killed run's outputs folded, never re-sent.

Neither needs Ray to run: the cutting is plain file writing, and a run whose work is all in a killed run's
output folder folds it and starts no Ray at all.
"""

from __future__ import annotations

import json
import time

import pytest
from mga.distill.core.io import iter_rows, read_rows
from mga.distill.expand.ray_io import MAX_ITEMS_PER_FILE, SHARE, block_sizes, write_todo

from tests.test_expand import _expand, corpus, tool_models  # noqa: F401 (corpus is a fixture)


@pytest.mark.parametrize("items,workers,batch", [(200, 2, 8), (7, 4, 8), (100_000, 8, 8), (1_740, 2, 8),
                                                 (5_000, 1, 5), (3, 1, 1000)])
def test_blocks_are_whole_batches_that_shrink_to_one_batch(items, workers, batch):
    sizes = block_sizes(items, workers, batch)
    assert sum(sizes) == items and all(s > 0 for s in sizes)
    assert all(s % batch == 0 for s in sizes[:-1])  # no batch cut short but the very last
    assert all(s <= max(batch, MAX_ITEMS_PER_FILE) for s in sizes)
    assert sizes == sorted(sizes, reverse=True)  # large first, small last
    assert sizes[0] >= min(items, batch, -(-items // (SHARE * workers)))
    if items >= 4 * SHARE * workers * batch:
        # each worker has several blocks, the last ones a batch each: they finish within a batch of each other
        assert len(sizes) >= 2 * workers and all(s <= batch for s in sizes[-workers:])
        assert len(sizes) <= items // MAX_ITEMS_PER_FILE + SHARE * workers * 8  # few tasks to schedule


def test_todo_files_hold_every_item_once_in_order(tmp_path):
    items = [{"key": f"k{i}", "meta": {"n": i}} for i in range(203)]
    todo = write_todo(tmp_path, "rewrite", iter(items), len(items), workers=2, batch_size=8)
    sizes = [sum(1 for _ in open(f)) for f in todo.files]
    assert todo.items == 203 and sizes == block_sizes(203, 2, 8)
    back = [json.loads(row["item"]) for f in todo.files for row in iter_rows(f)]
    assert back == items


def test_a_killed_ray_runs_rows_are_folded_not_sent_again(corpus, tmp_path, fake_openai):  # noqa: F811
    server = fake_openai(tool_models)
    full = _expand(corpus, tmp_path, server)
    stream = tmp_path / "rewrites.jsonl"
    rows = read_rows(stream)
    stream.write_text("".join(json.dumps(r) + "\n" for r in rows[:-3]))
    out = tmp_path / ".ray" / "out-rewrite-killed"  # as Ray's writer left it when the driver was killed
    out.mkdir(parents=True)
    lines = [json.dumps({"item": json.dumps({"kind": "rewrite", "row": r, "t": time.time()})}) for r in rows[-3:]]
    (out / "part-0.json").write_text("\n".join(lines) + '\n{"item": "{\\"kind\\": \\"rew')  # and a torn line
    sent = len(server.requests)

    again = _expand(corpus, tmp_path, server, executor="ray", workers=2)
    assert len(server.requests) == sent  # nothing re-sent
    assert again["ray"]["workers"] == 0 and again["generated"]["rewrites"] == 3  # no Ray started
    assert sorted(map(json.dumps, read_rows(stream))) == sorted(map(json.dumps, rows))
    assert {k: again[k] for k in ("expanded", "rejected", "tokens_out")} == {
        k: full[k] for k in ("expanded", "rejected", "tokens_out")}
    assert not (tmp_path / ".ray").exists()
