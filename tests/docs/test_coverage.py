"""Every ```bash and ```sql block of README.md and docs/**/*.md is run by a test or skipped with a reason.

The runners: tests/docs/test_sql_blocks.py (each sql block), tests/docs/test_bash_blocks.py (each
page's bash blocks in one shell) and tests/docs/test_byo.py (the walk-through between the byo
markers). Each takes its blocks from tests/docs/blocks.py; this module checks that together they
take every block exactly once, that each skip says why, and that no command hides in a fence the
runners do not read (no language, or ``sh``/``console``/``psql``... instead of ``bash``/``sql``).
Failures list ``file:line`` of the opening fence.
"""

from __future__ import annotations

from collections import Counter

from tests.docs.blocks import (
    ALIASES,
    ROOT,
    RUN,
    all_blocks,
    doc_files,
    file_problems,
    iter_runnable,
)


def test_the_docs_have_pages_and_blocks() -> None:
    assert ROOT / "README.md" in doc_files()
    assert any(b.lang in RUN for b in all_blocks()), "no bash or sql block found: is the parser broken?"


def test_every_bash_and_sql_block_is_run_or_skipped_with_a_reason() -> None:
    claimed = Counter(b.where for b in iter_runnable())
    twice = sorted(w for w, n in claimed.items() if n > 1)
    assert not twice, f"blocks taken by more than one runner: {twice}"
    unrun = [f"{b.where} ({b.lang}{', in the byo section' if b.byo else ''})" for b in all_blocks()
             if b.lang in RUN and b.skip is None and b.where not in claimed]
    assert not unrun, ("bash/sql blocks that no test runs; make them runnable or put "
                       "<!-- docs-test: skip REASON --> on the line directly above the fence:\n" + "\n".join(unrun))


def test_every_skip_says_why_and_every_directive_is_known() -> None:
    problems = [f"{b.where}: {p}" for b in all_blocks() for p in b.problems] + file_problems()
    assert not problems, "docs-test directives to fix:\n" + "\n".join(problems)


def test_commands_and_queries_are_fenced_as_bash_or_sql() -> None:
    aliases = [f"{b.where}: ```{b.lang} (write ```bash or ```sql, or ```text for output)" for b in all_blocks()
               if b.lang in ALIASES]
    bare = [f"{b.where}: a fence without a language (```text for output and diagrams)" for b in all_blocks()
            if not b.lang]
    assert not aliases + bare, "fences the runners do not read:\n" + "\n".join(aliases + bare)

