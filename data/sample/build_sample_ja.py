"""Rebuild `corpus_ja.jsonl`, the bundled Japanese sample corpus, from Debian's `debian-faq-ja` package.

The texts are sections of the Japanese translation of the Debian GNU/Linux FAQ (Software in the Public
Interest, 1996-2021), one document per question, in the FAQ's own words. The FAQ may be copied and
redistributed, also in modified form, under its permission notice (copied into every row's `license` and into
data/sample/README.md). None of it is written by the toolkit's authors. Each section is copied verbatim
from the package's HTML: markup removed, a paragraph per line block, list items marked "・", and the line
breaks the HTML puts inside Japanese sentences joined without a space.

Sections that are mostly untranslated English, very short or very long are left out (the rule is in `keep`).

Run:
    cd /tmp && apt-get download debian-faq-ja && dpkg -x debian-faq-ja_*_all.deb debian-faq-ja
    python data/sample/build_sample_ja.py /tmp/debian-faq-ja
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

from debian_package import package_version, write_corpus

FAQ = "usr/share/doc/debian/FAQ/ja"
MIN_CHARS, MAX_CHARS = 150, 900
MAX_LATIN_SHARE = 0.25  # share of ASCII letters among all letters; more means an untranslated section
NOTICE = (
    "Copyright (C) 1996-2021 Software in the Public Interest. Permission is granted to make and distribute "
    "verbatim copies of this document provided the copyright notice and this permission notice are preserved "
    "on all copies. Permission is granted to copy and distribute modified versions of this document under the "
    "conditions for verbatim copying, provided that the entire resulting derived work is distributed under the "
    "terms of a permission notice identical to this one."
)
CJK = r"\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef"
FOOTNOTE = re.compile(r"\[\d+\]")  # a footnote marker alone in a block (the note itself is elsewhere)
_BLOCKS = {"p", "li", "pre", "dt", "dd", "tr"}
_SKIP = {"div.toc", "div.navheader", "div.navfooter"}


class Sections(HTMLParser):
    """Collects `{id: (title, text)}` of every <div class="section"> whose h2/h3 carries an anchor id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list] = {}
        self.current: str | None = None
        self.heading = False
        self.skip_depth = 0
        self.stack: list[str] = []
        self.block: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        key = f"{tag}.{attrs.get('class', '')}"
        self.stack.append(key)
        if key in _SKIP or self.skip_depth:
            self.skip_depth += 1
        if tag in ("h2", "h3"):
            self.heading = True
            self.flush()
        if tag == "a" and self.heading and attrs.get("id"):
            self.current = attrs["id"]
            self.sections[self.current] = ["", []]
        if tag in _BLOCKS:
            self.flush()
            if tag == "li":
                self.block.append("・")

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()
        if self.skip_depth:
            self.skip_depth -= 1
        if tag in ("h2", "h3"):
            self.heading = False
            if self.current:
                self.sections[self.current][0] = clean("".join(self.block))
            self.block = []
        elif tag in _BLOCKS:
            self.flush()

    def handle_data(self, data):
        if not self.skip_depth and self.current is not None:
            self.block.append(data)

    def flush(self):
        text = clean("".join(self.block))
        if text and text != "・" and not FOOTNOTE.fullmatch(text) and self.current is not None and not self.heading:
            self.sections[self.current][1].append(text)
        self.block = []


def clean(text: str) -> str:
    """Join the HTML's line breaks: nothing between Japanese characters, one space elsewhere."""
    text = re.sub(rf"(?<=[{CJK}])\s*\n\s*(?=[{CJK}])", "", text.strip())
    return re.sub(r"\s+", " ", text).strip()


def keep(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() for c in letters)
    return MIN_CHARS <= len(text) <= MAX_CHARS and latin <= MAX_LATIN_SHARE * len(letters)


def main(root: Path) -> None:
    version = package_version(root, "debian-faq-ja")
    rows = []
    for page in sorted((root / FAQ).glob("*.ja.html")):
        if page.name == "index.ja.html":
            continue
        parser = Sections()
        parser.feed(page.read_text(encoding="utf-8"))
        parser.flush()
        for anchor, (title, paragraphs) in parser.sections.items():
            text = "\n".join([title, *paragraphs])
            if paragraphs and keep(text):
                rows.append({
                    "id": f"debian-faq-{anchor}",
                    "text": text,
                    "source": f"Debian debian-faq-ja {version}, /{FAQ}/{page.name}#{anchor}",
                    "license": f"Debian FAQ permission notice (verbatim and modified copies allowed): {NOTICE}",
                })
    write_corpus(Path(__file__).with_name("corpus_ja.jsonl"), rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
