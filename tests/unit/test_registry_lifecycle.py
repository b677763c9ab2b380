"""Registry lifecycle: archive, restore, delete, versions never reused, rollback as a stack, describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, ModelNotFoundError
from pipeline.registry import Registry

CARD = {"inputs": [{"name": "x", "type": "float"}], "preprocess": {"name": "identity", "version": 1}}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fitted LogisticRegression saved with joblib."""
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("artifact") / "model.joblib"
    joblib.dump(LogisticRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), [0, 0, 1, 1]), path)
    return path


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def _register(registry: Registry, artifact: Path, n: int, **card: object) -> list[int]:
    return [registry.register("m", artifact, {**CARD, **card}).version for _ in range(n)]


def test_archive_is_refused_while_an_alias_points_at_the_version(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 2)
    registry.promote("m", 1)
    registry.promote("m", 1, "challenger")
    with pytest.raises(ConfigError) as err:
        registry.archive("m", 1)
    message = str(err.value)
    assert "'m' v1 cannot be archived: alias(es) challenger, champion point at it" in message
    assert "Promote another version first" in message
    assert registry.versions("m") == [1, 2] and registry.archived("m") == []
    assert (registry.root / "m" / "v1" / "card.json").exists()


def test_archive_restore_and_delete(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    registry.promote("m", 3)
    target = registry.archive("m", 2)
    assert target == registry.root / "m" / "archive" / "v2"
    assert (target / "model.joblib").exists() and not (registry.root / "m" / "v2").exists()
    assert registry.versions("m") == [1, 3]
    assert registry.archived("m") == [2]
    with pytest.raises(ModelNotFoundError, match=r"'m' v2 is archived .*restore it first \(`scoring models "
                                                 r"restore m 2`\) to use it. Live versions: 1, 3"):
        registry.resolve("m", 2)
    with pytest.raises(ModelNotFoundError, match=r"'m' v2 is archived"):
        registry.promote("m", 2)
    with pytest.raises(ModelNotFoundError, match=r"'m' v2 is archived already. Live versions: 1, 3"):
        registry.archive("m", 2)

    restored = registry.restore("m", 2)
    assert restored.version == 2 and restored.path == registry.root / "m" / "v2"
    assert registry.versions("m") == [1, 2, 3] and registry.archived("m") == []
    assert registry.resolve("m", 2).card["sha256"] == restored.card["sha256"]
    with pytest.raises(ModelNotFoundError, match=r"'m' v2 is live, not archived. Archived versions: none"):
        registry.restore("m", 2)

    with pytest.raises(ConfigError, match=r"'m' v1 is live: only an archived version can be deleted. Archive it "
                                          r"first \(`scoring models archive m 1`\)"):
        registry.delete("m", 1)
    with pytest.raises(ModelNotFoundError, match=r"'m' v7 is not archived"):
        registry.delete("m", 7)
    registry.archive("m", 1)
    registry.delete("m", 1)
    assert registry.versions("m") == [2, 3] and registry.archived("m") == []
    assert not (registry.root / "m" / "archive" / "v1").exists()
    assert not [p for p in (registry.root / "m" / "archive").iterdir()], "no half-deleted folder is left"
    with pytest.raises(ModelNotFoundError, match=r"no version or alias '1'"):
        registry.resolve("m", 1)


def test_version_numbers_are_never_reused(registry: Registry, artifact: Path) -> None:
    assert _register(registry, artifact, 3) == [1, 2, 3]
    registry.archive("m", 3)
    assert _register(registry, artifact, 1) == [4], "an archived highest version keeps its number"
    registry.archive("m", 4)
    registry.delete("m", 4)
    registry.delete("m", 3)
    assert registry.versions("m") == [1, 2] and registry.archived("m") == []
    assert json.loads((registry.root / "m" / "aliases.json").read_text())["last_version"] == 4
    assert _register(registry, artifact, 1) == [5], "a deleted highest version keeps its number"


def test_rollback_goes_back_one_promote_at_a_time(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    for version in (1, 2, 3):
        registry.promote("m", version)
    assert registry.rollback("m") == 2
    assert registry.aliases("m")["champion"] == 2
    assert registry.rollback("m") == 1, "a second rollback goes further back, it does not flip to v3"
    assert registry.aliases("m")["champion"] == 1
    with pytest.raises(ModelNotFoundError, match=r"alias 'champion' of model 'm' has no earlier version .*points "
                                                 r"at v1"):
        registry.rollback("m")
    registry.promote("m", 3)
    assert registry.rollback("m") == 1, "after a new promote, rollback returns to where it came from"


def test_rollback_is_per_alias_and_refuses_an_alias_never_moved(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    registry.promote("m", 1)
    registry.promote("m", 2, "challenger")
    registry.promote("m", 3, "challenger")
    registry.promote("m", 2)
    assert registry.rollback("m", "challenger") == 2
    assert registry.aliases("m") == {"champion": 2, "challenger": 2}
    assert registry.rollback("m") == 1
    with pytest.raises(ModelNotFoundError, match=r"alias 'nope' of model 'm' has no earlier version .*at nothing"):
        registry.rollback("m", "nope")


def test_rollback_to_an_explicit_version(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 4)
    for version in (1, 2, 3):
        registry.promote("m", version)
    assert registry.rollback("m", to=1) == 1
    assert registry.aliases("m")["champion"] == 1
    with pytest.raises(ModelNotFoundError, match="no earlier version"):
        registry.rollback("m")  # --to v1 went back past v2: nothing before v1 remains
    registry.promote("m", 3)
    assert registry.rollback("m", to=4) == 4, "a version the alias never had replaces the one rolled back from"
    assert registry.rollback("m") == 1
    with pytest.raises(ModelNotFoundError, match=r"no version or alias '9'"):
        registry.rollback("m", to=9)
    registry.archive("m", 2)
    with pytest.raises(ModelNotFoundError, match=r"'m' v2 is archived"):
        registry.rollback("m", to=2)
    assert registry.aliases("m")["champion"] == 1


def test_rollback_refuses_to_go_back_to_an_archived_version(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    for version in (1, 2, 3):
        registry.promote("m", version)
    registry.archive("m", 2)
    with pytest.raises(ModelNotFoundError, match=r"would roll back to v2, but v2 is archived. Restore it first "
                                                 r"\(`scoring models restore m 2`\).*--to N`; live: v1, v3\)"):
        registry.rollback("m")
    assert registry.aliases("m")["champion"] == 3


def test_history_records_every_event_with_time_and_user(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    registry.promote("m", 1)
    registry.promote("m", 2)
    registry.rollback("m")
    registry.rollback("m", to=2)
    registry.archive("m", 3)
    registry.restore("m", 3)
    registry.archive("m", 3)
    registry.delete("m", 3)
    history = registry.history("m")
    assert [(h["event"], h.get("alias"), h.get("from"), h.get("to"), h.get("version")) for h in history] == [
        ("promote", "champion", None, 1, None),
        ("promote", "champion", 1, 2, None),
        ("rollback", "champion", 2, 1, None),
        ("rollback", "champion", 1, 2, None),
        ("archive", None, None, None, 3),
        ("restore", None, None, None, 3),
        ("archive", None, None, None, 3),
        ("delete", None, None, None, 3),
    ]
    assert all(h["at"].endswith("+00:00") and h["by"] for h in history)


def test_history_entries_without_an_event_count_as_promotes(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 3)
    old = [{"alias": "champion", "from": None, "to": 1, "at": "2026-01-01T00:00:00+00:00", "by": "a"},
           {"alias": "champion", "from": 1, "to": 3, "at": "2026-01-02T00:00:00+00:00", "by": "a"}]
    (registry.root / "m" / "aliases.json").write_text(json.dumps({"aliases": {"champion": 3}, "history": old}))
    assert [h["event"] for h in registry.history("m")] == ["promote", "promote"]
    assert registry.rollback("m") == 1
    assert registry.history("m")[-1]["event"] == "rollback"


def test_describe_lists_live_and_archived_versions(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 1, task="binary_classification", metrics={"roc_auc": 0.9})
    _register(registry, artifact, 2)
    registry.promote("m", 2)
    registry.promote("m", 2, "challenger")
    registry.archive("m", 1)
    rows = registry.describe("m")
    assert [(r["version"], r["status"], r["aliases"]) for r in rows] == [
        (1, "archived", []), (2, "live", ["challenger", "champion"]), (3, "live", [])]
    assert rows[0]["task"] == "binary_classification" and rows[0]["metrics"] == {"roc_auc": 0.9}
    assert rows[1]["task"] is None and rows[1]["metrics"] == {}
    assert all(r["registered_at"] == registry.resolve("m", r["version"]).card["registered_at"] for r in rows[1:])
    assert registry.names() == ["m"]


def test_a_model_with_only_archived_versions_says_so(registry: Registry, artifact: Path) -> None:
    _register(registry, artifact, 1)
    registry.archive("m", 1)
    assert registry.names() == ["m"]
    with pytest.raises(ModelNotFoundError, match=r"'m' has no live version .*only archived ones \(v1\)"):
        registry.resolve("m", 1)
    with pytest.raises(ModelNotFoundError, match=r"model 'other' is not registered"):
        registry.archive("other", 1)
    assert not (registry.root / "other").exists(), "a lifecycle call on an unknown model creates nothing"
