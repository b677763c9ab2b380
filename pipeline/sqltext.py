"""The text of a SQL source's query: its placeholders, its comments, the rules it must follow.

Pure text (``sqlparse``), below the job file's validation (``pipeline.config`` checks a query
when it loads the job) and the source that runs it (``pipeline.sources.sql``).
"""

from __future__ import annotations

import sqlparse
from sqlparse import tokens

PARAMETER = ":partition_date"


def _placeholders(query: str) -> list[tuple[int, str]]:
    """(offset, text) of every ``:name`` placeholder of ``query`` outside strings, comments and casts."""
    found, offset = [], 0
    for statement in sqlparse.parse(query):
        for token in statement.flatten():
            if token.ttype is tokens.Name.Placeholder and token.value.startswith(":"):
                found.append((offset, token.value))
            offset += len(token.value)
    return found


def clean(query: str) -> str:
    """A query without its comments and final semicolon, as the pipeline wraps and sends it (a ``-- note`` at
    its end would swallow what a wrapper adds after it)."""
    return sqlparse.format(query, strip_comments=True).strip().rstrip(";").strip()


def check_query(query: str, what: str, *, need_date: bool) -> None:
    """A query binds ``:partition_date`` and no other parameter, and is one statement."""
    statements = [s for s in sqlparse.split(clean(query)) if s.strip().rstrip(";").strip()]
    if len(statements) != 1:
        raise ValueError(f"{what} must be one SQL statement (found {len(statements)})")
    names = {name for _, name in _placeholders(query)}
    unknown = sorted(names - {PARAMETER})
    if unknown:
        raise ValueError(f"{what} uses parameter(s) {', '.join(unknown)}: only {PARAMETER} is bound (the "
                         "partition's date)")
    if need_date and PARAMETER not in names:
        raise ValueError(f"{what} must filter on {PARAMETER} (the partition's date), e.g. WHERE day = "
                         f"{PARAMETER}: without it every partition would read the same rows")
