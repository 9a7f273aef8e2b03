"""Tests of tasks/video/detect/yolo.py: YoloDetector on a real frame and its one-line errors, the registry, and
backend auto choosing a source per box kind.

In: random-init yolov8n weights saved by ultralytics, a sample frame, temp workspaces. Out: checks of class mapping,
bad weights files and class maps, the per-class quality gate (old entries judged as before), two processes
registering at once without losing an entry, and auto's per-kind parameters, reason and cache key."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import cv2
import pytest

from tasks.video.detect.yolo import (
    QualityGate,
    YoloDetector,
    YoloDetectorError,
    best_registered,
    load_detectors,
    register_detector,
    registry_path,
)


def save_random_yolo(path: Path, names: dict[int, str]) -> Path:
    """A random-init yolov8n with our class names, saved the way ultralytics saves trained weights."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    cfg = yaml_model_load("yolov8n.yaml")
    cfg["nc"] = len(names)
    model = YOLO("yolov8n.yaml")
    model.model = DetectionModel(cfg, verbose=False)
    model.model.names = names
    model.save(path)
    return path


@pytest.fixture(scope="module")
def face_weights(tmp_path_factory) -> Path:
    return save_random_yolo(tmp_path_factory.mktemp("w") / "face.pt", {0: "face"})


@pytest.fixture(scope="module")
def frame(sample_dir):
    cap = cv2.VideoCapture(str(sample_dir / "montage_dev00.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_random_yolo_detects_on_a_real_frame(face_weights, frame):
    detector = YoloDetector(face_weights, imgsz=128, conf=0.001)
    assert detector.name == "yolo" and detector.classes == [0]
    boxes = detector.detect(frame)
    assert isinstance(boxes, list)
    h, w = frame.shape[:2]
    for x1, y1, x2, y2, score in boxes:
        assert -1 <= x1 <= x2 <= w + 1 and -1 <= y1 <= y2 <= h + 1 and 0.001 <= score <= 1


def test_class_map_keeps_only_face_classes(tmp_path, frame):
    weights = save_random_yolo(tmp_path / "two.pt", {0: "person", 1: "head"})
    detector = YoloDetector(weights, imgsz=96, conf=0.001)
    assert detector.labels == {0: "person", 1: "face"} and detector.classes == [1]
    assert all(len(b) == 5 for b in detector.detect(frame))

    weights = save_random_yolo(tmp_path / "cars.pt", {0: "car", 1: "truck"})
    with pytest.raises(YoloDetectorError, match=r"no class of cars\.pt maps to a face \(classes 0:car, 1:truck"):
        YoloDetector(weights)
    assert YoloDetector(weights, class_map={"truck": "face"}).classes == [1]


@pytest.mark.parametrize("content,name,message", [
    ("this is not a model\n" * 10, "notes.pt", "not a YOLO weights file"),
    ("", "empty.onnx", "not a YOLO weights file"),
    ("x", "model.h5", "expected .pt or .onnx"),
])
def test_bad_weights_file_gives_one_line_error(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(YoloDetectorError, match=message) as err:
        YoloDetector(path)
    assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(YoloDetectorError, match="not found"):
        YoloDetector(tmp_path / "missing.pt")


def entry(weights: Path, recall: float, map50: float, created: str) -> dict:
    return {"weights": str(weights), "created": created,
            "metrics": {"recall_vs_teacher": recall, "precision_vs_teacher": 0.9, "map50": map50}}


def test_best_registered_is_newest_entry_passing_the_gate(tmp_path):
    assert load_detectors(tmp_path) == [] and best_registered(tmp_path) is None
    w = tmp_path / "w.pt"
    w.write_bytes(b"x")
    old = register_detector(tmp_path, entry(w, 0.95, 0.8, "2026-01-01T00:00:00+00:00"))
    register_detector(tmp_path, entry(w, 0.6, 0.9, "2026-01-02T00:00:00+00:00"))  # recall below default gate
    register_detector(tmp_path, entry(tmp_path / "gone.pt", 0.99, 0.99, "2026-01-03T00:00:00+00:00"))
    assert old["id"].startswith("yolo-") and len(load_detectors(tmp_path)) == 3
    assert best_registered(tmp_path)["id"] == old["id"]
    assert best_registered(tmp_path, QualityGate(min_recall=0.5))["metrics"]["recall_vs_teacher"] == 0.6
    assert best_registered(tmp_path, QualityGate(min_map50=0.85)) is None
    with pytest.raises(ValueError, match="weights"):
        register_detector(tmp_path, {"metrics": {}})
    registry_path(tmp_path).write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_detectors(tmp_path)


def _register_many(root: str, worker: int, n: int) -> None:
    for i in range(n):
        register_detector(root, {"weights": f"/w/{worker}-{i}.pt", "metrics": {}})


def test_concurrent_writers_lose_no_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path), w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    weights = [e["weights"] for e in load_detectors(tmp_path)]
    assert len(weights) == len(set(weights)) == 50


def test_auto_backend_picks_a_passing_trained_detector_and_says_why(tmp_path):
    from tasks.core.config import DetectParams
    from tasks.video.detect import resolve_backend
    from tasks.video.detect.yolo import register_detector

    params, why = resolve_backend(DetectParams(), tmp_path)
    assert params.backend == "mtcnn" and "no detector trained" in why

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    register_detector(tmp_path, {"weights": str(weights), "imgsz": 256, "conf": 0.12,
                                 "metrics": {"recall_vs_teacher": 0.5, "map50": 0.9}})
    assert resolve_backend(DetectParams(), tmp_path)[0].backend == "mtcnn"  # below the recall gate
    entry = register_detector(tmp_path, {"weights": str(weights), "imgsz": 256, "conf": 0.12,
                                         "metrics": {"recall_vs_teacher": 0.9, "map50": 0.9}})
    params, why = resolve_backend(DetectParams(), tmp_path)
    assert (params.backend, params.yolo_weights, params.yolo_imgsz, params.min_score) == ("yolo", str(weights), 256, 0.12)
    assert entry["id"] in why
    assert resolve_backend(DetectParams(backend="haar"), tmp_path)[0].backend == "haar"  # explicit choice wins


def test_a_bad_class_map_is_one_line(tmp_path):
    weights = save_random_yolo(tmp_path / "two.pt", {0: "person", 1: "head"})
    with pytest.raises(YoloDetectorError, match=r"class map names 'car', not a class of two\.pt") as err:
        YoloDetector(weights, class_map={"car": "face"})
    assert "\n" not in str(err.value)
    with pytest.raises(YoloDetectorError, match=r"sends 'head' to 'hand', not a box kind \(face, head, person\)"):
        YoloDetector(weights, class_map={"head": "hand"})
    with pytest.raises(YoloDetectorError, match=r"no class of two\.pt maps to a head"):
        YoloDetector(weights, kind="head")  # without a face class, a class named head is the face
    assert YoloDetector(weights, kind="person").classes == [0]


def per_class(face: float, person: float) -> dict:
    """Metrics of a face,head,person detector with recall `face` and `person` for those kinds and no head seen."""
    kinds = {"face": face, "head": 0.0, "person": person}
    return {"recall_vs_teacher": 0.9, "precision_vs_teacher": 0.9, "map50": 0.9,
            "per_class": {k: {"recall_vs_teacher": r, "precision_vs_teacher": 0.9, "yolo_boxes": 10,
                              "teacher_boxes": 0 if k == "head" else 10} for k, r in kinds.items()},
            "per_class_map50": {"face": 0.9, "head": None, "person": 0.7}}


def test_the_gate_judges_each_class_and_old_entries_as_before():
    gate = QualityGate()
    new = {"weights": "w.pt", "metrics": per_class(face=0.3, person=0.9)}
    assert [k for k in ("face", "head", "person") if gate.passes_class(new, k)] == ["person"]
    # No head on the held-out split: no evidence, even for a gate that asks for nothing.
    assert not QualityGate(min_recall=0, min_map50=0).passes_class(new, "head")
    assert not QualityGate(min_map50=0.8).passes_class(new, "person")  # per-class mAP50, not the overall 0.9
    # Before per-class metrics: a face detector judged on all its boxes, and no evidence for any other kind.
    old = {"weights": "w.pt", "metrics": {"recall_vs_teacher": 0.9, "precision_vs_teacher": 0.5, "map50": 0.6,
                                          "per_class_map50": {"face": 0.6, "person": 0.9}}}
    assert gate.passes_class(old, "face") and not gate.passes_class(old, "person")
    assert not QualityGate(min_precision=0.6).passes_class(old, "face")
    assert not gate.passes_class({**new, "classes": "characters"}, "person")


def test_auto_takes_each_kind_from_where_its_class_passes(tmp_path):
    from tasks.core.config import DetectParams, RunConfig, YoloSource
    from tasks.video.detect import make_body_detectors, model_files, resolve_backend
    from tasks.video.pipeline import StageKeys

    weights = save_random_yolo(tmp_path / "fhp.pt", {0: "face", 1: "head", 2: "person"})
    asked = DetectParams(kinds=["face", "head", "person"])
    before = StageKeys("v" * 16, RunConfig(detect=resolve_backend(asked, tmp_path)[0]))["detect"]
    entry = register_detector(tmp_path, {"weights": str(weights), "imgsz": 160, "conf": 0.05,
                                         "metrics": per_class(face=0.3, person=0.9)})

    params, why = resolve_backend(asked, tmp_path)
    assert params.backend == "mtcnn" and params.yolo_weights is None and params.min_score == 0.9  # teacher faces
    assert params.yolo_kinds == {"person": YoloSource(weights=str(weights), imgsz=160, conf=0.05)}
    assert "face from mtcnn: no detector" in why and "head from the head rule" in why
    assert f"person from trained detector {entry['id']} (recall vs teacher 0.900" in why
    # Worker processes rebuild the detectors from the parameters: persons from YOLO, heads by the rule.
    assert DetectParams.model_validate_json(params.model_dump_json()) == params
    body = make_body_detectors(params)
    assert (body.persons.kind, body.persons.classes, body.persons.conf, body.heads) == ("person", [2], 0.05, None)
    assert model_files(params) == [weights]
    assert StageKeys("v" * 16, RunConfig(detect=params))["detect"] != before  # a passing detector re-runs detect

    # Faces only (the default): the registry's person class changes nothing.
    assert resolve_backend(DetectParams(), tmp_path)[0] == DetectParams(backend="mtcnn")
    # A newer old-style entry passes for faces only: faces from it, persons still from the older per-class one.
    old = register_detector(tmp_path, {"weights": str(weights), "imgsz": 160, "conf": 0.05,
                                       "metrics": {"recall_vs_teacher": 0.9, "map50": 0.9}})
    params, why = resolve_backend(DetectParams(kinds=["face", "person"]), tmp_path)
    assert (params.backend, params.yolo_weights, params.min_score) == ("yolo", str(weights), 0.05)
    assert f"face from trained detector {old['id']}" in why and f"person from trained detector {entry['id']}" in why
    with pytest.raises(ValueError, match="yolo_kinds names person, which detect.kinds"):
        DetectParams(yolo_kinds={"person": {"weights": str(weights)}})
