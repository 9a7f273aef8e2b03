"""Per-video flow: one video through demux → detect → track → embed → cluster, and beside it
audio → diarize, then align its voices to its faces. An audio file (tasks/video/demux.py is_audio_file) runs
the audio branch only; a video without sound, the video branch only.

Each stage's result path is its cache key (tasks/video/pipeline.py), so a re-run skips finished stages and a
killed run resumes from the last stage that completed. Bad input ends this video's run with a one-line
reason (a Failed state) and never touches the other videos of the library.
"""
from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from prefect import flow
from prefect.states import Failed

from flows import display, progress
from tasks.core import device
from tasks.video.align import align_task, sampling_interval
from tasks.video.cluster import cluster_task
from tasks.core.config import RunConfig
from tasks.video.demux import (
    MediaError,
    audio_task,
    check_file,
    frames_task,
    is_audio_file,
    load_media_info,
    probe_task,
    require_audio,
    require_video,
)
from tasks.video.detect import detect_task
from tasks.video.diarize import diarize_task
from tasks.video.embed import embed_task
from tasks.core.errors import ModelUnavailable
from tasks.core.model_loading import import_model_libraries
from tasks.core.formats import to_jsonable
from tasks.video.pipeline import AUDIO_STAGES, STAGES, VIDEO_STAGES, StageKeys, no_video_results
from tasks.core.records import VideoOutputs, VideoResult
from tasks.core.stage import video_named
from tasks.video.track import track_task
from tasks.core.workspace import Workspace



class NotFinished(Exception):
    """Raised in `finished_only` mode at the first stage whose result does not exist yet."""


def both_branches(video_branch: Callable[[], None], audio_branch: Callable[[], None], at_once: bool) -> None:
    """The audio branch beside the video branch (a thread in Prefect's run context, so its tasks belong to this
    flow run), or one after the other. The video branch's error comes first: its stages never wait on the
    audio's, and a missing voice model fails the video only once its faces are done. Each stage still writes
    its result whole or not at all, so a kill during both leaves what either had finished."""
    if not at_once:
        video_branch()
        audio_branch()
        return
    import torch

    # torch's thread count is process-wide: two branches each with all of this video's threads spin-wait on
    # each other. bench/branch_threads_benchmark.py (60 frames of MTCNN beside 300 s of diarization, 2 cores):
    # one after the other 22.5 s, at once with 2 threads each 25.2 s, at once with 1 each 18.8 s. The video's
    # share comes back when the audio branch ends, usually long before the video branch does.
    share = torch.get_num_threads()
    torch.set_num_threads(max(1, share // 2))

    def audio_then_restore() -> None:
        try:
            audio_branch()
        finally:
            torch.set_num_threads(share)

    with ThreadPoolExecutor(1, thread_name_prefix="audio-branch") as pool:
        audio = pool.submit(contextvars.copy_context().run, audio_then_restore)
        video_branch()  # on an error too, the block is left only once the audio branch is done
    audio.result()


def process_video(video: Path, name: str, ws: Workspace, cfg: RunConfig, finished_only: bool = False) -> VideoResult:
    """Run every stage of one video. With `finished_only`, compute nothing: return the result when every
    stage is already finished (no Prefect run needed), else raise NotFinished."""
    started = time.perf_counter()
    device.use(cfg.device)  # this process's models (a Dask worker's too) load where the run says
    result = VideoResult(video=name, ok=True)
    paths: dict[str, Path | None] = dict.fromkeys(AUDIO_STAGES)  # skipped: align is then given no turns

    def run(stage: str, task, *args, **kwargs) -> Path:
        """The stage's task on `args` then the results of the stages it reads (tasks/video/pipeline.py), into the
        path its key names."""
        out = STAGES[stage].result(ws, keys[stage])
        if finished_only and not out.exists():
            raise NotFinished(stage)
        if not finished_only:
            display.stage_started(name, stage)
        t0 = time.perf_counter()
        paths[stage] = task(*args, *(paths[u] for u in STAGES[stage].upstream), out=out, **kwargs)
        result.stage_seconds[stage] = round(time.perf_counter() - t0, 3)
        if not finished_only:
            progress.stage_finished(name, stage)
        return paths[stage]

    check_file(video)  # before hashing: the content hash would block on a FIFO or fail on a dangling link
    keys = StageKeys(ws.video_id(video), cfg)
    info = load_media_info(run("probe", probe_task, video), video)
    audio_file = is_audio_file(video)
    if audio_file:
        require_audio(info)
    else:
        require_video(info)
    if info.vfr and not audio_file:
        result.notes.append("variable frame rate: frames are sampled by presentation time")

    def video_branch() -> None:
        run("frames", frames_task, video, params=cfg.demux)
        run("detect", detect_task, params=cfg.detect)
        run("track", track_task, params=cfg.track)
        run("embed", embed_task, params=cfg.embed)
        run("cluster", cluster_task, params=cfg.cluster)

    def audio_branch() -> None:
        run("audio", audio_task, video, sample_rate=cfg.demux.sample_rate)
        run("diarize", diarize_task, params=cfg.diarize, label=name)

    if not finished_only:  # in turn with the other videos' threads, before this video's branches start
        import_model_libraries(cfg, video=not audio_file, audio=info.audio is not None)
    if audio_file:  # the mirror of a silent video: voices only, the video stages stand for "nobody seen"
        keys.skip(VIDEO_STAGES)
        result.skipped_stages += list(VIDEO_STAGES)
        result.notes.append("audio file: video stages skipped (voices only)")
        paths.update(no_video_results(ws))
        audio_branch()
    elif info.audio is None:
        keys.skip(AUDIO_STAGES)
        result.skipped_stages += list(AUDIO_STAGES)
        result.notes.append("no audio stream: audio stages skipped")
        video_branch()
    else:
        both_branches(video_branch, audio_branch, at_once=not finished_only)
    interval = sampling_interval(paths["frames"], cfg.demux.fps)
    run("align", align_task, interval=interval)

    result.outputs = VideoOutputs(video=video, probe=paths["probe"], frames=paths["frames"], tracks=paths["track"],
                                  embeddings=paths["embed"], characters=paths["cluster"], evidence=paths["align"],
                                  turns=paths["diarize"], wav=paths["audio"], interval=interval)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


@flow(name="castline-video", flow_run_name="video · {name}", validate_parameters=False)
def video_flow(video: str, name: str, workspace: str, config: RunConfig) -> dict:
    """One video of a library; returns a VideoResult as a dict, or a Failed state with the reason."""
    with video_named(name):  # its stages' task runs and progress bars carry the video's name
        try:
            return to_jsonable(process_video(Path(video), name, Workspace.open(workspace), config))
        except (MediaError, ModelUnavailable) as e:
            return Failed(message=str(e))  # type: ignore[return-value]
