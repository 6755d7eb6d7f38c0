"""The manifest skips current stages, reruns when config or inputs change, and records failures."""

from __future__ import annotations

import pytest
from mga.distill.pipeline.manifest import Manifest


def test_skip_rerun_and_failure(tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("a")
    calls = []

    def work():
        calls.append(1)
        out.write_text(src.read_text().upper())
        return {"rows_out": 1}

    m = Manifest(tmp_path / "manifest.json")
    assert m.run("s", work, inputs=[src], outputs=[out], config={"k": 1})[0] is True
    assert Manifest(tmp_path / "manifest.json").run("s", work, inputs=[src], outputs=[out], config={"k": 1})[0] is False
    assert len(calls) == 1
    m.run("s", work, inputs=[src], outputs=[out], config={"k": 2})  # config changed
    src.write_text("b")
    m.run("s", work, inputs=[src], outputs=[out], config={"k": 2})  # input changed
    out.unlink()
    m.run("s", work, inputs=[src], outputs=[out], config={"k": 2})  # output lost
    m.run("s", work, inputs=[src], outputs=[out], config={"k": 2}, force=True)
    assert len(calls) == 5

    def boom():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        m.run("t", boom, inputs=[src], outputs=[tmp_path / "t.txt"], config=None)
    record = Manifest(tmp_path / "manifest.json").stages["t"]
    assert record.status == "failed" and "disk full" in record.error
