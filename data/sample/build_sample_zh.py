"""Rebuild `corpus_zh.jsonl`, the bundled Chinese sample corpus, from Debian's `fortunes-zh` package.

The texts are classical Chinese poems and prose (Tang-dynasty poems from the package's `tang300` file, the
Daodejing and the Analects from its `chinese` file). The works themselves are centuries old and in the public
domain; the package that collects them is GPL-3.0+ (debian/copyright of fortunes-zh). None of it is written
by the toolkit's authors. Each entry is copied verbatim, minus the terminal colour codes the package adds.

Run:
    cd /tmp && apt-get download fortunes-zh && dpkg -x fortunes-zh_*_all.deb fortunes-zh
    python data/sample/build_sample_zh.py /tmp/fortunes-zh
"""

import re
import sys
from pathlib import Path

from debian_package import package_version, write_corpus

FORTUNES = "usr/share/games/fortunes"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PACKAGE_LICENSE = "distributed in Debian fortunes-zh under GPL-3.0+"

# (id, fortune file, how the entry starts, the work and its era for the license note)
SELECTION = [
    ("tang-guo-gu-ren-zhuang", "tang300", "《过故人庄》", "Tang poem by 孟浩然 (689-740)"),
    ("tang-you-zi-yin", "tang300", "《游子吟》", "Tang poem by 孟郊 (751-814)"),
    ("tang-hui-xiang-ou-shu", "tang300", "《回乡偶书》", "Tang poem by 贺知章 (659-744)"),
    ("tang-shan-ju-qiu-ming", "tang300", "《山居秋暝》", "Tang poem by 王维 (701-761)"),
    ("tang-deng-guan-que-lou", "tang300", "《登鹳雀楼》", "Tang poem by 王之涣 (688-742)"),
    ("tang-chun-xiao", "tang300", "《春晓》", "Tang poem by 孟浩然 (689-740)"),
    ("tang-ye-si", "tang300", "《夜思》", "Tang poem by 李白 (701-762)"),
    ("tang-jiang-xue", "tang300", "《江雪》", "Tang poem by 柳宗元 (773-819)"),
    ("tang-feng-qiao-ye-bo", "tang300", "《枫桥夜泊》", "Tang poem by 张继 (8th century)"),
    ("tang-chun-wang", "tang300", "《春望》", "Tang poem by 杜甫 (712-770)"),
    ("tang-ke-zhi", "tang300", "《客至》", "Tang poem by 杜甫 (712-770)"),
    ("tang-bing-che-xing", "tang300", "《兵车行》", "Tang poem by 杜甫 (712-770)"),
    ("tang-pi-pa-xing", "tang300", "《琵琶行", "Tang poem by 白居易 (772-846)"),
    ("daodejing-8", "chinese", "上善若水。", "Daodejing, chapter 8 (c. 4th century BC)"),
    ("lunyu-xue-er-1", "chinese", "子曰：“学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知", "Analects, Xue Er 1 (c. 5th century BC)"),
]


def entries(path: Path) -> list[str]:
    """The fortunes of one file: entries separated by '%' lines, colour codes removed."""
    text = path.read_text(encoding="utf-8")
    return [ANSI.sub("", entry).strip() for entry in re.split(r"\n%\n", text) if entry.strip()]


def main(root: Path) -> None:
    version = package_version(root, "fortunes-zh")
    files = {name: entries(root / FORTUNES / name) for name in {file for _, file, _, _ in SELECTION}}
    rows = []
    for doc_id, file, start, work in SELECTION:
        matches = [entry for entry in files[file] if entry.startswith(start)]
        if len(matches) != 1:
            raise SystemExit(f"{file}: expected one entry starting with {start!r}, found {len(matches)}")
        rows.append({
            "id": doc_id,
            "text": matches[0],
            "source": f"Debian fortunes-zh {version}, /{FORTUNES}/{file}",
            "license": f"public domain ({work}); {PACKAGE_LICENSE}",
        })
    write_corpus(Path(__file__).with_name("corpus_zh.jsonl"), rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
