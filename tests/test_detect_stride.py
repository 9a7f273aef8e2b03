"""Detecting every k-th frame: which frames the detector sees, the boxes drawn between, and that a moving or
appearing face makes the detector see every frame of its stretch; the detector threads change nothing."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core import formats
from tasks.core.config import DetectParams
from tasks.core.records import Box, Frame
from tasks.video.detect import stride
from tasks.video.detect.schedule import detect_video


def box(frame, x, label="face", score=0.99, t=None):
    return Box(frame=frame, t=float(frame if t is None else t), x1=x, y1=10.0, x2=x + 40.0, y2=50.0, score=score,
               label=label)


def test_keyframes_cover_each_shots_ends_and_every_kth_frame():
    assert stride.keyframes(10, 3, []) == [0, 3, 6, 9]
    # a shot starting at 5: frames 4 and 5 are keys, and counting restarts there
    assert stride.keyframes(10, 3, [5]) == [0, 3, 4, 5, 8, 9]
    assert stride.keyframes(10, 1, []) == list(range(10))
    assert stride.keyframes(0, 3, []) == []


def test_ends_pair_one_to_one_by_kind_and_overlap():
    assert stride.pair_ends([box(0, 0)], [box(3, 5)]) == [(box(0, 0), box(3, 5))]
    assert stride.pair_ends([box(0, 0)], [box(3, 5), box(3, 200)]) is None  # a face appeared
    assert stride.pair_ends([box(0, 0)], [box(3, 100)]) is None  # it moved too far to draw in between
    assert stride.pair_ends([box(0, 0)], [box(3, 5, label="head")]) is None
    assert stride.pair_ends([], []) == []


def test_interpolated_boxes_lie_between_the_ends_and_say_so():
    (mid,) = stride.interpolate([(box(0, 0, score=0.95), box(2, 20, score=0.99))], frame=1, t=1.0)
    assert (mid.frame, mid.t, mid.x1, mid.x2, mid.score, mid.interpolated) == (1, 1.0, 10.0, 50.0, 0.95, True)
    assert not box(0, 0).interpolated


def _store(tmp_path: Path, squares: list[int | None]) -> list[Frame]:
    """One JPEG per entry: a bright square at that x (None: no square) on a grey frame."""
    frames = []
    for i, x in enumerate(squares):
        image = np.full((120, 320, 3), 90, np.uint8)
        if x is not None:
            image[20:80, x:x + 60] = 250
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), image)
        frames.append(Frame(index=i, t=float(i), file=f"{i:06d}.jpg"))
    formats.write_frames(tmp_path / "frames.json", frames)
    return frames


class SquareDetector:
    """Finds the bright square; counts the frames it is shown."""

    name = "square"

    def __init__(self):
        self.seen = 0

    def detect(self, image):
        self.seen += 1
        ys, xs = np.nonzero(image[..., 0] > 200)
        return [] if len(xs) == 0 else [(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1),
                                         0.99)]


def test_still_stretches_are_drawn_and_changes_detected(tmp_path):
    # frames 0-6 still, the square leaves at 7 and comes back far away at 9
    squares = [100, 100, 101, 102, 102, 103, 103, None, None, 240, 240, 240, 240]
    frames = _store(tmp_path, squares)
    params = DetectParams(stride=3, min_face=8, min_score=0.5, threads=1)
    detector = SquareDetector()
    boxes = detect_video(tmp_path, frames, params, detector=detector)
    full = detect_video(tmp_path, frames, params.model_copy(update={"stride": 1}), detector=SquareDetector())
    assert detector.seen < len(frames)
    assert [b.frame for b in boxes] == [b.frame for b in full]  # a box on each frame with a square, none elsewhere
    for b, f in zip(boxes, full):
        assert abs(b.x1 - f.x1) <= 2 and abs(b.x2 - f.x2) <= 2
    assert any(b.interpolated for b in boxes)
    assert not any(b.interpolated for b in boxes if b.frame in (6, 7, 8, 9))  # around the change: detected


def test_a_shot_cut_ends_a_stretch(tmp_path):
    # frames 2-4 are another shot (blue: the cut test reads hue and saturation) with the square in the same
    # place: never drawn across the cuts
    frames = _store(tmp_path, [100] * 7)
    for i in (2, 3, 4):
        image = np.full((120, 320, 3), (200, 60, 30), np.uint8)
        image[20:80, 100:160] = 250
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), image)
    boxes = detect_video(tmp_path, frames, DetectParams(stride=6, min_face=8, min_score=0.5, threads=1),
                         detector=SquareDetector())
    assert {b.frame for b in boxes if not b.interpolated} >= {0, 1, 2, 4, 5, 6}


def test_detector_threads_give_the_same_boxes(montage_store, monkeypatch):
    from tasks.video.detect import schedule

    monkeypatch.setattr(schedule, "MIN_FRAMES_PER_THREAD", 2)
    monkeypatch.setattr(schedule, "FRAMES_PER_JOB", 2)
    frames = formats.read_frames(montage_store)[:8]
    params = DetectParams(backend="mtcnn", stride=1)
    alone = detect_video(montage_store.parent, frames, params.model_copy(update={"threads": 1}))
    assert alone
    assert detect_video(montage_store.parent, frames, params.model_copy(update={"threads": 2})) == alone


@pytest.mark.parametrize("k", [0, 31])
def test_stride_is_bounded(k):
    with pytest.raises(ValueError):
        DetectParams(stride=k)
