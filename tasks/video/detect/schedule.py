"""The detector run over one video: which frames it sees (tasks/video/detect/stride.py) and in how many threads.

In: a frame store (frames.json + RGB JPEGs) and DetectParams. Out: the boxes of every frame, detected or, on the
still stretches between keyframes, interpolated. A long video's frames go to `params.threads` threads, each with
its own detector: torch and OpenCV release the GIL while they compute. Measured on 80 frames of 960x540 (2 cores,
MTCNN): 150 ms a frame on one thread, 100 ms with torch's 2 threads, 79-87 ms in 2 threads. Worker processes were
faster on small frames (56 against 72 ms) but each holds its own torch (~0.8 GB RSS): beside the diarizer that
took a 1 h run's process tree from 2.7 to 4.3 GB.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

from tasks.core.config import DetectParams
from tasks.core.records import Box, Frame
from tasks.core.stage import Progress
from tasks.video.detect import FaceDetector, frame_boxes, make_body_detectors, make_detector, read_rgb, stride

# Below this many frames per thread, a second detector's loading costs more than it saves.
MIN_FRAMES_PER_THREAD = 100
# Frames given to a thread at a time: small enough for a smooth progress bar, large enough to keep both busy.
FRAMES_PER_JOB = 8


def _boxes_per_frame(frames_dir: Path, frames: Sequence[Frame], params: DetectParams,
                     detector: FaceDetector | None) -> Iterator[list[Box]]:
    """Each frame's boxes, in order: in `params.threads` threads for a long CPU run with the configured
    detector, else here (a detector given by the caller, a GPU, or too few frames to be worth a second one)."""
    from tasks.core import device

    if detector is not None or params.threads < 2 or device.torch_device().type != "cpu" \
            or len(frames) < 2 * MIN_FRAMES_PER_THREAD:
        detector = detector or make_detector(params)
        body = make_body_detectors(params)
        for frame in frames:
            yield frame_boxes(read_rgb(Path(frames_dir) / frame.file), frame, params, detector, body)
        return
    own = threading.local()

    def job(chunk: Sequence[Frame]) -> list[list[Box]]:
        if not hasattr(own, "detector"):
            own.detector, own.body = make_detector(params), make_body_detectors(params)
        return [frame_boxes(read_rgb(Path(frames_dir) / f.file), f, params, own.detector, own.body) for f in chunk]

    chunks = [frames[k:k + FRAMES_PER_JOB] for k in range(0, len(frames), FRAMES_PER_JOB)]
    with ThreadPoolExecutor(params.threads, thread_name_prefix="detect") as pool:
        for boxes in pool.map(job, chunks):
            yield from boxes


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
