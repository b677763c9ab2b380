"""File-based model registry: versions, movable aliases, model cards, verified loading.

Layout (``SCORING_MODELS_DIR``, default ``<SCORING_HOME>/models``)::

    models/<name>/v<version>/model.joblib   the fitted scikit-learn estimator
    models/<name>/v<version>/card.json      the model card (inputs, outputs, stats, sha256)
    models/<name>/v<version>/golden.parquet a few training rows with the scores they got
    models/<name>/archive/v<version>/       an archived version: kept, but not listed or resolvable
    models/<name>/aliases.json              {"aliases": {...}, "history": [...], "last_version": N}

A version's lifecycle: registered (live) -> archived (``archive``; ``restore`` brings it back)
-> deleted (``delete``, archived versions only). A version an alias points at cannot be
archived. Version numbers are never reused, not even a deleted one's (``last_version``).

Every change is a ``history`` entry with ``event``, ``at`` (UTC) and ``by`` (login name):
``promote`` and ``rollback`` also carry ``alias``, ``from`` and ``to``; ``archive``,
``restore`` and ``delete`` carry ``version``. Entries written before events were recorded
have no ``event`` key and count as promotes. Promotions and rollbacks made through ``pipeline.promotion``
(``scoring models promote/rollback``, the ``<job_id>_promote`` DAG) are also rows of the registry database's
``scoring_model_audit``, written by the ``record`` hook under the model's lock.

Loading reads the artifact's bytes once, checks their sha256, and unpickles those same bytes. The
sha256 it checks is the version's registration record (its *anchor*, ``pipeline.anchors``) in the
registry database (``SCORING_REGISTRY_DB``, default the ``scoring_db`` connection), outside this
folder; the card's own bytes are checked against the anchor when the version is resolved. A
version without an anchor there is refused before anything of it is used (``SCORING_ALLOW_UNANCHORED=1``:
development only, loaded on its card with a warning at each load).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline import anchors as anchoring
from pipeline import settings
from pipeline.anchors import Anchor, Anchors, sha256_bytes
from pipeline.card import parse
from pipeline.config import check_identifier
from pipeline.connections import Resolver
from pipeline.errors import ConfigError, ModelIntegrityError, ModelNotFoundError
from pipeline.model import ALIASES, ARTIFACT, CARD, GOLDEN, ModelVersion, alias_doc, versions_in
from pipeline.modelcheck import check_registration
from pipeline.store import engines

ARCHIVE = "archive"
PROMOTE, ROLLBACK, ARCHIVED, RESTORE, DELETE = "promote", "rollback", "archive", "restore", "delete"
_FROM_ENVIRONMENT: Any = object()
_ANY: Any = object()  # promote's ``expect`` when not given: whatever the alias points at
# The audit hook of promote and rollback: given the history entry (name, event, alias, from, to, at, by), a context
# around the write of aliases.json under the model's lock (pipeline.promotion writes scoring_model_audit in it).
Record = Callable[[dict[str, Any]], AbstractContextManager[Any]]
log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def _write_json_atomic(path: Path, data: Any) -> None:
    _write_bytes_atomic(path, _json_bytes(data))


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class Registry:
    """Read and change the model registry below ``root``.

    ``anchors``: the database of the registration records (``pipeline.anchors``); by default the registry
    database (``pipeline.anchors.registry(resolver)``: ``SCORING_REGISTRY_DB``, default ``scoring_db``, found
    through ``resolver``, the caller's connections, on first use). With none, every version is refused,
    registering and deleting too (unless ``SCORING_ALLOW_UNANCHORED=1``). Versions are resolved for use
    through ``pipeline.resolve.Models``.
    """

    def __init__(self, root: Path | None = None, anchors: Anchors | None = _FROM_ENVIRONMENT,
                 resolver: Resolver | None = None) -> None:
        self.root = Path(root) if root else settings.models_dir()
        self._anchors = anchors
        self._resolver = resolver

    @property
    def anchors(self) -> Anchors | None:
        """The registry database's records (None: not configured)."""
        if self._anchors is _FROM_ENVIRONMENT:
            self._anchors = anchoring.registry(self._resolver)
        return self._anchors

    # -- reading ------------------------------------------------------------------
    def names(self) -> list[str]:
        """Models with at least one live or archived version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (any(p.glob("v*/" + CARD)) or any(p.glob(f"{ARCHIVE}/v*/{CARD}"))))

    def versions(self, name: str) -> list[int]:
        """The live versions of a model (archived ones are not listed)."""
        return versions_in(self.root / name)

    def archived(self, name: str) -> list[int]:
        """The archived versions of a model."""
        return versions_in(self.root / name / ARCHIVE)

    def aliases(self, name: str) -> dict[str, int]:
        return dict(self._alias_doc(name)["aliases"])

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every promote, rollback, archive, restore and delete, oldest first (each with its ``event``)."""
        return [{"event": PROMOTE, **h} for h in self._alias_doc(name)["history"]]

    def describe(self, name: str) -> list[dict[str, Any]]:
        """One row per live and archived version: status, the aliases pointing at it, card facts."""
        aliases = self.aliases(name)
        rows = []
        folders = [(v, "live", self.root / name / f"v{v}") for v in self.versions(name)]
        folders += [(v, "archived", self.root / name / ARCHIVE / f"v{v}") for v in self.archived(name)]
        for version, status, path in sorted(folders):
            card = json.loads((path / CARD).read_text())
            rows.append({
                "version": version,
                "status": status,
                "aliases": sorted(a for a, v in aliases.items() if v == version),
                "registered_at": card.get("registered_at"),
                "task": card.get("task"),
                "metrics": card.get("metrics", {}),
                "sklearn_version": card.get("sklearn_version"),
            })
        return rows

    def _alias_doc(self, name: str) -> dict[str, Any]:
        return alias_doc(self.root / name)

    def resolve(self, name: str, ref: str | int) -> ModelVersion:
        """Resolve a version number or alias, its card checked against its anchor; an unknown one lists what
        exists. What runs, the outcomes job and the CLI use resolve through ``pipeline.resolve.Models``."""
        version = self.version_of(name, ref)
        return self.checked(self._read_version(name, version, self.root / name / f"v{version}"))

    def version_of(self, name: str, ref: str | int) -> int:
        """The live version a version number or alias names; an unknown one lists what exists."""
        versions = self.versions(name)
        if not versions and self.archived(name):
            raise ModelNotFoundError(
                f"model {name!r} has no live version in {self.root}, only archived ones "
                f"({', '.join(f'v{v}' for v in self.archived(name))}): restore one (`scoring models restore "
                f"{name} N`) or register a new version."
            )
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
            if version in self.archived(name):
                raise ModelNotFoundError(
                    f"model {name!r} v{version} is archived ({self.root / name / ARCHIVE / f'v{version}'}): "
                    f"restore it first (`scoring models restore {name} {version}`) to use it. Live versions: "
                    f"{', '.join(map(str, versions))}."
                )
            raise ModelNotFoundError(
                f"model {name!r} has no version or alias {text!r}. Known versions: "
                f"{', '.join(map(str, versions))}; aliases: "
                f"{', '.join(f'{a}->v{v}' for a, v in sorted(aliases.items())) or 'none'}."
            )
        return version

    @staticmethod
    def _read_version(name: str, version: int, path: Path) -> ModelVersion:
        """A version's card, parsed from the bytes that are hashed (read once)."""
        raw = (path / CARD).read_bytes()
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ModelIntegrityError(f"the card of model {name} v{version} ({path / CARD}) is not JSON: {exc}") from None
        card = parse(doc, f"the card of model {name} v{version} ({path / CARD})")
        return ModelVersion(name, version, path, card, card_sha256=sha256_bytes(raw))

    def checked(self, mv: ModelVersion) -> ModelVersion:
        """The version with its card checked against its anchor in the registry database; a version with no
        anchor (or no registry database) is refused, unless ``SCORING_ALLOW_UNANCHORED=1`` (then: a warning)."""
        if mv.checked_in is not None:
            return mv
        store = self.anchors
        if store is None:
            anchoring.unanchored(mv, f"cannot be checked against an anchor: {anchoring.not_configured()}")
            return mv
        return replace(mv, anchor=store.check(mv), checked_in=store.where)

    def load(self, mv: ModelVersion) -> Any:
        """Read the artifact's bytes once, check their sha256 (the anchor's, and the card's), unpickle them.

        A version without an anchor is refused before its file is read (``SCORING_ALLOW_UNANCHORED=1``:
        loaded, with a warning at every load)."""
        if mv.checked_in is None:
            mv = self.checked(mv)
        elif mv.anchor is None:
            anchoring.unanchored(mv, f"is NOT anchored in the registry database {mv.checked_in} (no registration "
                                     "record there)")
        try:
            data = mv.artifact.read_bytes()
        except FileNotFoundError:
            raise ModelIntegrityError(f"model {mv.name} v{mv.version}: artifact {mv.artifact} is missing") from None
        _check_artifact(mv, sha256_bytes(data))
        import joblib
        from sklearn.exceptions import InconsistentVersionWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InconsistentVersionWarning)
            model = joblib.load(io.BytesIO(data))  # the bytes just verified: no second open
        mismatch = [w for w in caught if issubclass(w.category, InconsistentVersionWarning)]
        if mismatch:
            text = str(mismatch[0].message)
            if not settings.allow_sklearn_version_mismatch():
                raise ModelIntegrityError(
                    f"model {mv.name} v{mv.version} was saved with another scikit-learn version "
                    f"({text}). Retrain and register it with this environment, or set "
                    f"{settings.ALLOW_VERSION_MISMATCH}=1 to score anyway at your own risk."
                )
            log.warning(
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
        """Check the card (its schema, then against the estimator), copy the artifact in as the next version,
        and record its anchor (the sha256 of the artifact and of the card) in the registry's database.

        The artifact is read once: the bytes checked (unpickled: the caller's own file, before it enters
        the registry) are the bytes copied and hashed. The first registration of a model into a database
        adopts its versions registered before (``anchor``), so that the model is anchored as a whole.
        """
        check_identifier(name, "model name")
        store = self.anchors
        if store is None and not settings.allow_unanchored():
            anchoring.require(store, f"models register {name}: the new version's anchor has nowhere to go")
        data = _read_artifact(artifact)
        check_registration(card, artifact, golden, data=data)
        if store is not None and not store.of(name) and (self.versions(name) or self.archived(name)):
            self.anchor(name, skip_broken=True)
        version = self._next_version(name)
        tmp = Path(tempfile.mkdtemp(dir=self._ensure(self.root / name), prefix=f".v{version}."))
        (tmp / ARTIFACT).write_bytes(data)
        if golden is not None:
            shutil.copyfile(golden, tmp / GOLDEN)
        card = {**card, "name": name, "version": version, "sha256": sha256_bytes(data),
                "registered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        card_bytes = _json_bytes(card)
        _write_bytes_atomic(tmp / CARD, card_bytes)
        mv = self._publish(tmp, ModelVersion(name, version, self.root / name / f"v{version}", card,
                                             card_sha256=sha256_bytes(card_bytes)))
        if alias:  # a promotion like any other: in the model audit, when there is a registry database
            self.promote(name, version, alias, record=self._registered_as(name, version, alias))
        return mv

    def _registered_as(self, name: str, version: int, alias: str) -> Record | None:
        """The audit hook of a registration that points an alias at the new version (``register(alias=...)``): the
        row of ``scoring_model_audit``, in the transaction around the alias's move (None: no registry database)."""
        if self.anchors is None:
            return None
        return self.anchors.recorder({
            "model_name": name, "alias": alias, "event": PROMOTE, "gate": "none", "source": "register",
            "decision": f"{name} v{version} registered as {alias}: a registration with an alias, no realised "
                        "comparison was checked"})

    def _publish(self, tmp: Path, mv: ModelVersion) -> ModelVersion:
        """Move a new version's folder in place, its anchor written in the same transaction (if anchored)."""
        store = self.anchors
        if store is None:
            os.rename(tmp, mv.path)
            log.warning("model %s v%s is registered but NOT anchored (%s=1 and %s): workers refuse it unless they "
                        "allow unanchored models too. Anchor it later with `scoring models anchor %s`", mv.name,
                        mv.version, settings.ALLOW_UNANCHORED, anchoring.not_configured(), mv.name)
            return mv
        store.ensure()
        anchor = Anchor(mv.name, mv.version, mv.card["sha256"], mv.card_sha256, anchoring.REGISTERED,
                        dt.datetime.now(dt.UTC), _user())
        try:
            with engines.begin(store.engine) as conn:
                store.insert(conn, anchor)
                os.rename(tmp, mv.path)  # a failure rolls the record back
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return replace(mv, anchor=anchor, checked_in=store.where)

    def anchor(self, name: str, version: int | None = None, *, skip_broken: bool = False) -> list[Anchor]:
        """Adopt a version (default: every live and archived one) as it is in the folder now: record its anchor.

        For versions registered before anchoring existed, or into another database. A version recorded
        already is left as it is (an anchor is never rewritten); one whose artifact does not match its
        own card is refused (``skip_broken``: left out, with a warning; it stays unloadable).
        """
        store = self.anchors
        if store is None:
            raise ConfigError(f"models anchor: no scoring database to record the anchors in ({anchoring.not_configured()})")
        check_identifier(name, "model name")
        with self._locked(name):
            folders = self._version_folders(name)
            wanted = sorted(folders) if version is None else [version]
            if version is not None and version not in folders:
                self._version_path(name, version)  # raises: says where it is (or that it is not registered)
            store.ensure()
            known = store.of(name)
            adopted = [a for v in wanted if v not in known
                       for a in [self._adopted(name, v, folders[v], skip_broken)] if a is not None]
            with engines.begin(store.engine) as conn:
                for anchor in adopted:
                    store.insert(conn, anchor)
        for anchor in adopted:
            log.warning("adopted model %s v%s as it is in the folder now: artifact sha256 %s, card sha256 %s (%s)",
                        name, anchor.version, anchor.artifact_sha256, anchor.card_sha256, store.where)
        return adopted

    def _version_folders(self, name: str) -> dict[int, Path]:
        live = {v: self.root / name / f"v{v}" for v in self.versions(name)}
        return {**{v: self.root / name / ARCHIVE / f"v{v}" for v in self.archived(name)}, **live}

    def _adopted(self, name: str, version: int, path: Path, skip_broken: bool = False) -> Anchor | None:
        """The anchor of a version as its folder holds it, if its artifact matches its card."""
        mv = self._read_version(name, version, path)
        actual = sha256_bytes(_read_artifact(path / ARTIFACT))
        if actual != mv.card.get("sha256"):
            if skip_broken:
                log.warning("model %s v%s not adopted: its artifact's sha256 %s is not its card's %s",
                            name, version, actual, mv.card.get("sha256"))
                return None
            raise ModelIntegrityError(
                f"model {name} v{version}: artifact {path / ARTIFACT} has sha256 {actual}, but its card says "
                f"{mv.card.get('sha256')}: not adopting it (nothing was recorded). Restore the folder from a copy "
                "you trust, or archive and delete that version.")
        return Anchor(name, version, actual, mv.card_sha256, anchoring.ADOPTED, dt.datetime.now(dt.UTC), _user())

    def promote(self, name: str, version: int, alias: str = "champion", *, expect: Any = _ANY,
                by: str | None = None, record: Record | None = None) -> None:
        """Point ``alias`` at ``version``, keeping the history for rollback.

        ``expect``: the version the alias must point at now (None: nowhere), checked under the model's lock (a
        decision taken on the current champion is refused if another promote moved it since). ``by``: who, for
        the history (default: the login name). ``record``: the audit hook (``Record``), called under the lock.
        """
        check_identifier(alias, "alias")
        with self._locked(name):
            if expect is not _ANY and self.aliases(name).get(alias) != expect:
                raise ConfigError(
                    f"model {name!r}: alias {alias!r} points at {_v(self.aliases(name).get(alias))} now, not at "
                    f"{_v(expect)} as when the promotion was decided (another promote or rollback moved it "
                    "meanwhile). Nothing was changed: look at `scoring models list "
                    f"{name}` and decide again.")
            self._move_alias(name, alias, version, PROMOTE, by=by, record=record)

    def rollback(self, name: str, alias: str = "champion", to: int | None = None, *, by: str | None = None,
                 record: Record | None = None) -> int:
        """Move ``alias`` back one step of its promote history, or to the live version ``to``; return it.

        The alias's history is a stack: a promote pushes its version, a rollback pops one, so
        rollbacks in a row after promoting v1, v2, v3 go v3 -> v2 -> v1. ``by`` and ``record``: as ``promote``.
        """
        with self._locked(name):
            if to is None:
                stack = self._alias_stack(name, alias)
                if len(stack) < 2:
                    raise ModelNotFoundError(
                        f"alias {alias!r} of model {name!r} has no earlier version to roll back to "
                        f"(it points at {_v(stack[-1] if stack else None)} and was never promoted from another "
                        "version, or every earlier one was rolled back already). Promote a version, or roll "
                        f"back to an explicit one (`scoring models rollback {name} --alias {alias} --to N`)."
                    )
                to = stack[-2]
                if to not in self.versions(name):
                    state = "archived" if to in self.archived(name) else "deleted"
                    raise ModelNotFoundError(
                        f"alias {alias!r} of model {name!r} would roll back to v{to}, but v{to} is {state}. "
                        + (f"Restore it first (`scoring models restore {name} {to}`), or " if state == "archived" else "")
                        + f"roll back to an explicit live version (`scoring models rollback {name} --alias {alias} "
                        f"--to N`; live: {', '.join(f'v{v}' for v in self.versions(name))})."
                    )
            self._move_alias(name, alias, int(to), ROLLBACK, by=by, record=record)
        return int(to)

    def archive(self, name: str, version: int) -> Path:
        """Move a live version no alias points at to ``archive/``; return its new folder."""
        with self._locked(name):
            live = self._version_path(name, version)
            pointing = sorted(a for a, v in self.aliases(name).items() if v == version)
            if pointing:
                raise ConfigError(
                    f"model {name!r} v{version} cannot be archived: alias(es) {', '.join(pointing)} point at it. "
                    f"Promote another version first (e.g. 'scoring models promote {name} N --alias "
                    f"{pointing[0]}'), then archive v{version}."
                )
            target = self._ensure(self.root / name / ARCHIVE) / f"v{version}"
            if target.exists():
                raise ConfigError(f"model {name!r} v{version}: {target} exists already; move it away first")
            os.rename(live, target)
            self._record(name, {"event": ARCHIVED, "version": version})
        return target

    def restore(self, name: str, version: int) -> ModelVersion:
        """Move an archived version back among the live ones."""
        with self._locked(name):
            archived = self._version_path(name, version, archived=True)
            target = self.root / name / f"v{version}"
            if target.exists():
                raise ConfigError(f"model {name!r} v{version}: {target} exists already; move it away first")
            os.rename(archived, target)
            self._record(name, {"event": RESTORE, "version": version})
        return self.checked(self._read_version(name, version, target))

    def delete(self, name: str, version: int) -> None:
        """Remove an archived version for good (its number is never given out again).

        The deletion is recorded in the registry database first (its anchor marked deleted, or a tombstone for
        a version that had none), so that a copy of the folder put back is refused: without that database
        nothing is deleted (ConfigError)."""
        store = anchoring.require(self.anchors, f"models delete {name} v{version}: the deletion must be recorded in "
                                                "the registry database, or a copy of the folder put back would load "
                                                "again")
        with self._locked(name):
            if version in self.versions(name):
                raise ConfigError(
                    f"model {name!r} v{version} is live: only an archived version can be deleted. "
                    f"Archive it first (`scoring models archive {name} {version}`), then delete it."
                )
            archived = self._version_path(name, version, archived=True)
            doc = self._alias_doc(name)
            doc["last_version"] = max(self._next_version(name) - 1, version)
            _write_json_atomic(self.root / name / ALIASES, doc)  # before the folder goes: never reused
            store.mark_deleted(name, version, _tombstone(name, version, archived))  # a copy put back is refused
            trash = Path(tempfile.mkdtemp(dir=archived.parent, prefix=f".deleting-v{version}."))
            os.rename(archived, trash / archived.name)
            self._record(name, {"event": DELETE, "version": version})
            shutil.rmtree(trash)

    # -- helpers ------------------------------------------------------------------
    def _next_version(self, name: str) -> int:
        """One more than any version ever registered: live, archived, deleted, or recorded in the database."""
        used = [*self.versions(name), *self.archived(name), int(self._alias_doc(name).get("last_version") or 0)]
        if self.anchors is not None:
            used.append(self.anchors.last_version(name))
        return max(used, default=0) + 1

    def _version_path(self, name: str, version: int, *, archived: bool = False) -> Path:
        """The folder of a live (or, ``archived``, an archived) version; otherwise say where it is."""
        live, gone = self.versions(name), self.archived(name)
        here, there = (gone, live) if archived else (live, gone)
        if version not in here:
            if archived:
                where = "is live, not archived" if version in there else "is not archived"
            else:
                where = "is archived already" if version in there else "is not registered"
            raise ModelNotFoundError(
                f"model {name!r} v{version} {where}. {'Archived' if archived else 'Live'} versions: "
                f"{', '.join(map(str, here)) or 'none'}."
            )
        return self.root / name / (ARCHIVE if archived else "") / f"v{version}"

    def _alias_stack(self, name: str, alias: str) -> list[int]:
        """Replay the alias's history: a promote pushes its version, a rollback pops back to its target."""
        stack: list[int] = []
        for entry in self.history(name):
            if entry.get("alias") != alias:
                continue
            to = int(entry["to"])
            if entry["event"] == ROLLBACK:
                if to in stack:  # back to where it was (its latest place): drop what came after
                    del stack[len(stack) - stack[::-1].index(to):]
                    continue
                if stack:  # an explicit version it never had: it replaces the one rolled back from
                    stack.pop()
            if not stack or stack[-1] != to:
                stack.append(to)
        return stack

    def _move_alias(self, name: str, alias: str, version: int, event: str, *, by: str | None = None,
                    record: Record | None = None) -> None:
        if version not in self.versions(name):
            self.version_of(name, version)  # raises with the known versions (or says it is archived)
        doc = self._alias_doc(name)
        entry = {"event": event, "alias": alias, "from": doc["aliases"].get(alias), "to": version, "at": _now(),
                 "by": by or _user()}
        doc["history"].append(entry)
        doc["aliases"][alias] = version
        with record({"name": name, **entry}) if record else nullcontext():  # its failure leaves the alias as it was
            _write_json_atomic(self.root / name / ALIASES, doc)

    def _record(self, name: str, entry: dict[str, Any]) -> None:
        doc = self._alias_doc(name)
        doc["history"].append({**entry, "at": _now(), "by": _user()})
        _write_json_atomic(self.root / name / ALIASES, doc)

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """One change of a model's aliases or versions at a time (two promotes, a promote and an archive)."""
        folder = self.root / name
        if not folder.is_dir():
            self.version_of(name, 0)  # raises: not registered, naming the models that are
        with (folder / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path


def _read_artifact(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelIntegrityError(f"artifact {path} does not exist") from None


def _tombstone(name: str, version: int, path: Path) -> Anchor:
    """The record of a deleted version that had no anchor: the folder as it was (a copy of it is refused)."""
    artifact, card = path / ARTIFACT, path / CARD
    return Anchor(name, version, sha256_of(artifact) if artifact.exists() else "-",
                  sha256_of(card) if card.exists() else "-", anchoring.ADOPTED, dt.datetime.now(dt.UTC), _user())


def _check_artifact(mv: ModelVersion, actual: str) -> None:
    """The artifact's bytes must have the anchor's sha256 (when anchored) and the card's."""
    anchor = mv.anchor
    expected = mv.card.get("sha256")
    if anchor is not None and actual != anchor.artifact_sha256:
        card = "" if actual == expected else f"; its model card says {expected}"
        raise ModelIntegrityError(
            f"model {mv.name} v{mv.version}: artifact {mv.artifact} has sha256 {actual}, but the artifact registered "
            f"on {anchor.registered_at} by {anchor.registered_by} had {anchor.artifact_sha256} ({mv.checked_in}){card}. "
            "Refusing to unpickle it: the file was changed after registration. Restore the version's folder from a "
            "copy you trust, or register the model again as a new version.")
    if actual != expected:
        raise ModelIntegrityError(
            f"model {mv.name} v{mv.version}: artifact {mv.artifact} has sha256 {actual}, "
            f"but its model card says {expected}. Refusing to unpickle it: the file was "
            "changed after registration. Re-register the model or restore the artifact.")


def _v(version: int | None) -> str:
    return "nothing" if version is None else f"v{version}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
