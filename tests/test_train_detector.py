"""Tests of tasks/tools/train_detector.py: greedy IoU matching and tiny CPU training runs (1 epoch, imgsz 64).

In: Haar-labelled datasets of two sample clips at 160 px (faces; faces, heads and persons). Out: checks that the run
is estimated, logged per epoch, evaluated against the teacher over all boxes and per box kind (calibrated conf,
ms/frame) and registered; the slow test runs both Prefect flows."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.tools.dataset import DatasetParams, build_dataset
from tasks.tools.train_detector import TrainParams, match_boxes, train_detector
from tasks.video.detect.yolo import QualityGate, YoloDetector, best_registered, load_detectors


def test_match_boxes_is_greedy_one_to_one_by_score():
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    pred = [(0, 0, 10, 10, 0.5), (1, 0, 11, 10, 0.9), (20, 0, 30, 10, 0.7), (50, 50, 60, 60, 0.99)]
    assert sorted(match_boxes(pred, truth)) == [(1, 0), (2, 1)]  # the surer of two overlapping boxes wins
    assert match_boxes([(0, 0, 10, 10, 1.0)], [(5, 0, 15, 10)]) == []  # IoU 1/3
    assert match_boxes([(0, 0, 10, 10, 1.0)], [(5, 0, 15, 10)], min_iou=0.3) == [(0, 0)]
    assert match_boxes([], truth) == [] and match_boxes(pred, []) == []


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, sample_dir) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "faces"
    build_dataset([sample_dir / "montage_dev00.mp4", sample_dir / "montage_trn07.mp4"], out,
                  DatasetParams(teacher="haar", max_side=160, min_face=12, coco=False, contact_sheet=0))
    return out


def test_one_epoch_registers_an_evaluated_detector(tiny_dataset, tmp_path):
    seen, lines = [], []
    entry = train_detector(tiny_dataset, tmp_path, TrainParams(epochs=1, imgsz=64, batch=8),
                           progress=lambda done, total: seen.append((done, total)), log=lines.append)
    assert seen == [(1, 1)]
    assert lines[0].startswith("estimate:") and any(line.startswith("epoch 1/1") for line in lines)
    assert load_detectors(tmp_path) == [entry]
    weights = Path(entry["weights"])
    assert weights.is_file() and weights.is_relative_to(tmp_path / "detectors")
    m = entry["metrics"]
    assert m["held_out_split"] == "val" and m["held_out_frames"] > 0 and m["teacher_boxes"] > 0
    for key in ("map50", "map50_95", "recall_vs_teacher", "precision_vs_teacher"):
        assert 0.0 <= m[key] <= 1.0
    assert m["yolo_ms_per_frame"] > 0 and m["teacher_ms_per_frame"] > 0 and m["speedup"] > 0
    one_class = {k: m[k] for k in ("teacher_boxes", "yolo_boxes", "recall_vs_teacher", "precision_vs_teacher")}
    assert m["per_class"] == {"face": one_class} and m["per_class_map50"] == {"face": pytest.approx(m["map50"])}
    assert 0.01 <= entry["conf"] < 1 and entry["conf_source"] == "best F1 on val"
    assert entry["teacher"] == "haar" and entry["train"]["epochs_run"] == 1 and entry["train"]["estimate_seconds"] > 0
    # one epoch from scratch cannot pass the default gate, but a permissive gate picks it, and it loads
    assert best_registered(tmp_path) is None
    assert best_registered(tmp_path, QualityGate(min_recall=0, min_map50=0))["id"] == entry["id"]
    assert YoloDetector(weights).classes == [0]


def test_a_multi_class_run_records_each_kinds_agreement_with_the_teacher(tmp_path_factory, sample_dir, tmp_path):
    data = tmp_path_factory.mktemp("kinds") / "fhp"
    build_dataset([sample_dir / "montage_dev00.mp4", sample_dir / "montage_trn07.mp4"], data,
                  DatasetParams(teacher="haar", max_side=160, min_face=12, coco=False, contact_sheet=0,
                                kinds=["face", "head", "person"]))
    lines = []
    entry = train_detector(data, tmp_path, TrainParams(epochs=1, imgsz=64, batch=8), log=lines.append)
    m = entry["metrics"]
    assert set(m["per_class"]) == set(m["per_class_map50"]) == {"face", "head", "person"}
    # Every box is judged within its own kind: the kinds' counts add up to the overall ones.
    for key in ("teacher_boxes", "yolo_boxes"):
        assert sum(c[key] for c in m["per_class"].values()) == m[key]
    assert m["per_class"]["face"]["teacher_boxes"] == m["per_class"]["head"]["teacher_boxes"] > 0  # a head per face
    assert m["per_class"]["person"]["teacher_boxes"] == 0  # HOG's 128 px window does not fit a 90 px frame
    for c in m["per_class"].values():
        assert 0.0 <= c["recall_vs_teacher"] <= 1.0 and 0.0 <= c["precision_vs_teacher"] <= 1.0
    assert any(line.startswith("per-kind recall / precision vs the teacher") for line in lines)
    anything = QualityGate(min_recall=0, min_map50=0)
    assert [k for k in ("face", "head", "person") if anything.passes_class(entry, k)] == ["face", "head"]
    assert best_registered(tmp_path, anything, kind="head")["id"] == entry["id"]
    assert best_registered(tmp_path, anything, kind="person") is None


def test_missing_checkpoint_is_refused_before_training(tiny_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train_detector(tiny_dataset, tmp_path, TrainParams(checkpoint=tmp_path / "nope.pt"))


@pytest.mark.slow
def test_flows_run_end_to_end(tiny_dataset, tmp_path, sample_dir):
    from flows.detector_flows import dataset_flow, train_detector_flow

    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("montage_dev00.mp4", "montage_trn07.mp4"):
        (lib / name).symlink_to(sample_dir / name)
    summary = dataset_flow(str(lib), str(tmp_path / "ds"),
                           DatasetParams(teacher="haar", max_side=160, min_face=12, contact_sheet=0))
    assert summary["images"]["val"] > 0
    entry = train_detector_flow(str(tmp_path / "ds"), str(tmp_path / "ws"), TrainParams(epochs=1, imgsz=64))
    assert load_detectors(tmp_path / "ws")[0]["id"] == entry["id"]
