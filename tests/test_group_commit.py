"""Group commit of a generator's answers: one transaction per event-loop turn, each caller resumed only once
its answer (and its cost) is committed, counters updated at once, nothing dropped by a cancelled caller."""

from __future__ import annotations

import asyncio
import sqlite3

from mga.distill.generate.accounting import Accounting
from mga.distill.generate.cache import RequestCache
from mga.distill.generate.commits import GroupCommit
from mga.distill.generate.protocol import Completion


def committed(path) -> tuple[set[str], int]:
    """Answer keys and spend rows visible to another connection: what a killed process would leave."""
    db = sqlite3.connect(path)
    try:
        keys = {row[0] for row in db.execute("SELECT key FROM answers")}
        return keys, db.execute("SELECT COUNT(*) FROM spend").fetchone()[0]
    finally:
        db.close()


def answer_of(text: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> Completion:
    return Completion(text=text, finish_reason="stop", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def setup(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    transactions = []
    write = cache.write
    cache.write = lambda answers, spends: (transactions.append((len(answers), len(spends))), write(answers, spends))
    accounting = Accounting(1.0, 2.0, path=tmp_path / "accounting.json")
    return cache, transactions, GroupCommit(accounting.for_stage("rewrite", cache)), accounting


def test_answers_of_one_turn_share_a_transaction_and_each_is_durable_when_its_caller_resumes(tmp_path):
    cache, transactions, commits, accounting = setup(tmp_path)
    seen_on_resume = {}

    async def answer(i: int) -> None:
        await commits.answered(f"k{i}", answer_of(f"a{i}", 10, 5), "m",
                               requests=1, prompt_tokens=10, completion_tokens=5)
        seen_on_resume[i] = committed(cache.path)[0]

    async def main() -> None:
        await asyncio.gather(*(answer(i) for i in range(8)))
        await commits.count(results=1)

    asyncio.run(main())
    assert transactions[0] == (8, 8)  # eight answers and their costs, one commit
    assert len(transactions) == 2 and transactions[1] == (0, 1)
    assert all(f"k{i}" in keys for i, keys in seen_on_resume.items()) and len(seen_on_resume) == 8
    assert cache.get("k3").text == "a3"
    counters = accounting.stages["rewrite"]
    assert (counters.requests, counters.prompt_tokens, counters.completion_tokens, counters.results) == (8, 80, 40, 1)
    assert committed(cache.path)[1] == 9


def test_counted_before_the_commit_and_kept_when_the_caller_is_cancelled(tmp_path):
    """The budget of the next request reads the counters: they include an answer as soon as it arrives. A
    caller cancelled while it waits (Ctrl-C) still has its paid answer committed."""
    cache, transactions, commits, accounting = setup(tmp_path)

    async def main() -> None:
        task = asyncio.create_task(commits.answered("paid", answer_of("x"), "m", requests=1, prompt_tokens=7))
        await asyncio.sleep(0)  # the task has queued its answer and waits for the commit
        assert accounting.stages["rewrite"].prompt_tokens == 7
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        commits.close()

    asyncio.run(main())
    assert "paid" in committed(cache.path)[0] and transactions == [(1, 1)]


def test_a_failed_commit_reaches_every_waiting_caller(tmp_path):
    cache, _, commits, _ = setup(tmp_path)
    cache._db.execute("DROP TABLE answers")

    async def main() -> list:
        return await asyncio.gather(*(commits.answered(f"k{i}", answer_of("x"), "m", requests=1)
                                      for i in range(3)), return_exceptions=True)

    errors = asyncio.run(main())
    assert len(errors) == 3 and all(isinstance(e, sqlite3.OperationalError) for e in errors)


def test_without_a_cache_or_ledger_nothing_waits(tmp_path):
    accounting = Accounting()
    commits = GroupCommit(accounting.for_stage("pairs", None))

    async def main() -> None:
        await commits.answered("k", answer_of("x"), "m", requests=1)
        assert not commits._events

    asyncio.run(main())
    assert accounting.stages["pairs"].requests == 1


def test_a_failed_commit_with_every_caller_cancelled_is_raised_when_the_loop_ends(tmp_path):
    """A commit that fails after its callers are gone (Ctrl-C) must not lose paid answers silently."""
    cache, _, commits, _ = setup(tmp_path)
    cache._db.execute("DROP TABLE answers")

    async def main() -> None:
        task = asyncio.create_task(commits.answered("paid", answer_of("x"), "m", requests=1))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        commits.close()

    try:
        asyncio.run(main())
    except sqlite3.OperationalError as e:
        assert "answers" in str(e)
    else:
        raise AssertionError("the failed commit was swallowed")
