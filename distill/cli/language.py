"""`mga language new` and `mga language check`: bring up a language pack and know it is sound."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mga.distill.core.console import console
from mga.distill.core.errors import MgaError

app = typer.Typer(help="Language packs: data/prompts/<lang>/ (templates, boilerplate, language.yaml).",
                  no_args_is_help=True)
RootOpt = Annotated[Path | None, typer.Option("--root", help="Folder of language packs; default: the bundled data/prompts.")]


@app.command("new")
def new(
    code: Annotated[str, typer.Argument(help="Code of the new language (ISO 639: de, ja, pt-BR).")],
    source: Annotated[str, typer.Option("--from", help="Pack to copy.")] = "en",
    root: RootOpt = None,
) -> None:
    """Scaffold a pack from an existing one, with a CHECKLIST.md of what to translate and provide."""
    from mga.distill.language.scaffold import CHECKLIST_FILE, scaffold_pack

    folder = scaffold_pack(code, source, root)
    console.print(f"created {folder} from '{source}'; the checklist is in {folder / CHECKLIST_FILE}", markup=False)
    console.print((folder / CHECKLIST_FILE).read_text(encoding="utf-8"), markup=False)
    console.print(f"then: mga language check {code}" + (f" --root {root}" if root else ""), markup=False)


@app.command("check")
def check(
    codes: Annotated[list[str] | None, typer.Argument(help="Packs to check; default: every pack.")] = None,
    root: RootOpt = None,
) -> None:
    """Render every template, check slots, JSON examples, leftover English, boilerplate and segmentation."""
    from mga.distill.core.language import available_languages
    from mga.distill.language.check import check_pack

    errors: list[str] = []
    for code in codes or available_languages(root):
        problems, summary = check_pack(code, root)
        for p in problems:
            if p.level == "warning":
                console.print(f"warning: {p.line()}", markup=False, highlight=False, soft_wrap=True)
        errors += [p.line() for p in problems if p.level == "error"]
        if not any(p.level == "error" for p in problems):
            console.print(_summary(code, summary), markup=False, highlight=False)
    if errors:
        raise MgaError("\n".join(errors))


def _summary(code: str, summary: dict) -> str:
    pack, corpus, ref = summary["pack"], summary["corpus"], summary["reference"]
    parts = [f"ok: {code} ({pack.display_name}): templates, JSON examples and boilerplate patterns pass"]
    if corpus:
        parts.append(f"segmentation yields a median {corpus['median_terms']:g} terms on {corpus['documents']} sample documents")
    if ref:
        parts.append(f"reference set {ref['documents']} documents x {ref['rewrites']} rewrites")
    loo = pack.heuristic_judge.leave_one_out
    if pack.heuristic_judge.bands and loo:
        parts.append(f"heuristic bands fitted (leave-one-out exact {100 * loo['exact']:.0f}%, within ±1 {100 * loo['within_1']:.0f}%)")
    return "; ".join(parts)
