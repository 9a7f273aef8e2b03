"""A run killed with SIGKILL mid-way resumes to the same outputs as an uninterrupted run.

One implementation: scripts/kill_resume.py (run, kill, resume, compare every file); this test runs its
`main` with one kill. `python scripts/kill_resume.py` runs the issue's ten.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", REPO / "scripts" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_matches_uninterrupted(tmp_path):
    summary_path = tmp_path / "summary.json"
    rc = load_kill_resume().main(["--kills", "1", "--seed", "0", "--root", str(tmp_path / "work"),
                                  "--json", str(summary_path)])
    summary = json.loads(summary_path.read_text())
    rows = summary["rows"]
    assert (summary["passed"], summary["failed"]) == (1, 0), json.dumps(rows, indent=1)
    assert rows[0]["kills"][0]["moment_s"] is not None  # it was killed, not finished first
    assert rc == 0
