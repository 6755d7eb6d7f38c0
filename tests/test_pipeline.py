"""`mga run` end to end on the offline quickstart, rerun skips everything, a kill during training resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MGA = str(Path(sys.executable).with_name("mga"))
pytestmark = pytest.mark.slow


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([MGA, "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """A third of the bundled labels (13 documents with rewrites, 12 with pairs only): the tiny student's run
    stays a few minutes; recipes/quickstart.yaml trains the real student on all of them."""
    from mga.distill.core.io import read_rows, write_rows
    from mga.judge.reference import default_reference_path, pairs_path

    folder = tmp_path_factory.mktemp("labels")
    write_rows(folder / "en.pairs.jsonl", read_rows(pairs_path(default_reference_path("en")))[:12])
    return str(write_rows(folder / "en.jsonl", read_rows(default_reference_path("en"))[:13]))


# one round, one epoch: what these tests check is the report and the stages, not how much the tiny model learns
QUICKSTART = ("recipes/quickstart-tiny.yaml", "--set", "loop.max_rounds=1", "--set", "train.num_train_epochs=1")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, labels):
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    result = _run(*QUICKSTART, "--set", f"run_dir={run_dir}", "--set", f"label.reference={labels}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_quickstart_writes_report_with_table1(quickstart):
    run_dir, _ = quickstart
    report = json.loads((run_dir / "report" / "report.json").read_text())
    html = (run_dir / "report" / "report.html").read_text()
    names = list(report["models"]) if isinstance(report.get("models"), dict) else [m["name"] for m in report["models"]]
    assert names[0].startswith("teacher")
    assert "SLM round 0" in names and "SLM round 1" in names and "SLM final + gptq-w4" in names
    rounds = json.loads((run_dir / "rounds.json").read_text())["rounds"]
    assert [x["round"] for x in rounds] == [0, 1] and rounds[0]["eval_items"] == rounds[1]["eval_items"] > 0
    assert "Rate" in html and "heuristic" in html.lower() and "tiny" in html.lower()
    assert "data:image/png;base64" in html  # charts, loss curves and the embedding map are inlined
    assert (run_dir / "report" / "embedding_map.png").exists()
    controls = report["judge_controls"]  # the judge's controls, per judged stage, lead the report
    assert {"judge@teacher.base", "judge-slm@eval.round-1", "judge-quantized@gptq-w4"} <= set(controls)
    assert all(v["passed"] for v in controls.values())
    assert html.index("Judge health: controls") < html.index("Table 1")
    md = (run_dir / "report" / "report.md").read_text()  # intervals, the rounds with why they stopped, judge health
    assert report["models"]["SLM round 1"]["rate_ge3_ci95"] and report["models"]["SLM round 1"]["diff_ci95"]
    assert "**Stopped:** max rounds reached (1)." in md and "\n## Judge health\n" in md and "agreement with reference" in md
    assert report["equal_item_sets"] is True
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(stage["status"] == "done" for stage in manifest.values())
    quantized = json.loads((run_dir / "quantized" / "rewrite-gptq-w4" / "config.json").read_text())
    assert quantized["quantization_config"]["quant_method"] == "gptq"
    compared = json.loads((run_dir / "quantized" / "pairs-gptq-w4" / "compare.json").read_text())
    assert compared["task"]["stage"] == "pairs" and "valid_5_pairs" in compared["task"]
    assert compared["rows_used"].split(" (")[0] in html and "Held-out rows" not in html
    assert "sft.pairs.eval.jsonl (0 of " in compared["rows_used"]  # the eval documents' rows: none trained on


def test_rerun_skips_every_stage(quickstart, labels):
    run_dir, _ = quickstart
    before = json.loads((run_dir / "manifest.json").read_text())["stages"]
    result = _run(*QUICKSTART, "--set", f"run_dir={run_dir}", "--set", f"label.reference={labels}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done in" not in result.stderr
    assert result.stderr.count("up to date, skipped") == len(before)


def test_kill_during_training_then_resume(tmp_path, labels):
    run_dir = tmp_path / "run"
    args = ["recipes/quickstart-tiny.yaml", "--set", f"run_dir={run_dir}", "--until", "train", "--set", f"label.reference={labels}",
            "--set", "train.num_train_epochs=2", "--set", "report.embed=false"]
    proc = subprocess.Popen([MGA, "run", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    manifest = run_dir / "manifest.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if manifest.exists():
            stages = json.loads(manifest.read_text())["stages"]
            if any(name.startswith("train@") and rec["status"] == "running" for name, rec in stages.items()):
                time.sleep(1)
                break
        if proc.poll() is not None:
            pytest.fail("run ended before training started")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    labeled = {n: r for n, r in json.loads(manifest.read_text())["stages"].items() if not n.startswith("train@")}
    assert labeled and all(r["status"] == "done" for r in labeled.values())
    result = _run(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in labeled:
        assert f"{name}: up to date, skipped" in result.stderr
    stages = json.loads(manifest.read_text())["stages"]
    assert all(r["status"] == "done" for n, r in stages.items() if n.startswith("train@"))


def test_loop_on_llamacpp_with_round_zero_and_a_gguf_export_judged(tmp_path):
    """`loop.backend: llamacpp`: every round (0 = untrained) answers through an f16 GGUF export of its checkpoint,
    and a gguf-* export is judged in llama.cpp on the same eval items as the full models."""
    from mga.distill.core.io import read_rows, write_rows
    from mga.judge.reference import default_reference_path

    labels = write_rows(tmp_path / "en.jsonl", read_rows(default_reference_path("en"))[:6])
    run_dir = tmp_path / "run"
    result = _run("recipes/quickstart-tiny.yaml", "--set", f"run_dir={run_dir}", "--set", f"label.reference={labels}",
                  "--set", "loop.max_rounds=1", "--set", "loop.backend=llamacpp", "--set", "quantize.schemes=[gguf-q8_0]",
                  "--set", "train.num_train_epochs=1", "--set", "report.embed=false", "--set", "loop.heldout_fraction=0.34",
                  "--set", "judge.controls=0")  # 2 eval documents: too few for the judge's controls (tested elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert {"SLM round 0", "SLM round 1", "SLM final + gguf-q8_0"} <= set(report["models"])
    assert report["equal_item_sets"] is True
    rounds = json.loads((run_dir / "rounds.json").read_text())["rounds"]
    assert [x["round"] for x in rounds] == [0, 1]
    for stage in ("pairs", "rewrite"):  # what llama.cpp ran: the checkpoint's own f16 export
        assert (run_dir / "models" / "round-1" / stage / "model.gguf-f16" / "model-f16.gguf").is_file()
    assert next((run_dir / "students").glob("*.gguf-f16/model-f16.gguf")).is_file()  # round 0: the untrained student
    rows = read_rows(run_dir / "slm" / "quantized-gguf-q8_0" / "rewrites.eval.jsonl")
    assert rows and all(row["model"].endswith(".gguf") for row in rows)
