"""Per-video flow: one video through demux → detect → track → embed → cluster, and
audio → diarize, then align its voices to its faces.

Each stage's result path is its cache key (tasks/video/pipeline.py), so a re-run skips finished stages and a
killed run resumes from the last stage that completed. Bad input ends this video's run with a one-line
reason (a Failed state) and never touches the other videos of the library.
"""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.states import Failed

from tasks.video.align import align_task, sampling_interval
from tasks.video.cluster import cluster_task
from tasks.core.config import RunConfig
from tasks.video.demux import MediaError, audio_task, check_file, frames_task, load_media_info, probe_task, require_video
from tasks.video.detect import detect_task
from tasks.video.diarize import diarize_task
from tasks.video.embed import embed_task
from tasks.core.errors import ModelUnavailable
from tasks.core.formats import to_jsonable
from tasks.video.pipeline import STAGES, StageKeys
from tasks.core.records import VideoResult
from tasks.video.track import track_task
from tasks.core.workspace import Workspace

AUDIO_STAGES = ["audio", "diarize"]


class NotFinished(Exception):
    """Raised in `finished_only` mode at the first stage whose result does not exist yet."""


def process_video(video: Path, name: str, ws: Workspace, cfg: RunConfig, finished_only: bool = False) -> VideoResult:
    """Run every stage of one video. With `finished_only`, compute nothing: return the result when every
    stage is already finished (no Prefect run needed), else raise NotFinished."""
    started = time.perf_counter()
    result = VideoResult(video=name, ok=True)
    paths: dict[str, Path | None] = dict.fromkeys(AUDIO_STAGES)  # skipped: align is then given no turns

    def run(stage: str, task, *args, **kwargs) -> Path:
        """The stage's task on `args` then the results of the stages it reads (tasks/video/pipeline.py), into the
        path its key names."""
        out = STAGES[stage].result(ws, keys[stage])
        if finished_only and not out.exists():
            raise NotFinished(stage)
        t0 = time.perf_counter()
        paths[stage] = task(*args, *(paths[u] for u in STAGES[stage].upstream), out=out, **kwargs)
        result.stage_seconds[stage] = round(time.perf_counter() - t0, 3)
        return paths[stage]

    check_file(video)  # before hashing: the content hash would block on a FIFO or fail on a dangling link
    keys = StageKeys(ws.video_id(video), cfg)
    info = load_media_info(run("probe", probe_task, video), video)
    require_video(info)
    if info.vfr:
        result.notes.append("variable frame rate: frames are sampled by presentation time")

    run("frames", frames_task, video, params=cfg.demux)
    run("detect", detect_task, params=cfg.detect)
    run("track", track_task, params=cfg.track)
    run("embed", embed_task, params=cfg.embed)
    run("cluster", cluster_task, params=cfg.cluster)
    if info.audio is None:
        keys.skip(AUDIO_STAGES)
        result.skipped_stages += AUDIO_STAGES
        result.notes.append("no audio stream: audio stages skipped")
    else:
        run("audio", audio_task, video, sample_rate=cfg.demux.sample_rate)
        run("diarize", diarize_task, params=cfg.diarize, label=name)
    interval = sampling_interval(paths["frames"], cfg.demux.fps)
    run("align", align_task, interval=interval)

    result.outputs = {"video": str(video), "probe": str(paths["probe"]), "frames": str(paths["frames"]),
                      "tracks": str(paths["track"]), "embeddings": str(paths["embed"]),
                      "characters": str(paths["cluster"]), "evidence": str(paths["align"]),
                      "turns": str(paths["diarize"] or ""), "wav": str(paths["audio"] or ""), "interval": str(interval)}
    result.seconds = round(time.perf_counter() - started, 3)
    return result


@flow(name="castline-video", flow_run_name="{name}", validate_parameters=False)
def video_flow(video: str, name: str, workspace: str, config: RunConfig) -> dict:
    """One video of a library; returns a VideoResult as a dict, or a Failed state with the reason."""
    try:
        return to_jsonable(process_video(Path(video), name, Workspace.open(workspace), config))
    except (MediaError, ModelUnavailable) as e:
        return Failed(message=str(e))  # type: ignore[return-value]
