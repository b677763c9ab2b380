"""File-based model registry: versions, movable aliases, model cards, verified loading.

Layout (``SCORING_MODELS_DIR``, default ``<SCORING_HOME>/models``)::

    models/<name>/v<version>/model.joblib   the fitted scikit-learn estimator
    models/<name>/v<version>/card.json      the model card (inputs, outputs, stats, sha256)
    models/<name>/v<version>/golden.parquet a few training rows with the scores they got
    models/<name>/aliases.json              {"aliases": {...}, "history": [...]}

Loading checks the artifact's sha256 against the card *before* unpickling it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import settings
from pipeline.config import check_identifier
from pipeline.errors import ModelIntegrityError, ModelNotFoundError

ARTIFACT = "model.joblib"
CARD = "card.json"
GOLDEN = "golden.parquet"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class ModelVersion:
    """A resolved model version: its folder and its card."""

    name: str
    version: int
    path: Path
    card: dict[str, Any]

    @property
    def artifact(self) -> Path:
        return self.path / ARTIFACT

    @property
    def golden(self) -> Path:
        return self.path / GOLDEN


class Registry:
    """Read and change the model registry below ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else settings.models_dir()

    # -- reading ------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("v*/" + CARD)))

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        found = []
        for card in folder.glob(f"v*/{CARD}"):
            try:
                found.append(int(card.parent.name[1:]))
            except ValueError:
                continue
        return sorted(found)

    def aliases(self, name: str) -> dict[str, int]:
        return dict(self._alias_doc(name)["aliases"])

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self._alias_doc(name)["history"])

    def _alias_doc(self, name: str) -> dict[str, Any]:
        path = self.root / name / "aliases.json"
        if not path.exists():
            return {"aliases": {}, "history": []}
        return json.loads(path.read_text())

    def resolve(self, name: str, ref: str | int) -> ModelVersion:
        """Resolve a version number or alias; an unknown one lists what exists."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFoundError(
                f"model {name!r} is not registered in {self.root} (registered models: {known}). "
                "Register it with 'scoring models register'."
            )
        aliases = self.aliases(name)
        text = str(ref).strip()
        if text.lstrip("v").isdigit():
            version = int(text.lstrip("v"))
        elif text in aliases:
            version = aliases[text]
        else:
            version = -1
        if version not in versions:
            raise ModelNotFoundError(
                f"model {name!r} has no version or alias {text!r}. Known versions: "
                f"{', '.join(map(str, versions))}; aliases: "
                f"{', '.join(f'{a}->v{v}' for a, v in sorted(aliases.items())) or 'none'}."
            )
        path = self.root / name / f"v{version}"
        card = json.loads((path / CARD).read_text())
        return ModelVersion(name, version, path, card)

    def load(self, mv: ModelVersion) -> Any:
        """Verify the artifact's sha256 against the card, then unpickle it."""
        if not mv.artifact.exists():
            raise ModelIntegrityError(f"model {mv.name} v{mv.version}: artifact {mv.artifact} is missing")
        actual = sha256_of(mv.artifact)
        expected = mv.card.get("sha256")
        if actual != expected:
            raise ModelIntegrityError(
                f"model {mv.name} v{mv.version}: artifact {mv.artifact} has sha256 {actual}, "
                f"but its model card says {expected}. Refusing to unpickle it: the file was "
                "changed after registration. Re-register the model or restore the artifact."
            )
        import joblib
        from sklearn.exceptions import InconsistentVersionWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InconsistentVersionWarning)
            model = joblib.load(mv.artifact)
        mismatch = [w for w in caught if issubclass(w.category, InconsistentVersionWarning)]
        if mismatch:
            text = str(mismatch[0].message)
            if not settings.allow_sklearn_version_mismatch():
                raise ModelIntegrityError(
                    f"model {mv.name} v{mv.version} was saved with another scikit-learn version "
                    f"({text}). Retrain and register it with this environment, or set "
                    f"{settings.ALLOW_VERSION_MISMATCH}=1 to score anyway at your own risk."
                )
            import logging

            logging.getLogger(__name__).warning(
                "scoring with a model saved by another scikit-learn version (%s=1): %s",
                settings.ALLOW_VERSION_MISMATCH,
                text,
            )
        return model

    # -- changing -----------------------------------------------------------------
    def register(
        self,
        name: str,
        artifact: Path,
        card: dict[str, Any],
        golden: Path | None = None,
        alias: str | None = None,
    ) -> ModelVersion:
        """Copy an artifact in as the next version, with its card and sha256."""
        check_identifier(name, "model name")
        version = max(self.versions(name), default=0) + 1
        final = self.root / name / f"v{version}"
        tmp = Path(tempfile.mkdtemp(dir=self._ensure(self.root / name), prefix=f".v{version}."))
        shutil.copyfile(artifact, tmp / ARTIFACT)
        if golden is not None:
            shutil.copyfile(golden, tmp / GOLDEN)
        card = dict(card)
        card.update(
            name=name,
            version=version,
            sha256=sha256_of(tmp / ARTIFACT),
            registered_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        _write_json_atomic(tmp / CARD, card)
        os.rename(tmp, final)
        mv = ModelVersion(name, version, final, card)
        if alias:
            self.promote(name, version, alias)
        return mv

    def promote(self, name: str, version: int, alias: str = "champion") -> None:
        """Point ``alias`` at ``version``, keeping the history for rollback."""
        check_identifier(alias, "alias")
        if version not in self.versions(name):
            self.resolve(name, version)  # raises with the known versions
        doc = self._alias_doc(name)
        doc["history"].append(
            {
                "alias": alias,
                "from": doc["aliases"].get(alias),
                "to": version,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "by": _user(),
            }
        )
        doc["aliases"][alias] = version
        _write_json_atomic(self.root / name / "aliases.json", doc)

    def rollback(self, name: str, alias: str = "champion") -> int:
        """Move ``alias`` back to the version it pointed at before its last move."""
        moves = [h for h in self.history(name) if h["alias"] == alias]
        if not moves or moves[-1]["from"] is None:
            raise ModelNotFoundError(f"alias {alias!r} of model {name!r} has no earlier version to roll back to")
        previous = int(moves[-1]["from"])
        self.promote(name, previous, alias)
        return previous

    @staticmethod
    def _ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
