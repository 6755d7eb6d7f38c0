"""Every user mistake gives one `error:` line naming the problem, exit 2, no traceback, inputs untouched.

Table-driven over every subcommand: bad paths, bad files, bad options and recipe values, bad models and bad
endpoints. Each case runs the real entry point (`mga.distill.cli.main.main`) in-process, so an uncaught
exception fails the test instead of printing a traceback.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from mga.data import data_path
from mga.distill.cli.main import main

SECRET = "sk-test-SECRET-user-errors-0123456789"
CORPUS = data_path("sample", "corpus.jsonl")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    f = {"dir": d / "folder", "plain": d / "plain.txt"}
    f["dir"].mkdir()
    f["plain"].write_text("a regular file\n")
    f["corpus"] = d / "corpus.jsonl"
    f["corpus"].write_text(CORPUS.read_text(encoding="utf-8").split("\n", 3)[0] + "\n", encoding="utf-8")
    f["empty"] = d / "empty.jsonl"
    f["empty"].write_text("")
    f["latin1"] = d / "latin1.jsonl"
    f["latin1"].write_bytes(b'{"id": "a", "text": "caf\xe9"}\n{"id": "b", "text": "na\xefve"}\n')
    f["broken"] = d / "broken.jsonl"
    chunk = json.dumps({"meta": {"docid": "a", "chunk_id": 0, "source": "", "raw_text": "Some text."}})
    f["broken"].write_text(chunk + '\n{"meta": {"docid": "b", \n' + chunk + "\n")
    f["dupes"] = d / "dupes.jsonl"
    f["dupes"].write_text('{"id": "a", "text": "one text"}\n{"id": "a", "text": "another text"}\n')
    f["parquet"] = d / "corrupt.parquet"
    f["parquet"].write_bytes(b"PAR1 this is not parquet at all")
    f["chunks"] = d / "chunks.jsonl"
    f["chunks"].write_text(json.dumps({"meta": {"docid": "a", "chunk_id": 0, "source": "", "raw_text": "Some text."}}) + "\n")
    f["pairs"] = d / "pairs.jsonl"
    f["pairs"].write_text(json.dumps({"meta": {"docid": "a", "chunk_id": 0, "raw_text": "Some text."},
                                      "pairs": [{"genre": "g", "audience": "a"}], "status": "ok"}) + "\n")
    f["bad_pairs"] = d / "bad_pairs.jsonl"
    f["bad_pairs"].write_text(json.dumps({"meta": {"docid": "a", "chunk_id": 0, "raw_text": "x"}, "pairs": "none"}) + "\n")
    f["list_row"] = d / "list_row.jsonl"
    f["list_row"].write_text("[1, 2, 3]\n")
    f["bad_yaml"] = d / "bad.yaml"
    f["bad_yaml"].write_text("name: x\nteacher: [unclosed\n")
    f["unknown_key"] = d / "unknown.yaml"
    f["unknown_key"].write_text("name: x\nteacher:\n  concurency: 4\n")
    f["bad_value"] = d / "bad_value.yaml"
    f["bad_value"].write_text("name: x\nteacher:\n  temperature: 3\n")
    f["list_recipe"] = d / "list.yaml"
    f["list_recipe"].write_text("- a\n- b\n")
    f["secret_recipe"] = d / "secret.yaml"
    f["secret_recipe"].write_text(f"name: x\nteacher:\n  api_key: [{SECRET}]\n")
    f["no_model"] = d / "no_model"
    f["no_model"].mkdir()
    (f["no_model"] / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    f["run_dir"] = d / "runs" / "broken"
    f["run_dir"].mkdir(parents=True)
    (f["run_dir"] / "manifest.json").write_text('{"stages": {"chunk": ')
    f["run_recipe"] = d / "run.yaml"
    f["run_recipe"].write_text(f"name: broken\nrun_dir: {f['run_dir']}\njudge:\n  backend: heuristic\n")
    f["acct_dir"] = d / "acct"
    f["acct_dir"].mkdir()
    (f["acct_dir"] / "accounting.json").write_text("{not json")
    return f


def teacher_opts(url: str) -> list[str]:
    return ["--base-url", url, "--model", "teacher-x", "--set", "teacher.api_key_env=MGA_TEST_KEY",
            "--set", "teacher.max_attempts=1"]


def label(f, inp, out, *extra, stage="pairs", url=None):
    return ["label", "--stage", stage, "--input", str(f[inp] if isinstance(inp, str) else inp),
            "--output", str(out), *teacher_opts(url or "http://127.0.0.1:9/v1"), *extra]


# (case id, argv(files, tmp, server_urls) -> list[str], fragment the error line must contain)
CASES = [
    # ---- label: paths
    ("label-input-missing", lambda f, t, u: label(f, t / "nope.jsonl", t / "o.jsonl"), "input file not found"),
    ("label-input-dir", lambda f, t, u: label(f, "dir", t / "o.jsonl"), "no corpus files"),  # a folder corpus
    ("label-input-txt", lambda f, t, u: label(f, "plain", t / "o.jsonl"), "unsupported file type '.txt'"),
    ("label-input-empty", lambda f, t, u: label(f, "empty", t / "o.jsonl"), "is empty"),
    ("label-output-is-input", lambda f, t, u: label(f, "chunks", f["chunks"]), "the output is the input"),
    ("label-output-dir", lambda f, t, u: label(f, "chunks", f["dir"]), "is a directory"),
    ("label-output-under-file", lambda f, t, u: label(f, "chunks", f["plain"] / "o.jsonl"), "is a file, not a folder"),
    ("label-output-type", lambda f, t, u: label(f, "chunks", t / "o.csv"), "unsupported file type '.csv'"),
    # ---- label: files
    ("label-non-utf8", lambda f, t, u: label(f, "latin1", t / "o.jsonl"), "no usable documents"),
    ("label-broken-line", lambda f, t, u: label(f, "broken", t / "o.jsonl"), "broken.jsonl:2: not a JSON row"),
    ("label-corrupt-parquet", lambda f, t, u: label(f, "parquet", t / "o.jsonl"), "not a readable Parquet file"),
    ("label-row-not-object", lambda f, t, u: label(f, "list_row", t / "o.jsonl", stage="rewrite"), "a row must be a JSON object"),
    ("label-duplicate-ids", lambda f, t, u: label(f, "dupes", t / "o.jsonl"), "duplicate document id 'a'"),
    ("label-rewrite-given-corpus", lambda f, t, u: label(f, "corpus", t / "o.jsonl", stage="rewrite"), "not a stage-1 pairs file"),
    ("label-rewrite-bad-pairs", lambda f, t, u: label(f, "bad_pairs", t / "o.jsonl", stage="rewrite"), "must be a list"),
    ("label-corrupt-accounting", lambda f, t, u: label(f, "chunks", f["acct_dir"] / "o.jsonl", url=u["ok"]), "corrupt accounting file"),
    # ---- label: options and recipe values
    ("label-stage", lambda f, t, u: label(f, "chunks", t / "o.jsonl", stage="three"), "--stage 'three'"),
    ("label-concurrency-0", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--concurrency", "0"), "--concurrency 0: Input should be greater than 0"),
    ("label-concurrency-text", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--concurrency", "many"), "Invalid value for '--concurrency'"),
    ("label-unknown-option", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--concurency", "3"), "No such option"),
    ("label-missing-option", lambda f, t, u: ["label", "--stage", "pairs", "--input", str(f["chunks"])], "Missing option '--output'"),
    ("label-set-no-equals", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--set", "teacher.model"), "expected KEY=VALUE"),
    ("label-set-unknown-key", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--set", "teacher.modle=x"), "did you mean 'model'"),
    ("label-set-range", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--set", "teacher.pairs.temperature=9"), "teacher.pairs.temperature: Input should be less than or equal to 2"),
    ("label-secret-int", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--set", "teacher.api_key=12345678901"), "teacher.api_key"),
    ("label-variant", lambda f, t, u: label(f, "pairs", t / "o.jsonl", "--variant", "wild", stage="rewrite"), "unknown prompt variant 'wild'"),
    ("label-language", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--language", "xx"), "no prompt set for language 'xx'"),
    # ---- label: endpoints
    ("label-unreachable", lambda f, t, u: label(f, "chunks", t / "o.jsonl", url=closed_port_url()), "cannot reach the teacher at http://127.0.0.1:"),
    ("label-malformed-url", lambda f, t, u: label(f, "chunks", t / "o.jsonl", url="localhost:8000/v1"), "is not an http(s) URL"),
    ("label-401", lambda f, t, u: label(f, "chunks", t / "o.jsonl", url=u["locked"]), "refused the API key (401)"),
    ("label-404-model", lambda f, t, u: label(f, "chunks", t / "o.jsonl", url=u["other_model"]), "has no model 'teacher-x'"),
    ("label-teacher-model-missing", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--teacher-model", str(t / "no-such-model")), "no-such-model"),
    # ---- judge
    ("judge-input-missing", lambda f, t, u: ["judge", "-i", str(t / "nope.jsonl"), "-o", str(t / "j.jsonl")], "input file not found"),
    ("judge-wrong-row-kind", lambda f, t, u: ["judge", "-i", str(f["pairs"]), "-o", str(t / "j.jsonl"), "--backend", "heuristic"], "not a rewrites file"),
    ("judge-corrupt-parquet", lambda f, t, u: ["judge", "-i", str(f["parquet"]), "-o", str(t / "j.jsonl")], "not a readable Parquet file"),
    ("judge-output-is-input", lambda f, t, u: ["judge", "-i", str(f["pairs"]), "-o", str(f["pairs"])], "the output is the input"),
    ("judge-backend", lambda f, t, u: ["judge", "--backend", "oracle", "--calibrate"], "judge.backend"),
    ("judge-no-input", lambda f, t, u: ["judge", "--backend", "heuristic"], "needs --input and --output"),
    # ---- report
    ("report-missing", lambda f, t, u: ["report", str(t / "nope.jsonl"), "-o", str(t / "r")], "file not found"),
    ("report-bad-name", lambda f, t, u: ["report", "=x.jsonl", "-o", str(t / "r")], "expected NAME=PATH"),
    # ---- train
    ("train-input-missing", lambda f, t, u: ["train", "--stage", "pairs", "-i", str(t / "nope.jsonl"), "-o", str(t / "m")], "file not found"),
    ("train-stage", lambda f, t, u: ["train", "--stage", "both", "-i", str(f["pairs"]), "-o", str(t / "m")], "--stage 'both'"),
    ("train-output-file", lambda f, t, u: ["train", "--stage", "pairs", "-i", str(f["pairs"]), "-o", str(f["plain"])], "folder is an existing file"),
    ("train-input-dir", lambda f, t, u: ["train", "--stage", "pairs", "-i", str(f["dir"]), "-o", str(t / "m")], "is a directory"),
    # ---- quantize
    ("quantize-missing-checkpoint", lambda f, t, u: ["quantize", str(t / "no-model")], "no-model"),
    ("quantize-not-causal-lm", lambda f, t, u: ["quantize", str(f["no_model"])], "a full or merged checkpoint is needed"),
    ("label-teacher-model-not-lm", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--teacher-model", str(f["no_model"])), "no_model"),
    ("quantize-scheme", lambda f, t, u: ["quantize", str(f["no_model"]), "--scheme", "int3"], "int3"),
    # ---- expand
    ("expand-corpus-missing", lambda f, t, u: ["expand", str(t / "nope.jsonl"), "--pairs-model", "a", "--rewrite-model", "b"], "not found"),
    ("expand-corpus-dir", lambda f, t, u: ["expand", str(f["dir"]), "--pairs-model", "a", "--rewrite-model", "b"], "no corpus files"),
    ("expand-shards", lambda f, t, u: ["expand", str(f["corpus"]), "--pairs-model", "a", "--rewrite-model", "b", "--shard-index", "3", "--num-shards", "2", "-o", str(t / "e")], "shard"),
    # ---- run
    ("run-recipe-missing", lambda f, t, u: ["run", str(t / "nope.yaml")], "recipe not found"),
    ("run-recipe-dir", lambda f, t, u: ["run", str(f["dir"])], "is a directory"),
    ("run-bad-yaml", lambda f, t, u: ["run", str(f["bad_yaml"])], "invalid YAML"),
    ("run-unknown-key", lambda f, t, u: ["run", str(f["unknown_key"])], "did you mean 'concurrency'"),
    ("run-bad-value", lambda f, t, u: ["run", str(f["bad_value"])], "teacher.temperature: unknown key"),
    ("run-not-mapping", lambda f, t, u: ["run", str(f["list_recipe"])], "must be a YAML mapping"),
    ("run-secret-in-recipe", lambda f, t, u: ["run", str(f["secret_recipe"])], "teacher.api_key"),
    ("run-until", lambda f, t, u: ["run", str(f["run_recipe"]), "--until", "nowhere"], "--until 'nowhere'"),
    ("run-corrupt-manifest", lambda f, t, u: ["run", str(f["run_recipe"])], "corrupt run manifest"),
    # ---- tiny-model
    ("tiny-model-arch", lambda f, t, u: ["tiny-model", str(t / "tm"), "--arch", "gpt9"], "gpt9"),
    ("tiny-model-under-file", lambda f, t, u: ["tiny-model", str(f["plain"] / "tm")], "is a file, not a folder"),
]


@pytest.fixture(scope="module")
def servers():
    from tests.fake_openai import FakeOpenAI

    started = {"ok": FakeOpenAI(models=["teacher-x"]), "locked": FakeOpenAI(api_key="the-right-key"),
               "other_model": FakeOpenAI(models=["another-model"])}
    for server in started.values():
        server.start()
    yield {name: server.url for name, server in started.items()}
    for server in started.values():
        server.stop()


def _digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_at_least_40_cases_over_every_subcommand():
    assert len(CASES) >= 40
    commands = {case.split("-")[0] for case, _, _ in CASES}
    assert commands == {"label", "judge", "report", "train", "quantize", "expand", "run", "tiny"}


@pytest.mark.parametrize(("case", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_user_error_gives_one_error_line(case, argv, fragment, files, servers, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    before = _digests(files["dir"].parent)
    with pytest.raises(SystemExit) as exit_info:
        main(argv(files, tmp_path, servers))
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2, (case, err)
    assert len(errors) == 1, (case, err)
    assert fragment in errors[0], (case, errors[0])
    assert "Traceback" not in err + out
    assert SECRET not in err + out and "12345678901" not in err + out
    after = _digests(files["dir"].parent)
    assert {k: v for k, v in after.items() if k in before} == before, "inputs must stay untouched"
