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
    judged = {"variant": "base", "status": "ok", "content_split": "a rewrite",
              "meta": {"docid": "a", "chunk_id": 0, "pair_id": 0}, "judge": {"score": 4, "status": "scored"}}
    for name, score in (("nan", "NaN"), ("seven", "7")):  # line 2 holds the bad score
        bad = json.dumps({**judged, "judge": {"score": 0, "status": "scored"}}).replace('"score": 0', f'"score": {score}')
        f[f"judged_{name}"] = d / f"judged_{name}.jsonl"
        f[f"judged_{name}"].write_text(json.dumps(judged) + "\n" + bad + "\n")
    f["laughs"] = d / "laughs.yaml"  # "billion laughs": 9 aliases per level, 9 levels: 9**9 strings
    levels = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
    f["laughs"].write_text("\n".join(["name: x", *levels, "teacher:", "  model: *i", ""]))
    f["deep"] = d / "deep.yaml"
    f["deep"].write_text("name: x\nteacher: " + "[" * 5000 + "]" * 5000 + "\n")
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
    ("report-score-nan", lambda f, t, u: ["report", str(f["judged_nan"]), "-o", str(t / "r")], "judged_nan.jsonl:2: judge.score nan is not a score 1-5"),
    ("report-score-7", lambda f, t, u: ["report", str(f["judged_seven"]), "-o", str(t / "r")], "judged_seven.jsonl:2: judge.score 7 is not a score 1-5"),
    ("report-name-twice", lambda f, t, u: ["report", f"m={f['judged_nan']}", f"m={f['judged_seven']}", "-o", str(t / "r")], "model name 'm' given twice (give each NAME=PATH its own name)"),
    ("report-stem-twice", lambda f, t, u: ["report", str(f["judged_nan"]), str(f["judged_nan"]), "-o", str(t / "r")], "name them with NAME=PATH"),
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
    ("quantize-scheme-typed", lambda f, t, u: ["quantize", str(f["no_model"]), "--scheme", "gptq-w5"], "--scheme gptq-w5: Input should be"),
    ("quantize-samples-typed", lambda f, t, u: ["quantize", str(f["no_model"]), "--samples", "0"], "--samples 0: Input should be greater than 0"),
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
    ("run-yaml-aliases", lambda f, t, u: ["run", str(f["laughs"])], "recipe refused: aliases expand to more than 100,000 values"),
    ("run-yaml-depth", lambda f, t, u: ["run", str(f["deep"])], "recipe refused: nested deeper than 32 levels"),
    ("run-set-bare-key", lambda f, t, u: ["run", str(f["run_recipe"]), "--set", "corpus.chunk_tokens"], "--set 'corpus.chunk_tokens': expected KEY=VALUE"),
    ("run-key-in-api-key-env", lambda f, t, u: ["run", str(f["run_recipe"]), "--set", f"teacher.api_key_env={SECRET}"], "teacher.api_key_env: this looks like an API key"),
    ("run-api-key-env-not-a-name", lambda f, t, u: ["run", str(f["run_recipe"]), "--set", "teacher.api_key_env=MY KEY"], "teacher.api_key_env: not an environment variable name"),
    ("label-key-in-api-key-env", lambda f, t, u: label(f, "chunks", t / "o.jsonl", "--set", "teacher.api_key_env=hf_AbCdEfGhIjKlMnOpQrStUv"), "looks like an API key"),
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
    assert SECRET not in err + out and "12345678901" not in err + out and "hf_AbCdEfGh" not in err + out
    after = _digests(files["dir"].parent)
    assert {k: v for k, v in after.items() if k in before} == before, "inputs must stay untouched"


# ---- disks that refuse writes -------------------------------------------------------------------------------------


def _run_once(argv: list[str], capsys) -> tuple[int, list[str], str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, [line for line in err.splitlines() if line.startswith("error:")], out + err


def _refuse_new_files(folder: Path) -> str | None:
    """Make `folder` refuse new files, for root too (which passes permission checks): `chattr +i`; for another
    user `chmod 555`. Returns the undo command, or None when neither works here."""
    import os
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o555)
        return f"chmod 755 {folder}"
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return f"chattr -i {folder}"
    return None


def test_a_run_folder_that_takes_no_file_is_one_error_before_any_work(tmp_path, capsys, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "ro"
    run_dir.mkdir(parents=True)
    recipe = tmp_path / "ro.yaml"
    recipe.write_text(f"name: ro\nrun_dir: {run_dir}\njudge:\n  backend: heuristic\n")
    undo = _refuse_new_files(run_dir)
    if undo is None:
        pytest.skip("no way to make a folder refuse writes here (chattr)")
    try:
        code, errors, output = _run_once(["run", str(recipe)], capsys)
    finally:
        subprocess.run(undo.split(), check=True)
    assert code == 2 and len(errors) == 1 and "Traceback" not in output
    assert errors[0].startswith(f"error: {run_dir}: ") and "is not writable" in errors[0]
    assert list(run_dir.iterdir()) == []  # nothing started: no manifest, no recipe dump, no chunk


def _private_mounts() -> bool:
    """Whether this process may mount in a private mount namespace (root in a container that allows it)."""
    import shutil
    import subprocess

    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _private_mounts(), reason="needs `unshare -m` (mounting a small tmpfs)")
def test_a_full_disk_during_stage_2_is_one_error_and_the_rerun_completes_it(tmp_path, fake_openai):
    """A real full disk: stage 2 writes to a 256 KiB tmpfs mounted in a private mount namespace (nothing of it
    is seen outside the test). Then the same tmpfs read-only. Then more space, and the same command resumes."""
    import os
    import shlex
    import subprocess

    from mga.distill.core.io import read_rows
    from tests.test_labeling import MGA, label_args, teacher_reply

    server = fake_openai(teacher_reply)
    env = {**os.environ, "MGA_TEST_KEY": SECRET}
    clean = tmp_path / "clean"
    first = subprocess.run([*MGA, *label_args(server.url, CORPUS, clean / "pairs.jsonl")], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((clean / "pairs.jsonl").read_text().splitlines(keepends=True)[:10]))
    expected = subprocess.run([*MGA, *label_args(server.url, pairs, clean / "rw" / "rewrites.jsonl", stage="rewrite")],
                              env=env, capture_output=True, text=True)
    assert expected.returncode == 0, expected.stderr

    disk, logs = tmp_path / "disk", tmp_path / "logs"
    disk.mkdir(), logs.mkdir()
    command = shlex.join([*MGA, *label_args(server.url, pairs, disk / "rewrites.jsonl", stage="rewrite")])
    script = "\n".join([
        f"mount -t tmpfs -o size=256k tmpfs {disk} || exit 99",
        f"{command} > {logs}/full.out 2> {logs}/full.err; echo $? > {logs}/full.rc",
        f"cp {disk}/rewrites.jsonl {logs}/kept.jsonl",
        f"mount -o remount,ro {disk}",
        f"{command} > {logs}/ro.out 2> {logs}/ro.err; echo $? > {logs}/ro.rc",
        f"mount -o remount,rw,size=20m {disk}",
        f"{command} > {logs}/rerun.out 2> {logs}/rerun.err; echo $? > {logs}/rerun.rc",
        f"cp {disk}/rewrites.jsonl {logs}/final.jsonl",
    ])
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, fragment in (("full", "no space left on device; "), ("ro", "is not writable")):
        err = (logs / f"{name}.err").read_text()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert (logs / f"{name}.rc").read_text().strip() == "2", err
        assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in err, err
    full_error = (logs / "full.err").read_text()
    assert ("kept" in full_error or "lost" in full_error) and "rerun the same command: it resumes" in full_error, full_error
    kept = (logs / "kept.jsonl").read_bytes() if (logs / "kept.jsonl").exists() else b""
    assert not kept or kept.endswith(b"\n"), full_error  # whole rows only: the row that did not fit was cut off
    assert (logs / "rerun.rc").read_text().strip() == "0", (logs / "rerun.err").read_text()
    final = read_rows(logs / "final.jsonl")
    assert final == read_rows(clean / "rw" / "rewrites.jsonl") and (logs / "final.jsonl").read_bytes().endswith(b"\n")
    assert SECRET not in full_error + (logs / "ro.err").read_text()


# ---- what the README lists is read by every command ----------------------------------------------------------------


def test_single_compressed_files_and_bom_crlf_files_are_read_by_every_command(tmp_path, servers, capsys, monkeypatch):
    """A single `.jsonl.gz` corpus and pairs file, and a judged file with a byte-order mark and CRLF line ends."""
    import gzip

    from mga.distill.core.io import read_rows

    monkeypatch.setenv("MGA_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus.jsonl.gz"
    corpus.write_bytes(gzip.compress(b"\xef\xbb\xbf" + CORPUS.read_bytes().split(b"\n", 2)[0] + b"\r\n"))
    pairs = tmp_path / "out" / "pairs.jsonl"
    code, errors, output = _run_once(label(None, corpus, pairs, url=servers["ok"]), capsys)
    assert code == 0 and not errors, output
    assert len(read_rows(pairs)) >= 1
    packed = tmp_path / "pairs.jsonl.gz"
    packed.write_bytes(gzip.compress(pairs.read_bytes()))
    code, errors, output = _run_once(label(None, packed, tmp_path / "out" / "rewrites.jsonl", stage="rewrite",
                                           url=servers["ok"]), capsys)
    assert code == 0 and not errors, output
    judged = tmp_path / "judged.jsonl"
    row = {"variant": "base", "status": "ok", "content_split": "a rewrite", "meta": {"docid": "a", "chunk_id": 0,
           "pair_id": 0}, "judge": {"score": 4, "status": "scored", "backend": "heuristic"}}
    judged.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row) + "\r\n").encode() * 2)
    code, errors, output = _run_once(["report", str(judged), "-o", str(tmp_path / "report")], capsys)
    assert code == 0 and not errors and (tmp_path / "report" / "report.json").exists(), output
