"""Every DAG imports, has the expected shape, and parsing stays light (subprocess per check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "sklearn", "pyarrow", "great_expectations", "psycopg", "joblib")

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
t = time.perf_counter()
bag = DagBag(sys.argv[1])
seconds = time.perf_counter() - t
out = {"errors": {k: v for k, v in bag.import_errors.items()}, "seconds": seconds,
       "new_modules": sorted({m.split(".")[0] for m in set(sys.modules) - before}), "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tasks": dag.task_ids, "tags": sorted(dag.tags), "owner": dag.owner,
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "params": {k: dag.params.get_param(k).dump() for k in dag.params},
        "timetable": type(dag.timetable).__name__, "doc_md": dag.doc_md or "",
        "sensor_mode": getattr(dag.task_dict.get("wait_for_partition"), "mode", None),
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks},
        "mapped": sorted(t.task_id for t in dag.tasks if "Mapped" in type(t).__name__ or hasattr(t, "expand_input")),
    }
print("JSON:" + json.dumps(out, default=str))
"""


def parse(jobs_dir: Path | None = None, tmp: Path | None = None) -> dict:
    env = dict(os.environ, AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"))
    if tmp is not None:
        env["AIRFLOW_HOME"] = str(tmp)
    if jobs_dir is not None:
        env["SCORING_JOBS_DIR"] = str(jobs_dir)
    else:
        env.pop("SCORING_JOBS_DIR", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("JSON:")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[5:])


def test_shipped_dags_import_cleanly_with_the_expected_shape(tmp_path: Path) -> None:
    result = parse(tmp=tmp_path)
    assert result["errors"] == {}
    jobs = sorted(p.stem for p in (ROOT / "dags" / "jobs").glob("*.yaml"))
    summaries = [f"{j}_summary" for j in jobs if j != "promotions_daily"]  # the persist jobs' downstream examples
    outcomes = [f"{j}_outcomes" for j in jobs if "outcomes" in yaml.safe_load((ROOT / "dags" / "jobs" / f"{j}.yaml")
                                                                              .read_text())]
    assert outcomes == ["churn_daily_outcomes"]
    # the promotion gate's DAG of each job that scores other versions beside its champion (challengers or split)
    promotes = [f"{j}_promote" for j in jobs if (yaml.safe_load((ROOT / "dags" / "jobs" / f"{j}.yaml").read_text())
                                                  ["model"].keys() & {"challengers", "split"})]
    assert promotes == ["churn_daily_promote"]
    # + the reaper's DAG and the demo's retraining on churn_daily's breaches
    assert sorted(result["dags"]) == sorted([*jobs, *summaries, *outcomes, *promotes, "scoring_maintenance",
                                             "demo_retrain"])
    gate = result["dags"]["churn_daily_promote"]
    assert gate["tasks"] == ["promote"] and gate["timetable"] == "NullTimetable" and gate["retries"] == {"promote": 2}
    assert "scoring" not in gate["tags"] and "scoring-promotion" in gate["tags"], "not read as a scoring DAG"
    assert {k: v["value"] for k, v in gate["params"].items()} == {"challenger": "challenger", "if_better": True,
                                                                  "reason": None}
    dag = result["dags"]["churn_daily"]
    assert dag["tasks"] == ["wait_for_partition", "ingest", "validate", "preprocess", "score", "persist", "finalize",
                            "announce_persist", "announce_breach", "check_quality", "checks_done"]
    assert dag["upstream"]["announce_persist"] == ["finalize"] and dag["retries"]["announce_persist"] == 0
    # a drift breach is an event even when the gate blocked the output (finalize never ran): all_done
    assert dag["upstream"]["announce_breach"] == ["finalize"] and dag["retries"]["announce_breach"] == 0
    assert dag["trigger_rules"]["announce_breach"] == "all_done"
    judged = result["dags"]["churn_daily_outcomes"]
    assert judged["tasks"] == ["evaluate", "announce_breach"] and judged["upstream"]["announce_breach"] == ["evaluate"]
    assert "scoring" not in judged["tags"] and "scoring-outcomes" in judged["tags"], "not read as a scoring DAG"
    assert judged["timetable"] == "CronDataIntervalTimetable" and set(judged["params"]) == {"partition_date"}
    assert judged["retries"] == {"evaluate": 2, "announce_breach": 0}
    retrain = result["dags"]["demo_retrain"]
    assert retrain["tasks"] == ["retrain"] and retrain["timetable"] == "AssetTriggeredTimetable"
    assert "scoring" not in retrain["tags"] and {"demo", "retrain"} <= set(retrain["tags"])
    summary = result["dags"]["churn_daily_summary"]
    assert summary["timetable"] == "PartitionedAssetTimetable" and summary["tasks"] == ["summarize"]
    assert dag["upstream"]["ingest"] == ["wait_for_partition"]
    assert dag["upstream"]["finalize"] == ["persist"]
    assert "scoring" in dag["tags"] and "churn" in dag["tags"]
    assert dag["owner"] == "ml-platform"
    once = ("wait_for_partition", "announce_persist", "announce_breach", "check_quality", "checks_done")  # a retry changes nothing
    assert all(r >= 2 for t, r in dag["retries"].items() if t not in once), dag["retries"]
    assert dag["upstream"]["check_quality"] == ["finalize"], dag["upstream"]
    assert dag["sensor_mode"] == "reschedule"
    assert dag["timetable"] == "CronDataIntervalTimetable"
    # a persist-only job's form has no output-mode choice and no push-only resend (issue 12)
    assert set(dag["params"]) == {"partition_date", "model_ref", "dry_run"}
    assert dag["params"]["dry_run"]["value"] is False
    # no field is marked required: the form requires every field whose type admits no null (issue 12)
    assert all("null" in p["schema"]["type"] for p in dag["params"].values() if "type" in p["schema"]
               and p["schema"].get("enum") is None), dag["params"]
    assert dag["params"]["partition_date"]["schema"]["format"] == "date"
    assert "last complete day" in dag["params"]["partition_date"]["description"]
    assert "Partition rule" in dag["doc_md"]
    promo = result["dags"]["promotions_daily"]
    assert promo["tasks"] == ["wait_for_partition", "ingest", "validate", "preprocess", "score", "push", "finalize",
                              "announce_push", "announce_breach", "check_quality", "checks_done"]
    assert promo["upstream"]["finalize"] == ["push"] and promo["upstream"]["push"] == ["score"]
    assert set(promo["params"]) == {"partition_date", "model_ref", "resend", "dry_run"}
    assert "push" in promo["tags"] and promo["owner"] == "crm-team"


def test_a_job_with_both_outputs_branches_on_the_run_mode(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    doc = yaml.safe_load((ROOT / "dags" / "jobs" / "promotions_daily.yaml").read_text())
    doc["output"]["table"] = "promotions_predictions"
    (jobs / "promotions_daily.yaml").write_text(yaml.safe_dump(doc))
    dag = parse(jobs, tmp=tmp_path)["dags"]["promotions_daily"]
    assert dag["upstream"]["choose_output"] == ["score"]
    assert dag["upstream"]["persist"] == dag["upstream"]["push"] == ["choose_output", "score"]
    assert dag["upstream"]["finalize"] == ["persist", "push", "score"]
    assert dag["trigger_rules"]["finalize"] == "none_failed_min_one_success"
    assert dag["upstream"]["announce_persist"] == dag["upstream"]["announce_push"] == ["finalize"]
    assert dag["params"]["output_mode"]["schema"]["enum"] == ["persist", "push"]
    assert dag["params"]["output_mode"]["value"] == "push"


def test_parsing_imports_no_heavy_libraries(tmp_path: Path) -> None:
    result = parse(tmp=tmp_path)
    heavy = [m for m in result["new_modules"] if m in HEAVY]
    assert heavy == [], f"DAG parsing imported {heavy}: move those imports into the task bodies"
    print(f"DagBag fill of dags/: {result['seconds']:.3f}s")


def test_a_job_file_with_a_typo_gives_a_visible_error_dag(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    good = yaml.safe_load((ROOT / "dags" / "jobs" / "churn_daily.yaml").read_text())
    (jobs / "churn_daily.yaml").write_text(yaml.safe_dump(good))
    bad = dict(good, job_id="typo_job", output={"tabel": "x"})
    (jobs / "typo_job.yaml").write_text(yaml.safe_dump(bad))
    result = parse(jobs, tmp=tmp_path)
    assert result["errors"] == {}
    assert result["dags"]["churn_daily"]["tasks"][0] == "wait_for_partition"
    broken = result["dags"]["typo_job"]
    assert broken["tasks"] == ["config_error"] and "config-error" in broken["tags"]
    assert "unknown key 'output.tabel'" in broken["doc_md"] and "did you mean 'table'" in broken["doc_md"]
    assert str(jobs / "typo_job.yaml") in broken["doc_md"]


def test_a_sharded_job_maps_its_shards_and_publishes_once(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    doc = yaml.safe_load((ROOT / "dags" / "jobs" / "churn_daily.yaml").read_text())
    doc["source"]["shards"] = 4
    (jobs / "churn_daily.yaml").write_text(yaml.safe_dump(doc))
    dag = parse(jobs, tmp=tmp_path)["dags"]["churn_daily"]
    assert dag["tasks"] == ["wait_for_partition", "plan", "score_shard", "combine", "persist", "finalize",
                            "announce_persist", "announce_breach", "check_quality", "checks_done"]
    assert dag["upstream"]["score_shard"] == ["plan"]
    assert dag["upstream"]["combine"] == ["plan", "score_shard"]
    assert dag["upstream"]["persist"] == ["combine"]
    assert dag["mapped"] == ["score_shard"]
