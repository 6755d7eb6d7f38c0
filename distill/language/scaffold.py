"""`mga language new <lang> --from en`: copy a pack as the starting point of a new language, with a checklist.

The copy is deliberately not usable as it stands: its templates are the source language's, which
`mga language check` reports file by file until they are translated; its `language.yaml` names no sample
corpus, no reference set and no bands, which the checklist says how to provide.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mga.distill.core.errors import MgaError
from mga.distill.core.language import (
    LANGUAGE_FILE,
    pack_dir,
    prompts_root,
)
from mga.distill.core.prompts import PROMPT_SLOTS

CHECKLIST_FILE = "CHECKLIST.md"
_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")


def checklist(code: str, source: str) -> str:
    prompts = "\n".join(
        f"- [ ] `{name}.system.j2`, `{name}.user.j2`: translate every sentence; keep the slots "
        f"({', '.join('{{ ' + s + ' }}' for s in slots)}), the `fence(...)` and `tag(...)` calls and any JSON keys as they are."
        for name, slots in PROMPT_SLOTS.items()
    )
    return f"""# Bringing up `{code}` (scaffolded from `{source}`)

Work through the list, then run `mga language check {code}` until it prints no `error:` line.
See docs/languages.md for the whole walkthrough.

## Prompts (translate; a native speaker should read the result)
{prompts}

## Data
- [ ] `boilerplate.yaml`: replace the patterns with the phrases rewriting models add around their answer in
  this language ("Note: ...", "Here is the rewrite ..."). Each is a regular expression matched at the start of a line.
- [ ] `language.yaml`: `display_name`; `segmentation` (`words` with a word pattern and `stop_words` for languages
  that separate words with spaces; `char_ngrams` with a pattern of term characters and single-character
  `stop_words` for scripts without spaces); `stop_words`.
- [ ] A sample corpus of real text in the language under a licence that allows redistribution:
  `data/sample/corpus_{code}.jsonl` (`id`, `text`, `source`, `license` per row), built by a script beside it;
  set `sample_corpus:` in `language.yaml`.
- [ ] A reference set `data/reference/{code}.jsonl`: at least 10 documents x 5 (genre, audience) rewrites
  with scores 1-5 and one-line justifications, including poor rewrites; set `reference:`.
- [ ] Fit the offline judge: `mga judge --calibrate --leave-one-out --write-bands --set language={code}`.
- [ ] A recipe `recipes/quickstart-{code}.yaml` (copy recipes/quickstart.yaml, set `language: {code}`).
- [ ] Delete this file when the list is done.
"""


def scaffold_pack(code: str, source: str = "en", root: Path | None = None) -> Path:
    """Copy `source`'s pack to `<root>/<code>` with a reset language.yaml and a CHECKLIST.md; returns the folder."""
    root = root or prompts_root()
    if not _CODE.match(code):
        raise MgaError(f"language code '{code}' is not a lower-case ISO 639 code such as 'de', 'ja' or 'pt-BR'")
    target = root / code
    if target.exists():
        raise MgaError(f"{target}: already exists (check it with `mga language check {code}`)")
    origin = pack_dir(source, root if (root / source).is_dir() else None)
    target.mkdir(parents=True)
    for path in sorted(origin.iterdir()):
        if path.is_file() and path.name not in (LANGUAGE_FILE, CHECKLIST_FILE):
            shutil.copyfile(path, target / path.name)
    (target / LANGUAGE_FILE).write_text(_language_yaml(code, source), encoding="utf-8")
    (target / CHECKLIST_FILE).write_text(checklist(code, source), encoding="utf-8")
    return target


def _language_yaml(code: str, source: str) -> str:
    return f"""# Language pack '{code}', scaffolded from '{source}' by `mga language new`. See CHECKLIST.md and docs/languages.md.
code: {code}
display_name: "TODO: the language's name"
# words: every match of `pattern` is a term; char_ngrams: every match is a run of term characters cut into n-grams.
segmentation:
  method: words
  pattern: '[^\\W\\d_]{{3,}}'
  lowercase: true
stop_words: []
sample_corpus: null     # e.g. corpus_{code}.jsonl under data/sample/
reference: null         # e.g. {code}.jsonl under data/reference/
heuristic_judge:
  signal_weight: 0.3
  bands: null           # fitted by `mga judge --calibrate --leave-one-out --write-bands --set language={code}`
"""
