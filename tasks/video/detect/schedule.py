"""The detector run over one video: which frames it sees (tasks/video/detect/stride.py) and in how many processes.

In: a frame store (frames.json + RGB JPEGs) and DetectParams. Out: the boxes of every frame, detected or, on the
still stretches between keyframes, interpolated. Frames go to `params.workers` processes (one torch thread each)
when there are enough of them: MTCNN's small convolutions barely use a second thread (60 sample frames on
2 cores: 95 ms a frame with 1 thread, 72 ms with 2, 56 ms in 2 processes of 1 thread each).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from tasks.core.config import DetectParams
from tasks.core.records import Box, Frame
from tasks.core.stage import Progress
from tasks.video.detect import (BodyDetectors, FaceDetector, frame_boxes, make_body_detectors, make_detector, read_rgb,
                                stride)

# Below this many frames per worker, starting worker processes costs more than they save.
MIN_FRAMES_PER_WORKER = 100
# Frames sent to a worker at a time: small enough for a smooth progress bar, large enough to amortise pickling.
FRAMES_PER_JOB = 16

_worker_detectors: dict[str, tuple[DetectParams, FaceDetector, BodyDetectors]] = {}


def _detect_job(job: tuple[str, str, list[Frame]]) -> list[list[Box]]:
    """In a worker process: the boxes of a few frames, with this process's detector for these parameters."""
    params_json, frames_dir, frames = job
    if params_json not in _worker_detectors:
        import torch

        torch.set_num_threads(1)  # the processes are the parallelism; more threads each would spin on each other
        params = DetectParams.model_validate_json(params_json)
        _worker_detectors[params_json] = (params, make_detector(params), make_body_detectors(params))
    params, detector, body = _worker_detectors[params_json]
    return [frame_boxes(read_rgb(Path(frames_dir) / f.file), f, params, detector, body) for f in frames]


def _boxes_per_frame(frames_dir: Path, frames: Sequence[Frame], params: DetectParams,
                     detector: FaceDetector | None) -> Iterator[list[Box]]:
    """Each frame's boxes, in order: in `params.workers` processes for a long CPU run with the configured
    detector, else here (a detector given by the caller, a GPU, or too few frames to be worth a process)."""
    from tasks.core import device

    if (detector is None and params.workers > 1 and device.torch_device().type == "cpu"
            and len(frames) >= 2 * MIN_FRAMES_PER_WORKER):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs = [(params.model_dump_json(), str(frames_dir), list(frames[k:k + FRAMES_PER_JOB]))
                for k in range(0, len(frames), FRAMES_PER_JOB)]
        # spawn, not fork: the parent runs Prefect's threads, which a forked child would inherit mid-lock.
        with ProcessPoolExecutor(params.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for boxes in pool.map(_detect_job, jobs):
                yield from boxes
        return
    detector = detector or make_detector(params)
    body = make_body_detectors(params)
    for frame in frames:
        yield frame_boxes(read_rgb(Path(frames_dir) / frame.file), frame, params, detector, body)


def detect_video(frames_dir: Path, frames: Sequence[Frame], params: DetectParams, progress: Progress = None,
                 detector: FaceDetector | None = None) -> list[Box]:
    """Every box of the video's consecutive sampled `frames`, in frame order. With `params.stride` > 1 the
    detector sees the keyframes first, then the frames of every stretch whose ends do not pair."""
    frames_dir = Path(frames_dir)
    found: dict[int, list[Box]] = {}

    def detect(positions: Sequence[int]) -> None:
        for pos, boxes in zip(positions, _boxes_per_frame(frames_dir, [frames[p] for p in positions], params,
                                                          detector)):
            found[pos] = boxes
            if progress is not None:
                progress(len(found), len(frames))

    if params.stride <= 1:
        detect(range(len(frames)))
    else:
        from tasks.video.track import histogram_distances

        cuts = [i for i, d in enumerate(histogram_distances(frames_dir, frames)) if d >= stride.CUT_DISTANCE]
        keys = stride.keyframes(len(frames), params.stride, cuts)
        detect(keys)
        todo = []
        for a, b in zip(keys, keys[1:]):
            pairs = stride.pair_ends(found[a], found[b])
            if pairs is None:
                todo.extend(range(a + 1, b))
                continue
            for pos in range(a + 1, b):
                found[pos] = stride.interpolate(pairs, frames[pos].index, frames[pos].t)
        detect(todo)
    return [box for pos in range(len(frames)) for box in found[pos]]
