"""Secrets are never echoed: no error, log line, recipe dump or file shows the value of `teacher.api_key`, of the
key's environment variable, or of any field typed `Secret` (`mga.distill.core.secrets`), whatever the value's type."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mga.distill.cli.main import main
from mga.distill.core.secrets import MASK, is_secret
from mga.distill.pipeline.recipe import dump_recipe, validate_recipe

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-live-SECRET-0123456789abcdef"
VALUES = [SECRET, f"[{SECRET}]", f"{{k: {SECRET}}}", "12345678901234", f"'{SECRET}' extra: [", "1.5e10"]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("key", ["teacher.api_key", "train.hub_token", "teacher.api_key_password", "corpus.secret"])
def test_validation_errors_never_show_a_secret_value(key, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["run", str(_recipe(tmp_path)), "--set", f"{key}={value}"])
    out, err = capsys.readouterr()
    assert "error:" in err
    for shown in (SECRET, "12345678901234", "1.5e10", "15000000000"):
        assert shown not in out + err


def _recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nteacher:\n  concurrency: 0\n")  # always invalid, so the run stops at validation
    return path


def test_set_without_equals_on_a_secret_key_is_masked(capsys):
    with pytest.raises(SystemExit):
        main(["run", "r.yaml", "--set", f"teacher.api_key:{SECRET}"])
    assert SECRET not in capsys.readouterr().err


def test_recipe_dump_holds_no_secret():
    config = validate_recipe({"name": "x", "teacher": {"api_key": SECRET}, "train": {"hub_token": SECRET}})
    dumped = dump_recipe(config)
    assert SECRET not in dumped and "api_key_env: OPENAI_API_KEY" in dumped
    assert config.teacher.api_key.get_secret_value() == SECRET  # the run itself still has it
    assert config.train.sft_kwargs()["hub_token"] == SECRET  # and hands it to TRL


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_dumps_and_reloads_to_the_same_config(path, monkeypatch):
    """The run's recipe.yaml reproduces the run: every setting comes back (`chunk_tokens`, `max_tokens`...),
    only the secrets are left out."""
    monkeypatch.chdir(ROOT)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("teacher", {})["api_key"] = SECRET
    data.setdefault("train", {})["hub_token"] = SECRET
    config = validate_recipe(data, source=str(path))
    dumped = dump_recipe(config)
    assert SECRET not in dumped and MASK not in dumped
    again = validate_recipe(yaml.safe_load(dumped))
    without = {"teacher": {"api_key"}, "train": {"hub_token"}}
    assert again.model_dump(exclude=without) == config.model_dump(exclude=without)
    assert again.teacher.api_key is None and again.train.hub_token is None


def test_secret_fields_are_known_by_type():
    from mga.distill.pipeline.recipe import RunConfig

    assert all(is_secret(RunConfig, key.split(".")) for key in ("teacher.api_key", "judge.endpoint.api_key",
                                                                 "train.hub_token"))
    assert not any(is_secret(RunConfig, key.split(".")) for key in (
        "teacher.api_key_env", "teacher.tokens_per_minute", "corpus.chunk_tokens", "corpus.tokenizer",
        "quantize.task_max_new_tokens", "teacher.rewrite.max_tokens", "train.eos_token", "model"))


def test_env_key_never_reaches_errors_or_files(fake_openai, tmp_path, monkeypatch, capsys):
    from mga.distill.core.io import write_rows
    from mga.distill.core.schema import chunk_row

    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    server = fake_openai(api_key="another-key")
    inp = write_rows(tmp_path / "in.jsonl", [chunk_row("a", 0, "Text.")])
    with pytest.raises(SystemExit):
        main(["label", "--stage", "pairs", "-i", str(inp), "-o", str(tmp_path / "out" / "p.jsonl"), "--base-url",
              server.url, "--model", "m", "--set", "teacher.api_key_env=MGA_TEST_KEY"])
    out, err = capsys.readouterr()
    assert "refused the API key (401)" in err and SECRET not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_no_file_a_run_writes_holds_the_key_of_api_key_env(fake_openai, short_corpus, tmp_path, monkeypatch, capsys):
    """Grep every file of the run folder (whatever its type), and the output, for the key; also when the endpoint
    echoes the key in its error messages (some proxies do) and when a second run is refused (wrong key)."""
    from tests.fake_openai import Reply
    from tests.test_pipeline_teacher import live_teacher

    answer = live_teacher()

    def echoing(request):  # every third rewrite fails with the key in the error text
        if "content-creation" not in request["messages"][0]["content"] and len(server.requests) % 3 == 0:
            return Reply(status=400, error=f"bad request from key {SECRET}")
        return answer(request)

    server = fake_openai(echoing, api_key=SECRET)
    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "live.yaml"
    recipe.write_text(f"name: live\nrun_dir: {tmp_path / 'run'}\ncorpus:\n  path: {short_corpus}\nteacher:\n"
                      f"  base_url: {server.url}\n  model: fake-teacher\n  api_key_env: MGA_TEST_KEY\n"
                      "  max_attempts: 1\njudge:\n  backend: llm\n", encoding="utf-8")
    with pytest.raises(SystemExit) as first:
        main(["run", str(recipe), "--until", "filter"])
    monkeypatch.setenv("MGA_TEST_KEY", "sk-another-key-0123456789abcdef")
    with pytest.raises(SystemExit) as refused:
        main(["run", str(recipe), "--set", f"run_dir={tmp_path / 'refused'}"])
    out, err = capsys.readouterr()
    assert first.value.code == 0, err
    assert refused.value.code == 2 and "refused the API key (401)" in err
    assert any("400" in line or "bad request" in line for p in (tmp_path / "run").rglob("*.jsonl") for line in
               p.read_text().splitlines()), "the echoed errors reached the rows (scrubbed)"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10 and "api_key_env: MGA_TEST_KEY" in (tmp_path / "run" / "recipe.yaml").read_text()
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out + err
