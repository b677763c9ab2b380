"""MkDocs hook: renders the benchmark's own files into the performance page.

``performance.md`` holds the prose (how ``make bench`` measures) and the markers
``<!-- generated: bench-latest -->`` and ``<!-- generated: bench-history -->``. At build time
the first becomes the figures of ``benchmarks/latest.json`` and the second a table of the runs
kept in ``benchmarks/history/*.json`` (same shape as ``latest.json``). Every number on the page
comes from these files; a key an older bench did not write reads "not recorded by this run".
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

PAGE = "performance.md"
LATEST_MARKER = "<!-- generated: bench-latest -->"
HISTORY_MARKER = "<!-- generated: bench-history -->"
LATEST = Path("benchmarks/latest.json")
HISTORY = Path("benchmarks/history")
ONLINE_MARKER = "<!-- generated: bench-online -->"
ONLINE = Path("benchmarks/online.json")
AB_MARKER = "<!-- generated: bench-ab -->"
AB = Path("benchmarks/ab.json")
ABSENT = "not recorded by this run"
LABELS = {"rerun": "re-run (the day exists)", "cascade": "cascade (router and routes)", "sql": "SQL source"}
STAGES = ("ingest", "validate", "preprocess", "score", "drift_gate", "persist", "finalize")

Run = dict[str, Any]


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the performance page's markers with the latest run and the history."""
    if page.file.src_uri != PAGE:
        return markdown
    for marker in (LATEST_MARKER, HISTORY_MARKER):
        if marker not in markdown:
            raise PluginError(f"{PAGE} lost its marker {marker!r}: its figures would be missing")
    root = Path(config.config_file_path).parent
    latest = root / LATEST
    text = render_latest(json.loads(latest.read_text())) if latest.exists() else (
        f"No benchmark has been recorded yet (`{LATEST}` is absent): run `make bench`.")
    runs = [json.loads(p.read_text()) for p in sorted((root / HISTORY).glob("*.json"))]
    history = render_history(runs) if runs else f"No history is kept yet (`{HISTORY}/` holds no run)."
    markdown = markdown.replace(LATEST_MARKER, text).replace(HISTORY_MARKER, history)
    if ONLINE_MARKER in markdown:  # the online bench's figures (benchmarks/online.py)
        online = root / ONLINE
        markdown = markdown.replace(ONLINE_MARKER, render_online(json.loads(online.read_text())) if online.exists()
                                    else f"No online benchmark has been recorded yet (`{ONLINE}` is absent): run "
                                    "`make bench`.")
    if AB_MARKER in markdown:  # the A/B bench's figures (benchmarks/ab.py)
        ab = root / AB
        markdown = markdown.replace(AB_MARKER, render_ab(json.loads(ab.read_text())) if ab.exists()
                                    else f"No A/B benchmark has been recorded yet (`{AB}` is absent): run `make bench`.")
    return markdown


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    """``mkdocs serve`` rebuilds when a bench writes its files."""
    root = Path(config.config_file_path).parent
    server.watch(str(root / LATEST))
    if (root / ONLINE).exists():
        server.watch(str(root / ONLINE))
    if (root / HISTORY).is_dir():
        server.watch(str(root / HISTORY))
    return server


def get(run: Run, dotted: str) -> Any:
    """The value at ``a.b.c``, or None when any part is missing."""
    node: Any = run
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def num(value: Any, digits: int = 2, unit: str = "") -> str:
    """A figure as text, or the absent marker."""
    if value is None:
        return ABSENT
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or digits == 0:
        return f"{round(value):,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def rows_label(rows: int | str) -> str:
    """``1000000`` -> ``1,000,000 rows``."""
    return f"{int(rows):,} rows"


def per_size(ratios: dict[str, float] | None) -> str:
    if not ratios:
        return ABSENT
    return "; ".join(f"{rows_label(rows)}: {num(value)}" for rows, value in sorted(ratios.items(), key=lambda kv: int(kv[0])))


def date_of(run: Run) -> str:
    stamp = run.get("measured_at")
    if not stamp:
        return ABSENT
    return dt.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M UTC")


def render_latest(run: Run) -> str:
    """The latest run: where and when, the headline ratios, then the tables behind them."""
    parts = [
        "| | |", "|---|---|",
        f"| machine | {run.get('machine') or ABSENT} |",
        f"| measured at | {date_of(run)} |",
        f"| commit | {commit(run)} |",
        f"| rows of the headline partition | {num(run.get('rows'))} |",
        f"| load average before (1, 5, 15 min) | {loads(run.get('load_avg_before'))} |",
        f"| load average after (1, 5, 15 min) | {loads(run.get('load_avg_after'))} |",
        f"| other processes' CPU during the run (cores) | {num(run.get('others_cpu_cores'))} |",
        f"| machine busy | {num(run.get('machine_busy'))} |",
        f"| busy means | {run.get('busy_rule') or ABSENT} |",
        "", "### Headline ratios", "",
        "| measure | value |", "|---|---|",
        f"| end to end / floor, per size | {per_size(run.get('e2e_vs_floor_by_rows'))} |",
        f"| end to end / floor, rounds at the smallest size | {rounds(run.get('e2e_vs_floor_rounds'))} |",
        f"| end to end / naive | {num(run.get('e2e_vs_naive'))} |",
        f"| end to end / stages' sum | {num(run.get('e2e_vs_stage_sum'))} |",
        f"| re-run's persist / first persist | {num(run.get('rerun_persist_vs_first'))} |",
        *peaks(run),
        f"| end to end, rows/s | {num(run.get('e2e_rows_per_s'), 0)} |",
        f"| naive baseline, rows/s | {num(run.get('naive_rows_per_s'), 0)} |",
        f"| cascade, rows/s | {num(run.get('cascade_rows_per_s'), 0)} |",
        f"| sql source, rows/s | {num(run.get('sql_source_rows_per_s'), 0)} |",
        f"| sql source, peak RSS | {num(run.get('sql_source_peak_rss_mb'), 0, ' MB')} |",
        f"| Airflow's overhead per task | {num(run.get('airflow_overhead_per_task_s'), 2, ' s')} |",
        "", "### The floor", "",
        render_floor(run),
        "", "### Per stage", "",
        render_stages(get(run, "results") or {}),
        "", "### Two partitions at once", "",
        render_concurrent(run),
    ]
    return "\n".join(parts)


def commit(run: Run) -> str:
    """The commit measured, marked when tracked files differed from it."""
    if not run.get("commit"):
        return ABSENT
    return f"`{run['commit']}`" + (" (with uncommitted changes)" if run.get("commit_dirty") else "")


def peaks(run: Run) -> list[str]:
    """Rows of the table for the ``peak_rss_mb_<N>m`` keys: end to end's peak RSS at N million rows."""
    keys = sorted((int(k[len("peak_rss_mb_"):-1]), k) for k in run
                  if k.startswith("peak_rss_mb_") and k.endswith("m") and k[len("peak_rss_mb_"):-1].isdigit())
    return [f"| peak RSS of end to end, {rows_label(millions * 1_000_000)} | {num(run[k], 0, ' MB')} |"
            for millions, k in keys] or [f"| peak RSS of end to end | {ABSENT} |"]


def loads(values: list[float] | None) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else ABSENT


def rounds(values: list[float] | None) -> str:
    return f"{', '.join(num(v) for v in values)} ({len(values)} rounds; the ratio is their median)" if values else ABSENT


def render_floor(run: Run) -> str:
    """What the floor is made of: predict_proba alone (whole or batched) plus a raw COPY, per size."""
    head = [
        "| | |", "|---|---|",
        f"| floor of the headline partition | {num(run.get('floor_s'), 2, ' s')} |",
        f"| predict_proba on the whole partition | {num(run.get('floor_predict_whole_s'), 2, ' s')} |",
        f"| predict_proba batch by batch (the pipeline's batch size) | {num(run.get('floor_predict_batched_s'), 2, ' s')} |",
        f"| predict time the floor uses (the faster) | {num(run.get('floor_predict_s'), 2, ' s')} |",
        f"| which one that was | {run.get('floor_predict_kind') or ABSENT} |",
        "",
        "| size | predict_proba s (used) | whole partition s | batch by batch s | binary COPY s | floor s "
        "| peak RSS MB |", "|---|---|---|---|---|---|---|",
    ]
    results = get(run, "results") or {}
    sizes = sorted((int(k.split("_", 1)[1]), v) for k, v in results.items()
                   if k.startswith("floor_") and k.split("_", 1)[1].isdigit())
    body = [f"| {rows_label(rows)} | {num(f.get('predict_s'))} | {num(f.get('floor_predict_whole_s'))} | "
            f"{num(f.get('floor_predict_batched_s'))} | {num(f.get('copy_s'))} | {num(f.get('floor_s'))} | "
            f"{num(f.get('peak_rss_mb'), 0)} |" for rows, f in sizes]
    return "\n".join(head + (body or [f"| {ABSENT} | | | | | | |"]))


def render_stages(results: dict[str, Run]) -> str:
    """One row per end-to-end measurement that recorded its stages' seconds."""
    head = ["| run | rows | " + " | ".join(STAGES) + " | end to end s | rows/s | peak RSS MB |",
            "|---" * (len(STAGES) + 5) + "|"]
    body = []
    for name, result in results.items():
        stages = result.get("stages") if isinstance(result, dict) else None
        if not stages or "wall_s" not in result:
            continue
        wall, rows = result["wall_s"], result.get("rows")
        body.append(f"| {label(name)} | {num(rows)} | " + " | ".join(num(stages.get(s)) for s in STAGES)
                    + f" | {num(wall)} | {num(rows / wall if rows and wall else None, 0)} | "
                    f"{num(result.get('peak_rss_mb'), 0)} |")
    naive = results.get("naive")
    if naive and naive.get("wall_s"):
        body.append(f"| naive | {num(naive.get('rows'))} | " + " | ".join("" for _ in STAGES)
                    + f" | {num(naive['wall_s'])} | {num(naive['rows'] / naive['wall_s'], 0)} | "
                    f"{num(naive.get('peak_rss_mb'), 0)} |")
    return "\n".join(head + (body or [f"| {ABSENT} |" + " |" * (len(STAGES) + 4)]))


def label(name: str) -> str:
    """A measurement's name in ``results``, in words."""
    if name.startswith("pipeline_") and name[len("pipeline_"):].isdigit():
        return f"end to end, {rows_label(name[len('pipeline_'):])}"
    return LABELS.get(name, name)


def render_concurrent(run: Run) -> str:
    """Score stage of the slower of two partitions scored at once, per thread limit."""
    by_threads = run.get("concurrent_score_s_by_threads") or {}
    if not by_threads:
        return ABSENT
    lines = ["| threads per process | slower score stage s | both partitions, wall s |", "|---|---|---|"]
    for threads, score_s in sorted(by_threads.items(), key=lambda kv: int(kv[0])):
        wall = get(run, f"results.concurrent_{threads}.wall_s")
        lines.append(f"| {threads} | {num(score_s)} | {num(wall)} |")
    return "\n".join(lines)


def render_history(runs: list[Run]) -> str:
    """One row per kept run, oldest first."""
    lines = ["| measured at | machine | end to end / floor | end to end / naive | machine busy |",
             "|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: r.get("measured_at") or ""):
        lines.append(f"| {date_of(run)} | {run.get('machine') or ABSENT} | {per_size(run.get('e2e_vs_floor_by_rows'))} | "
                     f"{num(run.get('e2e_vs_naive'))} | {num(run.get('machine_busy'))} |")
    return "\n".join(lines)


LATENCIES = (("bare_predict", "bare `predict_proba` (features ready)"),
             ("bare_transform_predict", "the model's transform + `predict_proba`"),
             ("door", "the door in process (`Door.score`)"), ("http", "HTTP, one keep-alive client"))


def render_online(run: Run) -> str:
    """The online bench: where and when, the goals, the latencies, the load levels, the thread limits."""
    tail_ratio = run.get("p99_over_p50_at_8_clients")
    parts = [
        "| | |", "|---|---|",
        f"| machine | {run.get('machine') or ABSENT} |",
        f"| measured at | {date_of(run)} |",
        f"| commit | {commit(run)} |",
        f"| model | {model_of(run)} |",
        f"| load average before (1, 5, 15 min) | {loads(run.get('load_avg_before'))} |",
        f"| other processes' CPU during the run (cores) | {num(run.get('others_cpu_cores'))} |",
        f"| machine busy | {num(run.get('machine_busy'))} |",
        "", "| goal | measured | goal met |", "|---|---|---|",
        f"| the door adds at most {num(run.get('door_overhead_goal_ms', 1.0), 1)} ms at p50 to a single-row score "
        f"(door p50 minus the model's transform + `predict_proba` p50) | {num(run.get('door_overhead_p50_ms'), 3, ' ms')} "
        f"| {num(run.get('door_overhead_met'))} |",
        f"| p99 within {num(run.get('tail_goal', 3.0), 1)}x p50 under 8 concurrent clients (1 row a request) "
        f"| {num(tail_ratio)} | {num(run.get('tail_met'))} |",
        f"| HTTP's p50 minus the model's transform + `predict_proba` p50, 1 row | "
        f"{num(run.get('http_overhead_p50_ms'), 3, ' ms')} | |",
        f"| the door's scores equal the bare model's, every row scored | {num(run.get('same_scores'))} | |",
        "", "| latency, one thread | rows | p50 ms | p99 ms | repetitions |", "|---|---|---|---|---|",
    ]
    results = run.get("results") or {}
    for key, text in LATENCIES:
        for size, fig in sorted((results.get(key) or {}).items(), key=lambda kv: int(kv[0])):
            parts.append(f"| {text} | {num(int(size))} | {num(fig.get('p50_ms'), 3)} | {num(fig.get('p99_ms'), 3)} "
                         f"| {num(fig.get('n'))} |")
    parts += ["", "| concurrent clients | rows a request | requests/s | rows/s | p50 ms | p99 ms | errors "
              "| server CPU (cores) | clients' CPU (cores) |", "|---|---|---|---|---|---|---|---|---|"]
    for level in sorted((results.get("load") or {}).values(), key=lambda r: (r["rows_per_request"], r["clients"])):
        parts.append(f"| {level['clients']} | {level['rows_per_request']} | {num(level.get('requests_per_s'), 0)} | "
                     f"{num(level.get('rows_per_s'), 0)} | {num(level.get('p50_ms'))} | {num(level.get('p99_ms'))} | "
                     f"{num(level.get('errors'))} | {num(level.get('server_cpu_cores'))} | "
                     f"{num(level.get('client_cpu_cores'))} |")
    threads = results.get("threads") or {}
    if threads:
        parts += ["", "| `predict_proba`, 1 row, 8 threads at once | p50 ms | p99 ms | predictions/s |",
                  "|---|---|---|---|"]
        for limit, r in threads.items():
            label = "default thread pools" if limit == "default" else f"{limit} thread per predicting thread"
            parts.append(f"| {label} | {num(r.get('p50_ms'))} | {num(r.get('p99_ms'))} | "
                         f"{num(r.get('predictions_per_s'), 0)} |")
    by_server = results.get("server_threads") or {}
    if by_server:
        parts += ["", "| 8 clients of 1 row, the server's threads a request | requests/s | p50 ms | p99 ms |",
                  "|---|---|---|---|"]
        for limit, r in sorted(by_server.items(), key=lambda kv: int(kv[0])):
            parts.append(f"| {limit} (`SCORING_SERVE_THREADS`) | {num(r.get('requests_per_s'), 0)} | "
                         f"{num(r.get('p50_ms'))} | {num(r.get('p99_ms'))} |")
    by_concurrency = results.get("server_concurrency") or {}
    if by_concurrency:
        default = (results.get("load") or {}).get("1x8")
        rows = ([("the server's default (the cores)", default)] if default else []) + [
            (f"{value} (`SCORING_SERVE_CONCURRENCY`{': the thread pool' + chr(39) + 's 40' if value == '0' else ''})", r)
            for value, r in sorted(by_concurrency.items(), key=lambda kv: int(kv[0]))]
        parts += ["", "| 8 clients of 1 row, requests scored at once | requests/s | p50 ms | p99 ms |",
                  "|---|---|---|---|"]
        parts += [f"| {label} | {num(r.get('requests_per_s'), 0)} | {num(r.get('p50_ms'))} | {num(r.get('p99_ms'))} |"
                  for label, r in rows]
    if run.get("clients_note"):
        parts += ["", f"Note: {run['clients_note']}."]
    return "\n".join(parts)


def model_of(run: Run) -> str:
    model = run.get("model") or {}
    return f"{model['name']} v{model['version']}" if model.get("name") else ABSENT


def render_ab(run: Run) -> str:
    """The A/B bench: the arm assignment alone, and one partition scored alone, with a shadow and with a split."""
    load = run.get("load") or {}
    results = run.get("results") or {}
    assignment = results.get("assignment") or {}
    parts = [
        "| | |", "|---|---|",
        f"| machine | {num((run.get('machine') or {}).get('cores'))} cores, Python "
        f"{(run.get('machine') or {}).get('python', ABSENT)} |",
        f"| measured at | {date_of(run)} |",
        f"| commit | {commit(run)} |",
        f"| load average before (1, 5, 15 min) | {loads(load.get('load_avg_before'))} |",
        f"| other processes' CPU during the run (cores) | {num(load.get('others_cpu_cores'))} |",
        f"| machine busy | {num(load.get('machine_busy'))} |",
        "", "| arm assignment (`kernels.arms.assign`, a "
        f"{num(run.get('share_percent'))}% split) | keys | seconds | keys/s | share in the arm |",
        "|---|---|---|---|---|",
    ]
    for name in ("integer", "text"):
        fig = assignment.get(name) or {}
        parts.append(f"| {name} keys | {num(assignment.get('keys'))} | {num(fig.get('seconds'), 3)} "
                     f"| {num(fig.get('keys_per_s'), 0)} | {num(fig.get('arm_share'), 4)} |")
    parts += ["", f"| one partition of {num(run.get('rows'))} rows | wall s | shadow part s | arms part s |",
              "|---|---|---|---|"]
    texts = {"champion": "the champion alone", "shadow": "with the other version in the shadow (model.challengers)",
             "split": f"with a {num(run.get('share_percent'))}% split to the other version (model.split)"}
    for kind, text in texts.items():
        fig = results.get(kind) or {}
        part = fig.get("parts") or {}
        parts.append(f"| {text} | {num(fig.get('wall_s'), 2)} | {num(part.get('shadow'), 2)} "
                     f"| {num(part.get('arms'), 2)} |")
    parts += ["", f"The split's run over the shadow run: **{num(run.get('split_over_shadow'), 2)}x**; over the "
              f"champion alone: **{num(run.get('split_over_champion'), 2)}x**."]
    return "\n".join(parts)
