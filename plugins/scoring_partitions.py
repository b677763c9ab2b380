"""Airflow plugin: a scoring job's days, one tab of its DAG page (the partition view).

- ``/scoring-partitions/<dag_id>`` (a FastAPI app inside the api-server) serves a page with the
  job's calendar of days and their state (published, dry run, drifting, quarantine over threshold,
  failed, missing, late, running, ...), each day's model version, rows and links to its run and
  report, the challenger comparisons, the realised performance per day with their trend
  charts, and each other version's verdict against the champion (A/B arms, challengers: better, worse or
  not yet distinguishable at N rows, with the difference and its interval, cumulative up to each day). The data is the ledger's (``pipeline.partitions``), read from the job's output database:
  ``AIRFLOW_CONN_<ID>`` in the api-server's environment, else the Airflow connection (secrets
  backend, metadata database), as the tasks resolve it.
- A *Partitions* tab on every DAG page (an external view) shows it to users whom Airflow lets read
  that DAG's runs (``requires_access_dag``).

One self-contained page: no file from elsewhere, the charts are inline SVG; its one script lets a link to
a UI page (the run, its report tab) leave the UI's sandboxed frame.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from html import escape
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

PREFIX = "/scoring-partitions"
app = FastAPI(title="Scoring partitions")

COLORS = {  # state: (fill, text colour, label)
    "published": ("#3b8a3b", "#fff", "published"),
    "dry_run": ("#9cc3e6", "#123", "dry run"),
    "drifting": ("#e08a00", "#fff", "drifting (flagged)"),
    "quarantine": ("#c9a000", "#fff", "quarantine over threshold (flagged)"),
    "failed": ("#b33", "#fff", "failed"),
    "missing": ("#6d2a6d", "#fff", "missing"),
    "late": ("#d9622b", "#fff", "late"),
    "running": ("#4a78b5", "#fff", "running"),
    "skipped": ("#aaa", "#fff", "skipped"),
    "upcoming": ("#f3f3f3", "#888", "not due yet"),
}
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem 1.5rem;color:#222;max-width:80rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .num{text-align:right} .null{color:#888;font-style:italic}
.cal td{width:7.5rem;height:3.6rem;padding:.2rem .35rem;font-size:.78rem}
.cal td a{color:inherit;text-decoration:none;display:block;height:100%}
.cal .d{font-weight:600} .badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.78rem}
.late{outline:3px dashed #d9622b;outline-offset:-3px} .legend span{margin-right:.6rem}
.err{font-family:ui-monospace,monospace;font-size:.78rem;white-space:pre-wrap;max-width:40rem}
svg text{font-size:11px;font-family:inherit} .problem{background:#fde8e8;padding:.6rem 1rem;border-radius:.3rem}
"""
# The UI shows a plugin's page in a sandboxed iframe that may not navigate the window itself (no
# allow-top-navigation): a click on a link to a UI page (target _top) asks the UI's own document to follow it.
# Opened on its own (no frame), the link works as it is. (The same lines are in both scoring plugins.)
FOLLOW_IN_UI = ("<script>document.addEventListener('click',function(e){var a=e.target.closest('a[target=_top]');"
                "if(!a||e.defaultPrevented||window.top===window)return;try{var d=window.top.document,x=d.createElement('a');x.href=a.href;"
                "d.body.appendChild(x);x.click();e.preventDefault()}catch(err){}})</script>")
LINE_COLORS = ("#4a78b5", "#e08a00", "#3b8a3b", "#b33", "#6d2a6d", "#777")


def airflow_connection(conn_id: str) -> Any:
    """An Airflow connection, as the api-server reads it (secrets backends, then the metadata database)."""
    from airflow.models.connection import Connection

    from pipeline.connections import from_airflow

    return from_airflow(conn_id, Connection.get_connection_from_secrets(conn_id))


@app.get("/{dag_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def partitions_page(dag_id: str, days: int = Query(35, ge=1, le=366)) -> HTMLResponse:
    from pipeline import partitions
    from pipeline.errors import ScoringError
    from pipeline.redact import redact

    try:
        job, engine = partitions.open_job(dag_id, airflow_connection)
    except ScoringError as exc:  # not a scoring job, or its connection is not defined
        return HTMLResponse(_page(f"{dag_id}: partitions", f"<p class='problem'>{escape(redact(str(exc)))}</p>"),
                            status_code=404)
    try:
        calendar = partitions.calendar(job, engine, dt.datetime.now(dt.UTC), days)
    except Exception as exc:  # noqa: BLE001 - a database that is down: say so on the page, not as a 500
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = (f"the ledger of {dag_id} could not be read from {store_name(engine)}: {type(exc).__name__}: {first}. "
                "Check that the output database is up and reachable from the api-server, then reload.")
        return HTMLResponse(_page(f"{dag_id}: partitions", f"<p class='problem'>{escape(redact(text))}</p>"),
                            status_code=503)
    return HTMLResponse(render(job, calendar, days))


def store_name(engine: Any) -> str:
    """Where the engine points, without credentials."""
    from pipeline.store.engines import describe

    return describe(engine)


def render(job: Any, calendar: list[Any], days: int) -> str:
    """The partition view of ``calendar`` (``pipeline.partitions.calendar``, newest day first)."""
    counts: dict[str, int] = defaultdict(int)
    for d in calendar:
        counts[d.state] += 1
    legend = "".join(f"<span><span class='badge' style='background:{bg};color:{fg}'>{escape(label)}</span> "
                     f"{counts.get(state, 0)}</span>" for state, (bg, fg, label) in COLORS.items())
    schedule = escape(job.schedule or "no schedule (manual or asset-triggered runs)")
    head = (f"<p>Schedule <code>{schedule}</code> in {escape(job.timezone)}, from {job.start_date}; the last "
            f"{days} days, newest first (<a href='?days={min(days * 3, 366)}'>show more</a>). A day's state is its "
            "latest attempt's (a dry run only for a day no real attempt touched).</p>"
            f"<p class='legend'>{legend}<span style='outline:3px dashed #d9622b'>&nbsp;late&nbsp;</span></p>")
    body = (head + "<h2>Calendar</h2>" + _calendar(job.job_id, calendar) + "<h2 id='days'>Days</h2>"
            + _days(job, calendar) + _challengers(calendar) + _verdicts(calendar) + _performance(calendar))
    return _page(f"{job.job_id}: partitions", body)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{escape(title)}</h1>{body}{FOLLOW_IN_UI}</body></html>")


def run_href(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def report_href(dag_id: str, run_id: str) -> str:
    """The run's *Run report* tab (plugins/scoring_reports.py's external view)."""
    return f"{run_href(dag_id, run_id)}/plugin/scoring-run-report"


def _calendar(dag_id: str, calendar: list[Any]) -> str:
    """Weeks as rows, Monday first; each day a cell coloured by its state."""
    if not calendar:
        return "<p>No day to show: the job's schedule intends none in this range and the ledger holds none.</p>"
    by_day = {d.day: d for d in calendar}
    first, last = min(by_day), max(by_day)
    start = first - dt.timedelta(days=first.weekday())
    rows = []
    while start <= last:
        cells = []
        for i in range(7):
            day = start + dt.timedelta(days=i)
            d = by_day.get(day)
            if d is None:
                cells.append(f"<td class='none'><span class='d'>{day:%d %b}</span></td>")
                continue
            bg, fg, label = COLORS.get(d.state, COLORS["failed"])
            row = d.row or {}
            model = f"v{row['model_version']}" if row.get("model_version") is not None else ""
            rows_out = row.get("rows_written") if row.get("rows_written") is not None else row.get("rows_in")
            extra = " ".join(x for x in (model, f"{rows_out:,} rows" if rows_out is not None else "") if x)
            title = f"{day}: {label}{' (late)' if d.late else ''}. {d.detail}"
            cells.append(
                f"<td class='day state-{d.state}{' late' if d.late else ''}' data-day='{day}' data-state='{d.state}'"
                f" style='background:{bg};color:{fg}' title='{escape(title, quote=True)}'><a href='#d-{day}'>"
                f"<span class='d'>{day:%d %b}</span><br>{escape(label)}<br>{escape(extra)}</a></td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
        start += dt.timedelta(days=7)
    head = "".join(f"<th>{d}</th>" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    return f"<table class='cal' id='calendar'><tr>{head}</tr>{''.join(rows)}</table>"


def _cell(value: Any, fmt: str = "{}") -> str:
    if value is None:
        return "<td class='null'>null</td>"
    return f"<td class='num'>{escape(fmt.format(value))}</td>"


def _days(job: Any, calendar: list[Any]) -> str:
    rows = []
    for d in calendar:
        bg, fg, label = COLORS.get(d.state, COLORS["failed"])
        row = d.row or {}
        links = ""
        if row.get("run_id"):
            links = (f"<a target='_top' href='{escape(run_href(job.job_id, row['run_id']))}'>run</a> · "
                     f"<a target='_top' class='report' href='{escape(report_href(job.job_id, row['run_id']))}'>"
                     "report</a>")
        model = f"{row.get('model_name')} v{row['model_version']}" if row.get("model_version") is not None else None
        breaches = ", ".join(d.breaches)
        error = row.get("error") if d.state == "failed" else None  # a missing or skipped day's is its detail
        rows.append(
            f"<tr id='d-{d.day}' data-state='{d.state}'><td>{d.day}</td>"
            f"<td><span class='badge' style='background:{bg};color:{fg}'>{escape(label)}</span>"
            f"{' <b>late</b>' if d.late else ''}</td>"
            f"<td>{escape(d.detail[:600])}{f'<br><b>breach:</b> {escape(breaches)}' if breaches else ''}"
            f"{f'<div class=err>{escape(error[:600])}</div>' if error else ''}</td>"
            f"<td>{escape(model) if model else ''}{' (dry run)' if row.get('dry_run') else ''}</td>"
            + _cell(row.get("rows_in"), "{:,}") + _cell(row.get("rows_written"), "{:,}")
            + _cell(d.quarantine_share, "{:.2%}") + _cell(d.max_psi, "{:.3f}")
            + f"<td class='num'>{d.attempts}</td><td>{links}</td></tr>")
    return ("<table id='days-table'><tr><th>day</th><th>state</th><th>why</th><th>model</th><th>rows in</th>"
            f"<th>rows written</th><th>quarantined (max {job.validation.max_quarantine_share:.0%})</th>"
            f"<th>largest PSI (threshold {job.drift.psi_threshold:g})</th><th>attempts</th><th>links</th></tr>"
            + "".join(rows) + "</table>")


def trend(series: dict[str, list[tuple[dt.date, float]]], *, bound: float | None = None, width: int = 720,
          height: int = 180, percent: bool = False) -> str:
    """A line chart (inline SVG) of values per day, one line per series; ``bound`` a dashed threshold."""
    points = [(d, v) for values in series.values() for d, v in values if v is not None]
    if not points:
        return "<p>Nothing to chart.</p>"
    days = sorted({d for d, _ in points})
    low = min([v for _, v in points] + ([bound] if bound is not None else []))
    high = max([v for _, v in points] + ([bound] if bound is not None else []))
    if high == low:
        low, high = low - 0.5 if low else -0.5, high + 0.5 if high else 0.5
    left, right, top, bottom = 48, 150, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(day: dt.date) -> float:
        return left + (plot_w * days.index(day) / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    def fmt(value: float) -> str:
        return f"{value:.1%}" if percent else f"{value:.3g}"

    parts = [f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + plot_h}' stroke='#999'/>",
             f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' stroke='#999'/>",
             f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{fmt(high)}</text>",
             f"<text x='{left - 4}' y='{top + plot_h}' text-anchor='end'>{fmt(low)}</text>"]
    for day in (days[0], days[-1]) if len(days) > 1 else (days[0],):
        parts.append(f"<text x='{x(day):.1f}' y='{height - 8}' text-anchor='middle'>{day:%d %b}</text>")
    if bound is not None:
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y(bound):.1f}' y2='{y(bound):.1f}' "
                     f"stroke='#b33' stroke-dasharray='4 3'/><text x='{left + plot_w + 4}' y='{y(bound) + 4:.1f}' "
                     f"fill='#b33'>bound {fmt(bound)}</text>")
    for i, (name, values) in enumerate(series.items()):
        color = LINE_COLORS[i % len(LINE_COLORS)]
        kept = sorted((d, v) for d, v in values if v is not None)
        if len(kept) > 1:
            path = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in kept)
            parts.append(f"<polyline class='trend' points='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
        for d, v in kept:
            parts.append(f"<circle class='point' cx='{x(d):.1f}' cy='{y(v):.1f}' r='3' fill='{color}'>"
                         f"<title>{escape(name)}, {d}: {fmt(v)}</title></circle>")
        parts.append(f"<rect x='{width - right + 14}' y='{top + i * 16}' width='10' height='8' fill='{color}'/>"
                     f"<text x='{width - right + 28}' y='{top + i * 16 + 8}'>{escape(name[:20])}</text>")
    return f"<svg role='img' class='chart' width='{width}' height='{height}'>{''.join(parts)}</svg>"


def _challengers(calendar: list[Any]) -> str:
    rows, agreement, spearman = [], defaultdict(list), defaultdict(list)
    for d in calendar:
        for c in d.challengers:
            name = f"{c['challenger_ref']} (v{c['challenger_version']})" if c.get("challenger_version") else \
                str(c["challenger_ref"])
            if c.get("status") == "compared":
                agreement[name].append((d.day, c.get("agreement")))
                spearman[name].append((d.day, c.get("spearman")))
            error = f" <span class='err'>{escape(str(c['error']))}</span>" if c.get("error") else ""
            rows.append(
                f"<tr><td>{d.day}</td><td>{escape(name)}</td><td>v{c['champion_version']}</td>"
                f"<td>{escape(str(c['status']))}{error}</td>"
                + _cell(c.get("rows_compared"), "{:,}") + _cell(c.get("agreement"), "{:.2%}")
                + _cell(c.get("mean_abs_diff"), "{:.4f}") + _cell(c.get("spearman"), "{:.3f}")
                + _cell(c.get("top_n_overlap"), "{:.2%}") + _cell(c.get("psi"), "{:.3f}") + "</tr>")
    if not rows:
        return ("<h2 id='challengers'>Challengers against the champion</h2><p>No comparison recorded in these days "
                "(the job's model.challengers score beside the champion in each run).</p>")
    return ("<h2 id='challengers'>Challengers against the champion</h2>"
            "<h3>Agreement with the champion per day</h3>" + trend(dict(agreement), percent=True)
            + "<h3>Rank correlation (Spearman) per day</h3>" + trend(dict(spearman))
            + "<table id='challengers-table'><tr><th>day</th><th>challenger</th><th>champion</th><th>status</th>"
            "<th>rows</th><th>agreement</th><th>mean |diff|</th><th>spearman</th><th>top-n overlap</th><th>psi</th>"
            "</tr>" + "".join(rows) + "</table>")


def _verdicts(calendar: list[Any]) -> str:
    """The latest verdict of each other version (its newest day), the difference per day with its interval, and
    every day's verdicts."""
    from pipeline.report import VERDICT_WORDS, verdict_line

    rows: list[str] = []
    difference: dict[str, list[tuple[dt.date, float]]] = defaultdict(list)
    latest: dict[str, dict[str, Any]] = {}
    for d in calendar:  # newest day first
        for v in d.verdicts:
            name = f"{v['arm']} (v{v['model_version']} vs v{v['champion_version']})"
            latest.setdefault(name, v)
            for series, value in ((name, v.get("difference")), (f"{name} low", v.get("difference_ci_low")),
                                  (f"{name} high", v.get("difference_ci_high"))):
                if value is not None:
                    difference[series].append((d.day, value))
            verdict = str(v["verdict"])
            rows.append(f"<tr data-verdict='{escape(verdict)}'><td>{d.day}</td><td>{escape(name)}</td>"
                        f"<td>{'A/B' if v['design'] == 'ab' else 'shadow'}</td>"
                        f"<td>{escape(VERDICT_WORDS.get(verdict, verdict))}</td><td>{escape(str(v['metric']))}</td>"
                        + _cell(v.get("difference"), "{:+.4g}") + _cell(v.get("difference_ci_low"), "{:+.4g}")
                        + _cell(v.get("difference_ci_high"), "{:+.4g}") + _cell(v.get("rows"), "{:,}")
                        + _cell(v.get("champion_rows"), "{:,}") + f"<td class='num'>{v.get('days')}</td></tr>")
    if not rows:
        return ("<h2 id='verdicts'>Versions on realised outcomes</h2><p>No verdict in these days (with model.split "
                "or model.challengers, <code>scoring outcomes JOB --date D</code> judges them once a day's outcomes "
                "have arrived).</p>")
    summary = "".join(f"<li class='verdict-latest' data-verdict='{escape(str(v['verdict']))}'>{escape(verdict_line(v))}"
                      f" (up to {v['partition_date']})</li>" for v in latest.values())
    return ("<h2 id='verdicts'>Versions on realised outcomes</h2><ul>" + summary + "</ul>"
            "<h3>Difference of mean loss against the champion, cumulative (below 0: better), with its interval</h3>"
            + trend(dict(difference), bound=0.0)
            + "<table id='verdicts-table'><tr><th>day</th><th>version</th><th>compared</th><th>verdict</th>"
            "<th>metric</th><th>difference</th><th>low</th><th>high</th><th>rows</th><th>champion's rows</th>"
            "<th>days</th></tr>" + "".join(rows) + "</table>")


def _performance(calendar: list[Any]) -> str:
    by_metric: dict[str, dict[str, list[tuple[dt.date, float]]]] = defaultdict(lambda: defaultdict(list))
    bounds: dict[str, float] = {}
    rows = []
    for d in calendar:
        for p in d.performance:
            name = f"{p['role']} v{p['model_version']}"
            by_metric[p["metric"]][name].append((d.day, p.get("value")))
            if p.get("bound") is not None:
                bounds[p["metric"]] = p["bound"]
            rows.append(f"<tr{' class=breached' if p.get('breached') else ''}><td>{d.day}</td>"
                        f"<td>{escape(name)}</td><td>{escape(p['metric'])}</td>" + _cell(p.get("value"), "{:.4f}")
                        + _cell(p.get("bound"), "{:.4f}")
                        + f"<td>{'<b style=color:#b33>breached</b>' if p.get('breached') else 'ok'}</td>"
                        + _cell(p.get("rows_labelled"), "{:,}") + f"<td>{p.get('outcome_date')}</td></tr>")
    if not rows:
        return ("<h2 id='performance'>Realised performance</h2><p>No outcomes evaluated in these days "
                "(<code>scoring outcomes JOB --date D</code> once a day's outcomes have arrived).</p>")
    charts = "".join(f"<h3>{escape(metric)} per day</h3>" + trend(dict(series), bound=bounds.get(metric))
                     for metric, series in sorted(by_metric.items()))
    return ("<h2 id='performance'>Realised performance</h2>" + charts
            + "<table id='performance-table'><tr><th>day</th><th>model</th><th>metric</th><th>value</th>"
            "<th>bound</th><th>verdict</th><th>rows labelled</th><th>outcomes of</th></tr>" + "".join(rows)
            + "</table>")


class ScoringPartitionsPlugin(AirflowPlugin):
    name = "scoring_partitions"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Scoring partitions"}]
    external_views = [{"name": "Partitions", "href": f"{PREFIX.lstrip('/')}/{{DAG_ID}}", "destination": "dag",
                       "url_route": "scoring-partitions"}]
