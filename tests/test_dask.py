"""The library flow on a local 2-worker Dask cluster gives the same outputs as the default runner."""
from __future__ import annotations

import shutil

import pytest
from cli import castline
from test_resume import load_kill_resume


@pytest.mark.slow
def test_dask_runner_matches_the_default_runner(tmp_path, sample_dir):
    lib = tmp_path / "library"
    lib.mkdir()
    for name in ("hamilton.mp4", "megamind.avi"):
        shutil.copy(sample_dir / name, lib / name)
    default = castline("run", str(lib), "--workspace", str(tmp_path / "threads"))
    dask = castline("run", str(lib), "--workspace", str(tmp_path / "dask"), "--runner", "dask")
    assert default.returncode == 0 and dask.returncode == 0, dask.stdout[-3000:] + dask.stderr[-3000:]
    assert "LocalCluster" in dask.stdout + dask.stderr  # the work really went through Dask
    # Every workspace file, cache included, equal up to the run-specific fields (scripts/kill_resume.py's rules).
    assert load_kill_resume().compare_workspaces(tmp_path / "threads", tmp_path / "dask") == {}


def test_the_per_video_task_pickles_for_a_dask_worker():
    # Dask ships the task's function by value with every global it names (the module attribute is the Prefect
    # task, not the function); a ContextVar among them made `--runner dask` fail before any video ran.
    import cloudpickle

    from flows.library import _process_video
    from flows.video import video_flow

    for fn in (_process_video.fn, video_flow.fn):
        assert cloudpickle.loads(cloudpickle.dumps(fn)).__name__ == fn.__name__
