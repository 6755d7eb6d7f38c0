"""One rubric: the judge's 1-5 scale follows only from the paper's two penalised conditions (Limited Consistency)."""

from __future__ import annotations

import re

import pytest
from mga.distill.core.prompts import judge_messages

# what each scale line must speak of, and what must never lower a score (the paper's "not penalised" list,
# and the distortion grades of the old scale)
RUBRIC = {
    "en": (("recognis", "information point"), ("distort", "contradict", "changed"), ("style", "order", "focus", "leaving out", "adding")),
    "zh": (("认出", "信息点"), ("偏差", "矛盾", "改动"), ("风格", "顺序", "侧重", "省略", "增加")),
    "ja": (("認識", "情報点"), ("歪め", "矛盾", "変えられ"), ("文体", "順序", "重点", "省", "加え")),
}


@pytest.mark.parametrize("language", sorted(RUBRIC))
def test_scale_grades_only_recognisability_and_surviving_points(language):
    text = judge_messages("ORIGINAL", "REWRITE", language)[1]["content"]
    scale = [line for line in text.splitlines() if re.match(r"^[1-5] - ", line)]
    assert [line[0] for line in scale] == ["5", "4", "3", "2", "1"]
    needed, old_grades, free = RUBRIC[language]
    for line in scale:
        assert any(word in line for word in needed), line
        assert not any(word in line.lower() for word in old_grades + free), line
    assert sum(needed[0] in line for line in scale) >= 4  # recognisability is the graded axis
    not_penalised = text[: text.index(scale[0])]
    for word in free:  # style, order, focus, omissions, additions are named as never lowering a score
        assert word in not_penalised.lower(), word
    assert "5" in not_penalised  # omissions alone: score 5
