"""`scripts/native_stack.py`'s online door, without the rest of the stack: its token file, and a door that cannot
start stopping `up` with its name, its log and the way round it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import script_module


def _native_stack():  # type: ignore[no-untyped-def]
    return script_module("native_stack")


def test_a_door_that_cannot_start_stops_up_with_its_log_and_keeps_its_token_private(tmp_path: Path) -> None:
    stack = _native_stack()
    home = tmp_path / "stack"
    home.mkdir(mode=0o700)
    (tmp_path / "jobs").mkdir()
    env = {**os.environ, "SCORING_JOBS_DIR": str(tmp_path / "jobs")}  # no job there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pids: list[dict] = []
    online = stack.start_serve(home, "churn_daily", "127.0.0.1", port, env, pids)
    tokens = home / "serve_tokens"
    assert online == {"job": "churn_daily", "port": port, "tokens_file": str(tokens)}
    assert tokens.stat().st_mode & 0o777 == 0o600 and (home / "scoring-serve.log").stat().st_mode & 0o777 == 0o600
    [token] = [line for line in tokens.read_text().splitlines() if not line.startswith("#")]
    assert len(token) >= 40
    with pytest.raises(SystemExit) as stopped:
        stack.wait_http(f"http://127.0.0.1:{port}/health/ready", 60, pids, home, "scoring serve churn_daily")
    assert str(stopped.value) == (f"scoring-serve exited during start-up: see its log, {home}/scoring-serve.log "
                                  "(--serve none starts no online door)")
    log = (home / "scoring-serve.log").read_text()
    assert "churn_daily" in log and token not in log
    assert not stack.alive(pids[0]["pid"])
    # a second start (a restarted stack) keeps the token its clients have (the file only: no second door here)
    stack.SCORING = "/bin/true"
    stack.start_serve(home, "churn_daily", "127.0.0.1", port, env, pids)
    assert [line for line in tokens.read_text().splitlines() if not line.startswith("#")] == [token]
