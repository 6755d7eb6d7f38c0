"""One pass's jobs answered by a tool model, as rows: the loop the local executor and every Ray actor run.

A pairs job is checked as the labeling stages check stage-1 answers (`pairs_validator`), a rewrite by the
stage-2 answer checks; either is re-asked up to `max_validation_attempts` in all. Rows are built by the labeling stages'
builders (`mga.distill.label.rows`), so both executors write the same rows for the same jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mga.distill.expand.spec import ExpandSpec, Which
from mga.distill.generate.protocol import Generator, Request, Sized
from mga.distill.label.rows import (
    Job,
    pairs_request,
    pairs_result_row,
    pairs_validator,
    rewrite_request,
    rewrite_result_row,
)


def answer_jobs(which: Which, spec: ExpandSpec, generator: Generator, jobs: Iterable[tuple[str, Job]], total: int,
                description: str) -> Iterator[dict[str, Any]]:
    """The row of each (key, job) in `jobs`, as each generation batch finishes; `jobs` is consumed lazily, so
    memory holds the requests in flight, not the pass."""
    model, params = generator.model_name, spec.params(which)
    in_flight: dict[str, Job] = {}

    def requests() -> Iterator[Request]:
        for key, job in jobs:
            in_flight[key] = job
            yield (pairs_request(key, job, params, spec.num_pairs) if which == "pairs"
                   else rewrite_request(key, job, params, spec.language))

    if which == "pairs":
        for result in generator.run(Sized(requests(), total), validate=pairs_validator(spec.num_pairs),
                                    max_attempts=spec.max_validation_attempts, description=description):
            yield pairs_result_row(in_flight.pop(result.request.key), result, model)
    else:
        for result in generator.run(Sized(requests(), total), max_attempts=spec.max_validation_attempts,
                                    description=description):
            yield rewrite_result_row(in_flight.pop(result.request.key), result, spec.variant, model,
                                     spec.max_new_tokens)
