"""The run report people open: one self-contained HTML page per run (no scripts, no external files).

The verdict comes first: a banner, red for a breach that stopped publishing (``block``), amber
for one published and flagged (``flag``), grey for one the job ignores, green only when the
partition has no breach; it names the drifted features with their PSI, rows and p-value.
Then what failed: the quarantined share against the job's threshold, a chart of the
reasons, the failed checks, the checks whose rows were scored and flagged (``on_fail: flag``:
``out_of_training_range``, unknown categories the estimator handles), then the checks that passed. After scoring, finalize adds the
score distribution against training, drift per input (PSI bars against the threshold) and,
for push runs, the delivery outcome. Missing values read ``null`` everywhere.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from pipeline.redact import redact
from pipeline.textsafe import safe_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:72rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .fail{color:#a00;font-weight:600} .ok{color:#070} code{font-size:.85rem}
.null{color:#888;font-style:italic} .verdict{font-size:1.1rem;padding:.6rem 1rem;border-radius:.3rem}
.verdict.fail{background:#fde8e8} .verdict.ok{background:#e8f6e8} svg text{font-size:11px;font-family:inherit}
.banner{font-size:1.15rem;padding:.8rem 1rem;border-radius:.3rem;border-left:.5rem solid}
.banner.block{background:#fde8e8;border-color:#b33} .banner.flag{background:#fff3d6;border-color:#d08a00}
.banner.ignore{background:#eee;border-color:#888} .banner.ok{background:#e8f6e8;border-color:#3b8a3b}
.banner ul{margin:.4rem 0 0 1rem;padding:0} .quiet{color:#666}
.v-better{color:#070;font-weight:600} .v-worse{color:#a00;font-weight:600} .v-not_yet{color:#666;font-weight:600}
"""
BAR, GOOD, BAD, TRAINING = "#4a78b5", "#3b8a3b", "#b33", "#bbb"


def _value(value: Any) -> str:
    """A cell: text as it is (a NUL shown as ``\\x00``, a byte that was not UTF-8 as ``\\udcNN``), missing
    values as ``null`` (None and NaN alike), other values as JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<span class='null'>null</span>"
    return escape(safe_text(value if isinstance(value, str) else json.dumps(value, default=str)))


def _sample(text: str) -> str:
    """A sample value as Great Expectations reported it (text): its ways of saying missing read ``null``."""
    return _value(None) if text in ("nan", "None", "<NA>", "NaT", "NaN") else escape(safe_text(text))


def bars(items: list[tuple[str, float]], *, unit: str = "", color: str = BAR, limit: float | None = None,
         width: int = 560) -> str:
    """A horizontal bar chart (SVG) of labelled values; ``limit`` draws a threshold line, bars above it red."""
    if not items:
        return "<p>Nothing to chart.</p>"
    top = max([v for _, v in items] + [limit or 0.0]) or 1.0
    label_w, row_h, plot_w = 190, 18, width - 190 - 70
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * row_h
        fill = BAD if limit is not None and value > limit else color
        rows.append(f"<text x='{label_w - 6}' y='{y + 13}' text-anchor='end'>{escape(label[:32])}</text>"
                    f"<rect class='bar' x='{label_w}' y='{y + 3}' width='{max(value / top * plot_w, 1):.1f}' "
                    f"height='{row_h - 6}' fill='{fill}'><title>{escape(label)}: {value:g}{unit}</title></rect>"
                    f"<text x='{label_w + value / top * plot_w + 4:.1f}' y='{y + 13}'>{value:g}{unit}</text>")
    height = len(items) * row_h + 6
    if limit is not None:
        x = label_w + limit / top * plot_w
        rows.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height}' stroke='{BAD}' stroke-dasharray='4 3'/>"
                    f"<text x='{x + 3:.1f}' y='{height}' fill='{BAD}'>threshold {limit:g}</text>")
    return f"<svg role='img' width='{width}' height='{height + 14}'>{''.join(rows)}</svg>"


def paired_bars(labels: list[str], expected: list[float], actual: list[float], width: int = 640) -> str:
    """Training (grey) against this partition (blue) shares per bin, as an SVG column chart."""
    if not labels:
        return "<p>Nothing to chart.</p>"
    top = max(expected + actual) or 1.0
    plot_h, col_w = 140, max(min((width - 40) // len(labels), 60), 14)
    cols = []
    for i, (label, e, a) in enumerate(zip(labels, expected, actual, strict=True)):
        x = 30 + i * col_w
        for j, (share, fill, who) in enumerate(((e, TRAINING, "training"), (a, BAR, "this partition"))):
            h = share / top * plot_h
            cols.append(f"<rect class='bar' x='{x + j * (col_w // 2 - 1)}' y='{plot_h - h + 10:.1f}' "
                        f"width='{col_w // 2 - 2}' height='{max(h, 0.5):.1f}' fill='{fill}'>"
                        f"<title>{escape(label)}, {who}: {share:.1%}</title></rect>")
        cols.append(f"<text x='{x + col_w / 2:.0f}' y='{plot_h + 24}' text-anchor='middle'>{escape(label[:9])}</text>")
    legend = (f"<rect x='30' y='0' width='10' height='8' fill='{TRAINING}'/><text x='44' y='8'>training</text>"
              f"<rect x='110' y='0' width='10' height='8' fill='{BAR}'/><text x='124' y='8'>this partition</text>")
    return (f"<svg role='img' width='{max(30 + len(labels) * col_w + 10, 220)}' height='{plot_h + 32}'>{legend}"
            f"{''.join(cols)}</svg>")


def p_text(p: float | None) -> str:
    """A p-value as people read it (the same as ``pipeline.drift.p_text``)."""
    if p is None:
        return "untested"
    return "< 1e-300" if p == 0 else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def breaches(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The report's breaches as (kind, policy, what) from its counts, drift and the job's policies."""
    policies = report.get("on_breach") or {}
    rows_in, quarantined = report.get("rows_in") or 0, report.get("rows_quarantined") or 0
    limit = report.get("max_quarantine_share", 0)
    found = []
    drifted = sorted((r for r in report.get("drift") or [] if r.get("drifted")), key=lambda r: -r["value"])
    if drifted:
        what = ", ".join(f"<b>{escape(r['feature'])}</b> (PSI {r['value']:.2f}, n {r.get('row_count')}, "
                         f"p {p_text(r.get('p_value'))})" for r in drifted)
        found.append(("drift", policies.get("drift", "flag"), f"drift in {what}"))
    if rows_in and quarantined / rows_in > limit:
        found.append(("quarantine", policies.get("validation", "block"),
                      f"{quarantined} of {rows_in} rows quarantined ({quarantined / rows_in:.2%}), above the "
                      f"limit of {limit:.2%}"))
    return found


def banner(report: dict[str, Any]) -> str:
    """The report's first word: red (not published), amber (published, flagged), grey (ignored) or green."""
    found = breaches(report)
    settings = report.get("drift_settings") or {}
    judged = (f"PSI above {settings.get('psi_threshold', 0.2):g} and significant at alpha "
              f"{settings.get('alpha', 0.01):g}, with at least {settings.get('min_rows', 100)} rows")
    policies = {p for _, p, _ in found}
    if not found:
        rows_in, quarantined = report.get("rows_in") or 0, report.get("rows_quarantined") or 0
        share = quarantined / rows_in if rows_in else 0.0
        drift = ("drift is checked after scoring" if report.get("drift") is None
                 else f"no input or score drifted ({judged})")
        return (f"<div class='banner ok' id='verdict'>No breach: {quarantined} of {rows_in} rows quarantined "
                f"({share:.2%}), within the threshold of {report.get('max_quarantine_share', 0):.2%}; {drift}.</div>")
    level = next(p for p in ("block", "flag", "ignore") if p in policies)
    head = {"block": "Not published: this partition breaches the job's limits; its previous state stays.",
            "flag": "Published with a breach, flagged: check this partition before anyone uses it.",
            "ignore": "Published; the job ignores these breaches (on_breach: ignore)."}[level]
    items = "".join(f"<li>{what} <span class='quiet'>({'drift' if kind == 'drift' else 'validation'}.on_breach: "
                    f"{policy})</span></li>" for kind, policy, what in found)
    note = (f"<p class='quiet'>Drift is a breach when {judged}; PSI alone is noisy on small samples.</p>"
            if any(kind == "drift" for kind, _, _ in found) else "")
    nxt = ("Next: investigate (the charts below, tables scoring_drift and scoring_quarantine); fix the input and "
           "re-run the partition, register a retrained model, or change the job's on_breach policy.")
    return (f"<div class='banner {level}' id='verdict'><b>{head}</b><ul>{items}</ul>{note}"
            f"<p>{nxt if level != 'ignore' else ''}</p></div>")


def _summary(report: dict[str, Any]) -> str:
    rows_in = report.get("rows_in") or 0
    quarantined = report.get("rows_quarantined") or 0
    share = quarantined / rows_in if rows_in else 0.0
    limit = report.get("max_quarantine_share", 0)
    above = share > limit
    verdict = (f"<p class='verdict {'fail' if above else 'ok'}'>{quarantined} of {rows_in} rows quarantined "
               f"({share:.2%}) against a limit of {limit:.2%}.</p>")
    return verdict + (
        "<table><tr><th>rows in</th><th>valid</th><th>quarantined</th><th>flagged</th><th>scored</th></tr>"
        f"<tr><td>{rows_in}</td><td>{_value(report.get('rows_valid'))}</td><td>{quarantined}</td>"
        f"<td>{report.get('rows_flagged', 0)}</td><td>{_value(report.get('rows_scored'))}</td></tr></table>")


def _checks(report: dict[str, Any]) -> str:
    checks = sorted(report.get("checks", []), key=lambda c: -c["unexpected"])  # failures first
    failed = [c for c in checks if c["unexpected"] and c.get("on_fail") != "flag"]
    flagged = [c for c in checks if c["unexpected"] and c.get("on_fail") == "flag"]

    def row(c: dict[str, Any]) -> str:
        return (f"<tr><td class='{'fail' if c['unexpected'] else 'ok'}'>{c['unexpected']}</td>"
                f"<td><code>{escape(c['reason'])}</code></td><td>{escape(c['on_fail'])}</td>"
                f"<td><code>{escape(c['expectation'])}</code></td><td><code>{_value(c['kwargs'])}</code></td>"
                f"<td>{', '.join(_sample(v) for v in c['sample'])}</td></tr>")

    head = ("<tr><th>failed rows</th><th>reason code</th><th>failing rows are</th><th>expectation</th>"
            "<th>arguments</th><th>sample values</th></tr>")
    passed = [c for c in checks if not c["unexpected"]]
    chart = bars([(c["reason"], float(c["unexpected"])) for c in failed], unit=" rows", color=BAD)
    failures = (f"{chart}<table id='checks'>{head}{''.join(row(c) for c in failed)}</table>" if failed
                else "<p class='ok'>No row failed a check that quarantines.</p>")
    return (f"<h2>What failed</h2>{failures}{_flagged(flagged, head, row)}<details><summary>{len(passed)} checks "
            f"passed</summary><table id='passed'>{head}{''.join(row(c) for c in passed)}</table></details>")


def _flagged(flagged: list[dict[str, Any]], head: str, row: Any) -> str:
    """The checks whose failing rows were scored and flagged (``on_fail: flag``): values outside the training
    data's range (``out_of_training_range``), unknown categories the estimator handles, the job's flag checks."""
    if not flagged:
        return ""
    chart = bars([(c["reason"], float(c["unexpected"])) for c in flagged], unit=" rows")
    return ("<h2 id='flagged-rows'>Flagged rows (scored)</h2><p>These rows were scored and published with the "
            "reasons in their <code>flags</code> column. <code>out_of_training_range:&lt;col&gt;</code>: a value "
            "outside what the model saw in training (the card's <code>observed_min</code>/<code>observed_max</code>"
            "); only declared bounds (<code>min</code>/<code>max</code>) quarantine.</p>"
            f"{chart}<table id='flagged'>{head}{''.join(row(c) for c in flagged)}</table>")


def _quarantine(report: dict[str, Any]) -> str:
    sample = report.get("quarantine_sample") or []
    if not sample:
        return "<h2>Quarantined rows</h2><p>None.</p>"
    columns = list(dict.fromkeys(c for row in sample for c in row))
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_value(row.get(c))}</td>" for c in columns) + "</tr>" for row in sample)
    return (f"<h2>Quarantined rows (first {len(sample)})</h2><table>{head}{body}</table>"
            "<p>All of them: table <code>scoring_quarantine</code> (job, partition, run, reasons, original values).</p>")


def _scores_and_drift(report: dict[str, Any]) -> str:
    drift = report.get("drift")
    if drift is None:
        return "<h2>Scores and drift</h2><p>Added when the run finishes (after scoring).</p>"
    if not drift:
        return ("<h2>Scores and drift</h2><p>Not checked: the model card has no training statistics, or the "
                "partition has fewer rows than drift.min_rows.</p>")
    out = ["<h2>Scores against training</h2>"]
    for r in drift:
        if r["kind"] in ("score", "prediction") and r.get("bins"):
            title = "score distribution" if r["kind"] == "score" else "predicted classes"
            out.append(f"<h3>{title} (PSI {r['value']:.3f})</h3>"
                       + paired_bars(r["bins"]["labels"], r["bins"]["expected"], r["bins"]["actual"]))
    inputs = sorted((r for r in drift if r["kind"] in ("numeric", "categorical")), key=lambda r: -r["value"])
    threshold = drift[0]["threshold"]
    out.append(f"<h2 id='drift'>Drift per input (PSI; threshold {threshold:g})</h2>")
    out.append(bars([(r["feature"], float(r["value"])) for r in inputs], limit=float(threshold), color=GOOD))
    drifted = [r["feature"] for r in drift if r["drifted"]]
    out.append(f"<p class='fail'>Drifted: {escape(', '.join(drifted))}.</p>" if drifted else "<p class='ok'>No drift "
               "breach: no PSI above the threshold that is also significant.</p>")
    return "".join(out) + _drift_table(drift)


def _drift_table(drift: list[dict[str, Any]]) -> str:
    """PSI beside its sample size and p-value, per feature: why a PSI above the threshold is or is not a breach."""
    def verdict(r: dict[str, Any]) -> str:
        if r.get("drifted"):
            return "<td class='fail'>breach</td>"
        if r["value"] > r["threshold"]:
            return "<td>PSI above the threshold, not significant (sample too small or noise)</td>"
        p, level = r.get("p_value"), r.get("alpha_used")
        if p is not None and level and p < level:
            return "<td class='ok'>stable (a significant but small shift: PSI under the threshold)</td>"
        return "<td class='ok'>stable</td>"

    rows = "".join(f"<tr><td>{escape(r['feature'])}</td><td>{r['value']:.3f}</td><td>{r.get('row_count')}</td>"
                   f"<td>{p_text(r.get('p_value'))}</td>{verdict(r)}</tr>"
                   for r in sorted(drift, key=lambda r: -r["value"]))
    level = drift[0].get("alpha_used")
    return ("<table id='drift-table'><tr><th>feature</th><th>PSI</th><th>rows (n)</th><th>p-value</th><th>verdict"
            f"</th></tr>{rows}</table>" + (f"<p class='quiet'>A breach needs p below {level:.2g} (alpha over the "
                                            "features tested).</p>" if level else ""))


def _delivery(report: dict[str, Any]) -> str:
    delivery = report.get("delivery")
    if not delivery:
        return ""
    items = [(k.removeprefix("rows_").replace("_", " "), float(delivery.get(k) or 0))
             for k in ("rows_delivered", "rows_dead_lettered", "rows_not_selected", "rows_failed")]
    sink = redact(str(delivery.get("sink") or "sink"))  # a target stored before targets were redacted, too
    return f"<h2>Delivery ({escape(sink)})</h2>" + bars(items, unit=" rows")


def validation_html(report: dict[str, Any]) -> str:
    """Render a run report dict (written by validate, completed by finalize) as HTML."""
    job, partition = escape(str(report.get("job_id"))), escape(str(report.get("partition")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Run report {job} {partition}</title>
<style>{STYLE}</style></head><body>
<h1>{job}, partition {partition}</h1>
<p>Run <code>{escape(str(report.get('run_id')))}</code>, model {escape(str(report.get('model')))}.
{banner(report)}
<p>Checked by Great Expectations: the suite comes from the model card's input contract plus the job's
own expectations; rows failing a <em>quarantine</em> check are quarantined with its reason code,
rows failing a <em>flag</em> check are scored and flagged.</p>
{_summary(report)}
{_checks(report)}
{_quarantine(report)}
{_scores_and_drift(report)}
{_delivery(report)}
</body></html>
"""


VERDICT_WORDS = {"better": "better", "worse": "worse", "not_yet": "not yet distinguishable"}


def _number(value: Any, fmt: str = "{:+.4g}") -> str:
    return _value(None) if value is None else escape(fmt.format(value))


def verdict_line(row: dict[str, Any]) -> str:
    """One verdict as people read it: "challenger (v2) better than v1 at 5,000 rows: log_loss -0.021 [-0.03,
    -0.012]" (a row of scoring_ab_results)."""
    rows, champion_rows = row.get("rows") or 0, row.get("champion_rows") or 0
    at = f"{rows:,} rows" if rows == champion_rows else f"{rows:,} + {champion_rows:,} rows"
    verdict = str(row.get("verdict"))
    words = f"{VERDICT_WORDS.get(verdict, verdict)} {'from' if verdict == 'not_yet' else 'than'}"
    line = f"{row.get('arm')} (v{row.get('model_version')}) {words} v{row.get('champion_version')} at {at}"
    if row.get("difference") is not None:
        line += f": {row.get('metric')} {row['difference']:+.4g}"
        if row.get("difference_ci_low") is not None:
            line += f" [{row['difference_ci_low']:+.4g}, {row['difference_ci_high']:+.4g}]"
    return line


def verdicts_html(rows: list[dict[str, Any]], partition: Any = None) -> str:
    """The section "Versions on realised outcomes": each other version's cumulative verdict against the champion
    (``pipeline.verdicts``: rows of scoring_ab_results), with both mean losses and the difference's interval."""
    if not rows:
        return ""
    body = []
    for r in rows:
        verdict = str(r.get("verdict"))
        design = "A/B arm, own rows" if r.get("design") == "ab" else "shadow, same rows"
        span = f"{r.get('days')} day(s) from {r.get('first_partition')}"
        if r.get("period") is not None:
            span += f", period {r['period']}"
        body.append(
            f"<tr class='verdict-row' data-verdict='{escape(verdict)}'><td>{_value(r.get('arm'))} "
            f"(v{_value(r.get('model_version'))})</td><td>v{_value(r.get('champion_version'))}</td><td>"
            f"{escape(design)}</td><td class='v-{escape(verdict)}'>"
            f"{escape(VERDICT_WORDS.get(verdict, verdict))}</td><td>{_value(r.get('metric'))}</td>"
            f"<td>{_number(r.get('value'), '{:.4g}')}</td><td>{_number(r.get('champion_value'), '{:.4g}')}</td>"
            f"<td>{_number(r.get('difference'))} [{_number(r.get('difference_ci_low'))}, "
            f"{_number(r.get('difference_ci_high'))}]</td><td>{_number(r.get('rows'), '{:,}')} / "
            f"{_number(r.get('champion_rows'), '{:,}')}</td><td>{escape(span)}</td></tr>")
    first = rows[0]
    when = f" up to partition {escape(str(partition))}" if partition is not None else ""
    return (f"<h2 id='verdicts'>Versions on realised outcomes{when}</h2>"
            "<ul>" + "".join(f"<li class='v-{escape(str(r.get('verdict')))}'>{escape(verdict_line(r))}</li>"
                             for r in rows) + "</ul>"
            "<table id='verdicts-table'><tr><th>version</th><th>against</th><th>compared on</th><th>verdict</th>"
            "<th>metric (lower is better)</th><th>its mean</th><th>champion's mean</th><th>difference "
            f"[{_number(first.get('confidence'), '{:.0%}')} interval]</th><th>labelled rows (its / champion's)</th>"
            "<th>combined</th></tr>" + "".join(body) + "</table>"
            f"<p class='quiet'>Better or worse only when the interval lies wholly on one side of zero and both "
            f"versions have at least {_number(first.get('min_rows'), '{:,}')} labelled rows; all of them: view "
            "<code>&lt;output.table&gt;_ab</code>, table <code>scoring_ab_results</code>.</p>")
