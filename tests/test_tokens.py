"""One token counter (`mga.distill.core.tokens`): the tokenizer when one is configured, else one estimate,
the same in chunking, the dry run, the teacher's budget and `mga expand`'s statistics."""

from __future__ import annotations

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.core.io import read_rows
from mga.distill.core.tokens import PER_MESSAGE, estimate_message_tokens, estimate_tokens, token_counter
from mga.distill.generate.accounting import Accounting
from mga.distill.generate.budget import Budget

from tests.test_expand import _expand, tool_models
from tests.test_expand import corpus as expand_corpus  # noqa: F401 (fixture)

MESSAGES = [{"role": "system", "content": "Rewrite, please."}, {"role": "user", "content": "Hello, world! 机器学习"}]


def test_the_estimate_counts_words_punctuation_and_cjk_characters():
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("机器学习很有趣。") == 8
    assert estimate_message_tokens(MESSAGES) == 4 + 8 + 2 * PER_MESSAGE
    counter = token_counter(None)
    assert (counter.name, counter.exact, counter("Hello, world!")) == ("estimate", False, 4)


def test_a_configured_tokenizer_counts_and_a_broken_one_is_named(tiny_model_dir, tmp_path):
    counter = token_counter(str(tiny_model_dir))
    assert counter.exact and counter("Hello, world!") == len(counter.tokenizer.encode("Hello, world!",
                                                                                    add_special_tokens=False))
    assert counter.messages(MESSAGES) > counter(MESSAGES[1]["content"])  # the chat template's tokens too
    with pytest.raises(MgaError, match="corpus.tokenizer: cannot load tokenizer"):
        token_counter(str(tmp_path))


def test_the_budget_reserves_the_estimate():
    accounting = Accounting(price_input_per_million=1e6, price_output_per_million=0.0)  # a dollar a token: the bound is the token count
    assert Budget(10.0, accounting).bound(MESSAGES, max_tokens=50) == estimate_message_tokens(MESSAGES)


def test_expand_statistics_count_with_the_estimate_behind_an_endpoint(expand_corpus, tmp_path, fake_openai):  # noqa: F811
    stats = _expand(expand_corpus, tmp_path / "out", fake_openai(tool_models))
    chunks = read_rows(tmp_path / "out" / "chunks.jsonl")
    assert stats["token_counter"] == "estimate"
    assert stats["tokens_in"] == sum(estimate_tokens(c["meta"]["raw_text"]) for c in chunks)
