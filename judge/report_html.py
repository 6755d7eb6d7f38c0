"""The HTML page of the report: one self-contained file (inline CSS, images as base64 data URIs)."""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup

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
</body>
</html>
"""

TABLE = """<table>
<thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr{% if row[0] == reference %} class="reference"{% endif %}>{% for cell in row %}<td{% if cell.startswith('-') %} class="neg"{% elif cell.startswith('+') %} class="pos"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>"""

_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _table(data: tuple[list[str], list[list[str]]], reference: str | None) -> Any:
    header, rows = data
    return Markup(_env.from_string(TABLE).render(header=header, rows=rows, reference=reference))


def render_html(**context: Any) -> str:
    """The page; section bodies are Markdown (tables, code blocks), rendered with markdown-it."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    for part in ("leading", "sections"):
        context[part] = [(title, Markup(md.render(body))) for title, body in context.get(part, ())]
    return _env.from_string(TEMPLATE).render(table=_table, **context)
