"""Per-video flow: one video through demux → detect → track → embed → cluster, and
audio → voice activity → diarize, then align its voices to its faces.

Each stage's result path is its cache key (tasks/workspace.py), so a re-run skips finished stages and a
killed run resumes from the last stage that completed. Bad input ends this video's run with a one-line
reason (a Failed state) and never touches the other videos of the library.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from prefect import flow
from prefect.states import Failed

from tasks.align import align_task
from tasks.cluster import cluster_task
from tasks.config import RunConfig
from tasks.demux import (
    FRAMES_INDEX,
    MediaError,
    audio_task,
    check_file,
    frames_task,
    load_media_info,
    probe_task,
    require_video,
)
from tasks.detect import detect_task
from tasks.diarize import cache_inputs as diarize_cache_inputs, diarize_task
from tasks.embed import embed_task
from tasks.formats import read_frames, to_jsonable
from tasks.records import VideoResult
from tasks.track import track_task
from tasks.vad import vad_task
from tasks.workspace import Workspace

AUDIO_STAGES = ["audio", "vad", "diarize"]


def sampling_interval(frames_index: Path, fps: float) -> float:
    """Seconds each sampled frame stands for: the median gap (keyframes are irregular), else 1/fps."""
    times = [f.t for f in read_frames(frames_index)]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(gaps) if gaps else 1.0 / fps


class NotFinished(Exception):
    """Raised in `finished_only` mode at the first stage whose result does not exist yet."""


def process_video(video: Path, name: str, ws: Workspace, cfg: RunConfig, finished_only: bool = False) -> VideoResult:
    """Run every stage of one video. With `finished_only`, compute nothing: return the result when every
    stage is already finished (no Prefect run needed), else raise NotFinished."""
    started = time.perf_counter()
    result = VideoResult(video=name, ok=True)

    def run(stage, *args, out: Path, **kwargs) -> Path:
        if finished_only and not out.exists():
            raise NotFinished(stage.__name__)
        t0 = time.perf_counter()
        path = stage(*args, out=out, **kwargs)
        result.stage_seconds[stage.__name__.removesuffix("_task")] = round(time.perf_counter() - t0, 3)
        return path

    check_file(video)  # before hashing: the content hash would block on a FIFO or fail on a dangling link
    k_probe = ws.root_key(video, "probe", "tasks.demux", {})
    probe_path = run(probe_task, video, out=ws.stage_path(k_probe, ".json"))
    info = load_media_info(probe_path, video)
    require_video(info)
    if info.vfr:
        result.notes.append("variable frame rate: frames are sampled by presentation time")

    demux_params = cfg.demux.model_dump(exclude={"sample_rate"})
    k_frames = k_probe.chain("frames", "tasks.demux", demux_params)
    frames_index = run(frames_task, video, probe_path, out=ws.stage_path(k_frames, "") / FRAMES_INDEX,
                               params=cfg.demux)
    k_detect = k_frames.chain("detect", "tasks.detect", cfg.detect.model_dump())
    boxes = run(detect_task, frames_index, out=ws.stage_path(k_detect, ".json"), params=cfg.detect)
    k_track = k_detect.chain("track", "tasks.track", cfg.track.model_dump())
    tracks = run(track_task, frames_index, boxes, out=ws.stage_path(k_track, ".json"), params=cfg.track)
    k_embed = k_track.chain("embed", "tasks.embed", cfg.embed.model_dump(exclude={"workers"}))
    embeddings = run(embed_task, frames_index, tracks, out=ws.stage_path(k_embed, ".npy"), params=cfg.embed)
    k_cluster = k_embed.chain("cluster", "tasks.cluster", cfg.cluster.model_dump())
    characters = run(cluster_task, tracks, embeddings, out=ws.stage_path(k_cluster, ".json"), params=cfg.cluster)

    turns = None
    k_voices = k_probe.chain("audio", "tasks.demux", cfg.demux.sample_rate)
    if info.audio is None:
        result.skipped_stages += AUDIO_STAGES
        result.notes.append("no audio stream: audio stages skipped")
    else:
        wav = run(audio_task, video, probe_path, out=ws.stage_path(k_voices, ".wav"), sample_rate=cfg.demux.sample_rate)
        k_voices = k_voices.chain("vad", "tasks.vad", cfg.vad.model_dump())
        speech = run(vad_task, wav, out=ws.stage_path(k_voices, ".json"), params=cfg.vad)
        k_voices = k_voices.chain("diarize", "tasks.diarize", diarize_cache_inputs(cfg.diarize))
        turns = run(diarize_task, wav, speech, out=ws.stage_path(k_voices, ".json"), params=cfg.diarize)

    interval = sampling_interval(frames_index, cfg.demux.fps)
    k_align = k_cluster.chain("align", "tasks.align", [k_voices.key, turns is not None, interval])
    evidence = run(align_task, turns, tracks, characters, out=ws.stage_path(k_align, ".json"), interval=interval)

    result.outputs = {"video": str(video), "probe": str(probe_path), "frames": str(frames_index), "tracks": str(tracks),
                      "embeddings": str(embeddings), "characters": str(characters), "evidence": str(evidence),
                      "turns": str(turns) if turns is not None else "",
                      "wav": str(wav) if turns is not None else "", "interval": str(interval)}
    result.seconds = round(time.perf_counter() - started, 3)
    return result


@flow(name="castline-video", flow_run_name="{name}", validate_parameters=False)
def video_flow(video: str, name: str, workspace: str, config: RunConfig) -> dict:
    """One video of a library; returns a VideoResult as a dict, or a Failed state with the reason."""
    try:
        return to_jsonable(process_video(Path(video), name, Workspace.open(workspace), config))
    except MediaError as e:
        return Failed(message=str(e))  # type: ignore[return-value]
