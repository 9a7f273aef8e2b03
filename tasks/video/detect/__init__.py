"""Face detection, and the head and person boxes asked for, on the sampled frames of one video.

In: a frame store (frames.json + RGB JPEGs) and DetectParams. Out: a boxes JSON (one Box per face, head or person
per frame). Face backends: MTCNN (facenet-pytorch), dlib HOG (dlib-bin), OpenCV Haar cascade, all with weights in
pip packages, or a trained YOLO; heads and persons: the head rule and OpenCV HOG (head_boxes.py, person.py), or a
trained YOLO per kind (DetectParams.yolo_kinds). Backend `auto` picks per kind from the workspace's registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import cv2
import numpy as np

from tasks.core import formats
from tasks.core.config import DetectParams, YoloSource
from tasks.core.records import Box, Frame, iou
from tasks.core.stage import Progress, ProgressBar, stage_task

if TYPE_CHECKING:  # imported where a trained detector is used, as every backend is
    from tasks.video.detect.yolo import QualityGate

Detection = tuple[float, float, float, float, float]  # x1, y1, x2, y2, score in 0..1


class FaceDetector(Protocol):
    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Detection]: ...


class MTCNNDetector:
    """facenet-pytorch MTCNN; its face probability (O-Net softmax) is the score."""

    name = "mtcnn"

    def __init__(self, min_face: int = 20):
        # MTCNN's image pyramid starts at min_face_size, so passing ours skips scales we would drop anyway.
        self.min_face = max(12, int(min_face))
        self._model = None

    def _load(self):
        if self._model is not None:  # every frame asks: only the first load waits for the lock
            return self._model
        from tasks.core.model_loading import MODEL_LOADING

        with MODEL_LOADING:
            if self._model is None:
                from facenet_pytorch import MTCNN

                from tasks.core import device

                self._model = MTCNN(keep_all=True, device=device.torch_device(), min_face_size=self.min_face,
                                    post_process=False)
        return self._model

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        import torch

        with torch.inference_mode():
            boxes, probs = self._load().detect(np.ascontiguousarray(image_rgb))
        if boxes is None:
            return []
        return [(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(p))
                for b, p in zip(boxes, probs) if p is not None]


class DlibHOGDetector:
    """dlib's frontal-face HOG + linear SVM.

    dlib reports the SVM margin m (0 = its own decision threshold, up to ~3 for clear frontal faces). We ask
    for candidates down to m = -0.5 and map the margin through a logistic placed so that dlib's own threshold
    lands on the default `min_score`: score = 1 / (1 + e^(-4m) / 9), so m = -0.5 -> 0.55, 0 -> 0.9, 0.5 -> 0.985.
    A `min_score` of 0.9 thus reproduces dlib's default behaviour, and lower values admit weaker faces.
    """

    name = "dlib-hog"
    ADJUST_THRESHOLD = -0.5
    SLOPE = 4.0

    def __init__(self, upsample: int = 1):
        # One upsampling step lets HOG (80x80 window) see faces down to ~40 px, at ~4x the cost.
        self.upsample = upsample
        self._model = None

    def _load(self):
        if self._model is None:
            import dlib

            self._model = dlib.get_frontal_face_detector()
        return self._model

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        rects, margins, _ = self._load().run(np.ascontiguousarray(image_rgb), self.upsample,
                                             self.ADJUST_THRESHOLD)
        return [(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1),
                 1.0 / (1.0 + math.exp(-self.SLOPE * m) / 9.0))
                for r, m in zip(rects, margins)]


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade.

    The cascade gives no calibrated confidence, only whether a window passed all stages, so every kept box gets
    score 1.0; `min_neighbors` (overlapping hits needed) is the real strictness knob.
    """

    name = "haar"

    def __init__(self, min_face: int = 20, min_neighbors: int = 5):
        self.min_face = int(min_face)
        self.min_neighbors = min_neighbors
        self._model = None

    def _load(self):
        if self._model is None:
            path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            model = cv2.CascadeClassifier(str(path))
            if model.empty():
                raise RuntimeError(f"could not load Haar cascade {path}")
            self._model = model
        return self._model

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        found = self._load().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_face, self.min_face))
        return [(float(x), float(y), float(x + w), float(y + h), 1.0)
                for x, y, w, h in np.asarray(found).reshape(-1, 4)]


class AgreementDetector:
    """Two teachers voting: a face both find (IoU >= 0.4) gets the noisy-OR of their scores,
    1 - (1 - a)(1 - b), so agreement raises confidence; a face only one finds keeps that one's score.
    MTCNN + dlib HOG: MTCNN finds small and turned faces, HOG rarely fires on textures, so their
    agreement separates real faces from MTCNN's occasional false positives."""

    def __init__(self, first: FaceDetector, second: FaceDetector, min_iou: float = 0.4):
        self.first, self.second, self.min_iou = first, second, min_iou
        self.name = f"{first.name}+{second.name}"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        a, b = self.first.detect(image_rgb), self.second.detect(image_rgb)
        out: list[Detection] = []
        used: set[int] = set()
        for box in a:
            j = max(range(len(b)), key=lambda k: iou(box, b[k]), default=None)
            if j is not None and j not in used and iou(box, b[j]) >= self.min_iou:
                used.add(j)
                out.append((*box[:4], 1.0 - (1.0 - box[4]) * (1.0 - b[j][4])))
            else:
                out.append(box)
        return out + [d for k, d in enumerate(b) if k not in used]


def _yolo(params: DetectParams) -> FaceDetector:
    if not params.yolo_weights:
        raise ValueError("detect backend 'yolo' needs detect.yolo_weights (a .pt or .onnx file)")
    from tasks.video.detect.yolo import YoloDetector

    return YoloDetector(params.yolo_weights, imgsz=params.yolo_imgsz, conf=params.min_score)


# DetectParams.backend names one of these ("auto" is resolved to one of them first: resolve_backend);
# tests/test_backends.py keeps the config's Literals equal to these keys.
BACKENDS: dict[str, Callable[[DetectParams], FaceDetector]] = {
    "mtcnn": lambda p: MTCNNDetector(min_face=p.min_face),
    "dlib-hog": lambda p: DlibHOGDetector(),
    "haar": lambda p: HaarDetector(min_face=p.min_face),
    "mtcnn+dlib": lambda p: AgreementDetector(MTCNNDetector(min_face=p.min_face), DlibHOGDetector()),
    "yolo": _yolo,
}
# The detectors whose weights ship in pip packages: dataset teachers and auto's fallback.
BOOTSTRAP = ("mtcnn", "dlib-hog", "haar", "mtcnn+dlib")


def make_detector(params: DetectParams) -> FaceDetector:
    if params.backend == "auto":
        raise ValueError("detect backend 'auto' must be resolved with resolve_backend(params, workspace) first")
    if params.backend not in BACKENDS:
        raise ValueError(f"unknown face detector backend {params.backend!r}")
    return BACKENDS[params.backend](params)


def model_files(params: DetectParams) -> list[Path]:
    """Weights the detectors read that no pip package pins: trained YOLOs', which a new training run may
    overwrite at the same path."""
    face = [Path(params.yolo_weights)] if params.backend == "yolo" and params.yolo_weights else []
    return face + [Path(source.weights) for source in params.yolo_kinds.values()]


# Where a kind's boxes come from when no trained detector passes its gate (face: DetectParams.auto_fallback).
UNTRAINED_SOURCE = {"head": "the head rule", "person": "OpenCV HOG"}


def auto_reason(chosen: dict[str, dict], params: DetectParams, gate: QualityGate) -> str:
    """Which source each of `params.kinds` has under `auto`: the trained detector in `chosen` (kind -> registry
    entry) with the metrics its class passed on, else the untrained one."""
    from tasks.video.detect.yolo import class_metrics

    parts = []
    for kind in params.kinds:
        entry = chosen.get(kind)
        if entry is None:
            source = params.auto_fallback if kind == "face" else UNTRAINED_SOURCE[kind]
            parts.append(f"{kind} from {source}: no detector trained in this workspace passes the {kind} gate")
            continue
        m = class_metrics(entry, kind)
        parts.append(f"{kind} from trained detector {entry['id']} (recall vs teacher {m['recall_vs_teacher']:.3f}, "
                     f"precision {m['precision_vs_teacher']:.3f}, mAP50 {m['map50']:.3f})")
    return f"auto, quality gate per class {gate.describe()}; " + "; ".join(parts)


def resolve_backend(params: DetectParams, workspace_root: str | Path) -> tuple[DetectParams, str]:
    """Backend `auto` made concrete per kind, with the reason: each kind of `params.kinds` comes from the newest
    YOLO detector registered in this workspace whose class of that kind passes the quality gate, else from its
    untrained source (faces: `auto_fallback`). The choice is all in the returned parameters (the weights paths
    then key the cache, so a newly trained detector that passes re-runs detection)."""
    if params.backend != "auto":
        return params, "chosen in the configuration"
    from tasks.video.detect.yolo import QualityGate, best_registered

    gate = QualityGate()
    chosen = {kind: entry for kind in params.kinds if (entry := best_registered(workspace_root, gate, kind))}
    face = chosen.get("face")
    update = ({"backend": "yolo", "yolo_weights": face["weights"], "yolo_imgsz": face["imgsz"],
               "min_score": face["conf"]} if face else {"backend": params.auto_fallback})
    trained = {kind: YoloSource(weights=e["weights"], imgsz=e["imgsz"], conf=e["conf"])
               for kind, e in chosen.items() if kind != "face"}
    return params.model_copy(update={**update, "yolo_kinds": trained}), auto_reason(chosen, params, gate)


def read_rgb(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clean_detections(detections: Sequence[Detection], width: int, height: int,
                     min_face: int, min_score: float) -> list[Detection]:
    """Clip to the image, then drop small or unsure boxes (size judged after clipping: a half-visible face
    at the border is as hard to recognise as a small one)."""
    kept = []
    for x1, y1, x2, y2, score in detections:
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if min(x2 - x1, y2 - y1) < min_face or score < min_score:
            continue
        kept.append((x1, y1, x2, y2, score))
    return kept


@dataclass(frozen=True)
class BodyDetectors:
    """Where a frame's non-face boxes come from: persons from `persons` (OpenCV HOG or a trained YOLO; the head rule
    reads them too), heads from `heads` (a trained YOLO) or, when it is None, from the head rule."""

    persons: FaceDetector | None = None
    heads: FaceDetector | None = None


def frame_boxes(image: np.ndarray, frame: Frame, params: DetectParams, detector: FaceDetector,
                body: BodyDetectors = BodyDetectors()) -> list[Box]:
    """The boxes of one frame: its faces, then the head and person boxes `params.kinds` asks for."""
    height, width = image.shape[:2]
    # No face of the smallest kept size fits in a tinier frame (and MTCNN's image pyramid would be empty).
    found = detector.detect(image) if min(height, width) >= params.min_face else []
    faces = [Box(frame=frame.index, t=frame.t, x1=x1, y1=y1, x2=x2, y2=y2, score=score, label="face")
             for x1, y1, x2, y2, score in clean_detections(found, width, height, params.min_face, params.min_score)]
    if params.kinds == ["face"]:
        return faces
    from tasks.video.detect import head_boxes  # head and person boxes

    persons = head_boxes.kind_boxes(body.persons, image, frame.index, frame.t, "person") if body.persons else []
    heads = head_boxes.kind_boxes(body.heads, image, frame.index, frame.t, "head") if body.heads else None
    return faces + head_boxes.body_boxes(faces, persons, params.kinds, width, height, heads)


def _trained(source: YoloSource, kind: str, min_side: int) -> FaceDetector:
    from tasks.video.detect.yolo import YoloDetector

    return YoloDetector(source.weights, imgsz=source.imgsz, conf=source.conf, kind=kind, min_side=min_side)


def make_body_detectors(params: DetectParams) -> BodyDetectors:
    """The head and person sources `params.kinds` needs: a trained YOLO for each kind of `params.yolo_kinds`
    (dropping boxes smaller than a face may be, as its training evaluation did), else OpenCV HOG for persons,
    which the head rule also needs, and the head rule for heads."""
    from tasks.video.detect import head_boxes

    trained = {kind: _trained(source, kind, params.min_face) for kind, source in params.yolo_kinds.items()}
    persons = trained.get("person")
    if persons is None and head_boxes.needs_persons(params.kinds, trained_heads="head" in trained):
        from tasks.video.detect.person import HOGPersonDetector

        persons = HOGPersonDetector(max_side=params.person_max_side, min_score=params.person_min_score)
    return BodyDetectors(persons=persons, heads=trained.get("head"))


def detect_faces(frames_dir: Path, frames: Sequence[Frame], params: DetectParams,
                 progress: Progress = None, detector: FaceDetector | None = None) -> list[Box]:
    """Every box of every frame of `frames`, in order (the frames need not be consecutive)."""
    detector = detector or make_detector(params)
    body = make_body_detectors(params)
    boxes: list[Box] = []
    for n, frame in enumerate(frames, 1):
        boxes.extend(frame_boxes(read_rgb(Path(frames_dir) / frame.file), frame, params, detector, body))
        if progress is not None:
            progress(n, len(frames))
    return boxes


@stage_task("detect")
def detect_task(frames_index: Path, *, out: Path, params: DetectParams) -> None:
    from tasks.video.detect.schedule import detect_video

    frames_index = Path(frames_index)
    frames_dir = frames_index.parent
    bar = ProgressBar(f"detect {frames_dir.name}")
    try:
        boxes = detect_video(frames_dir, formats.read_frames(frames_index), params, progress=bar)
    finally:
        bar.close()
    formats.write_boxes(out, boxes, detector=params.backend)
