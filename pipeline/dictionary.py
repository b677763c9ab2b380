"""The data dictionary (``sql/dictionary.yaml``): every table, view and column we create, described once.

The store turns it into ``COMMENT ON`` statements (PostgreSQL) and ``scoring db dictionary``
into ``docs/data-dictionary.md``, so the database and the docs say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from pipeline import settings


@dataclass(frozen=True)
class DbObject:
    """A table or view with its description and its columns' descriptions."""

    kind: str  # table | view
    name: str
    description: str
    columns: dict[str, str]


@cache
def _load() -> dict[str, Any]:
    """``sql/dictionary.yaml``, parsed once a process (libyaml's parser where PyYAML has it: every run's
    first step reads it, and the pure-Python parser takes a tenth of a second)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((settings.sql_dir() / "dictionary.yaml").read_text(), Loader=loader)


def objects(group: str, table: str = "{table}", key: str = "{key}") -> list[DbObject]:
    """The objects of a group of sql/dictionary.yaml: ``analyst``, ``shadow`` and ``storage`` of a predictions table
    (names filled in), ``reader`` and ``jobs`` of an analysts' schema, or the ``operational`` tables."""
    out = []
    for name, entry in _load()[group].items():
        columns = {c.replace("{key}", key): text for c, text in entry["columns"].items()}
        out.append(DbObject(entry["kind"], name.replace("{table}", table), " ".join(entry["description"].split()),
                            columns))
    return out


def markdown() -> str:
    """The dictionary as Markdown (docs/data-dictionary.md)."""
    lines = ["# Data dictionary", "",
             "Generated from `sql/dictionary.yaml` by `scoring db dictionary --write docs/data-dictionary.md`;",
             "the same texts are the `COMMENT`s of the objects on PostgreSQL. `{table}` is a job's",
             "`output.table` (in the job's `output.schema` on PostgreSQL), `{key}` its `entity_key`.", ""]
    for group, title in (("analyst", "For analysts (the analysts' schema)"),
                         ("reader", "For analysts, of the operational tables (the analysts' schema)"),
                         ("shadow", "For analysts, with model.challengers (the analysts' schema)"),
                         ("verdicts", "For analysts, with model.split or model.challengers, once outcomes are "
                          "evaluated (the analysts' schema)"),
                         ("online", "For analysts, with the online door (the analysts' schema)"),
                         ("storage", "Storage of a predictions table (PostgreSQL: <schema>_partitions)"),
                         ("jobs", "The jobs of an analysts' schema (PostgreSQL: <schema>_partitions)"),
                         ("operational", "Operational (the connection's schema)")):
        lines += [f"## {title}", ""]
        for obj in objects(group):
            lines += [f"### `{obj.name}` ({obj.kind})", "", obj.description, "", "| column | meaning |", "|---|---|"]
            lines += [f"| `{c}` | {text} |" for c, text in obj.columns.items()]
            lines.append("")
    return "\n".join(lines)
