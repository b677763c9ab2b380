"""House rules the tools cannot say, and proof that the tools' rules bite.

The layers, every import cycle and the boundaries (the core never imports the demo nor Airflow, the
kernels touch no storage) are import-linter contracts: pyproject.toml's [tool.importlinter], checked by
``lint-imports`` in ``make lint``. Short, simple functions and imports at the top of a file (but the
optional heavy libraries, listed once) are ruff rules there too: C901, PLR0912, PLR0915, PLC0415 + TID253.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import steps

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted(p for p in (ROOT / "pipeline").rglob("*.py") if "demo" not in p.relative_to(ROOT / "pipeline").parts)
BIN = Path(sys.executable).parent
# the places that look a function or a module up by a name computed at run time, and why
LOOKUPS = {
    "pipeline/steps.py": "Step.function: a step names its function by import path (the DAG parses without it)",
    "pipeline/kernels/transforms.py": "a transform's module, named by the card, registers the transform",
    "pipeline/onboard.py": "the version of each library a fitted model was pickled with",
}


def test_the_core_never_mentions_the_demo_model() -> None:
    assert [str(p.relative_to(ROOT)) for p in CORE if re.search("churn", p.read_text(), re.I)] == []


def test_the_lifecycle_and_the_dag_factory_stay_thin() -> None:
    # 194 and 39 lines when the limits were set: the limits leave room, a file near them is a file to split
    assert len((ROOT / "pipeline" / "run.py").read_text().splitlines()) < 250
    tree = ast.parse((ROOT / "dags" / "_scoring" / "factory.py").read_text())
    [build] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_dag"]
    assert build.end_lineno - build.lineno + 1 < 50


def _lookups(source: str, name: str) -> list[str]:
    """Each look-up by a computed name in a file's ``source``: ``getattr(<an imported module>, <not a
    literal>)``, ``importlib.import_module(...)``, ``__import__(...)``."""
    tree = ast.parse(source)
    modules = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").split(".")[0] == "pipeline" for a in n.names}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = ast.unparse(node.func)
        if called in ("importlib.import_module", "import_module", "__import__") or (
                called == "getattr" and isinstance(node.args[0], ast.Name) and node.args[0].id in modules
                and not isinstance(node.args[1], ast.Constant)):
            found.append((node.lineno, f"{name}:{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_stages_are_called_by_name_not_looked_up() -> None:
    files = [p for folder in ("pipeline", "dags", "plugins") for p in sorted((ROOT / folder).rglob("*.py"))]
    names = {p: str(p.relative_to(ROOT)) for p in files}
    assert [hit for p, name in names.items() if name not in LOOKUPS for hit in _lookups(p.read_text(), name)] == []
    # the check sees a stage looked up on its module by a name, and leaves a literal attribute alone
    probe = ("from pipeline import run, validate\nimport importlib\n\n"
             "def f(step, ctx):\n    getattr(run, step.name)(ctx)\n"
             "    importlib.import_module('pipeline.' + step.name)\n"
             "    return getattr(validate, '__doc__'), getattr(ctx, step.name)\n")
    assert _lookups(probe, "probe.py") == ["probe.py:5: getattr(run, step.name)",
                                           "probe.py:6: importlib.import_module('pipeline.' + step.name)"]


def test_every_step_of_the_table_names_its_function() -> None:
    table = [*steps.SCORING, *steps.OUTPUTS.values(), steps.COMBINE, steps.PLAN, steps.SCORE_SHARD]
    for step in table:
        assert callable(step.function()), f"{step.name}: {step.work} is not a function"
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
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("demo", "__pycache__"))
    # the package's modules: not the scripts Alembic runs from its folder (no __init__.py: not a package)
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in CORE if p.name != "__main__.py"
                     and all((d / "__init__.py").exists() for d in p.parents if ROOT / "pipeline" in (d, *d.parents)))
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


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (the contracts of ``where``'s pyproject.toml) on the ``pipeline`` package in ``where``."""
    env = {"PATH": str(BIN), "PYTHONPATH": str(where), "HOME": str(where)}
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache", "--no-logo"], cwd=where, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_hold() -> None:
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", out.stdout), out.stdout[-2000:]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and the project's lint configuration, copied where a test may break them."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_an_upward_import_breaks_the_layers_even_inside_a_function(copy: Path) -> None:
    # settings is at the bottom, run near the top; the import hides in a function body, as the old circle's did
    _append(copy / "pipeline" / "settings.py", "\n\ndef _later() -> None:\n    import pipeline.run  # noqa: F401\n")
    out = lint_imports(copy)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "a module imports only from its own layer or below BROKEN" in out.stdout
    assert "pipeline.settings is not allowed to import pipeline.run" in out.stdout
    ruff = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise",
                           "pipeline/settings.py"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert ruff.returncode == 1 and "PLC0415" in ruff.stdout, ruff.stdout  # and ruff refuses the inner import


def test_a_cycle_inside_one_layer_is_refused(copy: Path) -> None:
    # card and config share a layer (they may import each other) but card already imports config
    _append(copy / "pipeline" / "config.py", "\n\ndef _card_schema() -> object:\n"
            "    from pipeline.card import card_json_schema\n\n    return card_json_schema\n")
    out = lint_imports(copy)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "no import cycle between the modules of a package, at any depth BROKEN" in out.stdout
    assert "a module imports only from its own layer or below KEPT" in out.stdout


def test_a_heavy_optional_library_may_wait_inside_a_function_and_nothing_else(copy: Path) -> None:
    _append(copy / "pipeline" / "stats.py", "\n\ndef _fit() -> object:\n    import sklearn\n\n    return sklearn\n")
    _append(copy / "pipeline" / "keys.py", "\n\ndef _day() -> object:\n    import datetime\n\n    return datetime\n")
    _append(copy / "pipeline" / "textsafe.py", "\nimport sklearn  # noqa: E402, F401\n")
    ruff = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise",
                           "pipeline/stats.py", "pipeline/keys.py", "pipeline/textsafe.py"], cwd=copy,
                          capture_output=True, text=True, timeout=120)
    found = sorted(re.findall(r"pipeline/(\w+)\.py:\d+:\d+: (\w+)", ruff.stdout))
    assert found == [("keys", "PLC0415"), ("textsafe", "TID253")], ruff.stdout
