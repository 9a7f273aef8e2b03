"""Person boxes: OpenCV's HOG + linear SVM people detector (Dalal & Triggs), compiled into opencv-python.

In: an RGB frame. Out: (x1, y1, x2, y2, score) person boxes in that frame's pixels. No weights to fetch: the
SVM is `cv2.HOGDescriptor_getDefaultPeopleDetector()`, built into every opencv-python < 5.

Known limits (measured on the sample library, README "Person and head boxes"):
- it finds **upright, mostly whole people**: the detector window is 64x128 px, a standing pedestrian with
  margins. A person smaller than that (after `scale`) is never found; a close-up (head and shoulders, a
  seated person cut at the waist) rarely is, because the window expects legs. Lying, bent or heavily
  occluded people are missed.
- it is slow on big frames (a sliding window over an image pyramid): the frame is downscaled so its long
  side is at most `max_side` before detection, which also sets the smallest person found
  (128 px of the downscaled frame).
- it is a 2005-era linear model: textured backgrounds (crowds, foliage, railings) give false positives,
  hence `min_score` on the SVM margin and non-maximum suppression.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

Detection = tuple[float, float, float, float, float]

WINDOW = (64, 128)  # the default people detector's window, width x height


def nms(detections: Sequence[Detection], iou_threshold: float) -> list[Detection]:
    """Greedy non-maximum suppression, highest score first."""
    from tasks.core.records import iou

    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d[4]):
        if all(iou(d, k) < iou_threshold for k in kept):
            kept.append(d)
    return kept


class HOGPersonDetector:
    """FaceDetector-shaped (`name`, `detect(image_rgb)`) people detector over OpenCV's default HOG SVM.

    `max_side` caps the long side the detector sees (boxes come back in the input's pixels); `win_stride`
    is the sliding step in pixels of that image; `scale` the pyramid step; `min_score` the SVM margin kept
    (cv2 returns margins around 0-3; 0.5 drops most texture hits)."""

    name = "hog-person"

    def __init__(self, max_side: int = 640, win_stride: int = 8, scale: float = 1.05, min_score: float = 0.5,
                 nms_iou: float = 0.4):
        self.max_side = max_side
        self.win_stride = win_stride
        self.scale = scale
        self.min_score = min_score
        self.nms_iou = nms_iou
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        height, width = image_rgb.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        small = image_rgb if factor == 1.0 else cv2.resize(
            image_rgb, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        if small.shape[0] < WINDOW[1] or small.shape[1] < WINDOW[0]:
            return []
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(gray, winStride=(self.win_stride, self.win_stride),
                                                    padding=(8, 8), scale=self.scale)
        found = []
        for (x, y, w, h), score in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            if score < self.min_score:
                continue
            found.append((max(0.0, x / factor), max(0.0, y / factor), min(float(width), (x + w) / factor),
                          min(float(height), (y + h) / factor), float(score)))
        return nms(found, self.nms_iou)
