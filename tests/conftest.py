"""Shared fixtures: a tiny local model (built once per session), the loopback OpenAI-compatible server, and a
short corpus."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models run faster on one thread (no sync overhead), also in `mga` subprocesses started by tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from mga.distill.cli.main import configure_environment  # noqa: E402

configure_environment()  # what the `mga` command sets up; importing the package sets nothing


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention (5-10x faster)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny qwen2 model + ChatML tokenizer from `mga tiny-model` (random weights)."""
    from mga.distill.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2-xs", arch="qwen2", size="xs", seed=0)


@pytest.fixture
def fake_openai():
    """Factory: `server = fake_openai(responder, latency=..., api_key=...)`; stopped after the test."""
    from tests.fake_openai import FakeOpenAI

    servers = []

    def start(*args, **kwargs):
        server = FakeOpenAI(*args, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def short_corpus(tmp_path):
    """Five short documents of the bundled corpus, for runs of the whole pipeline."""
    from mga.distill.core.config import default_corpus_path
    from mga.distill.core.io import read_rows, write_rows

    rows = [r for r in read_rows(default_corpus_path()) if len(r["text"].split()) < 150][:5]
    return write_rows(tmp_path / "corpus.jsonl", rows)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct as a float checkpoint (`mga base-model smollm2-135m`), converted once per session."""
    from mga.distill.train.base_model import build_base_model

    return build_base_model("smollm2-135m", tmp_path_factory.mktemp("smollm2") / "smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_f16_gguf(smollm2_dir):
    """The checkpoint's f16 GGUF export (what the llama.cpp backend runs), tokenizer and template checked."""
    from mga.quantize.gguf import local_gguf

    return local_gguf(smollm2_dir)


@pytest.fixture(autouse=True)
def real_model_threads(request):
    """A real 135M model needs both cores; the tiny models keep one thread (see one_torch_thread)."""
    if request.node.get_closest_marker("real_model") is None:
        yield
        return
    import torch

    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def llama_server(smollm2_f16_gguf, tmp_path_factory):
    """llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) serving SmolLM2's f16 GGUF on 127.0.0.1,
    one thread, a 2,048-token context (an over-long prompt is easy to make); stopped at the end of the session."""
    from tests.llama_server import LlamaServer

    with LlamaServer(smollm2_f16_gguf, n_ctx=2048, log=tmp_path_factory.mktemp("llama") / "server.log") as server:
        yield server


@pytest.fixture
def llama_servers(smollm2_f16_gguf, tmp_path):
    """Factory of further llama.cpp servers of the same model, for tests that kill or stop them; stopped after the
    test."""
    from tests.llama_server import LlamaServer

    servers = []

    def start(**kwargs):
        server = LlamaServer(smollm2_f16_gguf, **{"n_ctx": 2048, "log": tmp_path / f"server-{len(servers)}.log", **kwargs})
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
