"""A model version as the registry resolves it: its folder and its card. Below the registry and what
loads a version (``pipeline.scorer``); light, so that the DAG files' parse imports no data library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.anchors import Anchor

ARTIFACT = "model.joblib"
GOLDEN = "golden.parquet"


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
