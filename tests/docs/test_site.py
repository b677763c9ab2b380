"""The README stays short and timeless, the site builds in strict mode (and a broken link fails it), and the
performance page's figures are the bench's own: those of benchmarks/latest.json, the floor the faster predict."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docs.hooks import bench  # the hook's own formatting: the tests check what it put on the page
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# an issue number ("issue 23", "#23", "issues 4 and 5"), a day's word, or this machine instead of a measurement's file
TIMELESS = re.compile(r"\bissues? #?\d|(?<![\w&/`])#\d{1,4}\b|\btoday\b|\bthis VM\b", re.I)


def test_the_readme_is_a_front_page_of_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move the detail into a page of docs/"
    text = "\n".join(lines)
    for needed in ("make demo", "make test", "docs/"):
        assert needed in text, needed


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_names_an_issue_a_day_or_this_machine(page: Path) -> None:
    found = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}" for n, line in enumerate(page.read_text().splitlines(), 1)
             if TIMELESS.search(line)]
    assert not found, "say it without an issue number, a day or the machine:\n" + "\n".join(found)


def _site(tmp_path: Path) -> Path:
    """A copy of what the build reads (docs/, mkdocs.yml) beside links to the files its hooks render."""
    site = tmp_path / "src"
    site.mkdir()
    shutil.copytree(ROOT / "docs", site / "docs")
    shutil.copy(ROOT / "mkdocs.yml", site / "mkdocs.yml")
    for name in ("README.md", "benchmarks", "pipeline"):
        (site / name).symlink_to(ROOT / name)
    return site


def _build(site: Path) -> subprocess.CompletedProcess:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    return subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site / "site")], cwd=site,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))


@pytest.mark.slow
def test_the_site_builds_strictly_and_a_link_to_a_missing_page_fails_it(tmp_path: Path) -> None:
    site = _site(tmp_path)
    built = _build(site)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    page = (site / "site" / "performance" / "index.html").read_text()
    latest = json.loads((ROOT / "benchmarks" / "latest.json").read_text())
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    for rows, ratio in latest["e2e_vs_floor_by_rows"].items():
        assert f"{bench.rows_label(rows)}: {bench.num(ratio)}" in text, (rows, ratio)
    for key in ("e2e_vs_naive", "rerun_persist_vs_first"):
        assert f"{bench.num(latest[key])}" in text, key
    assert bench.date_of(latest) in text and latest["machine"] in text

    index = site / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    broken = _build(site)
    assert broken.returncode != 0, "a link to a missing page must fail the strict build"
    assert "no-such-page.md" in broken.stdout + broken.stderr


def test_the_performance_floor_is_the_faster_predict_of_the_latest_bench() -> None:
    latest = json.loads((ROOT / "benchmarks" / "latest.json").read_text())
    whole, batched = latest.get("floor_predict_whole_s"), latest.get("floor_predict_batched_s")
    assert whole is not None and batched is not None, "make bench writes both predict measurements"
    assert latest["floor_predict_s"] == min(whole, batched)
    assert latest["floor_predict_kind"] == ("whole" if whole <= batched else "batched")
    assert "load_avg_before" in latest and "machine_busy" in latest
