"""Face embeddings: dlib descriptors tell gallery people apart; one mean row per track, one read per frame."""
from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import numpy as np
import pytest

import tasks.video.embed as embed_module
from tasks.core import formats
from tasks.core.config import EmbedParams
from tasks.video.detect import DlibHOGDetector, read_rgb
from tasks.video.embed import DIM, DlibFaceEmbedder, embed_task, embed_tracks
from tasks.core.records import Box, Track

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
GALLERY = REPO / "data" / "gallery"
GT = REPO / "data" / "ground_truth" / "montage"


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


def truth_boxes(second: int) -> dict[str, list[float]]:
    frames = json.loads((GT / "montage_dev00.json").read_text())["frames"]
    return {v["identity"]: v["face_box"] for v in frames[10 * second + 5]["visible"]}


def gallery_vector(embedder: DlibFaceEmbedder, identity: str) -> np.ndarray:
    photo = next(p for p in sorted((GALLERY / identity).iterdir()) if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    image = read_rgb(photo)
    faces = DlibHOGDetector().detect(image)
    assert faces, f"no face found in gallery photo {photo}"
    largest = max(faces, key=lambda d: (d[2] - d[0]) * (d[3] - d[1]))
    return embedder.embed(image, [largest[:4]])[0]


def test_same_person_is_closer_than_two_people(embedder, montage_store):
    # Gallery photos are held out from the montage frames, so "same" is two different photos of one person.
    truth = truth_boxes(5)
    image = read_rgb(montage_store.parent / formats.read_frames(montage_store)[5].file)
    in_frame = dict(zip(truth, embedder.embed(image, list(truth.values()))))
    obama, rose = gallery_vector(embedder, "barack_obama"), gallery_vector(embedder, "rose_leslie")
    for v in (obama, rose, *in_frame.values()):
        assert v.shape == (DIM,) and v.dtype == np.float32
    dist = lambda a, b: float(np.linalg.norm(a - b))  # noqa: E731
    assert dist(obama, in_frame["barack_obama"]) < 0.6 < dist(obama, in_frame["rose_leslie"])
    assert dist(rose, in_frame["rose_leslie"]) < 0.6 < dist(rose, in_frame["barack_obama"])
    assert dist(obama, rose) > 0.6


def test_margin_and_border_boxes_are_safe(embedder):
    image = read_rgb(GALLERY / "barack_obama" / "obama.jpg")
    h, w = image.shape[:2]
    vectors = DlibFaceEmbedder(margin=0.5).embed(image, [(-20, -20, w + 20, h + 20), (w - 30, h - 30, w, h)])
    assert vectors.shape == (2, DIM) and np.isfinite(vectors).all()
    assert embedder.embed(image, []).shape == (0, DIM)


def test_embed_tracks_mean_rows_and_one_read_per_frame(embedder, montage_store, monkeypatch):
    frames = formats.read_frames(montage_store)
    truth5, truth6 = truth_boxes(5), truth_boxes(6)

    def b(frame, xyxy):
        return Box(frame=frame, t=frames[frame].t, x1=xyxy[0], y1=xyxy[1], x2=xyxy[2], y2=xyxy[3], score=1.0)

    tracks = [Track(0, (b(5, truth5["barack_obama"]), b(6, truth6["barack_obama"]))),
              Track(1, (b(5, truth5["rose_leslie"]),))]
    reads = []
    real_read = embed_module.read_rgb
    monkeypatch.setattr(embed_module, "read_rgb", lambda p: reads.append(Path(p).name) or real_read(p))
    matrix = embed_tracks(montage_store.parent, tracks, EmbedParams(), embedder=embedder)
    assert matrix.shape == (2, DIM) and matrix.dtype == np.float32
    assert sorted(reads) == sorted({frames[5].file, frames[6].file})  # frame 5 holds two boxes, read once

    per_box = [embedder.embed(real_read(montage_store.parent / frames[f].file), [xyxy])[0]
               for f, xyxy in ((5, truth5["barack_obama"]), (6, truth6["barack_obama"]))]
    np.testing.assert_allclose(matrix[0], np.mean(per_box, axis=0), atol=1e-5)
    assert np.linalg.norm(matrix[0] - matrix[1]) > 0.6


def test_embed_task_writes_one_row_per_track(tmp_path, montage_store):
    frames = formats.read_frames(montage_store)
    face = truth_boxes(5)["rose_leslie"]
    tracks = [Track(0, (Box(5, frames[5].t, *face, score=1.0),))]
    tracks_path = formats.write_tracks(tmp_path / "tracks.json", tracks, shots=[0])
    out = tmp_path / "embeddings.npy"
    embed_task.fn(montage_store, tracks_path, out=out, params=EmbedParams())
    matrix = formats.read_npy(out)
    assert matrix.shape == (1, DIM) and matrix.dtype == np.float32
    assert embed_tracks(montage_store.parent, [], EmbedParams()).shape == (0, DIM)


def test_batches_of_frames_give_the_rows_of_one_frame_at_a_time(montage_store, monkeypatch):
    frames = formats.read_frames(montage_store)
    # One track per ground-truth face of each of the first 12 seconds, in batches of 5 frames: a short last batch.
    tracks = [Track(k, (Box(s, frames[s].t, *xyxy, score=1.0),))
              for k, (s, xyxy) in enumerate((s, xyxy) for s in range(12) for xyxy in truth_boxes(s).values())]
    monkeypatch.setattr(embed_module, "FRAMES_PER_BATCH", 1)
    one = embed_tracks(montage_store.parent, tracks, EmbedParams())
    monkeypatch.setattr(embed_module, "FRAMES_PER_BATCH", 5)
    progress = []
    batched = embed_tracks(montage_store.parent, tracks, EmbedParams(), progress=lambda n, t: progress.append(n))
    np.testing.assert_allclose(one, batched, atol=1e-5)  # oneDNN may sum in another order for another batch size
    assert progress == list(range(1, len(progress) + 1)) and progress[-1] == len({t.boxes[0].frame for t in tracks})


def test_witnesses_spread_over_the_track_and_pick_the_best_of_each_stretch():
    from tasks.video.embed.pooling import witnesses

    def box(i, side, score):
        return Box(frame=i, t=float(i), x1=0, y1=0, x2=side, y2=side, score=score)

    # Ten boxes: the big confident ones sit at 1, 4 and 8; box 9 is big but barely a face.
    sides = [40, 90, 40, 40, 95, 40, 40, 40, 100, 110]
    scores = [0.99] * 9 + [0.3]
    boxes = [box(i, s, c) for i, (s, c) in enumerate(zip(sides, scores))]
    assert witnesses(boxes, 3) == [1, 4, 8]
    assert witnesses(boxes, 0) == list(range(10)) == witnesses(boxes, 10)
    assert witnesses(boxes[:2], 4) == [0, 1]
    # drawn between detections (detect.stride), the big boxes 4 and 8 give way to their stretches' detected ones
    drawn = [dataclasses.replace(b, interpolated=b.frame in (4, 8)) for b in boxes]
    assert witnesses(drawn, 3) == [1, 3, 7]
    assert witnesses([dataclasses.replace(b, interpolated=True) for b in boxes], 3) == [1, 4, 8]


def test_embed_tracks_reads_only_the_frames_of_the_witnesses(embedder, montage_store, monkeypatch):
    frames = formats.read_frames(montage_store)
    boxes = tuple(Box(s, frames[s].t, *truth_boxes(s)["barack_obama"], score=1.0)
                  for s in range(12) if "barack_obama" in truth_boxes(s))
    assert len(boxes) > 4
    reads = []
    real_read = embed_module.read_rgb
    monkeypatch.setattr(embed_module, "read_rgb", lambda p: reads.append(Path(p).name) or real_read(p))
    few = embed_tracks(montage_store.parent, [Track(0, boxes)], EmbedParams(crops=4), embedder=embedder)
    assert len(reads) == 4
    every = embed_tracks(montage_store.parent, [Track(0, boxes)], EmbedParams(crops=0), embedder=embedder)
    assert len(reads) == 4 + len(boxes)
    assert np.linalg.norm(few[0] - every[0]) < 0.15  # the same face: dlib's same-person rule is < 0.6
