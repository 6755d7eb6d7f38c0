"""Scripted judges for the loopback endpoint: one that scores by a fixed rule of text overlap (it
discriminates), and one whose scores do not depend on the texts (it must fail the judge's controls)."""

from __future__ import annotations

import hashlib
import json
import re

from tests.fake_openai import Reply

_WORDS = re.compile(r"[a-z]{4,}")


def judged_texts(request) -> tuple[str, str]:
    """(original, rewrite) from a judge prompt."""
    user = request["messages"][-1]["content"]
    blocks = []
    for name in ("original_document", "rewritten_document"):
        match = re.search(rf"<{name}[^>]*>\n?(.*?)\n?</{name}", user, re.S)
        assert match, f"no {name} block in the judge prompt"
        blocks.append(match.group(1))
    return blocks[0], blocks[1]


def is_judge_request(request) -> bool:
    return "<rewritten_document" in request["messages"][-1]["content"]


def overlap_judge(request) -> Reply:
    """A fixed rule: the share of the original's words (4+ letters) found in the rewrite, in 4 bands."""
    original, rewrite = judged_texts(request)
    wanted = set(_WORDS.findall(original.lower()))
    share = len(wanted & set(_WORDS.findall(rewrite.lower()))) / max(1, len(wanted))
    score = 1 + sum(share >= t for t in (0.4, 0.55, 0.7, 0.85))
    return Reply(json.dumps({"analysis": f"{share:.2f} of the original's words kept", "score": score}))


def blind_judge(request, salt: str = "") -> Reply:
    """Scores 1-5 spread like random draws but carrying no information on the rewrite's quality:
    a hash of the prompt (so a rerun or a retry gets the same answer whatever the request order)."""
    digest = hashlib.sha256((salt + request["messages"][-1]["content"]).encode()).digest()
    return Reply(json.dumps({"analysis": "looks fine", "score": 1 + digest[0] % 5}))


def constant_judge(request, score: int = 4) -> Reply:
    """The same score whatever the texts: no information, and unlike `blind_judge` its failure of the
    controls does not depend on the prompt's wording (the negatives all get `score` >= 3)."""
    return Reply(json.dumps({"analysis": "looks fine", "score": score}))
