"""A run killed with SIGKILL mid-way resumes to the same outputs as an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def start_run(library: Path, ws: Path) -> subprocess.Popen:
    # Its own session, so SIGKILL reaches the whole group: the CLI and Prefect's temporary server.
    return subprocess.Popen([sys.executable, "-m", "flows", "run", str(library), "--workspace", str(ws)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def outputs(ws: Path) -> dict[str, object]:
    """Everything a user reads, with the run-specific parts (paths, times) left out."""
    out: dict[str, object] = {}
    for p in sorted((ws / "videos").rglob("*")):
        if p.suffix in (".json", ".csv", ".rttm"):
            out[str(p.relative_to(ws))] = json.loads(p.read_text()) if p.suffix == ".json" else p.read_text()
    out["library/timeline.csv"] = (ws / "library" / "timeline.csv").read_text()
    return out


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, sample_dir):
    library = tmp_path / "library"
    library.mkdir()
    for name in ("hamilton.mp4", "megamind.avi", "montage_dev00.mp4"):
        shutil.copy(sample_dir / name, library / name)

    clean = tmp_path / "clean"
    assert start_run(library, clean).wait(timeout=900) == 0

    killed = tmp_path / "killed"
    proc = start_run(library, killed)
    deadline = time.time() + 600
    # Kill once some, but not all, stage results exist: frames decoded, embeddings not all done.
    while time.time() < deadline and not list((killed / "cache" / "detect").rglob("*.json")):
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "library" / "last_run.json").exists()

    assert start_run(library, killed).wait(timeout=900) == 0
    assert not list(killed.rglob("*.partial"))
    assert outputs(killed) == outputs(clean)
