"""The docs' block parser and the shell runner on made-up pages: what the coverage test relies on."""

from __future__ import annotations

from pathlib import Path

from tests.docs.blocks import parse, statements
from tests.docs.runner import run_blocks, user_env

PAGE = """# a page
<!-- docs-test: skip -->
```bash
echo no reason
```

<!-- docs-test: as=owner db=postgresql -->
```sql
SELECT 1;
```
<!-- docs-test: as=admin -->
```bash
x
```
<!--docs-test skip x-->
```bash
y
```
<!-- docs-test: skip the reason -->

```bash
z
```
- a list item

    ```bash title="indented"
    echo indented
    ```
````sql
SELECT '```';
````
```text
--8<-- "part.sql:two"
--8<-- "missing.sql"
```
<!-- byo:start -->
```python
# train.py
```
"""


def test_blocks_and_directives_are_read_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "part.sql").write_text("-- [start:two]\nSELECT 2;\n-- [end:two]\n")
    (tmp_path / "page.md").write_text(PAGE)
    blocks, problems = parse(tmp_path / "page.md", tmp_path)
    got = [(b.line, b.lang, b.skip, b.role, b.postgres_only, b.byo) for b in blocks]
    assert got == [(3, "bash", "", "reader", False, False), (8, "sql", None, "owner", True, False),
                   (12, "bash", None, "reader", False, False), (16, "bash", None, "reader", False, False),
                   (21, "bash", None, "reader", False, False), (26, "bash", None, "reader", False, False),
                   (29, "sql", None, "reader", False, False), (32, "text", None, "reader", False, False),
                   (37, "python", None, "reader", False, True)]
    assert blocks[0].where == "page.md:3" and "without a reason" in blocks[0].problems[0]
    assert "unknown docs-test option 'as=admin'" in blocks[2].problems[0]
    assert blocks[5].code == "echo indented\n" and blocks[6].code == "SELECT '```';\n"
    assert blocks[7].code == "SELECT 2;\n\n", "a snippet inside a fence is the text it includes"
    assert problems == [
        "page.md:15: malformed directive '<!--docs-test skip x-->' "
        "(write <!-- docs-test: skip REASON --> or <!-- docs-test: as=owner -->)",
        "page.md:19: a docs-test directive must be the line directly above an opening fence",
        "page.md:34: snippet 'missing.sql' not found",
        "page.md:36: <!-- byo:start --> without <!-- byo:end -->"]


def test_statements_split_on_semicolons_outside_strings_and_drop_comments() -> None:
    sql = "-- top\nSELECT ';' AS a; -- trailing\n\n-- only a comment;\nSELECT 2\n;\n-- end\n"
    assert statements(sql) == ["SELECT ';' AS a", "SELECT 2"]


def test_a_failing_block_is_named_by_file_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\nexport A=1\n```\n\ntext\n\n```bash\necho $A\ntrue\nfalse\necho never\n```\n")
    blocks, _ = parse(page, tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    out = run_blocks(blocks, checkout, user_env(checkout), tmp_path / "scripts", timeout=30)
    assert out.returncode == 1 and out.stdout == "1\n", "one shell per page: the export carries over"
    assert out.failed == "page.md:10 (line 3 of the block at page.md:7, exit 1)"
