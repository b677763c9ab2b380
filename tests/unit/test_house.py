"""House rules that keep the package readable: boundaries between parts, short functions, one step table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted(p for p in (ROOT / "pipeline").rglob("*.py") if "demo" not in p.relative_to(ROOT / "pipeline").parts)
MAX_FUNCTION_LINES = 60
PARSERS = {"build_parser"}  # argument parsers are long lists of options, not logic


def _imports(path: Path, runtime: bool = False) -> set[str]:
    """Every module a file imports (at any depth of the file, top level or inside functions); ``runtime``:
    not those under ``if TYPE_CHECKING:``, which never run."""
    tree = ast.parse(path.read_text())
    typing_only = {id(sub) for node in ast.walk(tree) if runtime and isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for stmt in node.body for sub in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_the_core_never_imports_the_demo() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("pipeline.demo"))
                 for p in CORE}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_never_mentions_the_demo_model() -> None:
    assert [str(p.relative_to(ROOT)) for p in CORE if re.search("churn", p.read_text(), re.I)] == []


def test_the_package_never_imports_airflow() -> None:
    offenders = {str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py")
                 if any(m == "airflow" or m.startswith("airflow.") for m in _imports(p))}
    assert offenders == set()


@pytest.mark.parametrize("folder", ["pipeline", "dags"])
def test_functions_are_short(folder: str) -> None:
    long = [f"{p.relative_to(ROOT)}::{name} ({n} lines)" for p in sorted((ROOT / folder).rglob("*.py"))
            for name, n in _functions(p) if n > MAX_FUNCTION_LINES and name not in PARSERS]
    assert long == []


def test_the_lifecycle_and_the_dag_factory_stay_thin() -> None:
    assert len((ROOT / "pipeline" / "run.py").read_text().splitlines()) < 300
    lengths = dict(_functions(ROOT / "dags" / "_scoring" / "factory.py"))
    assert lengths["build_dag"] < 60


def test_stages_are_called_by_name_not_looked_up() -> None:
    sources = [ROOT / "dags" / "_scoring" / "factory.py", ROOT / "pipeline" / "run.py",
               ROOT / "pipeline" / "local.py", ROOT / "pipeline" / "sharding.py"]
    assert [str(p.relative_to(ROOT)) for p in sources if re.search(r"getattr\((run|stages?)\s*,", p.read_text())] == []


def test_every_step_of_the_table_has_its_stage_function() -> None:
    from pipeline import run, steps

    bodies = run.stages()
    table = [*steps.SCORING, *steps.OUTPUTS.values(), steps.COMBINE]
    assert sorted(bodies) == sorted(s.name for s in table)
    for step in table:
        for dataset in step.reads:
            if dataset in steps.DATASETS:
                assert steps.writer_of(dataset), f"{step.name} reads {dataset} that no step writes"
    assert [s.name for s in steps.plan("persist", sharded=False)] == [
        "ingest", "validate", "preprocess", "score", "persist", "finalize"]
    assert [s.name for s in steps.plan("push", sharded=True)] == ["plan", "score_shard", "combine", "push", "finalize"]


def test_settings_are_read_in_one_module() -> None:
    readers = sorted(str(p.relative_to(ROOT)) for p in CORE if re.search(r"[\"']SCORING_[A-Z_]+[\"']", p.read_text()))
    assert readers == ["pipeline/settings.py"]


def test_the_core_imports_and_works_without_the_demo_folder(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("demo", "__pycache__"))
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in CORE if p.name != "__main__.py")
    # the editable install's finder would still find pipeline.demo in the checkout: take it out
    probe = (f"import importlib, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
             "sys.meta_path = [f for f in sys.meta_path if '__editable__' not in repr(f)]\n"
             f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
             "from pipeline import preprocess\n"
             "assert preprocess.get('identity', 1) is preprocess.identity\n"
             "assert preprocess.load_plugins() == [], preprocess.load_plugins()\n"
             "print('core ok without demo')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "core ok without demo" in out.stdout
    assert "failed to load" in out.stderr  # the demo's entry point is named but gone: a warning, not a crash


def test_the_package_has_no_import_cycle_counting_imports_inside_functions() -> None:
    import graphlib

    def name(path: Path) -> str:
        rel = path.relative_to(ROOT).with_suffix("")
        return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)

    modules = {name(p): p for p in (ROOT / "pipeline").rglob("*.py")}
    graph = {m: {t for t in _imports(p, runtime=True) if t in modules and t != m and not m.startswith(t + ".")}
             for m, p in modules.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
