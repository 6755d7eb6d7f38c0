"""The HTML page of the report: one self-contained file (inline CSS and script, images as base64 data URIs)."""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup, escape

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
         padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: .3rem; }
  h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
  .meta { color: #444; margin: .2rem 0; }
  .note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5rem .8rem; margin: .6rem 0; }
  table { border-collapse: collapse; margin: .8rem 0; font-variant-numeric: tabular-nums; }
  th, td { border: 1px solid #ccc; padding: .35rem .6rem; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  thead th { background: #f2f4f7; }
  tr.reference td { background: #eef6ee; }
  td.neg { color: #b00020; }
  td.pos { color: #006400; }
  pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; white-space: pre-wrap; }
  figure { margin: 1rem 0; }
  figure img { max-width: 100%; border: 1px solid #eee; }
  figcaption { color: #555; font-size: .9rem; }
  .controls { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #eee; z-index: 1; }
  .controls label { margin-right: 1.2rem; }
  .doc { border: 1px solid #ddd; border-radius: 6px; padding: .6rem .8rem; margin: 1rem 0; }
  .doc h3 { font-size: 1rem; margin: .2rem 0 .5rem; }
  .doc-grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: .8rem; }
  .source .text { position: sticky; top: 3rem; max-height: 80vh; overflow-y: auto; }
  .text { white-space: pre-wrap; font-size: .9rem; background: #fafafa; padding: .5rem; border-radius: 4px; }
  .rewrite { border-left: 3px solid #8aa4c8; padding: .3rem .6rem; margin-bottom: .8rem; }
  .rewrite.flagged { border-left-color: #b00020; }
  .rewrite header { font-size: .9rem; }
  .figures { color: #444; font-size: .85rem; margin: .2rem 0; }
  .flag { display: inline-block; background: #fde7ea; color: #b00020; border-radius: 3px; padding: 0 .35rem;
          margin-left: .3rem; font-size: .8rem; }
  mark.copied { background: #ffe08a; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta"><strong>Judge:</strong> {{ judge_label }}</p>
<p class="meta"><strong>Reference model (Diff):</strong> {{ reference_model }}</p>
{% for note in notes %}<div class="note">{{ note }}</div>
{% endfor %}
{% for section_title, body in leading %}<h2>{{ section_title }}</h2>
{{ body }}
{% endfor %}
<h2>Table 1: judge scores per model</h2>
{{ table(table1, reference_model) }}
{% if table2 %}<h2>Table 2: prompt variants</h2>
{{ table(table2, None) }}
{% endif %}
{% for section_title, body in sections %}<h2>{{ section_title }}</h2>
{{ body }}
{% endfor %}
{% if images %}<h2>Charts</h2>
{% for name, uri in images %}<figure><img src="{{ uri }}" alt="{{ name }}"><figcaption>{{ name }}</figcaption></figure>
{% endfor %}{% endif %}
{% if samples %}<h2 id="samples">Samples: documents beside their rewrites</h2>
{{ samples }}{% endif %}
</body>
</html>
"""

TABLE = """<table>
<thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr{% if row[0] == reference %} class="reference"{% endif %}>{% for cell in row %}<td{% if cell.startswith('-') %} class="neg"{% elif cell.startswith('+') %} class="pos"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>"""

SAMPLES = """<div id="samples-page">
<p class="meta">{{ s.shown }} of {{ s.total }} documents with measured rewrites: {{ s.rule }}. Each rewrite shows its
model / variant, (genre, audience), judge score, monitor figures, flags and reasons. <mark class="copied">Highlighted</mark>
words are copied: they belong to a word 8-gram that stands verbatim in the source (what the copy rate counts).
Flags at the thresholds {{ s.thresholds }}; a row's own filter reason, when it has one, is a flag too. Failed and
empty rewrites are not shown (Judge health counts them).</p>
<div class="controls">
<label>model / variant <select id="samples-line"><option value="">all</option>
{% for line in s.lines %}<option value="{{ line }}">{{ line }}</option>
{% endfor %}</select></label>
<label>flag <select id="samples-flag"><option value="">all rewrites</option><option value="*">any flag</option>
<option value="-">no flag</option>
{% for flag in s.flags %}<option value="{{ flag }}">{{ flag }}</option>
{% endfor %}</select></label>
<span class="meta"><span id="samples-count">{{ s.shown }}</span> documents shown</span>
</div>
{% for doc in s.documents %}<section class="doc">
<h3>{{ doc.key }}</h3>
<div class="doc-grid">
<div class="source"><div class="figures">source, {{ doc.words }} words</div><div class="text">{{ doc.source }}</div></div>
<div class="rewrites">
{% for r in doc.rewrites %}<article class="rewrite{% if r.flags %} flagged{% endif %}" data-line="{{ r.line }}" data-flags="{{ r.flags|join(' ') }}">
<header><strong>{{ r.line }}</strong> · {{ r.genre }} / {{ r.audience }} · score {{ r.score }}{% for flag in r.flags %}<span class="flag">{{ flag }}</span>{% endfor %}</header>
<div class="figures">{{ r.figures }}</div>
<div class="text">{{ r.text }}</div>
{% for name, value in r.reasons %}<details><summary>{{ name }}</summary><div class="text">{{ value }}</div></details>
{% endfor %}</article>
{% endfor %}</div>
</div>
</section>
{% endfor %}</div>
<script>
(function () {
  var line = document.getElementById("samples-line"), flag = document.getElementById("samples-flag");
  function apply() {
    var shown = 0;
    document.querySelectorAll("#samples-page .doc").forEach(function (doc) {
      var any = false;
      doc.querySelectorAll(".rewrite").forEach(function (card) {
        var flags = card.dataset.flags ? card.dataset.flags.split(" ") : [];
        var ok = (!line.value || card.dataset.line === line.value) && (!flag.value ||
          (flag.value === "*" ? flags.length > 0 : flag.value === "-" ? flags.length === 0 : flags.indexOf(flag.value) >= 0));
        card.hidden = !ok;
        any = any || ok;
      });
      doc.hidden = !any;
      shown += any ? 1 : 0;
    });
    document.getElementById("samples-count").textContent = shown;
  }
  line.addEventListener("change", apply);
  flag.addEventListener("change", apply);
})();
</script>"""

_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _table(data: tuple[list[str], list[list[str]]], reference: str | None) -> Any:
    header, rows = data
    return Markup(_env.from_string(TABLE).render(header=header, rows=rows, reference=reference))


def highlight(text: str, spans: list[tuple[int, int]]) -> Markup:
    """`text` escaped, its character `spans` (sorted, disjoint) marked as copied."""
    parts, at = [], 0
    for start, end in spans:
        parts += [escape(text[at:start]), Markup('<mark class="copied">'), escape(text[start:end]), Markup("</mark>")]
        at = end
    parts.append(escape(text[at:]))
    return Markup("").join(parts)


def render_samples(samples: dict[str, Any]) -> Markup:
    """The samples page: every document's source beside its rewrites, with controls that filter the rewrites by
    model / variant and by flag. All text goes through the template's escaping, and the script holds no data,
    so nothing a document says can close a tag or the script; no network is needed."""
    documents = [{**doc, "rewrites": [{**r, "text": highlight(r["text"], r["copied"])} for r in doc["rewrites"]]}
                 for doc in samples["documents"]]
    return Markup(_env.from_string(SAMPLES).render(s={**samples, "documents": documents}))


def render_html(**context: Any) -> str:
    """The page; section bodies are Markdown (tables, code blocks), rendered with markdown-it; `samples` (the
    report's `sample_documents`) adds the samples page."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    for part in ("leading", "sections"):
        context[part] = [(title, Markup(md.render(body))) for title, body in context.get(part, ())]
    samples = context.pop("samples", None)
    return _env.from_string(TEMPLATE).render(table=_table, samples=render_samples(samples) if samples else None,
                                             **context)
