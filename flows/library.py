"""Library flow: every video of a folder through the per-video flow, a few at a time, then the
library-level steps (combined timeline, run summary, Markdown report).

One video failing never stops the others; the flow returns a summary whose `failed` list says which
and why — in a Failed state ("2 of 3 videos failed") when any did — and the CLI turns that into a
non-zero exit.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, tags
from prefect.futures import as_completed
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows import display
from flows.logs import keep_expected_errors_short
from flows.progress import StageProgress, progress_artifact, tracking
from flows.video import NotFinished, process_video, video_flow
from flows.published import PUBLISHED_JSON, publish_changed
from flows.video_artifacts import video_artifacts
from tasks.video.demux import MediaError
from tasks.core.errors import ModelUnavailable
from flows.artifacts import library_key, publish_run_artifacts
from tasks.library.character_outputs import character_outputs_task
from tasks.core.config import RunConfig
from tasks.video.detect import resolve_backend
from tasks.video.pipeline import STAGES
from tasks.library.identities import identities_task
from tasks.library.run import (  # noqa: F401  (default_workspace, list_videos, video_name: also the flow's API)
    default_workspace,
    failure_message,
    gallery_folder,
    list_videos,
    no_videos_message,
    video_name,
    write_library_timeline,
    write_reports,
    write_summary,
)
from tasks.library import finish_key
from tasks.library.timeline import timeline_files, timelines_task
from tasks.library.view import NAMES_JSON
from tasks.core.formats import to_jsonable, video_result_from_json
from tasks.core.records import VideoResult
from tasks.library.speaker_table import speaker_table_task
from tasks.core.stage import always_task
from tasks.core.workspace import Workspace, active_run, remove_partials

keep_expected_errors_short((MediaError, ModelUnavailable))


@always_task("process-video")
def _process_video(video: str, name: str, workspace: str, config: RunConfig):
    """The subflow's VideoResult, or its Failed state: a wrapper that ended Completed would hide the failure."""
    state = video_flow(video, name, workspace, config, return_state=True)
    if state.is_completed():
        return state.result()
    return Failed(message=state.message or state.name)


# One task run per video, named after it in the Prefect UI.
process_video_task = _process_video.with_options(task_run_name="process-video · {name}")


def with_runner(runner: str, dask_address: str | None = None):
    """The library flow on the chosen task runner: threads in this process (default), or a Dask cluster —
    the one at `dask_address`, else a local one with a worker per video run at a time (1 thread each)."""
    if runner == "threads":
        return library_flow
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return library_flow.with_options(task_runner=DaskTaskRunner(address=dask_address))
    return library_flow.with_options(task_runner=DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True}))


def library_tag(library: str | Path) -> str:
    """The tag every run of a library carries in the Prefect UI (the library run, its subflows, their tasks)."""
    return f"library:{Path(library).resolve().name}"


def library_run_name() -> str:
    """`library sample · 2026-12-01 08:03`: what the run is, and when it started (local time)."""
    from prefect.runtime import flow_run

    library = flow_run.parameters.get("library") or ""
    return f"library {Path(library).resolve().name} · {datetime.now():%Y-%m-%d %H:%M}"


def _set_torch_threads(parallel: int) -> None:
    """Videos run in threads of one process: share the cores instead of oversubscribing them.
    torch reads OMP_NUM_THREADS when first imported, so a run whose stages are all finished never
    pays for importing it."""
    n = max(1, (os.cpu_count() or 1) // parallel)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


@flow(name="castline-library", flow_run_name=library_run_name, task_runner=ThreadPoolTaskRunner(max_workers=64),
      validate_parameters=True)
def library_flow(library: str, workspace: str | None = None, config: RunConfig = RunConfig()) -> dict | State:
    """Process every video of LIBRARY into WORKSPACE (default LIBRARY/.castline). Returns the run summary,
    as the data of a Failed state when any video failed."""
    logger = get_run_logger()
    started = time.perf_counter()
    lib = Path(library).resolve()
    ws = Workspace.open(workspace or default_workspace(lib))
    with active_run(ws.root) as alone, tags(library_tag(lib)):
        if alone:
            cleaned = remove_partials(ws.root)
            if cleaned:
                logger.info("removed %d unfinished result(s) left by an interrupted run", cleaned)
        else:
            logger.info("another run is active in this workspace: its unfinished results are left alone")
        return _run_library(lib, ws, config, logger, started)


def _run_library(lib: Path, ws: Workspace, config: RunConfig, logger, started: float) -> dict | State:
    # Resolved once per run, so every video uses the same detector even if a training run finishes mid-way.
    detect, why = resolve_backend(config.detect, ws.root)
    config = config.model_copy(update={"detect": detect})
    logger.info("face detector: %s %s (%s)", detect.backend, detect.yolo_weights or "", why)
    try:
        gallery = gallery_folder(lib, config)
    except ValueError as e:  # before any video: its names would be missing from every output
        logger.error(str(e))
        return Failed(message=str(e))
    videos = list_videos(lib, ws.root)
    if not videos:  # e.g. an unmounted drive: leave the last run's report and timelines alone
        logger.warning(no_videos_message(lib))
        return Failed(message=no_videos_message(lib))
    logger.info("%d video(s) in %s; workspace %s; %d at a time", len(videos), lib, ws.root, config.parallel)
    results: dict[str, VideoResult] = {}
    pending: deque[Path] = deque()
    for v in videos:
        try:
            results[video_name(lib, v)] = process_video(v, video_name(lib, v), ws, config, finished_only=True)
            logger.info("%s: reused (every stage finished in an earlier run)", video_name(lib, v))
        except (NotFinished, MediaError, ModelUnavailable, OSError):  # the subflow runs it, or reports why not
            pending.append(v)
    # One video left to run gets all the cores, not a share meant for `parallel` videos.
    _set_torch_threads(min(config.parallel, max(1, len(pending))))
    running: dict = {}  # future -> video name
    progress = StageProgress(len(videos), len(STAGES), len(results),
                             progress_artifact(library_key(lib, "progress"), "stages of the videos finished"))
    display.set_total(len(videos), len(results))
    with tracking(progress):  # around the submits: each video's thread copies this context
        while pending or running:
            while pending and len(running) < config.parallel:
                v = pending.popleft()
                name = video_name(lib, v)
                display.video_started(name)
                running[process_video_task.submit(str(v), name, str(ws.root), config)] = name
            finished = next(as_completed(list(running)))
            name = running.pop(finished)
            finished.wait()  # the future's state is its final one only once waited for
            state = finished.state
            r = (video_result_from_json(finished.result()) if state.is_completed()
                 else VideoResult(video=name, ok=False, error=state.message or state.name))
            results[r.video] = r
            if r.ok:
                logger.info("%s: done in %.1f s", r.video, r.seconds)
            else:
                logger.error("%s: FAILED: %s", r.video, r.error)
            display.video_finished(r.video, r.ok)
            progress.video_finished(r.video)

    ordered = [results[video_name(lib, v)] for v in videos]
    done = [r for r in ordered if r.ok]
    if done and finish_key.finished(ws, done, finish_key.finish_key(ws, ordered, config, gallery)):
        logger.info("library steps reused: nothing they read changed since the last run")
        names_path, report = ws.library_dir / NAMES_JSON, ws.library_dir / "report.md"
        for r in done:
            r.outputs = replace(r.outputs, timeline=timeline_files(ws, r.video))
    else:
        names_path = identities_task(str(ws.root), {r.video: r.outputs for r in done}, config, gallery)
        with_timelines = timelines_task(str(ws.root), {r.video: r.outputs for r in done}, names_path)
        for r in done:
            r.outputs = with_timelines[r.video]
        character_outputs_task(str(ws.root), {r.video: r.outputs for r in done}, names_path)
        speaker_table_task(str(ws.root), names_path)
        write_library_timeline(ws, done)
        report = write_reports(lib, ws, ordered, names_path if done else None, time.perf_counter() - started,
                               detector=f"{detect.backend} {detect.yolo_weights or ''} ({why})", config=config)
        if done:  # after every file is written, with the registries as the steps left them
            finish_key.mark_finished(ws, finish_key.finish_key(ws, ordered, config, gallery))
    seconds = time.perf_counter() - started
    artifacts = {r.video: video_artifacts(str(lib), r, ws.library_dir / "report.html") for r in done}
    per_video = [a for video in artifacts.values() for a in video.values()]
    published, ids = publish_changed(per_video, ws.library_dir / PUBLISHED_JSON)
    logger.info("per-video artifacts: %d published, %d unchanged since an earlier run",
                published, len(per_video) - published)
    links = {video: [(shows, ids[a.key]) for shows, a in arts.items()] for video, arts in artifacts.items()}
    publish_run_artifacts(str(lib), ordered, report, (published, len(per_video) - published), links)
    summary = write_summary(lib, ws, ordered, seconds, report, detect, why)
    message = failure_message(ordered)
    # Failed with the summary as its data: the UI shows the partial failure, the CLI still reads the summary.
    return Failed(message=message, data=to_jsonable(summary)) if message else to_jsonable(summary)
