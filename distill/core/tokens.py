"""Counting tokens, one way everywhere: the model's tokenizer when one is configured, else one estimate.

The estimate (`estimate_tokens`) counts each word (a run of letters, digits or underscores), each
punctuation mark and each CJK or kana/hangul character as one token, so it needs no tokenizer and treats
Chinese and Japanese text, which has no spaces, like other languages. It is an estimate, not any model's
count: set `corpus.tokenizer` (the dry run, chunking) or give a local checkpoint (`mga expand`) for exact
counts. A chat prompt counts its messages' tokens plus 4 per message for the template's markers, or the
template itself when the tokenizer has one. Users: chunking (`corpus.chunk_tokens`), the dry run's
estimates, the teacher's tokens-per-minute limit and budget reservations, and `mga expand`'s statistics.
"""

from __future__ import annotations

import re
from typing import Any

from mga.distill.core.errors import MgaError

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+|[^\w\s]")
PER_MESSAGE = 4  # a chat template's role and end-of-turn markers, per message, in the estimate


def estimate_tokens(text: str) -> int:
    """Words, punctuation marks and CJK characters: the tokenizer-free count (see the module docstring)."""
    return len(_TOKEN.findall(text))


def estimate_message_tokens(messages: list[dict[str, str]]) -> int:
    """The estimate for a chat prompt."""
    return sum(estimate_tokens(m.get("content") or "") + PER_MESSAGE for m in messages)


class TokenCounter:
    """`counter(text)` and `counter.messages(messages)`; `exact` when a tokenizer counts, `name` says which."""

    def __init__(self, tokenizer: Any = None, name: str = "estimate"):
        self.tokenizer, self.name, self.exact = tokenizer, name, tokenizer is not None

    def __call__(self, text: str) -> int:
        if self.tokenizer is None:
            return estimate_tokens(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def messages(self, messages: list[dict[str, str]]) -> int:
        if self.tokenizer is None:
            return estimate_message_tokens(messages)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        return sum(self(m.get("content") or "") + PER_MESSAGE for m in messages)


def token_counter(tokenizer: str | None, *, key: str = "corpus.tokenizer") -> TokenCounter:
    """The counter of the tokenizer at `tokenizer` (a local folder or hub id), or the estimate for None;
    a tokenizer that does not load is a user mistake named by `key`."""
    if tokenizer is None:
        return TokenCounter()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as e:
        raise MgaError(f"{key}: cannot load tokenizer '{tokenizer}' ({e.__class__.__name__}): give a local "
                       "tokenizer folder, or leave it empty for the built-in estimate") from None
    return TokenCounter(tok, f"tokenizer:{tokenizer}")
