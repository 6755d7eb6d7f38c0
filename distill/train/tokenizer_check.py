"""Check a student's tokenizer before training, so the well-known SFT failures stop the run with one line.

The failures it catches (all of them train with a healthy-looking loss and only show at inference):
- no chat template: the messages cannot be formatted the way the student will be prompted;
- the template never emits the EOS token after an assistant turn: the model never learns to stop;
- the Qwen-base trap: eos is `<|endoftext|>` while the template ends turns with `<|im_end|>`. This one is
  fixed, not refused: eos becomes the end-of-turn token the template emits (a warning says so), because that is
  the token the model is trained to produce and generation must stop on (what TRL's `eos_token` option does);
- assistant-only loss without `{% generation %}` tags (TRL would mask everything or, with older versions,
  silently train on the prompt). Templates TRL knows how to patch (Qwen2.5, Llama 3, ...) are accepted;
- the end-of-turn token outside the generation tags: it would never be in the loss;
- no pad token: one is set, preferring an unused special token over eos (see `_choose_pad`).
"""

from __future__ import annotations

from typing import Any

from mga.distill.core.console import console
from mga.distill.core.errors import MgaError

# ChatML with the assistant turn (content and <|im_end|>) inside transformers' generation markers, as TRL's
# assistant-only loss needs: the tiny students' template, and SmolLM2's after its default system turn.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_PROBE = [
    {"role": "system", "content": "You are a probe."},
    {"role": "user", "content": "Say the word."},
    {"role": "assistant", "content": "zebra crossing"},
]


def training_chat_template(tokenizer: Any, assistant_only_loss: bool) -> str:
    """The template training renders with: the tokenizer's own, or TRL's patched one with generation tags."""
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
    )

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()))
    if not assistant_only_loss or has_generation_markers(template):
        return template
    try:
        patched = get_training_chat_template(tokenizer)
    except (ValueError, TypeError):
        patched = None
    if patched is None or not has_generation_markers(patched):
        raise MgaError(
            "assistant_only_loss is on but the chat template has no {% generation %} tags around the assistant "
            "turn (and TRL has no patched version of it): add the tags, or set train.assistant_only_loss=false"
        )
    return patched


def _render(tokenizer: Any, template: str, **kwargs: Any) -> Any:
    try:
        return tokenizer.apply_chat_template(_PROBE, chat_template=template, **kwargs)
    except Exception as e:  # noqa: BLE001 - a broken template is a user-fixable problem
        raise MgaError(f"the chat template fails to render a system/user/assistant conversation: {e}") from None


def _turn_end_ids(tokenizer: Any, template: str) -> list[int]:
    """Token ids the template writes right after the assistant's content."""
    text = _render(tokenizer, template, tokenize=False)
    content = _PROBE[-1]["content"]
    at = text.rfind(content)
    if at < 0:
        raise MgaError("the chat template does not write the assistant's content")
    return tokenizer(text[at + len(content):], add_special_tokens=False)["input_ids"]


def _check_eos(tokenizer: Any, template: str) -> None:
    after = _turn_end_ids(tokenizer, template)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in after:
        return
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    end_of_turn = next((i for i in after if i in special), None)
    if end_of_turn is None:
        raise MgaError(
            f"the chat template never emits the EOS token ({tokenizer.eos_token!r}) or any special token after an "
            "assistant turn: the model would never learn to stop; end the assistant turn with the EOS token"
        )
    token = tokenizer.convert_ids_to_tokens(end_of_turn)
    console.print(
        f"warning: eos is {tokenizer.eos_token!r} but the chat template ends assistant turns with {token!r}; "
        f"using {token!r} as eos (training and generation stop on it)",
        markup=False, soft_wrap=True,
    )
    tokenizer.eos_token = token


def _check_mask(tokenizer: Any, template: str) -> None:
    out = _render(tokenizer, template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    masked = [i for i, m in zip(ids, mask, strict=False) if m]
    if not masked:
        raise MgaError(
            "assistant_only_loss is on but the chat template marks no assistant tokens (return_assistant_tokens_mask "
            "is all zeros): put {% generation %}...{% endgeneration %} around the assistant turn"
        )
    if tokenizer.eos_token_id not in masked:
        raise MgaError(
            f"the EOS token {tokenizer.eos_token!r} is outside the template's {{% generation %}} tags: it would never "
            "be in the loss and the model would not learn to stop; move it inside the tags"
        )


def _choose_pad(tokenizer: Any, template: str) -> str:
    """A pad token that is not eos: a special token the template never writes (its embedding is unused, and it
    never collides with a trained token), preferring names that say pad. Falls back to eos only when there is no
    such token; that is safe with TRL's collator, which masks padding by position (labels padded with -100), not
    by token id, so the EOS at the end of each answer stays in the loss."""
    used = set(_render(tokenizer, template, tokenize=True, return_dict=True)["input_ids"])
    candidates = [
        token
        for token in dict.fromkeys([*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()])
        if token != tokenizer.eos_token and tokenizer.convert_tokens_to_ids(token) not in used
    ]
    preferred = sorted(candidates, key=lambda t: (0 if "pad" in t.lower() else 1 if "endoftext" in t.lower() else 2))
    if preferred:
        return preferred[0]
    console.print(
        "warning: the tokenizer has no pad token and no unused special token; padding with eos "
        "(safe: TRL masks padding by position, so EOS is still learned)",
        markup=False, soft_wrap=True,
    )
    return tokenizer.eos_token


def check_tokenizer(tokenizer: Any, *, assistant_only_loss: bool) -> None:
    """Raise `MgaError` (one line) when SFT with this tokenizer cannot work; fix eos/pad where that is safe."""
    if not getattr(tokenizer, "chat_template", None):
        raise MgaError(
            "the student's tokenizer has no chat template: SFT formats chat messages with it; use a tokenizer that "
            "ships one (e.g. from the instruct model of the same family) or add one to tokenizer_config.json"
        )
    if tokenizer.eos_token is None:
        raise MgaError("the student's tokenizer has no eos token")
    template = training_chat_template(tokenizer, assistant_only_loss)
    _check_eos(tokenizer, template)
    if assistant_only_loss:
        _check_mask(tokenizer, template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = _choose_pad(tokenizer, template)
        console.print(f"tokenizer: pad token set to {tokenizer.pad_token!r}", markup=False, soft_wrap=True)
    elif tokenizer.pad_token_id == tokenizer.eos_token_id:
        console.print("note: pad == eos; TRL masks padding by position, so EOS is still learned", markup=False)


def sync_special_tokens(model: Any, tokenizer: Any) -> None:
    """The model stops on the tokenizer's eos (after the tokenizer check may have changed it) and pads with its pad."""
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = model.generation_config
    old = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    others = [i for i in old if i is not None and i != tokenizer.eos_token_id]
    gen.eos_token_id = [tokenizer.eos_token_id, *others] if others else tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
