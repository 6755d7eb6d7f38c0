"""Helpers shared by the build scripts that take sample text from an unpacked Debian package."""

import gzip
import json
import re
from pathlib import Path


def package_version(root: Path, package: str) -> str:
    """The version on the first line of the package's changelog (its `usr/share/doc/<package>/changelog.gz`)."""
    changelog = root / "usr/share/doc" / package / "changelog.gz"
    first = gzip.decompress(changelog.read_bytes()).decode("utf-8").splitlines()[0]
    return re.search(r"\(([^)]+)\)", first).group(1)


def write_corpus(out: Path, rows: list[dict]) -> None:
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} documents to {out}")
