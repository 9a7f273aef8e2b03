"""Shot cuts and face tracks for one video.

In: the frame store (frames.json + JPEGs), the detect stage's boxes and TrackParams. Out: a tracks JSON
(every box in exactly one track, tracks never cross a shot cut) with the shot starts. Backends: HSV-histogram
cut detection (OpenCV) and ByteTrack (roboflow `trackers`, the successor of supervision's ByteTrack).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tasks.core import formats
from tasks.core.config import TrackParams
from tasks.core.records import Box, Frame, Track
from tasks.core.stage import stage_task

# ByteTrack's own split between "high" and "low" detections. The detect stage has already dropped boxes below
# its min_score, so nearly all boxes arrive "high"; the low stage only matters for permissive detector settings.
HIGH_SCORE = 0.5


def _hsv_histogram(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    # Small thumbnails: the histogram barely changes and decoding dominates anyway.
    image = cv2.resize(image, (160, max(1, round(160 * image.shape[0] / image.shape[1]))),
                       interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    # Hue and saturation only: a lighting change within a shot moves V much more than H-S.
    hist = cv2.calcHist([hsv], [0, 1], None, [32, 32], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def histogram_distances(frames_dir: Path, frames: Sequence[Frame]) -> list[float]:
    """Bhattacharyya distance between each frame and the one before it (first entry 0)."""
    dists: list[float] = []
    prev = None
    for frame in frames:
        hist = _hsv_histogram(Path(frames_dir) / frame.file)
        dists.append(0.0 if prev is None else float(cv2.compareHist(prev, hist, cv2.HISTCMP_BHATTACHARYYA)))
        prev = hist
    return dists


def shot_boundaries(frames_dir: Path, frames: Sequence[Frame], threshold: float) -> list[int]:
    """Indices (Frame.index) of the frames that begin a shot; the first frame always does."""
    if not frames:
        return []
    dists = histogram_distances(frames_dir, frames)
    return [f.index for i, (f, d) in enumerate(zip(frames, dists)) if i == 0 or d >= threshold]


def _crop_histogram(image_bgr: np.ndarray, box: Box) -> np.ndarray:
    height, width = image_bgr.shape[:2]
    x1, y1, x2, y2 = box.xyxy
    # The central part of the box: mostly face, little background or hair that a pose change would swap in.
    dx, dy = (x2 - x1) / 8, (y2 - y1) / 8
    left, top = int(max(0, x1 + dx)), int(max(0, y1 + dy))
    right, bottom = int(min(width, x2 - dx)), int(min(height, y2 - dy))
    crop = image_bgr[top:max(bottom, top + 1), left:max(right, left + 1)]
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    # Value is kept here (unlike for cuts): skin brightness is what tells two people apart in the same spot.
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 8, 8], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def split_on_appearance(groups: Sequence[Sequence[Box]], frames_dir: Path, frames: Sequence[Frame],
                        threshold: float) -> list[list[Box]]:
    """Cut each box sequence where the face crop's colour changes abruptly between consecutive boxes.

    IoU tracking links whatever face sits in the same place; when one person replaces another there without a
    cut (a photo swap, a pan that hides the cut's colour change) the track would blend two identities, and
    its mean embedding would belong to neither. Splitting too often is cheap: clustering joins the pieces.
    """
    files = {f.index: f.file for f in frames}
    needed = sorted({b.frame for g in groups if len(g) > 1 for b in g})
    hists: dict[tuple[int, tuple[float, ...]], np.ndarray] = {}
    boxes_on: dict[int, list[Box]] = defaultdict(list)
    for g in groups:
        if len(g) > 1:
            for b in g:
                boxes_on[b.frame].append(b)
    for frame_index in needed:
        image = cv2.imread(str(Path(frames_dir) / files[frame_index]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image {Path(frames_dir) / files[frame_index]}")
        for b in boxes_on[frame_index]:
            hists[(b.frame, b.xyxy)] = _crop_histogram(image, b)
    out: list[list[Box]] = []
    for g in groups:
        g = sorted(g, key=lambda b: b.frame)
        piece = [g[0]]
        for prev, box in zip(g, g[1:]):
            dist = cv2.compareHist(hists[(prev.frame, prev.xyxy)], hists[(box.frame, box.xyxy)],
                                   cv2.HISTCMP_BHATTACHARYYA)
            if dist > threshold:
                out.append(piece)
                piece = []
            piece.append(box)
        out.append(piece)
    return out


def _sampled_fps(frames: Sequence[Frame]) -> float:
    if len(frames) < 2:
        return 1.0
    span = frames[-1].t - frames[0].t
    return (len(frames) - 1) / span if span > 0 else 1.0


def _make_tracker(params: TrackParams, fps: float):
    from trackers import ByteTrackTracker

    return ByteTrackTracker(
        # trackers counts the lost buffer in 30 fps frames; ours is in sampled frames.
        lost_track_buffer=math.ceil(params.lost_frames * 30.0 / fps),
        frame_rate=fps,
        track_activation_threshold=HIGH_SCORE,
        high_conf_det_threshold=HIGH_SCORE,
        # A face seen once is still a track (the cluster stage decides who it is).
        minimum_consecutive_frames=1,
        # match_threshold keeps the original ByteTrack meaning: the largest 1 - IoU cost accepted.
        minimum_iou_threshold=1.0 - params.match_threshold,
    )


def _track_shot(shot_frames: Sequence[Frame], by_frame: dict[int, list[Box]], params: TrackParams,
                fps: float) -> list[list[Box]]:
    """Run one fresh ByteTrack over one shot; return groups of boxes, one per tracklet or leftover box."""
    import supervision as sv

    tracker = _make_tracker(params, fps)
    groups: dict[int, list[Box]] = {}  # id(tracklet) -> boxes
    keep_alive: list[object] = []  # so id() of a pruned tracklet is never reused by a new one
    leftovers: list[Box] = []
    for frame in shot_frames:
        boxes = by_frame.get(frame.index, [])
        if boxes:
            dets = sv.Detections(
                xyxy=np.array([b.xyxy for b in boxes], dtype=np.float32),
                confidence=np.array([b.score for b in boxes], dtype=np.float32),
                data={"box": np.arange(len(boxes))},
            )
        else:
            dets = sv.Detections.empty()
            dets.data["box"] = np.zeros(0, dtype=int)
        before = {id(t) for t in tracker.tracks}
        result = tracker.update(dets)
        by_tid = {t.tracker_id: t for t in tracker.tracks if t.tracker_id != -1}
        born = [t for t in tracker.tracks if id(t) not in before]
        keep_alive.extend(born)
        # A tracklet's first box comes back with tracker_id -1 (it has no id until its second sighting), so
        # newborn tracklets are tied to their spawning box by position: a fresh Kalman state equals its box.
        unassigned = []
        for k, tid in zip(result.data.get("box", []), result.tracker_id):
            if tid != -1 and tid in by_tid:
                groups.setdefault(id(by_tid[tid]), []).append(boxes[int(k)])
            else:
                unassigned.append(int(k))
        for tracklet in born:
            if not unassigned:
                break
            state = np.asarray(tracklet.get_state_bbox(), dtype=np.float64)
            errs = [float(np.abs(state - np.asarray(boxes[k].xyxy)).sum()) for k in unassigned]
            k = unassigned.pop(int(np.argmin(errs)))
            groups.setdefault(id(tracklet), []).append(boxes[k])
        # Whatever ByteTrack would not track (low score with no track to extend) still gets a track of its own.
        leftovers.extend(boxes[k] for k in unassigned)
    return list(groups.values()) + [[b] for b in leftovers]


def track_faces(boxes: Sequence[Box], frames: Sequence[Frame], shots: Sequence[int],
                params: TrackParams, frames_dir: Path | None = None) -> list[Track]:
    """Link boxes into tracks within each shot; with `frames_dir`, also cut tracks where the face changes."""
    frames = sorted(frames, key=lambda f: f.index)
    by_frame: dict[int, list[Box]] = defaultdict(list)
    for b in sorted(boxes, key=lambda b: (b.frame, b.x1, b.y1, b.x2, b.y2, -b.score)):
        by_frame[b.frame].append(b)
    known = {f.index for f in frames}
    if any(f not in known for f in by_frame):
        raise ValueError("boxes refer to frames that are not in the frame index")

    fps = _sampled_fps(frames)
    starts = sorted(set(shots) | ({frames[0].index} if frames else set()))
    groups: list[list[Box]] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else math.inf
        shot_frames = [f for f in frames if start <= f.index < end]
        # Each kind is tracked on its own: a face box never continues a person track.
        for kind in sorted({b.label for f in shot_frames for b in by_frame.get(f.index, [])}):
            of_kind = {i: [b for b in bs if b.label == kind] for i, bs in by_frame.items()}
            groups.extend(_track_shot(shot_frames, of_kind, params, fps))

    if frames_dir is not None:
        groups = split_on_appearance(groups, frames_dir, frames, params.appearance_threshold)

    # Ids follow first appearance (then position), so the same input always gives the same ids.
    ordered = sorted((sorted(g, key=lambda b: b.frame) for g in groups),
                     key=lambda g: (g[0].frame, g[0].x1, g[0].y1, g[0].x2, g[0].y2))
    return [Track(track_id=i, boxes=tuple(g), label=g[0].label) for i, g in enumerate(ordered)]


@stage_task("track")
def track_task(frames_index: Path, boxes_path: Path, *, out: Path, params: TrackParams) -> None:
    frames_index = Path(frames_index)
    frames = formats.read_frames(frames_index)
    shots = shot_boundaries(frames_index.parent, frames, params.shot_threshold)
    tracks = track_faces(formats.read_boxes(boxes_path), frames, shots, params, frames_dir=frames_index.parent)
    formats.write_tracks(out, tracks, shots=shots)
