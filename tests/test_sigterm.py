"""SIGTERM (a scheduler's time limit, ``kill``) stops a run like Ctrl-C: the pool's worker processes go with it
instead of training on orphaned, and the exit code says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_terminates_the_workers_and_exits_143(tmp_path: Path) -> None:
    over = ["--set", "adam_steps=1000000", "--set", "n_train=16", "--set", "width=2", "--set", "depths=2,3",
            "--set", "n=4", "--set", "c9_inputs=1", "--set", "workers=2", "--set", "record_every=0"]  # fmt: skip
    cmd = [sys.executable, "-m", "freqlens.cli", "reproduce", "cbn-depth", "--quick", "--no-progress",
           "--out", str(tmp_path), *over]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(tmp_path.glob("cbn-depth/stages/*/*")):
            time.sleep(0.5)  # the workers have started training (their stage folders exist)
        time.sleep(2.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and "terminated" in err
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "worker processes outlived the terminated run"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
