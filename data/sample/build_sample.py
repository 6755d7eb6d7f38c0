"""Rebuild `corpus.jsonl`, the bundled sample corpus, from text that ships with every CPython (PSF-2.0).

Sources: the language reference topics of `pydoc_data.topics` (used by `help()`), the history section of
CPython's LICENSE file, and the Zen of Python (`this`). None of it is written by the toolkit's authors.
Run: python data/sample/build_sample.py
"""

import codecs
import json
import platform
import pydoc_data.topics
import sysconfig
import this
from pathlib import Path

MIN_WORDS = 60
VERSION = platform.python_version()


def main() -> None:
    rows = []
    for key, text in sorted(pydoc_data.topics.topics.items()):
        if len(text.split()) >= MIN_WORDS:
            rows.append({"id": f"pydoc-{key}", "text": text.strip(), "source": f"CPython {VERSION} pydoc_data.topics['{key}']"})
    license_text = (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt").read_text()
    history = license_text.split("B. TERMS AND CONDITIONS")[0].strip()
    rows.append({"id": "cpython-history", "text": history, "source": f"CPython {VERSION} LICENSE.txt, part A"})
    zen = codecs.decode(this.s, "rot13")
    rows.append({"id": "zen-of-python", "text": zen.strip(), "source": f"CPython {VERSION} module 'this' (PEP 20)"})
    out = Path(__file__).with_name("corpus.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, "license": "PSF-2.0"}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} documents to {out}")


if __name__ == "__main__":
    main()
