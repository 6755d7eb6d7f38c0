"""Each tokenizer check fires on the tokenizer problem it is about, and a good tokenizer passes untouched."""

from __future__ import annotations

import pytest
from mga.distill.core.errors import MgaError
from mga.distill.train.tiny_model import CHAT_TEMPLATE
from mga.distill.train.tokenizer_check import check_tokenizer


@pytest.fixture
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_good_tokenizer_passes_unchanged(tok):
    eos, pad = tok.eos_token, tok.pad_token
    check_tokenizer(tok, assistant_only_loss=True)
    assert (tok.eos_token, tok.pad_token) == (eos, pad) == ("<|im_end|>", "<|pad|>")


def test_no_chat_template(tok):
    tok.chat_template = None
    with pytest.raises(MgaError, match="no chat template"):
        check_tokenizer(tok, assistant_only_loss=False)


def test_template_never_emits_eos(tok):
    # the assistant turn ends with a plain newline: nothing tells the model to stop
    tok.chat_template = CHAT_TEMPLATE.replace("message['content'] + '<|im_end|>' }}{% endgeneration %}",
                                              "message['content'] }}{% endgeneration %}")
    with pytest.raises(MgaError, match="never emits the EOS"):
        check_tokenizer(tok, assistant_only_loss=True)


def test_assistant_only_loss_without_generation_tags(tok):
    tok.chat_template = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    with pytest.raises(MgaError, match="generation"):
        check_tokenizer(tok, assistant_only_loss=True)
    check_tokenizer(tok, assistant_only_loss=False)  # fine when the loss covers the whole sequence


def test_eos_outside_generation_tags(tok):
    tok.chat_template = CHAT_TEMPLATE.replace(
        "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{- message['content'] }}{% endgeneration %}{{- '<|im_end|>' }}",
    )
    with pytest.raises(MgaError, match="outside the template"):
        check_tokenizer(tok, assistant_only_loss=True)


def test_qwen_base_trap_fixes_eos_to_end_of_turn(tok, capsys):
    tok.eos_token = "<|endoftext|>"  # what a Qwen base ships, while its template ends turns with <|im_end|>
    check_tokenizer(tok, assistant_only_loss=True)
    assert tok.eos_token == "<|im_end|>"
    assert "using '<|im_end|>' as eos" in capsys.readouterr().err


def test_missing_pad_gets_an_unused_special_token_not_eos(tok):
    tok.pad_token = None
    check_tokenizer(tok, assistant_only_loss=True)
    assert tok.pad_token is not None and tok.pad_token != tok.eos_token
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tokenize=False
    )
    assert tok.pad_token not in rendered
