"""The one model resolver (``pipeline.resolve.Models``): each version resolved once, errors not remembered, and
no other place in the code resolves a model version (issue 26: one resolver, one level of trust)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pipeline.errors import ModelNotFoundError
from pipeline.registry import Registry
from pipeline.resolve import Models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path: Path, trained_models: Path) -> Registry:
    shutil.copytree(trained_models, tmp_path / "models")
    return Registry(tmp_path / "models")


def test_each_version_is_resolved_once(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    resolve = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda name, ref: calls.append((name, str(ref))) or resolve(name, ref))
    models = Models(registry=registry)
    champion = models.resolve("churn", "champion")
    assert champion.version == 1 and champion.anchor is not None  # checked against its anchor
    assert models.resolve("churn", "champion") is champion
    assert models.resolve("churn", 1) is champion  # the alias's version: the same resolution
    assert models.card("churn", "1") is champion.card
    assert calls == [("churn", "champion")]


def test_an_error_is_not_remembered(registry: Registry) -> None:
    models = Models(registry=registry)
    with pytest.raises(ModelNotFoundError, match=r"Known versions: 1; aliases: champion->v1"):
        models.resolve("churn", 2)
    mv1 = models.resolve("churn", 1)
    registry.register("churn", mv1.artifact, mv1.card, golden=mv1.golden)
    assert models.resolve("churn", 2).version == 2


def test_the_default_registry_is_anchored_through_the_callers_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr("pipeline.anchors.registry", lambda resolver=None: seen.append(resolver))
    resolver = object()
    models = Models(resolver)  # type: ignore[arg-type]
    assert models.registry.anchors is None and seen == [resolver]
    assert models.registry is models.registry  # made once


def test_registry_resolve_is_called_in_one_place() -> None:
    """The issue's check: ``grep -rn "\\.resolve(" pipeline dags plugins scripts | grep -i regist`` finds one line."""
    found = []
    for folder in ("pipeline", "dags", "plugins", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if ".resolve(" in line and re.search("regist", f"{rel}:{number}:{line}", re.IGNORECASE):
                    found.append(rel)
    assert found == ["pipeline/resolve.py"]
