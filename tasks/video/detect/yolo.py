"""A fine-tuned YOLO model as a castline detector of one box kind, and the registry of trained detectors.

In: an ultralytics weights file (.pt or exported .onnx) and RGB frames; registry entries from training.
Out: boxes (x1, y1, x2, y2, score) of one kind per frame; WORKSPACE/detectors/registry.json and the newest
registered detector that passes the quality gate for a kind. Backend: ultralytics YOLO on CPU.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import device
from tasks.core.formats import locked, read_json, to_jsonable, write_json
from tasks.core.records import KINDS

Detection = tuple[float, float, float, float, float]

# Model class names (lower-cased) -> castline labels; public datasets name faces "face" or "head".
CLASS_LABELS = {"face": "face", "faces": "face", "human face": "face", "head": "face",
                "person": "person", "pedestrian": "person"}
FACE_NAMES = {name for name, label in CLASS_LABELS.items() if label == "face" and name != "head"}

REGISTRY_DIR = "detectors"
REGISTRY_FILE = "registry.json"


class YoloDetectorError(ValueError):
    """A weights file castline cannot use as a detector; the message is one line."""


def _shown(names: dict) -> str:
    return ", ".join(f"{i}:{n}" for i, n in list(names.items())[:8]) + (" ..." if len(names) > 8 else "")


def class_labels(names: dict, class_map: dict[str, str] | None, source: str) -> dict[int, str]:
    """Model class id -> castline kind, for the classes that map to one: CLASS_LABELS, then `class_map` (model class
    name -> kind) over it. A model that also has a face class keeps its head class a head (a castline
    face,head,person dataset) unless `class_map` says otherwise. YoloDetectorError (one line) for a class map
    naming a class the model lacks or a kind castline lacks."""
    lowered = {str(n).lower() for n in names.values()}
    given = {k.lower(): v for k, v in (class_map or {}).items()}
    for name, kind in given.items():
        if name not in lowered:
            raise YoloDetectorError(f"class map names {name!r}, not a class of {source} (classes {_shown(names)})")
        if kind not in KINDS:
            raise YoloDetectorError(f"class map sends {name!r} to {kind!r}, not a box kind ({', '.join(KINDS)})")
    defaults = {**CLASS_LABELS, "head": "head"} if lowered & FACE_NAMES else CLASS_LABELS
    mapping = {**defaults, **given}
    return {int(i): mapping[str(n).lower()] for i, n in names.items() if str(n).lower() in mapping}


class YoloDetector:
    """FaceDetector protocol over any ultralytics detection model with a class of `kind` (face, head or person):
    `detect` gives that kind's boxes, `labelled` every kind's. Boxes whose shorter side is under `min_side` are
    dropped (a trained model's tiny boxes, which its teacher never labelled)."""

    name = "yolo"

    def __init__(self, weights: str | Path, imgsz: int = 320, conf: float = 0.25, iou: float = 0.5,
                 class_map: dict[str, str] | None = None, kind: str = "face", min_side: float = 0.0):
        self.weights = Path(weights)
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        self.kind = kind
        self.min_side = min_side
        if not self.weights.is_file():
            raise YoloDetectorError(f"YOLO weights not found: {self.weights}")
        if self.weights.suffix.lower() not in (".pt", ".onnx"):
            raise YoloDetectorError(f"not a YOLO weights file (expected .pt or .onnx): {self.weights.name}")
        from tasks.core.model_loading import MODEL_LOADING

        with MODEL_LOADING:
            # The import stays outside the try: a broken ultralytics install is not a bad weights file.
            from ultralytics import YOLO

            try:
                self._model = YOLO(str(self.weights), task="detect")
                names = dict(self._model.names)  # for .onnx this loads the session, so a bad file fails here
            except Exception as e:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise YoloDetectorError(f"not a YOLO weights file ({type(e).__name__}: {reason[:160]}): "
                                        f"{self.weights.name}") from None
        self.labels = class_labels(names, class_map, self.weights.name)
        self.classes = sorted(i for i, label in self.labels.items() if label == kind)
        if not self.classes:
            expected = " or ".join(n for n, label in CLASS_LABELS.items() if label == kind) or kind
            raise YoloDetectorError(f"no class of {self.weights.name} maps to a {kind} (classes {_shown(names)}; "
                                    f"expected one named {expected}, or pass class_map)")

    def _predict(self, image_rgb: np.ndarray, classes: list[int]) -> list[tuple[int, Detection]]:
        # ultralytics treats numpy input as BGR (cv2's order), as its training images were read.
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        result = self._model.predict(bgr, imgsz=self.imgsz, conf=self.conf, iou=self.iou, device=device.name(),
                                     classes=classes, verbose=False)[0]
        xyxy = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        ids = result.boxes.cls.cpu().numpy()
        return [(int(c), (float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s)))
                for b, s, c in zip(xyxy, scores, ids) if min(b[2] - b[0], b[3] - b[1]) >= self.min_side]

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        return [d for _, d in self._predict(image_rgb, self.classes)]

    def labelled(self, image_rgb: np.ndarray) -> list[tuple[str, Detection]]:
        """Every box of a class that maps to a kind, with its kind. ultralytics gives each box its best class and
        suppresses per class, so a kind's boxes here are those `detect` finds for it (up to its 300 boxes a frame)."""
        return [(self.labels[c], d) for c, d in self._predict(image_rgb, sorted(self.labels))]


# --- registry ------------------------------------------------------------------------------------

# What the gate reads of a class; an entry trained before per-class metrics has them only for all its boxes.
GATED = ("recall_vs_teacher", "precision_vs_teacher", "map50")


def class_metrics(entry: dict, kind: str) -> dict[str, float] | None:
    """The recall and precision against the teacher and the mAP50 that judge `entry`'s boxes of `kind`, or None
    when the entry gives no evidence for that kind: a characters detector (its classes are people, for no kind);
    a kind with no teacher box on the held-out split; an entry trained before per-class metrics for any kind
    but face (it was a face detector, judged on the metrics of all its boxes)."""
    if entry.get("classes", "face") != "face":
        return None
    metrics = entry.get("metrics", {})
    if "per_class" not in metrics:
        return {key: metrics.get(key, 0.0) for key in GATED} if kind == "face" else None
    own = metrics["per_class"].get(kind)
    if not own or not own.get("teacher_boxes"):
        return None
    # A castline dataset's class names are its kinds, so ultralytics' per-class mAP50 is keyed by the kind.
    return {"recall_vs_teacher": own["recall_vs_teacher"], "precision_vs_teacher": own["precision_vs_teacher"],
            "map50": (metrics.get("per_class_map50") or {}).get(kind) or 0.0}


class QualityGate(BaseModel):
    """What a trained detector's boxes of one kind must reach before the detect stage's `auto` backend trusts them."""

    model_config = ConfigDict(extra="forbid")

    min_recall: float = Field(0.8, ge=0, le=1,
                              description="recall against the bootstrap detector's boxes on held-out videos (IoU>=0.5)")
    min_precision: float = Field(0.0, ge=0, le=1,
                                 description="precision against the bootstrap detector's boxes on held-out videos")
    min_map50: float = Field(0.5, ge=0, le=1, description="ultralytics mAP@0.5 on the held-out split")

    def passes_class(self, entry: dict, kind: str) -> bool:
        m = class_metrics(entry, kind)
        return (m is not None and m["recall_vs_teacher"] >= self.min_recall
                and m["precision_vs_teacher"] >= self.min_precision and m["map50"] >= self.min_map50)

    def describe(self) -> str:
        return (f"recall vs teacher >= {self.min_recall}, precision >= {self.min_precision}, "
                f"mAP50 >= {self.min_map50}")


def registry_path(workspace_root: str | Path) -> Path:
    return Path(workspace_root) / REGISTRY_DIR / REGISTRY_FILE


def load_detectors(workspace_root: str | Path) -> list[dict]:
    """All registered detectors, oldest first; [] when none was ever registered."""
    path = registry_path(workspace_root)
    if not path.exists():
        return []
    try:
        data = read_json(path)
    except ValueError as e:
        raise ValueError(f"detector registry is not valid JSON ({e}): {path}") from None
    if not isinstance(data, dict) or not isinstance(data.get("detectors"), list):
        raise ValueError(f"detector registry has no 'detectors' list: {path}")
    return data["detectors"]


def register_detector(workspace_root: str | Path, entry: dict) -> dict:
    """Append one trained detector (must name its `weights`); fills `id` and `created` when absent and returns
    the entry as stored (JSON types, floats rounded to 4 decimals)."""
    if not entry.get("weights"):
        raise ValueError("a registry entry needs the path of its weights")
    stored = to_jsonable({"id": f"yolo-{uuid.uuid4().hex[:8]}",
                          "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **entry})
    with locked(registry_path(workspace_root).with_suffix(".lock")):
        entries = load_detectors(workspace_root)
        if any(e.get("id") == stored["id"] for e in entries):
            raise ValueError(f"detector id already registered: {stored['id']}")
        write_json(registry_path(workspace_root), {"detectors": [*entries, stored]})
    return stored


def best_registered(workspace_root: str | Path, gate: QualityGate | None = None, kind: str = "face") -> dict | None:
    """The newest registered detector whose `kind` boxes pass `gate` (defaults: recall >= 0.8, mAP50 >= 0.5) and
    whose weights still exist; None when there is none."""
    gate = gate or QualityGate()
    passing = [(e.get("created", ""), order, e) for order, e in enumerate(load_detectors(workspace_root))
               if gate.passes_class(e, kind) and Path(e["weights"]).is_file()]
    # Registry order breaks ties between entries created in the same second.
    return max(passing, key=lambda p: p[:2])[2] if passing else None
