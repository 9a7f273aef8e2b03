"""The library run's progress artifact moves per stage: counted across threads, reaching the videos' flows through
their copied context, and never failing a video when the API does not take an update."""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import pytest

from conftest import latest_artifact_data
from flows import progress
from flows.artifacts import artifact_page, library_key
from flows.progress import StageProgress, tracking
from tasks.video.pipeline import STAGES


def test_progress_grows_with_each_stage_of_videos_run_in_parallel_and_ends_at_100():
    shown = []
    p = StageProgress(videos=3, stages=len(STAGES), reused=1, publish=shown.append)
    assert shown == [pytest.approx(100 / 3)]  # the reused video counts whole from the start
    with ThreadPoolExecutor(2) as pool:
        for video in ("a.mp4", "b.mp4"):
            pool.submit(lambda v: [p.stage_finished(v, s) for s in STAGES], video)
    p.stage_finished("a.mp4", "probe")  # said twice: counted once
    assert len(shown) == 1 + 2 * len(STAGES) + 1 and shown == sorted(shown) and shown[-1] == pytest.approx(100)
    assert len(set(shown[:-1])) == len(shown) - 1  # each stage moved it
    p.video_finished("a.mp4")
    p.video_finished("b.mp4")
    assert shown[-1] == pytest.approx(100)


def test_a_video_that_ends_early_counts_whole():
    shown = []
    p = StageProgress(videos=2, stages=len(STAGES), reused=0, publish=shown.append)
    p.stage_finished("silent.mp4", "probe")
    p.video_finished("silent.mp4")  # its audio stages skipped, or failed after probe
    assert shown == [0, pytest.approx(100 / (2 * len(STAGES))), pytest.approx(50)]


def test_stages_reach_the_tracker_through_a_copied_context_only():
    shown = []
    p = StageProgress(videos=1, stages=len(STAGES), reused=0, publish=shown.append)
    progress.stage_finished("a.mp4", "probe")  # no run tracks it: nothing happens
    with tracking(p), ThreadPoolExecutor(1) as pool:
        pool.submit(copy_context().run, progress.stage_finished, "a.mp4", "probe").result()
    progress.stage_finished("a.mp4", "frames")
    assert shown == [0, pytest.approx(100 / len(STAGES))]


def test_an_update_the_api_refuses_does_not_fail_the_stage(caplog):
    def refuse(percent):
        raise RuntimeError("no Prefect API")

    p = StageProgress(videos=1, stages=len(STAGES), reused=0, publish=refuse)
    p.stage_finished("a.mp4", "probe")
    assert "progress artifact not updated: no Prefect API" in caplog.text


def test_a_library_run_moves_its_progress_artifact_per_stage(media_dir, tmp_path, monkeypatch):
    """A 3 s clip without sound (7 of the 9 stages): the artifact is updated after each stage, then at the end."""
    import prefect.artifacts

    from flows.library import library_flow
    from tasks.core.config import RunConfig

    sent = []
    update = prefect.artifacts.update_progress_artifact
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact",
                        lambda artifact, percent: sent.append(percent) or update(artifact, percent))
    lib = tmp_path / "library"
    lib.mkdir()
    shutil.copy(media_dir / "video_only.mp4", lib / "video_only.mp4")
    state = library_flow(str(lib), str(tmp_path / "ws"), RunConfig(), return_state=True)
    assert state.is_completed()
    ran = len(STAGES) - 2
    assert sent == [pytest.approx(100 * n / len(STAGES)) for n in range(1, ran + 1)] + [pytest.approx(100)]
    # The clip's cartoon faces get a face sheet beside its timeline.
    assert (tmp_path / "ws" / "videos" / "video_only.mp4" / "faces.jpg").stat().st_size > 0
    # A re-run that changes nothing leaves the video's artifacts as the first run published them.
    ledger = tmp_path / "ws" / "library" / "published.json"
    first = json.loads(ledger.read_text())
    assert len(first) == 4  # found table, timeline, faces, report link
    assert library_flow(str(lib), str(tmp_path / "ws"), RunConfig(), return_state=True).is_completed()
    assert json.loads(ledger.read_text()) == first
    # ... and the second run's summary still leads to each of those versions.
    summary = latest_artifact_data(library_key(str(lib), "summary"))
    assert all(f"]({artifact_page(entry['id'])})" in summary for entry in first.values()), summary
