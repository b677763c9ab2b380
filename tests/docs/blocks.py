"""The fenced blocks of README.md and docs/**/*.md, with the docs-test directive written above each.

A directive is an HTML comment on the line directly above an opening fence:

- ``<!-- docs-test: skip REASON -->``: the block is not run (REASON must say why);
- ``<!-- docs-test: as=owner -->``: a ``sql`` block runs as the pipeline's own user, who owns the
  operational tables (the default is ``as=reader``: the analysts' read-only role);
- ``<!-- docs-test: db=postgresql -->``: a ``sql`` block that is PostgreSQL's own SQL on purpose
  (it is not also run on SQLite); may be combined with ``as=owner``.

The bring-your-own-model walk-through is the part of one page between ``<!-- byo:start -->`` and
``<!-- byo:end -->``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import sqlparse

ROOT = Path(__file__).resolve().parents[2]
RUN = ("bash", "sql")  # the languages that are executed
ALIASES = {"sh", "shell", "console", "zsh", "shell-session", "shellsession", "bash-session", "psql",
           "postgres", "postgresql", "pgsql", "plpgsql", "sqlite", "sqlite3"}  # must be written bash or sql
BYO_START, BYO_END = "<!-- byo:start -->", "<!-- byo:end -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test\s*:(?P<body>.*?)-->\s*$")
LOOKS_LIKE_DIRECTIVE = re.compile(r"<!--\s*docs[-_ ]?tests?\b", re.I)
SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<file>[^"]+)"\s*$')  # pymdownx.snippets, base_path "."


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and text, and what its directive asks."""

    path: Path  # relative to ROOT
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason; "" when the skip gave none
    role: str = "reader"  # sql: "reader" or "owner"
    postgres_only: bool = False
    byo: bool = False
    problems: tuple[str, ...] = field(default=())  # malformed directive, unknown option...

    @property
    def where(self) -> str:
        """``file:line`` of the opening fence, for messages and test ids."""
        return f"{self.path}:{self.line}"

    @property
    def runs(self) -> bool:
        """Executed by a test: a bash or sql block without a skip."""
        return self.lang in RUN and self.skip is None


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def _directive(text: str) -> tuple[str | None, str, bool, list[str]]:
    """(skip reason, role, postgres_only, problems) of one directive's body."""
    skip: str | None = None
    role, postgres_only, problems = "reader", False, []
    body = text.strip()
    if body == "skip" or body.startswith("skip "):
        skip = body[4:].strip()
        if not skip:
            problems.append("`skip` without a reason: write <!-- docs-test: skip WHY -->")
        return skip, role, postgres_only, problems
    for option in body.split():
        if option in ("as=reader", "as=owner"):
            role = option[3:]
        elif option in ("db=postgresql", "db=postgres"):
            postgres_only = True
        else:
            problems.append(f"unknown docs-test option {option!r} (known: skip REASON, as=owner, as=reader, "
                            "db=postgresql)")
    if not body:
        problems.append("empty docs-test directive")
    return skip, role, postgres_only, problems


def _snippet(spec: str, root: Path) -> str | None:
    """The text a ``--8<-- "file"`` or ``--8<-- "file:section"`` line inside a fence stands for; None if
    the file or the section is missing."""
    name, _, section = spec.partition(":")
    if not (root / name).is_file():
        return None
    text = (root / name).read_text()
    if not section:
        return text.rstrip("\n")
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if f"[start:{section}]" in ln), None)
    last = next((i for i, ln in enumerate(lines) if f"[end:{section}]" in ln and i > (first or 0)), None)
    return None if first is None or last is None else "\n".join(lines[first + 1:last])


def parse(path: Path, root: Path = ROOT) -> tuple[list[Block], list[str]]:
    """The fenced blocks of one Markdown file and the problems found outside them (stray directives,
    unbalanced byo markers), each problem starting with ``file:line``."""
    rel = path.relative_to(root)
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    in_byo: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = FENCE.match(line)
        if opening is None:
            stripped = line.strip()
            if stripped == BYO_START:
                if in_byo is not None:
                    problems.append(f"{rel}:{i + 1}: a second {BYO_START} before {BYO_END}")
                in_byo = i + 1
            elif stripped == BYO_END:
                if in_byo is None:
                    problems.append(f"{rel}:{i + 1}: {BYO_END} without {BYO_START}")
                in_byo = None
            elif LOOKS_LIKE_DIRECTIVE.search(line):
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if not DIRECTIVE.match(line):
                    problems.append(f"{rel}:{i + 1}: malformed directive {stripped!r} "
                                    "(write <!-- docs-test: skip REASON --> or <!-- docs-test: as=owner -->)")
                elif not FENCE.match(nxt):
                    problems.append(f"{rel}:{i + 1}: a docs-test directive must be the line directly above "
                                    "an opening fence")
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        lang = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            text = lines[j]
            text = text[len(indent):] if text.startswith(indent) else text.lstrip()
            snippet = SNIPPET.match(text)
            if snippet:
                included = _snippet(snippet["file"], root)
                if included is None:
                    problems.append(f"{rel}:{j + 1}: snippet {snippet['file']!r} not found")
                text = included or ""
            body.append(text)
            j += 1
        skip, role, postgres_only, issues = None, "reader", False, []
        above = DIRECTIVE.match(lines[i - 1]) if i > 0 else None
        if above:
            skip, role, postgres_only, issues = _directive(above["body"])
            if lang not in RUN:
                issues.append(f"a docs-test directive above a {lang or 'plain'} block, which is never run")
            elif lang == "bash" and (role != "reader" or postgres_only):
                issues.append("as=/db= apply to sql blocks only")
        blocks.append(Block(rel, i + 1, lang, "\n".join(body) + "\n", skip, role, postgres_only,
                            in_byo is not None, tuple(issues)))
        i = j + 1
    if in_byo is not None:
        problems.append(f"{rel}:{in_byo}: {BYO_START} without {BYO_END}")
    return blocks, problems


@cache
def _all(root: Path = ROOT) -> tuple[tuple[Block, ...], tuple[str, ...]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in doc_files(root):
        b, p = parse(path, root)
        blocks += b
        problems += p
    return tuple(blocks), tuple(problems)


def all_blocks() -> list[Block]:
    """Every fenced block of the docs, page by page, in order."""
    return list(_all()[0])


def file_problems() -> list[str]:
    """Problems outside the blocks: stray or malformed directives, unbalanced byo markers."""
    return list(_all()[1])


def byo_blocks() -> list[Block]:
    """The bring-your-own-model walk-through's blocks (bash and python), in order."""
    return [b for b in all_blocks() if b.byo and b.lang in ("bash", "python") and b.skip is None]


def sql_blocks() -> list[Block]:
    """The sql blocks the SQL runner executes."""
    return [b for b in all_blocks() if b.lang == "sql" and b.runs and not b.byo]


def bash_pages() -> dict[Path, list[Block]]:
    """The bash blocks the shell runner executes, grouped by page, in page order."""
    pages: dict[Path, list[Block]] = {}
    for b in all_blocks():
        if b.lang == "bash" and b.runs and not b.byo:
            pages.setdefault(b.path, []).append(b)
    return pages


def statements(sql: str) -> list[str]:
    """A block's statements: split on ``;`` (sqlparse, so a ``;`` in a string stays), ``--`` comments off."""
    out = []
    for statement in sqlparse.split(sql):
        text = sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip()
        if text:
            out.append(text)
    return out


def iter_runnable() -> Iterator[Block]:
    """Every block a runner claims (the SQL runner, the shell runner, the walk-through)."""
    yield from sql_blocks()
    for page in bash_pages().values():
        yield from page
    yield from byo_blocks()


if __name__ == "__main__":  # python -m tests.docs.blocks: which test runs each block, or why none does
    for b in all_blocks():
        if b.lang in RUN or b.byo:
            what = (f"skip: {b.skip}" if b.skip is not None else "test_byo" if b.byo
                    else f"test_sql_blocks as {b.role}{' (PostgreSQL only)' if b.postgres_only else ''}"
                    if b.lang == "sql" else "test_bash_blocks")
            print(f"{b.where}\t{b.lang}\t{what}")
