"""Tracking: every box lands in exactly one track, tracks stop at shot cuts and where the face changes."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tasks.core import formats
from tasks.core.config import TrackParams
from tasks.core.records import Box, Frame
from tasks.video.track import shot_boundaries, track_faces, track_task

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="module")
def swap_store(frame_store) -> Path:
    # montage_dev01: Rose Leslie's photo on the left until ~7 s, then Obama's photo in about the same place.
    return frame_store("montage_dev01.mp4")


def frames_of(n: int) -> list[Frame]:
    return [Frame(index=i, t=float(i), file=f"{i + 1:06d}.jpg") for i in range(n)]


def box(frame: int, x1: float, y1: float, size: float = 60, score: float = 0.99) -> Box:
    return Box(frame=frame, t=float(frame), x1=x1, y1=y1, x2=x1 + size, y2=y1 + size, score=score)


def scene() -> list[Box]:
    still = [box(f, 100, 100) for f in range(6)]
    drifting = [box(f, 300 + 6 * f, 120) for f in range(6)]
    extras = [box(2, 500, 300, score=0.3),  # unsure: ByteTrack will not start a track from it
              box(5, 20, 300)]  # seen once, at the very end
    return still + drifting + extras


def test_every_box_in_exactly_one_track():
    boxes = scene()
    tracks = track_faces(boxes, frames_of(6), [0], TrackParams())
    assert Counter(b for t in tracks for b in t.boxes) == Counter(boxes)
    assert [t.track_id for t in tracks] == list(range(len(tracks)))
    for t in tracks:
        assert list(t.frames) == sorted(t.frames)
        assert len(set(t.frames)) == len(t.frames)
    by_start = {(t.boxes[0].x1, t.boxes[0].frame): t for t in tracks}
    assert len(by_start[(100, 0)].boxes) == 6  # a still face at 1 fps is one track
    assert len(by_start[(300, 0)].boxes) == 6  # so is a slowly moving one
    assert len(tracks) == 4


def test_track_ids_do_not_depend_on_input_order():
    boxes = scene()
    shuffled = boxes[:]
    random.Random(7).shuffle(shuffled)
    assert track_faces(boxes, frames_of(6), [0], TrackParams()) == \
        track_faces(shuffled, frames_of(6), [0], TrackParams())


def test_tracks_split_at_shot_boundary():
    boxes = [box(f, 100, 100) for f in range(6)]
    one_shot = track_faces(boxes, frames_of(6), [0], TrackParams())
    two_shots = track_faces(boxes, frames_of(6), [0, 3], TrackParams())
    assert [t.frames for t in one_shot] == [(0, 1, 2, 3, 4, 5)]
    assert [t.frames for t in two_shots] == [(0, 1, 2), (3, 4, 5)]


def test_lost_frames_bridge_a_missed_detection():
    boxes = [box(f, 100, 100) for f in (0, 1, 3, 4)]  # detector missed frame 2
    assert len(track_faces(boxes, frames_of(5), [0], TrackParams(lost_frames=2))) == 1
    assert len(track_faces(boxes, frames_of(5), [0], TrackParams(lost_frames=0))) == 2


def test_shot_boundaries_on_real_cuts(hamilton_store):
    frames = formats.read_frames(hamilton_store)
    shots = shot_boundaries(hamilton_store.parent, frames, TrackParams().shot_threshold)
    # 0-1 wide stage shot, 2-3 audience with a profile close-up, 4-7 stage close-ups, 8-9 audience.
    assert shots[0] == 0
    assert {4, 8} <= set(shots)
    assert not {1, 9} & set(shots)


def test_track_splits_when_another_face_takes_the_place(swap_store):
    frames = [f for f in formats.read_frames(swap_store) if f.index in (5, 8)]
    # Ground-truth face boxes on the left of montage_dev01 at 5.5 s (Rose Leslie) and 8.5 s (Obama): IoU ~0.4.
    boxes = [Box(frame=5, t=frames[0].t, x1=117, y1=120, x2=194, y2=216, score=0.99),
             Box(frame=8, t=frames[1].t, x1=91, y1=90, x2=194, y2=195, score=0.99)]
    geometric = track_faces(boxes, frames, [5], TrackParams())
    assert len(geometric) == 1  # IoU alone links them
    checked = track_faces(boxes, frames, [5], TrackParams(), frames_dir=swap_store.parent)
    assert [t.frames for t in checked] == [(5,), (8,)]


def test_track_task_writes_tracks_and_shots(tmp_path, hamilton_store):
    frames = formats.read_frames(hamilton_store)
    boxes_path = formats.write_boxes(tmp_path / "boxes.json", [box(f.index, 200, 50) for f in frames],
                                     detector="test")
    out = tmp_path / "tracks.json"
    track_task.fn(hamilton_store, boxes_path, out=out, params=TrackParams())
    tracks = formats.read_tracks(out)
    shots = formats.read_json(out)["shots"]
    assert sum(len(t.boxes) for t in tracks) == len(frames)
    assert len(tracks) >= len(shots)  # one still box per frame: exactly one track per shot or more
    for t in tracks:
        # no track crosses a cut
        assert len({max(s for s in shots if s <= f) for f in t.frames}) == 1
