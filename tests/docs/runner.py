"""Run the docs' bash blocks: a scratch checkout, a user's clean environment, one shell per page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import ROOT, Block

# What a clone holds besides the package (installed editable in the shared .venv, so it runs from the repo).
CHECKOUT_DIRS = ("dags", "plugins", "scripts", "sql", "monitoring")
CHECKOUT_FILES = ("Makefile", "pyproject.toml", "docker-compose.yml", "Dockerfile", "mkdocs.yml", "requirements*")
# The Makefile re-installs .venv when these are newer than .venv/.installed: the copies are made
# old, so a `make` in the scratch copy never installs into the shared .venv.
MAKE_PREREQUISITES = ("pyproject.toml", "requirements*")
OLD = 946684800  # 2000-01-01
USER_ENV_DROPPED = ("SCORING_", "AIRFLOW_", "PYTEST_", "PG", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                    "PYTHONPATH")
FAILED_AT = re.compile(r"^docs-test: exit (\d+) at line (\d+) of block (\S+)$", re.M)


def fresh_checkout(dest: Path) -> Path:
    """A scratch copy of what a fresh clone has (no models, data or databases), with links to the shared
    .venv and to the package it runs."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT_DIRS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for pattern in CHECKOUT_FILES:
        for path in ROOT.glob(pattern):
            if path.is_file():
                shutil.copy2(path, dest / path.name)
    for pattern in MAKE_PREREQUISITES:
        for path in dest.glob(pattern):
            os.utime(path, (OLD, OLD))
    (dest / "models").mkdir(exist_ok=True)
    if (ROOT / "models" / "README.md").exists():
        shutil.copy2(ROOT / "models" / "README.md", dest / "models" / "README.md")
    (dest / ".venv").symlink_to(ROOT / ".venv")
    (dest / "pipeline").symlink_to(ROOT / "pipeline")  # the package .venv runs (installed editable), to read
    return dest


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's shell in the checkout ``home``: none of this process's SCORING_*, AIRFLOW_*, PG* or make
    variables, .venv/bin first on PATH, SCORING_HOME at the checkout (what it defaults to in a clone), and a
    HOME of its own next to it (an ``airflow`` run without AIRFLOW_HOME writes ~/airflow)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(USER_ENV_DROPPED)}
    (home.parent / "user-home").mkdir(exist_ok=True)
    env["HOME"] = str(home.parent / "user-home")
    env["PATH"] = f"{home / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["SCORING_HOME"] = str(home)
    env.update(extra)
    return env


@dataclass(frozen=True)
class ShellResult:
    """What one page's shell did; ``failed`` names the block (and line) that stopped it."""

    returncode: int
    stdout: str
    stderr: str
    failed: str | None

    def report(self, tail: int = 4000) -> str:
        """The failing block's location and the ends of both streams, for an assertion message."""
        where = f"failed at {self.failed}" if self.failed else f"exit {self.returncode}"
        return f"{where}\n--- stdout (tail)\n{self.stdout[-tail:]}\n--- stderr (tail)\n{self.stderr[-tail:]}"


def run_blocks(blocks: list[Block], cwd: Path, env: dict[str, str], scripts: Path, timeout: float = 600,
               prelude: str = "") -> ShellResult:
    """Run ``blocks`` in order in one ``bash -Eeuo pipefail`` shell, each sourced from its own file so
    that a failure names its Markdown file and line."""
    scripts.mkdir(parents=True, exist_ok=True)
    lines = ["set -Eeuo pipefail",
             "trap 'echo \"docs-test: exit $? at line $LINENO of block $__docs_block\" >&2' ERR",
             prelude]
    for n, block in enumerate(blocks):
        path = scripts / f"{n:03d}.sh"
        path.write_text(block.code)
        lines += [f"__docs_block='{block.where}'", f"echo 'docs-test: running {block.where}' >&2",
                  f"source '{path}'"]
    try:
        out = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        started = re.findall(r"^docs-test: running (\S+)$", stderr, flags=re.M)
        return ShellResult(-1, stdout, stderr, f"{started[-1] if started else '?'} (timed out after {timeout:.0f} s)")
    failed = None
    if out.returncode != 0:
        hit = FAILED_AT.search(out.stderr)
        if hit:
            path, fence = hit[3].rsplit(":", 1)
            failed = f"{path}:{int(fence) + int(hit[2])} (line {hit[2]} of the block at {hit[3]}, exit {hit[1]})"
        else:
            started = re.findall(r"^docs-test: running (\S+)$", out.stderr, flags=re.M)
            failed = f"the block at {started[-1]}" if started else None
    return ShellResult(out.returncode, out.stdout, out.stderr, failed)
