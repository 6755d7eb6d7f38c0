"""Secrets are never echoed: no error, log line, recipe dump or file shows the value of `teacher.api_key`, of the
key's environment variable, or of any `*_key` / `*token*` / `password` field, whatever the value's type."""

from __future__ import annotations

import pytest
from mga.distill.cli.main import main
from mga.distill.core.secrets import is_secret_key, mask_secrets
from mga.distill.pipeline.recipe import dump_recipe, validate_recipe

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


def test_recipe_dump_masks_every_secret_field():
    config = validate_recipe({"name": "x", "teacher": {"api_key": SECRET}})
    dumped = dump_recipe(config)
    assert SECRET not in dumped and "api_key_env: OPENAI_API_KEY" in dumped
    assert mask_secrets({"train": {"hub_token": SECRET, "lr": 1}, "x": [{"password": SECRET}]}) == {
        "train": {"hub_token": "***", "lr": 1}, "x": [{"password": "***"}]}


def test_secret_key_names():
    assert all(map(is_secret_key, ["teacher.api_key", "hub_token", "wandb_key", "password", "client_secret"]))
    assert not any(map(is_secret_key, ["teacher.api_key_env", "max_tokens", "tokens_per_minute", "model", "keywords"]))


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
