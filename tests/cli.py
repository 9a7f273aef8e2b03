"""The castline command line as the tests run it: `python -m flows ARGS` in a child process, from the repository.

A wide terminal, so help text is not wrapped mid-word; the repository on PYTHONPATH, so a test run from another
folder still runs this checkout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def castline(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)
