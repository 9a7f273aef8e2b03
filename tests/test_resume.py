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


def test_two_runs_reports_compare_equal_up_to_their_finished_and_wall_time_rows(tmp_path):
    """report.html's header rows of the run itself are left out of the comparison, as report.md's wall time;
    any other row that differs is a difference."""
    compare = load_kill_resume().compare_file
    page = "<dl>\n<dt>workspace</dt><dd>{ws}</dd>\n<dt>finished</dt><dd>{t}</dd>\n<dt>wall time</dt><dd>{s}</dd>\n" \
           "<dt>videos</dt><dd>{n} of 2 processed</dd>\n</dl>\n"
    a, b, c = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    a.write_text(page.format(ws="/w/a", t="2026-12-01 08:03:00 UTC", s="12.5 s", n=2))
    b.write_text(page.format(ws="/w/b", t="2026-12-01 09:14:27 UTC", s="40.1 s", n=2))
    c.write_text(page.format(ws="/w/b", t="2026-12-01 08:03:00 UTC", s="12.5 s", n=1))
    assert compare("library/report.html", a, "/w/a", b, "/w/b") is None
    assert compare("library/report.html", a, "/w/a", c, "/w/b") is not None
    assert compare("library/other.html", a, "/w/a", b, "/w/b") is not None  # only the report's rows are run-specific


def test_two_runs_published_ledgers_compare_equal_when_they_hold_the_same_artifact_keys(tmp_path):
    """published.json's digests hash Markdown that names the workspace, and its ids are the server's: two runs
    differ in every value; a key published by one run only is a difference."""
    compare = load_kill_resume().compare_file
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps({"lib-v-found": {"digest": "f2a1", "id": "1"}, "lib-v-report": {"digest": "0b", "id": "2"}}))
    b.write_text(json.dumps({"lib-v-found": {"digest": "5f97", "id": "8"}, "lib-v-report": {"digest": "9c", "id": "9"}}))
    c.write_text(json.dumps({"lib-v-found": {"digest": "f2a1", "id": "1"}}))
    assert compare("library/published.json", a, "/w/a", b, "/w/b") is None
    assert compare("library/published.json", a, "/w/a", c, "/w/b") == "keys ['lib-v-report'] in one only"
