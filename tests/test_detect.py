"""Face detection: every backend finds real faces on real sampled frames; filtering and the stage wrapper."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core import formats
from tasks.core.records import iou
from tasks.core.config import DetectParams
from tasks.video.detect import (
    DlibHOGDetector,
    HaarDetector,
    MTCNNDetector,
    clean_detections,
    detect_faces,
    detect_task,
    make_detector,
    read_rgb,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
GT = REPO / "data" / "ground_truth" / "montage"


def ground_truth_faces(second: int) -> list[list[float]]:
    """Face boxes of the montage frame in the middle of the sampled second (photos drift only a few px)."""
    frames = json.loads((GT / "montage_dev00.json").read_text())["frames"]
    return [v["face_box"] for v in frames[10 * second + 5]["visible"]]


@pytest.mark.parametrize("backend", ["mtcnn", "dlib-hog", "haar"])
def test_backend_finds_both_ground_truth_faces(backend, montage_store):
    second = 5  # Obama speaking, Rose Leslie listening: two faces on screen
    truth = ground_truth_faces(second)
    assert len(truth) == 2
    image = read_rgb(montage_store.parent / formats.read_frames(montage_store)[second].file)
    found = make_detector(DetectParams(backend=backend)).detect(image)
    assert all(0.0 <= d[4] <= 1.0 for d in found)
    for face in truth:
        assert max((iou(d, face) for d in found), default=0.0) > 0.3, (backend, face, found)


def test_mtcnn_finds_the_speaker_on_stage(hamilton_store):
    # Seconds 4-7 of hamilton are close shots of Lin-Manuel Miranda speaking on stage.
    frames = formats.read_frames(hamilton_store)[4:8]
    boxes = detect_faces(hamilton_store.parent, frames, DetectParams(backend="mtcnn"))
    assert {b.frame for b in boxes} == {f.index for f in frames}
    for b in boxes:
        assert b.label == "face" and b.score >= DetectParams().min_score
        assert b.t == frames[b.frame - 4].t
        assert min(b.x2 - b.x1, b.y2 - b.y1) >= DetectParams().min_face


def test_blank_frame_has_no_face():
    blank = np.full((240, 320, 3), 127, dtype=np.uint8)
    for detector in (MTCNNDetector(), DlibHOGDetector(), HaarDetector()):
        assert detector.detect(blank) == []


class _FakeDetector:
    name = "fake"

    def __init__(self, detections):
        self.detections = detections

    def detect(self, image_rgb):
        return list(self.detections)


def test_clean_detections_clips_then_filters():
    kept = clean_detections(
        [(-10, -5, 50, 60, 0.99),   # clipped to (0, 0, 50, 60): kept
         (300, 200, 340, 260, 0.99),  # clipped to 20 px wide: too small once clipped
         (10, 10, 60, 60, 0.5),     # unsure
         (10, 10, 20, 20, 0.99)],   # small
        width=320, height=240, min_face=32, min_score=0.9)
    assert kept == [(0.0, 0.0, 50, 60, 0.99)]


def test_detect_task_writes_boxes_once(tmp_path, montage_store):
    store = tmp_path / "store"
    store.mkdir()
    frames = formats.read_frames(montage_store)[:2]
    for f in frames:
        (store / f.file).write_bytes((montage_store.parent / f.file).read_bytes())
    index = formats.write_frames(store / "frames.json", frames)
    out = tmp_path / "boxes.json"
    params = DetectParams(backend="haar")
    assert detect_task.fn(index, out=out, params=params) == out
    data = formats.read_json(out)
    assert data["detector"] == "haar"
    assert {b.frame for b in formats.read_boxes(out)} == {0, 1}
    before = out.stat().st_mtime_ns
    detect_task.fn(index, out=out, params=params)  # finished result: reused, not recomputed
    assert out.stat().st_mtime_ns == before


def test_detect_faces_reports_progress(tmp_path, montage_store):
    frames = formats.read_frames(montage_store)[:3]
    seen = []
    boxes = detect_faces(montage_store.parent, frames, DetectParams(min_face=8, min_score=0.0),
                         progress=lambda done, total: seen.append((done, total)),
                         detector=_FakeDetector([(5, 5, 100, 100, 0.7)]))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert [b.frame for b in boxes] == [0, 1, 2]


def test_unknown_backend_is_refused():
    params = DetectParams.model_construct(backend="yolo", min_face=20, min_score=0.5)
    with pytest.raises(ValueError):
        make_detector(params)


class _Fixed:
    def __init__(self, name, boxes):
        self.name, self.boxes = name, boxes

    def detect(self, image_rgb):
        return self.boxes


def test_agreement_raises_the_score_of_faces_both_teachers_find():
    from tasks.video.detect import AgreementDetector
    a = _Fixed("a", [(0, 0, 10, 10, 0.8), (50, 50, 60, 60, 0.7)])
    b = _Fixed("b", [(1, 1, 10, 10, 0.5), (100, 100, 120, 120, 0.9)])
    got = AgreementDetector(a, b).detect(None)
    assert got[0][:4] == (0, 0, 10, 10) and got[0][4] == pytest.approx(1 - 0.2 * 0.5)
    assert got[1] == (50, 50, 60, 60, 0.7) and got[2] == (100, 100, 120, 120, 0.9)
    assert AgreementDetector(a, b).name == "a+b"


def test_mtcnn_and_dlib_agree_on_the_montage_faces(montage_store):
    from tasks.video.detect import make_detector
    image = read_rgb(montage_store.parent / formats.read_frames(montage_store)[5].file)
    agreed = make_detector(DetectParams(backend="mtcnn+dlib")).detect(image)
    alone = make_detector(DetectParams(backend="mtcnn")).detect(image)
    truth = ground_truth_faces(5)
    for face in truth:
        best = max(agreed, key=lambda d: iou(d, face))
        solo = max(alone, key=lambda d: iou(d, face))
        assert iou(best, face) > 0.3 and best[4] >= solo[4]
