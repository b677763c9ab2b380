from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import ModelIntegrityError, ModelNotFoundError
from pipeline.registry import Registry
from pipeline.score import load_scorer


@pytest.fixture
def registry(tmp_path: Path, trained_models: Path) -> Registry:
    shutil.copytree(trained_models, tmp_path / "models")
    return Registry(tmp_path / "models")


def test_card_has_the_contract_stats_and_provenance(registry: Registry) -> None:
    mv = registry.resolve("churn", "champion")
    card = mv.card
    assert mv.version == 1
    assert {c["name"] for c in card["inputs"]} >= {"tenure_months", "contract_type"}
    assert card["training"]["stats"]["tenure_months"]["bin_shares"]
    assert card["metrics"]["roc_auc"] > 0.7
    assert card["sklearn_version"] and len(card["sha256"]) == 64
    assert card["preprocess"]["name"] == "churn_features"


def test_versions_aliases_promote_and_rollback(registry: Registry) -> None:
    mv1 = registry.resolve("churn", 1)
    mv2 = registry.register("churn", mv1.artifact, mv1.card, golden=mv1.golden)
    assert registry.versions("churn") == [1, 2]
    assert registry.resolve("churn", "champion").version == 1
    registry.promote("churn", 2)
    assert registry.resolve("churn", "champion").version == mv2.version == 2
    assert registry.rollback("churn") == 1
    assert registry.resolve("churn", "champion").version == 1
    assert [h["to"] for h in registry.history("churn")] == [1, 2, 1]


def test_unknown_version_lists_known_ones(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match=r"Known versions: 1; aliases: champion->v1"):
        registry.resolve("churn", "7")
    with pytest.raises(ModelNotFoundError, match="registered models: churn"):
        registry.resolve("fraud", "champion")


def test_tampered_artifact_is_refused_before_unpickling(registry: Registry) -> None:
    mv = registry.resolve("churn", "champion")
    with mv.artifact.open("ab") as fh:
        fh.write(b"\x00tampered")
    with pytest.raises(ModelIntegrityError, match="Refusing to unpickle"):
        registry.load(mv)


def test_golden_rows_are_reproduced(registry: Registry) -> None:
    scorer = load_scorer(registry, "churn", 1)
    assert scorer.version.golden.exists()
