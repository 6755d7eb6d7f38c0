"""The Ray executor: blocks cut for load balance, a killed run's rows kept and never re-sent, failures loud.

The pairs model is the loopback server (as in test_expand); rewrites come from the tiny transformers model on
Ray actors, so the kill lands while actors generate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.schema import rewrite_key
from mga.distill.expand.blocks import MAX_ITEMS_PER_BLOCK, SHARE, block_sizes

from tests.test_expand import _expand, corpus, tool_models  # noqa: F401 (corpus is a fixture)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("items,workers,batch", [(200, 2, 8), (7, 4, 8), (100_000, 8, 8), (1_740, 2, 8),
                                                 (5_000, 1, 5), (3, 1, 1000)])
def test_blocks_are_whole_batches_that_shrink_to_one_batch(items, workers, batch):
    sizes = block_sizes(items, workers, batch)
    assert sum(sizes) == items and all(s > 0 for s in sizes)
    assert all(s % batch == 0 for s in sizes[:-1])  # no batch cut short but the very last
    assert all(s <= max(batch, MAX_ITEMS_PER_BLOCK) for s in sizes)
    assert sizes == sorted(sizes, reverse=True)  # large first, small last
    assert sizes[0] >= min(items, batch, -(-items // (SHARE * workers)))
    if items >= 4 * SHARE * workers * batch:
        # each worker has several blocks, the last ones a batch each: they finish within a batch of each other
        assert len(sizes) >= 2 * workers and all(s <= batch for s in sizes[-workers:])
        assert len(sizes) <= items // MAX_ITEMS_PER_BLOCK + SHARE * workers * 8  # few calls to schedule


RUN = """
import sys
from mga.distill.expand.expand import expand_corpus
expand_corpus(sys.argv[1], sys.argv[2], pairs_model="slm-pairs", rewrite_model=sys.argv[3], pairs_backend="openai",
              rewrite_backend="transformers", base_url=sys.argv[4], max_new_tokens=24, batch_size=1,
              executor="ray", workers=1, show=False)
"""


def _rewrite_keys(path: Path) -> list[str]:
    """(chunk, pair) of each whole row; a line torn by the kill is not a row (the next run cuts it off)."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return [rewrite_key(json.loads(line)) for line in lines]


def test_a_killed_ray_run_keeps_its_rows_and_the_rerun_sends_only_the_rest(corpus, tmp_path, fake_openai,  # noqa: F811
                                                                          tiny_model_dir):
    server = fake_openai(tool_models)
    out, stream = tmp_path / "out", tmp_path / "out" / "rewrites.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(corpus), str(out), str(tiny_model_dir), server.url],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if stream.exists() and stream.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, and the Ray processes it started
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    kept = _rewrite_keys(stream)
    assert 3 <= len(kept) < 25  # 5 documents with valid pairs x 5 rewrites: killed mid-pass

    again = _expand(corpus, out, server, rewrite_model=str(tiny_model_dir), pairs_backend="openai",
                    rewrite_backend="transformers", max_new_tokens=24, batch_size=1, executor="ray", workers=2)
    assert again["generated"] == {"pairs": 0, "rewrites": 25 - len(kept)}  # exactly what the kill lost
    keys = _rewrite_keys(stream)
    assert len(keys) == len(set(keys)) == again["rewrites"] == 25 and keys[:len(kept)] == kept
    assert again["ray"]["workers"] == 2 and again["ray"]["rewrite"]["on"] == "ray"
    assert again["expanded"] + again["rejected"] == again["rewrites"] + again["pairs_failed"]


def test_a_broken_model_and_too_many_workers_are_errors(corpus, tmp_path, fake_openai,  # noqa: F811
                                                        tiny_model_dir):
    ray = pytest.importorskip("ray")
    server = fake_openai(tool_models)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    common = dict(pairs_backend="openai", rewrite_backend="transformers", max_new_tokens=8, batch_size=1, limit=2,
                  executor="ray")
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    try:
        with pytest.raises(MgaError, match=r"--workers 2 with --backend transformers: the Ray cluster has 1 CPU"):
            _expand(corpus, tmp_path / "too-many", server, rewrite_model=str(tiny_model_dir), workers=2, **common)
        with pytest.raises(MgaError, match=r"a rewrite worker failed: .*no-such-architecture(.|\n)*rerun") as failed:
            _expand(corpus, tmp_path / "broken-out", server, rewrite_model=str(broken), workers=1, **common)
        assert "Traceback" not in str(failed.value)  # the worker's own one-line message, not Ray's account
    finally:
        ray.shutdown()
    assert read_rows(tmp_path / "broken-out" / "pairs.jsonl")  # the pairs pass before it is kept
