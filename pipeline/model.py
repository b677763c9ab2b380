"""A model version as the registry resolves it: its folder and its card; and a model's versions and aliases as
the registry's files list them. Below the registry and what loads a version (``pipeline.kernels.predict.Scorer``); light, so
that the DAG files' parse (the trigger form lists a model's versions: ``refs``) imports no data library."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import settings

ARTIFACT = "model.joblib"
GOLDEN = "golden.parquet"
CARD = "card.json"
ALIASES = "aliases.json"


@dataclass(frozen=True)
class Anchor:
    """One version's registration record in the registry database (``pipeline.anchors``)."""

    model_name: str
    version: int
    artifact_sha256: str
    card_sha256: str
    origin: str
    registered_at: Any
    registered_by: str
    deleted_at: Any = None


def versions_in(folder: Path) -> list[int]:
    """The versions with a card in a folder (``<model>/`` for the live ones, ``<model>/archive/``)."""
    found = []
    for card in folder.glob(f"v*/{CARD}"):
        try:
            found.append(int(card.parent.name[1:]))
        except ValueError:
            continue
    return sorted(found)


def alias_doc(folder: Path) -> dict[str, Any]:
    """A model's ``aliases.json`` (``{"aliases", "history", "last_version"}``), empty when there is none."""
    path = folder / ALIASES
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault("aliases", {})
    doc.setdefault("history", [])
    return doc


def refs(name: str, root: Path | None = None) -> tuple[list[int], dict[str, int]]:
    """A model's live versions and its aliases, read from the registry's files only (no anchor checked)."""
    folder = Path(root or settings.models_dir()) / name
    return versions_in(folder), dict(alias_doc(folder)["aliases"])


@dataclass(frozen=True)
class ModelVersion:
    """A resolved model version: its folder and its card.

    ``card_sha256`` is the sha256 of the card bytes that were parsed; ``checked_in`` where its anchor
    was looked up (None: not yet), and ``anchor`` the record found there (None: the model has none).
    """

    name: str
    version: int
    path: Path
    card: dict[str, Any]
    card_sha256: str = ""
    anchor: Anchor | None = None
    checked_in: str | None = None

    @property
    def artifact(self) -> Path:
        return self.path / ARTIFACT

    @property
    def golden(self) -> Path:
        return self.path / GOLDEN
