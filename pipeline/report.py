"""The validation report people open: one self-contained HTML page per run.

It shows what Great Expectations checked on the partition (each expectation, its reason
code, what happens to failing rows, how many failed and sample values), the quarantined
share against the job's threshold, and the first quarantined rows with their reasons.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .fail{color:#a00;font-weight:600} .ok{color:#070} code{font-size:.85rem}
"""


def _cell(value: Any) -> str:
    return escape(value if isinstance(value, str) else json.dumps(value, default=str))


def validation_html(report: dict[str, Any]) -> str:
    """Render a validation report dict (see ``pipeline.run.validate``) as HTML."""
    rows_in = report.get("rows_in") or 0
    quarantined = report.get("rows_quarantined") or 0
    share = quarantined / rows_in if rows_in else 0.0
    limit = report.get("max_quarantine_share", 0)
    verdict = ("<span class='fail'>above the threshold: nothing published</span>" if share > limit
               else "<span class='ok'>within the threshold</span>")
    checks = "".join(
        f"<tr><td><code>{escape(c['expectation'])}</code></td><td><code>{_cell(c['kwargs'])}</code></td>"
        f"<td><code>{escape(c['reason'])}</code></td><td>{escape(c['on_fail'])}</td>"
        f"<td class='{'fail' if c['unexpected'] else 'ok'}'>{c['unexpected']}</td>"
        f"<td>{escape(', '.join(c['sample']))}</td></tr>"
        for c in report.get("checks", [])
    )
    sample = report.get("quarantine_sample") or []
    columns = list(sample[0]) if sample else []
    quarantine = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in sample
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation {escape(str(report.get('job_id')))} {escape(str(report.get('partition')))}</title>
<style>{STYLE}</style></head><body>
<h1>Validation of {escape(str(report.get('job_id')))}, partition {escape(str(report.get('partition')))}</h1>
<p>Run <code>{escape(str(report.get('run_id')))}</code>, model {escape(str(report.get('model')))}.
Checked by Great Expectations: the suite comes from the model card's input contract plus the job's
own expectations; rows failing a <em>quarantine</em> check are quarantined with its reason code,
rows failing a <em>flag</em> check are scored and flagged.</p>
<table><tr><th>rows in</th><th>valid</th><th>quarantined</th><th>flagged</th><th>quarantined share</th><th>max share</th></tr>
<tr><td>{rows_in}</td><td>{report.get('rows_valid')}</td><td>{quarantined}</td><td>{report.get('rows_flagged', 0)}</td>
<td>{share:.2%} ({verdict})</td><td>{limit:.2%}</td></tr></table>
<h2>Checks</h2>
<table><tr><th>expectation</th><th>arguments</th><th>reason code</th><th>failing rows</th><th>failed</th><th>sample values</th></tr>
{checks}</table>
<h2>Quarantined rows (first {len(sample)})</h2>
{f"<table><tr>{head}</tr>{quarantine}</table>" if sample else "<p>None.</p>"}
<p>All quarantined rows: table <code>scoring_quarantine</code> (job, partition, run, reasons, original values).</p>
</body></html>
"""
