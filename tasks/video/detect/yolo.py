"""A fine-tuned YOLO model as a castline face detector, and the registry of trained detectors.

In: an ultralytics weights file (.pt or exported .onnx) and RGB frames; registry entries from training.
Out: face boxes (x1, y1, x2, y2, score) per frame; WORKSPACE/detectors/registry.json. Backend: ultralytics YOLO on CPU.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import device
from tasks.core.formats import locked, read_json, to_jsonable, write_json

Detection = tuple[float, float, float, float, float]

# Model class names (lower-cased) -> castline labels; public datasets name faces "face" or "head".
CLASS_LABELS = {"face": "face", "faces": "face", "human face": "face", "head": "face",
                "person": "person", "pedestrian": "person"}

REGISTRY_DIR = "detectors"
REGISTRY_FILE = "registry.json"


class YoloDetectorError(ValueError):
    """A weights file castline cannot use as a face detector; the message is one line."""


class YoloDetector:
    """FaceDetector protocol over any ultralytics detection model whose classes include a face (or head)."""

    name = "yolo"

    def __init__(self, weights: str | Path, imgsz: int = 320, conf: float = 0.25, iou: float = 0.5,
                 class_map: dict[str, str] | None = None):
        self.weights = Path(weights)
        self.imgsz = imgsz
        self.conf = conf
        self.iou = iou
        if not self.weights.is_file():
            raise YoloDetectorError(f"YOLO weights not found: {self.weights}")
        if self.weights.suffix.lower() not in (".pt", ".onnx"):
            raise YoloDetectorError(f"not a YOLO weights file (expected .pt or .onnx): {self.weights.name}")
        from ultralytics import YOLO

        try:
            self._model = YOLO(str(self.weights), task="detect")
            names = dict(self._model.names)  # for .onnx this loads the session, so a bad file fails here
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise YoloDetectorError(f"not a YOLO weights file ({type(e).__name__}: {reason[:160]}): "
                                    f"{self.weights.name}") from None
        mapping = {k.lower(): v for k, v in {**CLASS_LABELS, **(class_map or {})}.items()}
        self.labels = {int(i): mapping[str(n).lower()] for i, n in names.items() if str(n).lower() in mapping}
        if any(str(n).lower() in ("face", "faces", "human face") for n in names.values()):
            # A model with both classes (a castline face,head,person dataset): its head is not a face.
            self.labels = {i: "head" if str(names[i]).lower() == "head" and not (class_map or {}).get(str(names[i]))
                           else label for i, label in self.labels.items()}
        self.face_classes = sorted(i for i, label in self.labels.items() if label == "face")
        if not self.face_classes:
            shown = ", ".join(f"{i}:{n}" for i, n in list(names.items())[:8]) + (" ..." if len(names) > 8 else "")
            raise YoloDetectorError(f"no class of {self.weights.name} maps to a face (classes {shown}; "
                                    f"expected one named face or head, or pass class_map)")

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        # ultralytics treats numpy input as BGR (cv2's order), as its training images were read.
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        result = self._model.predict(bgr, imgsz=self.imgsz, conf=self.conf, iou=self.iou, device=device.name(),
                                     classes=self.face_classes, verbose=False)[0]
        xyxy = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        return [(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s)) for b, s in zip(xyxy, scores)]


# --- registry ------------------------------------------------------------------------------------

class QualityGate(BaseModel):
    """What a trained detector must reach before the detect stage's `auto` backend trusts it."""

    model_config = ConfigDict(extra="forbid")

    min_recall: float = Field(0.8, ge=0, le=1,
                              description="recall against the bootstrap detector's boxes on held-out videos (IoU>=0.5)")
    min_precision: float = Field(0.0, ge=0, le=1,
                                 description="precision against the bootstrap detector's boxes on held-out videos")
    min_map50: float = Field(0.5, ge=0, le=1, description="ultralytics mAP@0.5 on the held-out split")

    def passes(self, entry: dict) -> bool:
        m = entry.get("metrics", {})
        return (m.get("recall_vs_teacher", 0.0) >= self.min_recall
                and m.get("precision_vs_teacher", 0.0) >= self.min_precision
                and m.get("map50", 0.0) >= self.min_map50)


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


def best_registered(workspace_root: str | Path, gate: QualityGate | None = None) -> dict | None:
    """The newest registered detector that passes `gate` (defaults: recall >= 0.8, mAP50 >= 0.5) and whose
    weights still exist; None when there is none."""
    gate = gate or QualityGate()
    # A detector trained on a characters dataset names people, not the face class `auto` detects with.
    passing = [(e.get("created", ""), order, e) for order, e in enumerate(load_detectors(workspace_root))
               if gate.passes(e) and Path(e["weights"]).is_file() and e.get("classes", "face") == "face"]
    # Registry order breaks ties between entries created in the same second.
    return max(passing, key=lambda p: p[:2])[2] if passing else None
