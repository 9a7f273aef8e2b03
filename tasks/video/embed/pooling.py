"""Quality-weighted pooling: one vector per track from its per-box embeddings, and the track's best boxes.

In: a track's per-box vectors, its Boxes, and each box's crop (or the frame it lies on). Out: a unit-length
pooled vector and the indices of the k best boxes (exemplars for contact sheets). Backend: numpy + OpenCV.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from tasks.core.contact_sheet import crop_box
from tasks.core.records import Box

# Sharpness is measured on the crop resized to this square: the Laplacian's variance depends on scale, and a
# face's size is already scored on its own.
SHARPNESS_SIDE = 64
# Laplacian variance (at SHARPNESS_SIDE) that scores 0.5. Sharp sample-video faces measure 800-1700, the same
# faces under a 15-px Gaussian blur about 200: the score separates them without saturating at either end.
SHARPNESS_HALF = 250.0
# Face side (px) from which size stops adding quality: the embedders see faces at 112-336 px anyway.
SIZE_FULL = 112.0


def witnesses(boxes: Sequence[Box], k: int) -> list[int]:
    """Indices of at most `k` boxes that stand for a track: its boxes cut into k stretches of equal count, in
    time order, and from each the largest face by its detector's confidence (size x score, as `quality` weighs
    them). Spread over the track's time, so a head turn or a lighting change is seen; chosen from the boxes
    alone, before any frame is decoded. An interpolated box (tasks/video/detect/stride.py) is picked only from a
    stretch without a detected one: its crop may be off the face. k <= 0 keeps every box."""
    if k <= 0 or len(boxes) <= k:
        return list(range(len(boxes)))
    edges = np.linspace(0, len(boxes), k + 1).round().astype(int)
    value = [(not b.interpolated, min(1.0, float(np.sqrt(b.area)) / SIZE_FULL) * min(max(b.score, 0.0), 1.0))
             for b in boxes]
    # max() keeps the first of equal values: the pick is deterministic.
    return [max(range(a, z), key=lambda i: value[i]) for a, z in zip(edges, edges[1:])]


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop at a common scale, mapped to [0, 1) by v / (v + half)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    grey = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    v = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return v / (v + SHARPNESS_HALF)


def quality(box: Box, crop: np.ndarray) -> float:
    """Face size × detector score × sharpness, each in [0, 1]: a product, so one bad factor is enough to
    make a box a poor witness (a big, confident but motion-blurred face is still blurred)."""
    size = min(1.0, float(np.sqrt(box.area)) / SIZE_FULL)
    return size * min(max(box.score, 0.0), 1.0) * sharpness(crop)


def pool(vectors: np.ndarray, qualities: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Quality-weighted mean of the L2-normalised vectors, re-normalised (for cosine embedders), and the
    indices of the k highest-quality rows, best first. All-zero qualities fall back to a plain mean."""
    vectors, q = np.asarray(vectors, np.float64), np.asarray(qualities, np.float64)
    if len(vectors) == 0 or len(vectors) != len(q):
        raise ValueError(f"need one quality per vector, got {len(vectors)} vectors and {len(q)} qualities")
    weights = q if q.sum() > 0 else np.ones(len(q))
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    pooled = (unit * weights[:, None]).sum(0)
    pooled /= max(np.linalg.norm(pooled), 1e-12)
    # Stable sort on -q: equal qualities keep track order, so the pick is deterministic.
    return pooled.astype(np.float32), np.argsort(-q, kind="stable")[:k]


def pool_track(vectors: np.ndarray, boxes: Sequence[Box], images: Sequence[np.ndarray], k: int = 3,
               images_are_frames: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`pool` with each box's quality measured on its crop: `images[i]` is box i's crop, or with
    `images_are_frames` the RGB frame box i lies on."""
    if len(boxes) != len(images):
        raise ValueError(f"need one image per box, got {len(boxes)} boxes and {len(images)} images")
    crops = [crop_box(im, b.xyxy) if images_are_frames else im for im, b in zip(images, boxes)]
    return pool(vectors, np.array([quality(b, c) for b, c in zip(boxes, crops)]), k)
