"""The metrics of a ledger row (pipeline/metrics.py) and what the stand-in exporter makes of them and of Airflow's
own StatsD names with the shipped mapping (monitoring/statsd_mapping.yml)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import metrics
from tests.conftest import script_module

ROOT = Path(__file__).resolve().parents[2]


def _exporter() -> Any:
    return script_module("statsd_exporter")


exporter = _exporter()


def row(**kw: Any) -> dict[str, Any]:
    base = {"job_id": "churn_daily", "run_id": "scheduled__2026-11-29T00:00:00+00:00", "attempt": 1,
            "partition_date": dt.date(2026, 11, 28), "mode": "persist", "dry_run": False, "model_name": "churn",
            "model_version": 3, "status": "success", "failed_stage": None, "rows_in": 1_234_567,
            "rows_valid": 1_234_560, "rows_quarantined": 7, "rows_scored": 1_234_560, "rows_written": 1_234_560,
            "duration_s": 1234.567891, "finished_at": dt.datetime(2026, 11, 29, 3, 12, 45, 987654),
            "stage_seconds": '{"ingest": 12.5, "score": 100.25}', "breach": None}
    return base | kw


def scrape(lines: list[str], rules: list | None = None) -> dict[tuple[str, tuple], float]:
    """The lines through the stand-in exporter's store, read back as Prometheus text."""
    store = exporter.Store(exporter.load_rules(ROOT / "monitoring" / "statsd_mapping.yml") if rules is None
                           else rules)
    for text in lines:
        store.add(text)
    registry = CollectorRegistry()
    registry.register(store)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


@pytest.mark.parametrize(("given", "text"), [
    (1_234_567, "1234567"), (1795910400.0, "1795910400"), (0.1234567891, "0.1234567891"), (2.5, "2.5"),
    (-3, "-3"), (1e20, "1e+20"), (1795910400.123456, "1795910400.123456")])
def test_values_are_exact_not_six_significant_digits(given: float, text: str) -> None:
    assert metrics.number(given) == text
    assert float(text) == given


def test_a_success_row_exact_counts_and_seconds() -> None:
    samples = scrape(metrics.run_lines(row(), max_psi=0.123456789, newest_published=dt.date(2026, 11, 28)))
    midnight = int(dt.datetime(2026, 11, 28, tzinfo=dt.UTC).timestamp())
    assert midnight == 1795824000
    assert value(samples, "scoring_run_partition", job="churn_daily", status="success") == midnight
    assert value(samples, "scoring_partition_newest_published", job="churn_daily") == midnight
    assert value(samples, "scoring_run_finished_at", job="churn_daily") == midnight + 86400 + 3 * 3600 + 12 * 60 + 45
    assert value(samples, "scoring_run_rows", kind="in") == 1_234_567
    assert value(samples, "scoring_run_rows", kind="quarantined", model="churn", version="3") == 7
    assert value(samples, "scoring_run_seconds", status="success") == 1234.567891
    assert value(samples, "scoring_drift_max_psi", job="churn_daily") == 0.123456789
    assert value(samples, "scoring_stage_rows_per_second", stage="score") == 1_234_567 / 100.25
    assert value(samples, "scoring_run_attempts_total", job="churn_daily", status="success",
                 failed_stage="none", dry_run="false") == 1
    assert value(samples, "scoring_partition_failed", job="churn_daily", partition="2026-11-28") == 0
    assert value(samples, "scoring_run_status", job="churn_daily") == 1
    assert value(samples, "scoring_run_breaches_total") is None


def test_failures_stay_counted_after_a_later_success() -> None:
    lines = (metrics.run_lines(row(status="failed", failed_stage="validate", rows_in=100, rows_written=0))
             + metrics.run_lines(row(partition_date=dt.date(2026, 11, 29)))
             + metrics.run_lines(row(status="failed", failed_stage="validate", partition_date=dt.date(2026, 11, 30))))
    samples = scrape(lines)
    assert value(samples, "scoring_run_status", job="churn_daily") == 0  # the latest attempt only
    assert value(samples, "scoring_run_attempts_total", status="failed", failed_stage="validate") == 2
    assert value(samples, "scoring_run_attempts_total", status="success") == 1
    assert value(samples, "scoring_partition_failed", partition="2026-11-28") == 1  # no later day clears it
    assert value(samples, "scoring_partition_failed", partition="2026-11-29") == 0
    # the day re-run successfully clears only itself
    samples = scrape(lines + metrics.run_lines(row()))
    assert value(samples, "scoring_partition_failed", partition="2026-11-28") == 0
    assert value(samples, "scoring_partition_failed", partition="2026-11-30") == 1


def test_rows_that_never_scored_missing_skipped_marked_failed() -> None:
    missing = row(status="missing", failed_stage="wait_for_partition", model_version=None, duration_s=0,
                  stage_seconds="{}", **{f"rows_{k}": None for k in metrics.KINDS["push"]})
    samples = scrape(metrics.run_lines(missing))
    assert value(samples, "scoring_run_attempts_total", status="missing", failed_stage="wait_for_partition") == 1
    assert value(samples, "scoring_partition_failed", partition="2026-11-28") == 1
    assert value(samples, "scoring_run_status", job="churn_daily") == 0
    assert value(samples, "scoring_run_rows", kind="in") is None  # nothing was read: the last counts stand
    marked = row(status="failed", failed_stage="marked_failed", model_version=None, rows_in=None)
    samples = scrape(metrics.run_lines(marked))
    assert value(samples, "scoring_run_attempts_total", status="failed", failed_stage="marked_failed") == 1
    assert value(samples, "scoring_run_rows", kind="in", version="none") == 0
    assert value(samples, "scoring_partition_failed", partition="2026-11-28") == 1
    skipped = row(status="skipped", failed_stage=None, rows_in=None)
    samples = scrape(metrics.run_lines(missing) + metrics.run_lines(skipped))
    assert value(samples, "scoring_run_attempts_total", status="skipped", failed_stage="none") == 1
    assert value(samples, "scoring_partition_failed", partition="2026-11-28") == 0  # let go by hand
    assert value(samples, "scoring_run_status", job="churn_daily") == 0  # a skip is no success


def test_a_flagged_breach_is_counted_by_kind_and_a_dry_run_touches_no_day() -> None:
    samples = scrape(metrics.run_lines(row(breach="drift,quarantine"))
                     + metrics.run_lines(row(breach="drift", partition_date=dt.date(2026, 11, 29)))
                     + metrics.run_lines(row(dry_run=True, status="failed", failed_stage="score",
                                             partition_date=dt.date(2026, 11, 30))))
    assert value(samples, "scoring_run_breaches_total", breach="drift", dry_run="false") == 2
    assert value(samples, "scoring_run_breaches_total", breach="quarantine") == 1
    assert value(samples, "scoring_partition_failed", partition="2026-11-30") is None
    assert value(samples, "scoring_run_attempts_total", status="failed", dry_run="true") == 1


def test_every_metric_keeps_one_set_of_label_names() -> None:
    """statsd_exporter drops a line whose label names differ from the metric's first: none of ours may."""
    lines = []
    for status, stage in (("success", None), ("failed", "start"), ("missing", "wait_for_partition"),
                          ("skipped", None), ("abandoned", "score")):
        for mode in ("persist", "push"):
            lines += metrics.run_lines(row(status=status, failed_stage=stage, mode=mode, model_name=None,
                                           model_version=None, breach="drift"), max_psi=0.3)
    shapes: dict[str, set] = {}
    for text in lines:
        name, tags = re.match(r"([^:]+):[^|]+\|[a-z]+(?:\|#(.*))?$", text).groups()
        shapes.setdefault(name, set()).add(tuple(t.split(":")[0] for t in (tags or "").split(",")))
    assert {n: s for n, s in shapes.items() if len(s) > 1} == {}
    assert value(scrape(lines), "statsd_exporter_events_conflict_total") == 0


def test_the_documented_metrics_are_the_ones_sent() -> None:
    arms = {"period": 1, "salt": "s", "arms": {"champion": {"version": 3, "rows": 9}, "b": {
        "version": 4, "rows": 1, "fallback": True, "error": "sha256"}}}  # a split with an arm that fell back
    lines = metrics.run_lines(row(breach="drift", arms=arms), max_psi=0.3, newest_published="2026-11-28",
                              flagged={"out_of_training_range:MonthlyCharges": 2})
    sent = {text.split(":")[0] for text in lines}
    documented = set(re.findall(r"^\| ``(scoring\.[a-z_.]+)`` \|", metrics.__doc__ or "", re.M))
    assert sent == documented


# -- Airflow's own metrics through the mapping -------------------------------------------------------
def airflow_registry() -> list[dict[str, Any]]:
    import airflow

    path = Path(airflow.__file__).parent / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
    return yaml.safe_load(path.read_text())["metrics"]


def test_airflows_legacy_names_become_labels_and_their_tagless_twins_are_dropped() -> None:
    """Airflow 3.3.2 sends each registry metric with a legacy name twice over plain StatsD (the legacy name with
    its variables inside, and the new name without its tags): every one the mapping names comes out as one
    metric whose labels are the legacy name's variables, and the tag-less twin is dropped."""
    rules = exporter.load_rules(ROOT / "monitoring" / "statsd_mapping.yml")
    store = exporter.Store(rules)
    kinds = {"counter": "c", "gauge": "g", "timer": "ms"}
    mapped = []
    for metric in airflow_registry():
        legacy, variables = metric.get("legacy_name", "-"), metric.get("name_variables") or []
        kind = kinds[metric["type"]]
        twin = f"airflow.{metric['name']}"
        if legacy == "-" or store.map(twin, kind) is not None:
            continue  # no rule for it: Airflow's name as it comes
        values = {v: f"{v}_x" for v in variables}
        name, labels = store.map("airflow." + legacy.format(**values), kind)
        assert values.items() <= labels.items(), (metric["name"], legacy, name, labels)
        assert kind != "c" or name.endswith("_total"), name
        mapped.append(metric["name"])
    assert {"ti.finish", "ti.start", "task.duration", "dagrun.duration.success", "pool.open_slots"} <= set(mapped)
    assert len(mapped) >= 20, mapped
    assert store.map("airflow.ti.finish.churn_daily.score.success", "c") == (
        "airflow_ti_finish_total", {"dag_id": "churn_daily", "task_id": "score", "state": "success"})
    assert store.map("airflow.dagrun.duration.failed.churn_daily", "ms") == (
        "airflow_dagrun_duration", {"state": "failed", "dag_id": "churn_daily"})
    assert store.map("airflow.scheduler_heartbeat", "c") == ("airflow_scheduler_heartbeat", {})


def test_the_stand_in_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    bad = tmp_path / "mapping.yml"
    bad.write_text(yaml.safe_dump({"mappings": [{"match": "a.*", "name": "a", "ttl": "1h"}]}))
    with pytest.raises(ValueError, match="ttl"):
        exporter.load_rules(bad)
    bad.write_text(yaml.safe_dump({"mappings": [{"match": "a.(.*)", "name": "a", "match_type": "regex"}]}))
    with pytest.raises(ValueError, match="only glob"):
        exporter.load_rules(bad)
