"""Registration anchors: each model version's sha256s, kept in the scoring database, not in the models folder.

The card beside an artifact says the artifact's sha256, but whoever can write the models folder
can rewrite both. The anchor (``scoring_model_registrations``, ``sql/006_model_registrations.sql``)
records, at registration, the sha256 of the artifact and of the card; a worker reads it before it
unpickles anything and refuses a version whose files differ from it.

A model is *anchored* in a database once it has a record there (registered with the database
configured, or adopted with ``scoring models anchor``): from then on every version of it must have
its record and match it. A model with no record at all (registered before anchoring existed, or
with no database configured) loads on its card's sha256 alone, with a warning naming the command
that anchors it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.errors import ModelIntegrityError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from pipeline.registry import ModelVersion

log = logging.getLogger(__name__)
TABLE = "scoring_model_registrations"
DDL = "006_model_registrations.sql"
REGISTERED, ADOPTED = "registered", "adopted"
CONNECTION = "scoring_db"  # the registry's database when none is named: the jobs' default output connection


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory (what is hashed is what is unpickled or parsed)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """One version's registration record."""

    model_name: str
    version: int
    artifact_sha256: str
    card_sha256: str
    origin: str
    registered_at: Any
    registered_by: str
    deleted_at: Any = None


class Anchors:
    """The registration records in one database (the scoring database: the run ledger's)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def where(self) -> str:
        from pipeline import store

        return store.describe(self.engine)

    # -- reading (workers: SELECT only, never DDL) ---------------------------------------
    def of(self, name: str) -> dict[int, Anchor]:
        """Every record of a model, by version (none when the table does not exist yet)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE):
                return {}
            rows = conn.execute(sa.text(
                f"SELECT model_name, version, artifact_sha256, card_sha256, origin, registered_at, registered_by, "
                f"deleted_at FROM {TABLE} WHERE model_name = :n"), {"n": name}).all()
        return {int(r[1]): Anchor(r[0], int(r[1]), *r[2:]) for r in rows}

    def check(self, mv: ModelVersion) -> Anchor | None:
        """The version's record after checking its card against it; None when the model has no record here."""
        found = self.of(mv.name)
        if not found:
            log.warning("model %s v%s is NOT anchored in %s: it is checked against its own card only, which "
                        "whoever can write %s can rewrite. Anchor it: `scoring models anchor %s`", mv.name,
                        mv.version, self.where, mv.path.parent, mv.name)
            return None
        anchor = found.get(mv.version)
        if anchor is None:
            raise ModelIntegrityError(
                f"model {mv.name} v{mv.version} ({mv.path}) has no registration record in {self.where}, although "
                f"the model's versions {', '.join(f'v{v}' for v in sorted(found))} have one: it was not registered "
                "into this database, or its folder was put there by hand. Refusing to load it. Register the model "
                f"again (`scoring models register {mv.name} ...`); or, if it was registered into another database "
                f"and you checked its files, adopt it: `scoring models anchor {mv.name} {mv.version}`.")
        if anchor.deleted_at is not None:
            raise ModelIntegrityError(
                f"model {mv.name} v{mv.version} was deleted on {anchor.deleted_at} (recorded in {self.where}), but "
                f"a folder {mv.path} holds it again. Refusing to load it: a deleted version's number is never "
                "reused. Remove that folder and register a new version.")
        if mv.card_sha256 != anchor.card_sha256:
            raise ModelIntegrityError(
                f"model {mv.name} v{mv.version}: its card {mv.path / 'card.json'} has sha256 {mv.card_sha256}, but "
                f"the card registered on {anchor.registered_at} by {anchor.registered_by} had {anchor.card_sha256} "
                f"({self.where}, {TABLE}). Refusing to load it: the card was changed after registration. Restore "
                f"the version's folder from a copy you trust (then `scoring models verify {mv.name} {mv.version}`), "
                "or register the model again as a new version.")
        return anchor

    # -- writing (registration) ----------------------------------------------------------
    def ensure(self) -> None:
        """Create the table if missing, with its comments: it is one of the ledger's (``store.LEDGER_FILES``)."""
        from pipeline import store

        store.ensure_ledger(self.engine)

    def insert(self, conn: Connection, anchor: Anchor) -> None:
        """Write one record in the caller's transaction; a version recorded already is refused."""
        try:  # the caller's transaction rolls back with the error
            conn.execute(sa.text(
                f"INSERT INTO {TABLE} (model_name, version, artifact_sha256, card_sha256, origin, registered_at, "
                "registered_by) VALUES (:n, :v, :a, :c, :o, :t, :b)"),
                {"n": anchor.model_name, "v": anchor.version, "a": anchor.artifact_sha256,
                 "c": anchor.card_sha256, "o": anchor.origin, "t": _naive(anchor.registered_at),
                 "b": anchor.registered_by})
        except sa.exc.IntegrityError:
            raise ModelIntegrityError(
                f"model {anchor.model_name} v{anchor.version} has a registration record in {self.where} already "
                "(another registration took that number, or the database was used with another models folder). "
                "Nothing was registered; register again to get the next number.") from None

    def mark_deleted(self, name: str, version: int) -> None:
        """Record that a version was deleted (a folder that holds it again is refused)."""
        from pipeline import store

        with store.begin(self.engine) as conn:
            if sa.inspect(conn).has_table(TABLE):
                conn.execute(sa.text(f"UPDATE {TABLE} SET deleted_at = :t WHERE model_name = :n AND version = :v "
                                     "AND deleted_at IS NULL"),
                             {"t": _naive(dt.datetime.now(dt.UTC)), "n": name, "v": version})

    def last_version(self, name: str) -> int:
        """The highest version recorded for a model (0 when none)."""
        return max(self.of(name), default=0)


def from_environment() -> Anchors | None:
    """The records in the ``scoring_db`` connection when its ``AIRFLOW_CONN_*`` variable is set, else None."""
    from pipeline import connections, store

    if not os.environ.get(connections.env_var(CONNECTION)):
        return None
    return Anchors(store.engine_for(store.resolve_url(CONNECTION)))


def for_connection(conn_id: str | None) -> Anchors | None:
    """The records in a named connection (it must resolve), or ``from_environment()`` when none is named."""
    from pipeline import store

    if not conn_id:
        return from_environment()
    return Anchors(store.engine_for(store.resolve_url(conn_id)))


def _naive(moment: Any) -> Any:
    """A UTC datetime as the pipeline binds them: naive (timestamptz reads it in the session's UTC)."""
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment
