"""One training process of a multi-process run: `python -m mga.distill.train.worker <out>/launch.json`.

Started N times by `mga.distill.train.launch` (through accelerate launch or torchrun, which set the rank
variables); each process trains its share with TRL and all take part in saving the checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.train.config import TrainConfig
from mga.distill.train.sft import TrainJob, fit


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        job = spec["job"]
        paths = {k: Path(job[k]) if job[k] else None for k in ("train_path", "eval_path", "out_dir")}
        fit(TrainJob(**{**job, **paths}), TrainConfig.model_validate(spec["config"]))
    except MgaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
