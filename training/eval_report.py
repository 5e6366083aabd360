"""The self-contained eval page (`eval.html`): summary with intervals, a chart per metric, and the examples side
by side with a no-script filter to the ones the adapter lost (a CSS `:checked` toggle). All text is escaped."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup, escape

from curation.charts import BASE_CSS, PALETTE
from schemas.evaluation import METRICS
from schemas.runs import EvalRun

LABELS = {
    "loss": "holdout loss (assistant tokens)",
    "perplexity": "perplexity",
    "token_accuracy": "token accuracy (teacher-forced)",
    "exact_match": "exact match",
    "json_parse": "JSON parse rate",
    "schema_valid": "schema validity",
    "field_accuracy": "per-field accuracy",
    "rouge_l": "ROUGE-L F1",
    "refusal": "refusal rate",
    "length_ratio": "output length / reference length",
    "latency_s": "latency per example (s)",
}


def metric_chart(name: str, m: dict[str, Any]) -> Markup:
    """Base and adapter values as bars, and the adapter-minus-base difference with its interval around zero."""
    title = f"{LABELS.get(name, name)} (n={m['n']})"
    if m["base"] is None:
        return Markup(f'<p class="empty">{escape(title)}: not measured on this holdout</p>')
    width, label_w = 360, 70
    top = max(abs(m["base"]), abs(m["adapter"]), 1e-9)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} 118" width="{width}" '
        f'height="118" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="14" class="title">{escape(title)}</text>',
    ]
    for k, side in enumerate(("base", "adapter")):
        y = 22 + k * 22
        w = (width - label_w - 80) * abs(m[side]) / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{side}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="16" fill="{PALETTE[k]}">'
            f"<title>{side}: {m[side]:.4g}</title></rect>"
        )
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{m[side]:.4g}</text>')
    lo, hi = m["ci"]
    span = max(abs(lo), abs(hi), abs(m["diff"]), 1e-9) * 1.1
    x0, scale = label_w + (width - label_w - 20) / 2, (width - label_w - 20) / 2 / span

    def x(v: float) -> float:
        return x0 + v * scale

    direction = METRICS.get(name, 0)
    better = m["diff"] * direction > 0 and (lo > 0 or hi < 0)
    worse = m["diff"] * direction < 0 and (lo > 0 or hi < 0)
    color = "#1a7f37" if better else "#b42318" if worse else "#555"
    parts += [
        f'<text x="{label_w - 6}" y="84" text-anchor="end">diff</text>',
        f'<line x1="{x0:.1f}" y1="68" x2="{x0:.1f}" y2="92" stroke="#888" stroke-dasharray="3,2"/>',
        f'<line x1="{x(lo):.1f}" y1="80" x2="{x(hi):.1f}" y2="80" stroke="{color}" stroke-width="2">'
        f"<title>95% interval [{lo:+.4g}, {hi:+.4g}]</title></line>",
        f'<line x1="{x(lo):.1f}" y1="75" x2="{x(lo):.1f}" y2="85" stroke="{color}" stroke-width="2"/>',
        f'<line x1="{x(hi):.1f}" y1="75" x2="{x(hi):.1f}" y2="85" stroke="{color}" stroke-width="2"/>',
        f'<circle cx="{x(m["diff"]):.1f}" cy="80" r="4" fill="{color}"/>',
        f'<text x="{label_w}" y="110">adapter − base {m["diff"]:+.4g} [{lo:+.4g}, {hi:+.4g}]</text>',
        "</svg>",
    ]
    return Markup("".join(parts))


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Eval: base vs adapter on {{ ds.name }} v{{ ds.version }}</title>
<style>
{{ base_css }}
.charts { display: flex; flex-wrap: wrap; gap: 12px 28px; }
table.examples td { width: 25%; } tr.lost > td:first-child { border-left: 4px solid #b42318; }
tr.won > td:first-child { border-left: 4px solid #1a7f37; }
#lost-only:checked ~ table.examples tr.ex:not(.lost) { display: none; }
#lost-only:checked ~ p .all-count, #lost-only:not(:checked) ~ p .lost-count { display: none; }
</style>
</head>
<body>
<header>
<h1>Base vs adapter on the holdout of {{ ds.name }} version {{ ds.version }}</h1>
<p class="muted">{{ r.n }} examples · base {{ lin.base_model.id }} · adapter {{ lin.adapter.path }} · config
{{ lin.config_hash }} · {{ r.finished_at }}</p>
<nav><a href="#verdict">Verdict</a><a href="#summary">Summary</a><a href="#charts">Charts</a>
<a href="#examples">Examples</a><a href="#lineage">Lineage</a></nav>
</header>

<section id="verdict">
<h2>Verdict</h2>
<p>{% if r.verdict.promote %}<span class="ok">promote</span>{% else %}<span class="bad">do not promote</span>{% endif %}
 — adapter won {{ r.outcomes.won }}, tied {{ r.outcomes.tie }}, lost {{ r.outcomes.lost }} of {{ r.n }} examples
 (per-field accuracy where the reference is JSON, else ROUGE-L).</p>
<ul>{% for c in r.verdict.checks %}<li>{% if c.passed is none %}<span class="muted">skipped</span>
{% elif c.passed %}<span class="ok">pass</span>{% else %}<span class="bad">fail</span>{% endif %}
 {{ c.check }}: {{ c.detail }}</li>{% endfor %}</ul>
</section>

<section id="summary">
<h2>Summary</h2>
<table>
<tr><th>metric</th><th class="num">n</th><th class="num">base</th><th class="num">adapter</th>
<th class="num">adapter − base</th><th class="num">{{ "%.0f" % (conf * 100) }}% interval (paired bootstrap)</th></tr>
{% for name, m in r.metrics.items() %}<tr><td>{{ labels[name] }}</td><td class="num">{{ m.n }}</td>
{% if m.base is none %}<td colspan="4" class="muted">not measured (no JSON references)</td>{% else %}
<td class="num">{{ "%.4g" % m.base }}</td><td class="num">{{ "%.4g" % m.adapter }}</td>
<td class="num">{{ "%+.4g" % m.diff }}</td>
<td class="num">[{{ "%+.4g" % m.ci[0] }}, {{ "%+.4g" % m.ci[1] }}]</td>{% endif %}
</tr>
{% endfor %}</table>
</section>

<section id="charts">
<h2>Charts</h2>
<div class="charts">{% for c in charts %}{{ c }}{% endfor %}</div>
</section>

<section id="examples">
<h2>Examples</h2>
<input type="checkbox" id="lost-only"><label for="lost-only">show only the examples where the adapter lost</label>
<p class="muted"><span class="all-count">{{ r.n }} examples</span><span class="lost-count">{{ r.outcomes.lost }}
examples where the adapter lost</span></p>
<table class="examples">
<tr><th>prompt</th><th>reference</th><th>base output</th><th>adapter output</th></tr>
{% for e in r.examples %}<tr class="ex {{ e.outcome }}" data-index="{{ e.index }}">
<td><div class="muted">#{{ e.index + 1 }} {{ e.trace_id or "" }} · adapter {{ e.outcome }}</div>
<pre class="text">{{ e.prompt[-1500:] }}</pre></td>
<td><pre class="text">{{ e.reference }}</pre></td>
<td><pre class="text">{{ e.base_output }}</pre><div class="muted">{{ scores(e.base) }}</div></td>
<td><pre class="text">{{ e.adapter_output }}</pre><div class="muted">{{ scores(e.adapter) }}</div></td></tr>
{% endfor %}</table>
</section>

<section id="lineage">
<h2>Lineage</h2>
<table>
<tr><th>dataset</th><td>{{ ds.path }} · version {{ ds.version }} · manifest {{ ds.manifest_sha256[:16] }} · holdout
{{ ds.holdout_sha256[:16] }} · {{ ds.evaluated }} of {{ ds.with_answer }} rows with an answer evaluated</td></tr>
<tr><th>adapter</th><td>{{ lin.adapter.path }} · run {{ lin.adapter.run_id }} · trained on version
{{ lin.adapter.trained_on_version }} · {{ lin.adapter.steps }} steps</td></tr>
<tr><th>base model</th><td>{{ lin.base_model.id }} · {{ lin.base_model.hash }}</td></tr>
<tr><th>train/holdout overlap</th><td>none (checked by {{ lin.overlap_check }})</td></tr>
<tr><th>config</th><td>{{ lin.config_hash }} · {{ lin.eval_config }}</td></tr>
<tr><th>timing</th><td>{{ r.timing }}</td></tr>
<tr><th>versions</th><td>{{ lin.versions }}</td></tr>
</table>
</section>
</body>
</html>
"""


def _scores(s: dict[str, Any]) -> str:
    keys = ("field_accuracy", "json_parse", "exact_match", "rouge_l", "loss_sum", "tokens", "new_tokens")
    return " · ".join(
        f"{k} {s[k]:.3g}" if isinstance(s[k], float) else f"{k} {s[k]}" for k in keys if s.get(k) is not None
    )


def render_html(report: dict[str, Any]) -> str:
    """The eval page for an `eval.json` payload."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    lin = report["lineage"]
    return env.from_string(TEMPLATE).render(
        r=report,
        ds=lin["dataset"],
        lin=lin,
        labels=LABELS,
        conf=lin["eval_config"]["confidence"],
        charts=[metric_chart(k, m) for k, m in report["metrics"].items()],
        scores=_scores,
        base_css=BASE_CSS,
    )


def markdown_summary(report: EvalRun) -> str:
    """The verdict and the metrics table as markdown (for a Prefect artifact or a terminal)."""
    v, won = report.verdict, report.outcomes
    lines = [
        f"# Eval: {'promote' if v.promote else 'do not promote'}",
        "",
        f"{report.n} holdout examples of dataset v{report.lineage.dataset.version}; "
        f"adapter won {won['won']}, tied {won['tie']}, lost {won['lost']}.",
        "",
        "| metric | n | base | adapter | diff | 95% CI |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, m in report.metrics.items():
        if m.base is None:
            lines.append(f"| {name} | {m.n} | - | - | - | - |")
        else:
            ci = f"[{m.ci[0]:+.4g}, {m.ci[1]:+.4g}]"
            lines.append(f"| {name} | {m.n} | {m.base:.4g} | {m.adapter:.4g} | {m.diff:+.4g} | {ci} |")
    lines += ["", "Reasons:", *[f"- {r}" for r in v.reasons]]
    return "\n".join(lines) + "\n"
