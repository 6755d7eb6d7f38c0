"""mga-toolkit: distil a teacher LLM into small MGA tool models (labeling, SFT, the iterative loop, the CLI)."""

import logging
import os

# Quiet, offline-friendly defaults: nothing in the toolkit needs a hub, and GPTQModel's CPU worker pool
# needs at least 2 workers even on a 2-core machine.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The toolkit shows its own progress per stage; per-file bars of the hub/datasets libraries are noise here.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))

# torchao (pulled in by GPTQModel) logs CUDA-only kernels it cannot load on CPU machines; not actionable.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

__version__ = "0.1.0"
