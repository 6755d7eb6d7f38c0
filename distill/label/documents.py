"""Corpus -> documents, as a stream: read the files (`mga.distill.core.sources`), check each row, keep one
document per id, this shard's documents only, and a seeded sample when asked.

Memory does not grow with the corpus: duplicate ids are checked in an on-disk set (the same document twice
is skipped with a warning; two texts under one id are an error), and `sample_size`
keeps the documents with the smallest seeded hashes of their ids (bottom-k sampling) in a heap of that
size, reading the corpus once. A document's place in the sample depends on its id only, not on the order
or sharding of the files; the sample comes out in corpus order.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mga.distill.core.config import CorpusConfig
from mga.distill.core.console import console
from mga.distill.core.diskindex import DiskSet
from mga.distill.core.errors import MgaError
from mga.distill.core.sources import Source, iter_file, resolve, shard_of

MAX_WARNINGS = 20  # one line per skipped row up to here, then only the count


@dataclass(frozen=True)
class Document:
    docid: str
    text: str
    source: str = ""


@dataclass
class Skipped:
    """Rows left out, warned about one line each (the first `MAX_WARNINGS`)."""

    count: int = 0

    def __call__(self, line: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.count > MAX_WARNINGS:
            console.print(f"warning: {self.count - MAX_WARNINGS} more rows skipped (first {MAX_WARNINGS} shown)",
                          markup=False, highlight=False)


def _sample_rank(seed: int, docid: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{docid}".encode()).digest()[:8], "big")


def _read(source: Source, cfg: CorpusConfig, skipped: Skipped, shard_index: int, num_shards: int,
          scratch: Path | None) -> Iterator[Document]:
    files, own = source.files_of_shard(shard_index, num_shards)
    columns = list(dict.fromkeys([cfg.text_field, cfg.id_field, "source"]))
    with DiskSet(scratch) as seen:
        for path in files:
            name, label = source.name_of(path), path.name
            for number, row in iter_file(path, skipped, columns):
                where = f"{label}:{number}"
                if cfg.text_field not in row:
                    skipped(f"{where}: no '{cfg.text_field}' field (corpus.text_field), row skipped")
                    continue
                text = row[cfg.text_field]
                if not isinstance(text, str) or not text.strip():
                    skipped(f"{where}: empty or non-string '{cfg.text_field}', row skipped")
                    continue
                docid = str(row.get(cfg.id_field) or f"{name}-{number}")
                if not own and shard_of(docid, num_shards) != shard_index:
                    continue
                line = str(number) if len(files) == 1 else where
                digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
                if not seen.add(docid, f"{digest} {line}"):
                    first_digest, first_line = seen.first(docid).split(" ", 1)
                    if first_digest != digest:  # two documents under one id: resume and reports would mix them up
                        raise MgaError(f"{source.spec}: duplicate document id '{docid}' ({cfg.id_field} at rows "
                                       f"{first_line} and {line}, different texts): document ids must be unique")
                    skipped(f"{where}: duplicate {cfg.id_field} '{docid}' (same text), row skipped")
                    continue
                src = row.get("source")
                yield Document(docid, text, src if isinstance(src, str) else "")


def iter_documents(
    corpus: str | Path, cfg: CorpusConfig, skipped: Skipped, *, seed: int = 0, shard_index: int = 0,
    num_shards: int = 1, limit: int | None = None, scratch: Path | None = None,
) -> Iterator[Document]:
    """This shard's usable documents of `corpus` in corpus order: the first `limit`, or a `sample_size` sample."""
    reader = _read(resolve(corpus), cfg, skipped, shard_index, num_shards, scratch)
    documents = reader if limit is None else (d for _, d in zip(range(limit), reader, strict=False))
    try:
        if cfg.sample_size is None:
            yield from documents
            return
        heap: list[tuple[int, int, Document]] = []  # (-rank, position, document): the k smallest ranks
        for position, doc in enumerate(documents):
            item = (-_sample_rank(seed, doc.docid), position, doc)
            if len(heap) < cfg.sample_size:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        yield from (doc for _, _, doc in sorted(heap, key=lambda it: it[1]))
    finally:
        reader.close()  # closes the on-disk set of seen ids
