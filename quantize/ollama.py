"""An Ollama `Modelfile` whose TEMPLATE and stop parameter reproduce the chat template the model was trained with.

The Go template is derived from the Jinja one by rendering it around a marker: each role's text before and after
the content, the generation prompt, and a default system prompt if the template injects one. The derived pieces
must rebuild the Jinja rendering of a multi-turn conversation exactly, or the export is refused: a model served
with another template than its training one rambles or answers off-task.
"""

from __future__ import annotations

from typing import Any

from mga.distill.core.errors import MgaError

MARK = "\u2063mga-content\u2063"
ROLES = ("system", "user", "assistant")
CHECK_CHAT = [
    {"role": "system", "content": "Rewrite faithfully."},
    {"role": "user", "content": "First text."},
    {"role": "assistant", "content": "First rewrite."},
    {"role": "user", "content": "Second text."},
]


def _render(tokenizer, messages: list[dict[str, str]], prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def chat_pieces(tokenizer) -> dict[str, Any]:
    """{"roles": {role: (before, after)}, "generation": str, "default_system": str | None}, checked."""
    roles: dict[str, tuple[str, str]] = {}
    for role in ROLES:
        try:
            text = _render(tokenizer, [{"role": role, "content": MARK}], False)
        except Exception:  # noqa: BLE001 - templates may refuse a lone system/assistant turn; checked below
            continue
        if MARK in text:
            before, after = text.split(MARK, 1)
            roles[role] = (before, after)
    if "user" not in roles:
        raise MgaError("the chat template cannot render a user turn: no Ollama TEMPLATE can be derived")
    default_system = None
    if "system" in roles:
        sys_before, sys_after = roles["system"]
        for role in ("user", "assistant"):
            before, after = roles.get(role, ("", ""))
            if before.startswith(sys_before) and sys_after in before[len(sys_before):]:  # template adds a system turn
                injected, _, rest = before[len(sys_before):].partition(sys_after)
                default_system = default_system or injected
                roles[role] = (rest, after)
    user = [{"role": "user", "content": MARK}]
    with_prompt, without = _render(tokenizer, user, True), _render(tokenizer, user, False)
    if not with_prompt.startswith(without):
        raise MgaError("the chat template's generation prompt is not a suffix: no Ollama TEMPLATE can be derived")
    pieces = {"roles": roles, "generation": with_prompt[len(without):], "default_system": default_system}
    rebuilt = "".join(roles[m["role"]][0] + m["content"] + roles[m["role"]][1] for m in CHECK_CHAT if m["role"] in roles)
    if set(m["role"] for m in CHECK_CHAT) - set(roles) or rebuilt + pieces["generation"] != _render(tokenizer, CHECK_CHAT, True):
        raise MgaError("the chat template is not a plain per-turn template (it depends on the turn's position or "
                       "content): no Ollama TEMPLATE reproduces it; serve the .gguf with llama.cpp, whose Jinja "
                       "template is in the file")
    return pieces


def _literal(text: str) -> str:
    if "{{" in text or '"""' in text:
        raise MgaError("the chat template's literal text contains '{{' or '\"\"\"': cannot write it as an Ollama TEMPLATE")
    return text


def go_template(pieces: dict[str, Any]) -> str:
    """The Ollama (Go text/template) TEMPLATE over `.Messages`; no trim markers, so every literal is kept."""
    branches = []
    for role, (before, after) in pieces["roles"].items():
        keyword = "if" if not branches else "else if"
        branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{_literal(before)}{{{{ .Content }}}}{_literal(after)}')
    return "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}" + _literal(pieces["generation"])


def modelfile(gguf_name: str, tokenizer, stop_tokens: list[str]) -> str:
    """Modelfile text: FROM the .gguf beside it, the TEMPLATE, the stop tokens, the default system prompt if any."""
    pieces = chat_pieces(tokenizer)
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(pieces)}"""']
    if pieces["default_system"]:
        lines.append(f'SYSTEM """{_literal(pieces["default_system"])}"""')
    lines += [f'PARAMETER stop "{token}"' for token in stop_tokens]
    return "\n".join(lines) + "\n"
