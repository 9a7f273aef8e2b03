"""Faces of a character, as report.html and the contact sheets show them: for each library character, a few faces
that differ — in time and in embedding space — rather than the k sharpest crops of one shot.

In: every processed video's stage results in library ids (tasks/library/view.py: tracks, the track embeddings,
the sampled frames). Out: Face candidates per character (no image read), the k chosen ones with their crops,
and a crop as a small JPEG. Only the shortlisted candidates' frames are read: a long series' main character
has thousands of candidates.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from tasks.core.contact_sheet import crop_box
from tasks.core.formats import read_frames, read_npy
from tasks.core.records import Box, VideoOutputs
from tasks.library.view import LibraryView
from tasks.video.detect import read_rgb
from tasks.video.embed.pooling import quality, witnesses

FACES_PER_CHARACTER = 8
CROP_MARGIN = 0.3  # a little hair and chin makes a face recognisable to a person at thumbnail size
BOXES_PER_TRACK = 3  # candidate crops per track: the best box of each stretch of its time (pooling.witnesses)
TRACKS_PER_CHARACTER = 40  # per video, longest first: bounds the frames read for a main character
TIME_SCALE = 10.0  # seconds apart at which two crops of one video count as fully different in time
SCALE_TRACKS = 200  # tracks (evenly taken) whose embedding distances set the character's scale
THUMB_HEIGHT = 128


@dataclass(frozen=True, eq=False)
class Face:
    """One candidate face of a character: where it is (the sampled frame and box to cut it from) and how good."""

    video: str
    t: float
    track: int
    quality: float
    embedding: np.ndarray | None = None  # its track's
    frame: Path | None = None
    box: Box | None = None
    crop: np.ndarray | None = None  # once cut (choose_faces)


def _embeddings(faces: Sequence[Face]) -> tuple[np.ndarray, np.ndarray]:
    """The faces' embeddings as one matrix, and which faces have one (none when their sizes disagree)."""
    dims = {len(f.embedding) for f in faces if f.embedding is not None and len(f.embedding)}
    if len(dims) != 1:
        return np.zeros((len(faces), 0), np.float32), np.zeros(len(faces), bool)
    has = np.array([f.embedding is not None and len(f.embedding) > 0 for f in faces])
    vectors = np.zeros((len(faces), dims.pop()), np.float32)
    for i in np.flatnonzero(has):
        vectors[i] = faces[i].embedding
    return vectors, has


def _distance_to(faces: Sequence[Face], time_scale: float) -> Callable[[int], np.ndarray]:
    """distance(j): every face's distance to face j in [0, 1] — half by embedding (scaled by the median distance
    between the character's tracks; 0 within one track), half by time (another video counts as far)."""
    videos = np.unique([f.video for f in faces], return_inverse=True)[1]
    tracks = np.unique([f"{f.video}\0{f.track}" for f in faces], return_inverse=True)[1]
    times = np.array([f.t for f in faces], float)
    vectors, has = _embeddings(faces)
    firsts = np.flatnonzero(has & np.r_[True, tracks[1:] != tracks[:-1]])  # one face per track
    sample = vectors[firsts[np.linspace(0, len(firsts) - 1, min(SCALE_TRACKS, len(firsts))).astype(int)]] \
        if len(firsts) else vectors[:0]
    pair = np.linalg.norm(sample[:, None] - sample[None], axis=-1)[np.triu_indices(len(sample), 1)]
    scale = float(np.median(pair[pair > 0])) if (pair > 0).any() else 1.0

    def distance(j: int) -> np.ndarray:
        e = np.ones(len(faces))
        if has[j]:
            e = np.where(has, np.minimum(1.0, np.linalg.norm(vectors - vectors[j], axis=1) / scale), 1.0)
        e[tracks == tracks[j]] = 0.0
        t = np.where(videos == videos[j], np.minimum(1.0, np.abs(times - times[j]) / time_scale), 1.0)
        return 0.5 * e + 0.5 * t

    return distance


def pick_diverse(faces: Sequence[Face], k: int, time_scale: float = TIME_SCALE) -> list[Face]:
    """Up to k faces that differ: the best one first, then each time the face furthest from those chosen
    (_distance_to), weighted by its quality, so a sharp large face beats a blurred one at equal distance.
    Crops closer than a second of the same track are never both taken. Returned in video and time order."""
    faces = list(faces)
    if not faces:
        return []
    q = np.array([f.quality for f in faces], float)
    weight = (q / q.max() if q.max() > 0 else np.ones_like(q)) + 0.05
    distance = _distance_to(faces, time_scale)
    chosen = [int(np.argmax(q))]
    nearest = distance(chosen[0])
    min_gap = 0.5 / time_scale  # one second within one track
    while len(chosen) < k:
        score = np.where(nearest > min_gap, nearest * weight, -1.0)
        score[chosen] = -1.0
        best = int(np.argmax(score))
        if score[best] <= 0:
            break
        chosen.append(best)
        nearest = np.minimum(nearest, distance(best))
    return sorted((faces[i] for i in chosen), key=lambda f: (f.video, f.t))


def face_candidates(view: LibraryView, videos: Mapping[str, VideoOutputs]) -> dict[str, list[Face]]:
    """Library character id -> candidate faces from every video it is seen in: a few boxes per track spread
    over its time, of its longest tracks, each with its track's embedding and size × score as a first quality.
    No image is read."""
    out: dict[str, list[Face]] = {}
    for name, outputs in sorted(videos.items()):
        records = view.video(name, outputs)
        files = {f.index: outputs.frames.parent / f.file for f in read_frames(outputs.frames)}
        embeddings = read_npy(outputs.embeddings)
        by_id = {t.track_id: (row, t) for row, t in enumerate(records.tracks)}
        for c in records.characters:
            longest = sorted((by_id[t] for t in c.track_ids if t in by_id), key=lambda rt: -len(rt[1].boxes))
            for row, track in longest[:TRACKS_PER_CHARACTER]:
                vector = embeddings[row] if row < len(embeddings) else None
                boxes = [track.boxes[i] for i in witnesses(track.boxes, BOXES_PER_TRACK)]
                out.setdefault(c.character_id, []).extend(
                    Face(name, b.t, track.track_id, float(np.sqrt(b.area)) * b.score, vector, files[b.frame], b)
                    for b in boxes if b.frame in files)
    return out


def choose_faces(candidates: Sequence[Face], k: int = FACES_PER_CHARACTER) -> list[Face]:
    """k diverse faces: a diverse shortlist of 3k weighed by size × score, then — their crops cut and their
    quality measured (size × score × sharpness, pooling.quality) — the final k."""
    cut = []
    for f in pick_diverse(candidates, 3 * k):
        # A copy: a crop that is a view keeps its whole decoded frame alive, 3k of them at once.
        crop = crop_box(read_rgb(f.frame), f.box.xyxy, CROP_MARGIN).copy()
        cut.append(replace(f, crop=crop, quality=quality(f.box, crop)))
    return pick_diverse(cut, k)


def write_thumb(crop: np.ndarray, out: Path, height: int = THUMB_HEIGHT) -> Path:
    image = Image.fromarray(np.ascontiguousarray(crop))
    scale = height / max(1, image.height)
    image.resize((max(1, round(image.width * scale)), height), Image.LANCZOS).save(out, "JPEG", quality=88)
    return out


@dataclass(frozen=True)
class Thumb:
    """A chosen face as the page shows it: the face, and its JPEG relative to report.html."""

    face: Face
    file: str
