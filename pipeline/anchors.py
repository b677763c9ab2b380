"""Registration anchors: each model version's sha256s, kept in the registry database, not in the models folder.

The card beside an artifact says the artifact's sha256, but whoever can write the models folder
can rewrite both. The anchor (``scoring_model_registrations``, ``sql/006_model_registrations.sql``)
records, at registration, the sha256 of the artifact and of the card; a worker reads it before it
unpickles anything and refuses a version whose files differ from it.

The anchors of a models folder live in ONE database, the *registry database*: the connection named
by ``SCORING_REGISTRY_DB`` (default ``scoring_db``), read as ``AIRFLOW_CONN_<ID>`` or, in an Airflow
task, from Airflow's connections. Every job checks its models there, whatever database it writes
its predictions to.

A version with no anchor there (registered with no database, before anchoring existed, or put in
the folder by hand) is refused before it is unpickled, and so is every version when no registry
database is configured. ``SCORING_ALLOW_UNANCHORED=1`` (development only) loads it on its card's
sha256 alone, with a warning at each load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline import connections, settings
from pipeline.errors import ConfigError, ModelIntegrityError
from pipeline.model import Anchor, ModelVersion
from pipeline.store import engines, operational, sqlfiles

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
TABLE = "scoring_model_registrations"
DDL = "006_model_registrations.sql"
REGISTERED, ADOPTED = "registered", "adopted"
CONNECTION = "scoring_db"  # the registry database when SCORING_REGISTRY_DB names none


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory (what is hashed is what is unpickled or parsed)."""
    return hashlib.sha256(data).hexdigest()


class Anchors:
    """The registration records in one database (the registry database; ``connection``: its id, when known)."""

    def __init__(self, engine: Engine, connection: str | None = None) -> None:
        self.engine = engine
        self.connection = connection

    @property
    def where(self) -> str:
        return engines.describe(self.engine)

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
            unanchored(mv, f"is NOT anchored in the registry database {self.where} (no registration record there)")
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
        """Create the table if missing, with its comments: it is one of the ledger's (``operational.LEDGER_FILES``)."""
        operational.ensure_ledger(self.engine)

    def audit(self, conn: Connection, facts: dict[str, Any]) -> str:
        """One row of the model audit (``scoring_model_audit``: a promotion, rollback or refused promotion) in the
        caller's transaction; its id (``facts["id"]`` when given)."""
        row = {"id": uuid.uuid4().hex, "job_id": None, "figures": None, "reason": None, "run_id": None, **facts,
               "at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
        row["figures"] = None if row["figures"] is None else json.dumps(row["figures"], sort_keys=True, default=str)
        conn.execute(sa.text(sqlfiles.plain("store/audit.sql", "insert")), row)
        return row["id"]

    def recorder(self, facts: dict[str, Any]) -> Callable[[dict[str, Any]], AbstractContextManager[None]]:
        """The registry's audit hook of an alias's move (``registry.Record``): ``facts`` and the move's entry
        (from, to, by) as one audit row, written in a transaction around the move, which a failure rolls back."""

        @contextmanager
        def record(entry: dict[str, Any]) -> Iterator[None]:
            with engines.begin(self.engine) as conn:
                self.audit(conn, {**facts, "from_version": entry["from"], "to_version": entry["to"],
                                  "requested_by": entry["by"]})
                yield

        return record

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

    def mark_deleted(self, name: str, version: int, tombstone: Anchor | None = None) -> None:
        """Record that a version was deleted: its anchor is marked ``deleted_at`` and validates nothing any more
        (a folder that holds the version again is refused). A version with no anchor gets ``tombstone``, marked
        deleted, so that its number stays taken and its folder stays refused."""
        self.ensure()
        now = _naive(dt.datetime.now(dt.UTC))
        with engines.begin(self.engine) as conn:
            done = conn.execute(sa.text(f"UPDATE {TABLE} SET deleted_at = :t WHERE model_name = :n AND version = :v "
                                        "AND deleted_at IS NULL"), {"t": now, "n": name, "v": version}).rowcount
            known = conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE} WHERE model_name = :n AND version = :v"),
                                 {"n": name, "v": version}).scalar()
            if not done and not known and tombstone is not None:
                self.insert(conn, tombstone)
                conn.execute(sa.text(f"UPDATE {TABLE} SET deleted_at = :t WHERE model_name = :n AND version = :v"),
                             {"t": now, "n": name, "v": version})

    def last_version(self, name: str) -> int:
        """The highest version recorded for a model (0 when none)."""
        return max(self.of(name), default=0)


def registry(resolver: Any = None) -> Anchors | None:
    """The registry database's records: the ``SCORING_REGISTRY_DB`` connection (default ``scoring_db``), read as
    ``AIRFLOW_CONN_<ID>``, else through ``resolver`` (a task's Airflow connections), else, in an Airflow task,
    from Airflow's connections; None when it is not configured (every version is then refused)."""
    conn_id = settings.registry_connection()
    if os.environ.get(connections.env_var(conn_id)):
        return Anchors(engines.for_connection(conn_id), conn_id)
    resolver = resolver or _airflow_resolver()
    if resolver is None:
        return None
    try:
        url = engines.resolve_url(conn_id, resolver)
    except Exception as exc:  # noqa: BLE001 - not defined in Airflow either: not configured (said at the refusal)
        log.debug("registry database %r not found through Airflow: %s", conn_id, type(exc).__name__)
        return None
    return Anchors(engines.engine_for(url), conn_id)


def from_environment() -> Anchors | None:
    """The registry database's records (``registry()``), as a process without Airflow's connections sees it."""
    return registry()


def for_connection(conn_id: str | None) -> Anchors | None:
    """The records in a named connection (it must resolve), or the registry database's when none is named."""
    if not conn_id:
        return registry()
    return Anchors(engines.for_connection(conn_id), conn_id)


def _airflow_resolver() -> Any:
    """In an Airflow task (its SDK loaded by the DAG file), Airflow's connections; else None. Never imports Airflow."""
    sdk = sys.modules.get("airflow.sdk")
    if sdk is None or not hasattr(sdk, "BaseHook"):
        return None
    return lambda conn_id: connections.from_airflow(conn_id, sdk.BaseHook.get_connection(conn_id))


def not_configured() -> str:
    """What to set when no registry database is configured."""
    conn_id = settings.registry_connection()
    return (f"no registry database is configured: the connection {conn_id!r} ({settings.REGISTRY_DB}, default "
            f"scoring_db) is not set. Set {connections.env_var(conn_id)} (e.g. postgresql://user@host:5432/db) or "
            "create that Airflow connection, or pass --connection to `scoring models`")


def unanchored(mv: ModelVersion, why: str) -> None:
    """A version with no anchor: refused (ModelIntegrityError), unless ``SCORING_ALLOW_UNANCHORED=1`` (development
    only), which loads it with a warning, every time."""
    where = f"model {mv.name} v{mv.version} ({mv.path})"
    if settings.allow_unanchored():
        log.warning("UNVERIFIED MODEL: %s %s; loading it anyway because %s=1 (development only): it is checked "
                    "against its own card, which whoever can write %s can rewrite together with the artifact. "
                    "Anchor it: `scoring models anchor %s`", where, why, settings.ALLOW_UNANCHORED, mv.path.parent,
                    mv.name)
        return
    raise ModelIntegrityError(
        f"{where} {why}. Refusing to load it: nothing but its own card vouches for its files, and whoever can write "
        f"{mv.path.parent} can rewrite both. If you registered it and trust its files, adopt it into the registry "
        f"database (`scoring models anchor {mv.name} {mv.version}`), or register it again; "
        f"{settings.ALLOW_UNANCHORED}=1 loads it anyway, for development only.")


def require(store: Anchors | None, what: str) -> Anchors:
    """The registry database for a change that must be recorded there (register, delete), or ConfigError."""
    if store is None:
        raise ConfigError(f"{what}: {not_configured()}. Nothing was changed.")
    return store


def _naive(moment: Any) -> Any:
    """A UTC datetime as the pipeline binds them: naive (timestamptz reads it in the session's UTC)."""
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment
