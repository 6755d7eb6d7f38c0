"""Every shipped recipe loads; user mistakes become one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.pipeline.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "quickstart-tiny", "quickstart-ja", "mga-en", "mga-zh", "prompt-variants", "lora"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_documents_its_command(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_recipe(path)
    assert config.name
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# Run: mga run recipes/{path.name}")


def test_override_parses_floats_and_nested_keys():
    config = load_recipe(ROOT / "recipes/quickstart.yaml", ["train.learning_rate=1e-4", "loop.max_rounds=2"])
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.loop.max_rounds == 2


def test_passthrough_sft_and_lora_fields_are_typed(tmp_path):
    config = load_recipe(ROOT / "recipes/lora.yaml", ["train.weight_decay=0.1"])
    assert config.train.sft_kwargs()["weight_decay"] == 0.1
    assert config.train.lora["r"] == 16
    with pytest.raises(MgaError, match=r"train.lora.rr: unknown key for LoraConfig \(did you mean 'r'\?\)"):
        load_recipe(ROOT / "recipes/lora.yaml", ["train.lora.rr=8"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.learnin_rate=1e-4", "train.learnin_rate: unknown key for SFTConfig (did you mean 'learning_rate'?)"),
        ("teachr.model=x", "teachr: unknown key (did you mean 'teacher'?)"),
        ("teacher.concurency=4", "teacher.concurency: unknown key (did you mean 'concurrency'?)"),
        ("train.learning_rate=-1", "train.learning_rate: Input should be greater than 0"),
        ("train.num_train_epochs=many", "train.num_train_epochs: Input should be a valid number"),
        ("train.per_device_eval_batch_size=abc", "train.per_device_eval_batch_size: Input should be a valid integer"),
        ("corpus.path=/does/not/exist.jsonl", "corpus.path: /does/not/exist.jsonl: corpus not found"),
        ("label.variants=[base,wild]", "label.variants.1: Input should be 'base', 'strict' or 'relaxed'"),
        ("language=xx", "language: no prompt set for language 'xx'"),
    ],
)
def test_bad_recipes_name_the_key(override, message):
    with pytest.raises(MgaError) as info:
        load_recipe(ROOT / "recipes/quickstart.yaml", [override])
    assert message in str(info.value)
    assert str(info.value).startswith(str(ROOT / "recipes/quickstart.yaml"))


def _mga(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("mga")
    return subprocess.run([str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "recipes/does-not-exist.yaml"], "recipe not found: recipes/does-not-exist.yaml"),
        (["run", "recipes/quickstart.yaml", "--set", "train.learnin_rate=1e-4"], "did you mean 'learning_rate'?"),
        (["run", "recipes/quickstart.yaml", "--set", "train.learning_rate=-0.1"], "train.learning_rate"),
        (["run", "recipes/quickstart.yaml", "--set", "train.max_length=long"], "train.max_length"),
    ],
)
def test_cli_reports_recipe_errors_in_one_line_exit_2(args, needle):
    result = _mga(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def test_cli_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain: [unclosed\n")
    result = _mga("run", str(bad))
    assert result.returncode == 2
    assert "invalid YAML at line" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["label.output_format=parquet", "report.reference_model=slm", "teacher.pairs.n=4",
                                 "train.stages=[pairs]"])
def test_dead_keys_are_gone(key):
    """Keys that did nothing (or paid for discarded completions) are refused, not silently ignored."""
    with pytest.raises(MgaError, match=key.split("=")[0].split(".")[-1]):
        load_recipe(ROOT / "recipes/quickstart.yaml", [key])
