"""Fine-tune a YOLO face detector on CPU from a teacher-labelled dataset, evaluate it, and register it.

In: a dataset folder (tasks/tools/dataset.py layout), a workspace folder, TrainParams. Out: WORKSPACE/detectors/<id>/ (ultralytics
run, weights/best.pt) and a registry entry with mAP, recall/precision vs the teacher (all boxes, and per box kind: the
quality gate judges each kind on its own) and ms/frame. Backend: ultralytics YOLO.
"""
from __future__ import annotations

import copy
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

from tasks.core import device
from tasks.core.config import DetectParams
from tasks.tools.dataset import DATA_YAML, SUMMARY, check_dataset, held_out_split, label_path, list_images, read_label_file
from tasks.video.detect import FaceDetector, make_detector, read_rgb
from tasks.core.formats import read_json
from tasks.core.offline import configure as configure_offline
from tasks.core.records import iou
from tasks.core.stage import Progress
from tasks.tools.params import TrainParams
from tasks.video.detect.yolo import REGISTRY_DIR, YoloDetector, register_detector

Log = Callable[[str], None]
XYXY = Sequence[float]

# Lowest YOLO confidence considered when calibrating: below it a short-trained model returns hundreds of boxes.
CONF_FLOOR = 0.01

# Wall time of an epoch over the bare forward+backward time we measure: mosaic augmentation, JPEG decoding,
# the optimizer step and the per-epoch validation pass (measured ~1.5-2x with workers=0 on 2 cores).
EPOCH_OVERHEAD = 1.8


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def match_boxes(predicted: Sequence[Sequence[float]], truth: Sequence[XYXY], min_iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, most confident prediction first, each to the free truth box it overlaps most
    (IoU >= min_iou). `predicted` rows are (x1, y1, x2, y2, score); returns (prediction, truth) index pairs."""
    order = sorted(range(len(predicted)), key=lambda i: -predicted[i][4])
    free = set(range(len(truth)))
    pairs = []
    for i in order:
        best = max(free, key=lambda j: iou(predicted[i], truth[j]), default=None)
        if best is not None and iou(predicted[i], truth[best]) >= min_iou:
            pairs.append((i, best))
            free.discard(best)
    return pairs


def _tensors(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in (out if isinstance(out, (list, tuple)) else []) for t in _tensors(o)]


def measure_train_ms_per_image(model, imgsz: int, batch: int) -> float:
    """Forward+backward milliseconds per image of a copy of the model on a random batch (fastest of three steps:
    the first pays for allocation, and other processes on a shared machine only ever slow a step down)."""
    import torch

    net = copy.deepcopy(model).float().train()
    for p in net.parameters():
        p.requires_grad_(True)
    x = torch.rand(batch, 3, imgsz, imgsz)
    steps = []
    for _ in range(3):
        started = time.perf_counter()
        sum(t.float().mean() for t in _tensors(net(x))).backward()
        steps.append(time.perf_counter() - started)
        net.zero_grad(set_to_none=True)
    return 1000 * min(steps) / batch


def _held_out(dataset_dir: Path, split: str) -> list[tuple[Path, list[tuple[int, XYXY]]]]:
    """Held-out images with their teacher boxes in pixels, each with its class id."""
    out = []
    n_classes = len(check_dataset(dataset_dir)["names"])
    for image in list_images(dataset_dir / "images" / split):
        label = label_path(image)
        rows = read_label_file(label, n_classes) if label.exists() else []
        h, w = read_rgb(image).shape[:2]
        out.append((image, [(cls, ((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h))
                            for cls, xc, yc, bw, bh in rows]))
    return out


def _timed(detect: Callable[[np.ndarray], list], images: list[np.ndarray]) -> tuple[list, float]:
    """Detections per image and mean ms per image, after one untimed warm-up call (model loading)."""
    detect(images[0])
    out, seconds = [], 0.0
    for image in images:
        started = time.perf_counter()
        out.append(detect(image))
        seconds += time.perf_counter() - started
    return out, 1000 * seconds / len(images)


Scored = tuple[list[tuple[float, bool]], int]  # (score, matched) per YOLO box, and the number of teacher boxes


def _scored_matches(items: list[tuple[Path, list[tuple[int, XYXY]]]],
                    predictions: list[list[tuple[str, Sequence[float]]]], labels: dict[int, str],
                    min_iou: float) -> dict[str, Scored]:
    """Per box kind of the model (`labels`: class id -> kind, the teacher's class ids being the model's): the
    (score, matched) of each YOLO box of that kind and the number of teacher boxes of it; a YOLO box matches only
    a teacher box of its own kind. Greedy matching goes by descending score, so the matches of the boxes above
    any threshold are the same as matching those boxes alone: one pass serves every threshold."""
    out: dict[str, Scored] = {kind: ([], 0) for kind in labels.values()}
    for (_, truth), pred in zip(items, predictions):
        for kind, (scored, n_truth) in out.items():
            boxes = [p for k, p in pred if k == kind]
            own = [b for cls, b in truth if labels.get(cls) == kind]
            matched = {i for i, _ in match_boxes(boxes, own, min_iou)}
            out[kind] = (scored + [(p[4], i in matched) for i, p in enumerate(boxes)], n_truth + len(own))
    return out


def _pooled(per_kind: dict[str, Scored]) -> Scored:
    return [s for scored, _ in per_kind.values() for s in scored], sum(n for _, n in per_kind.values())


def calibrate_conf(dataset_dir: Path, split: str, weights: Path, imgsz: int, min_face: int, min_iou: float,
                   default: float = 0.25, class_map: dict[str, str] | None = None) -> float:
    """The YOLO confidence threshold with the best F1 against the teacher's boxes of every kind on `split` (ties:
    the higher threshold); `default` when no box matches. Short training leaves confidences low, so a fixed 0.25
    can hide boxes that are in the right place."""
    items = _held_out(dataset_dir, split)
    # YOLO boxes smaller than the teacher's min_face are ignored, as the teacher's were.
    yolo = YoloDetector(weights, imgsz=imgsz, conf=CONF_FLOOR, class_map=class_map, min_side=min_face)
    scored, n_truth = _pooled(_scored_matches(items, [yolo.labelled(read_rgb(p)) for p, _ in items], yolo.labels,
                                              min_iou))
    best, best_f1, tp = default, 0.0, 0
    for n, (score, matched) in enumerate(sorted(scored, key=lambda s: -s[0]), 1):
        tp += matched
        f1 = 2 * tp / (n + n_truth)
        if f1 > best_f1:
            best, best_f1 = score, f1
    return max(CONF_FLOOR, round(best, 4))


def _agreement(scored: list[tuple[float, bool]], n_truth: int) -> dict:
    tp, n_pred = sum(m for _, m in scored), len(scored)
    return {"teacher_boxes": n_truth, "yolo_boxes": n_pred,
            "recall_vs_teacher": tp / n_truth if n_truth else 0.0,
            "precision_vs_teacher": tp / n_pred if n_pred else 0.0}


def compare_with_teacher(dataset_dir: Path, split: str, yolo: YoloDetector, teacher: FaceDetector | None,
                         min_iou: float) -> dict:
    """Recall/precision of YOLO against the teacher's labels on one split, over every box and per box kind
    (`per_class`), and both detectors' ms/frame on the same frames."""
    items = _held_out(dataset_dir, split)
    images = [read_rgb(path) for path, _ in items]
    predictions, yolo_ms = _timed(yolo.labelled, images)
    per_kind = _scored_matches(items, predictions, yolo.labels, min_iou)
    teacher_ms = _timed(teacher.detect, images)[1] if teacher is not None else None
    return {
        "held_out_split": split,
        "held_out_frames": len(items),
        **_agreement(*_pooled(per_kind)),
        "per_class": {kind: _agreement(scored, n_truth) for kind, (scored, n_truth) in per_kind.items()},
        "yolo_ms_per_frame": yolo_ms,
        "teacher_ms_per_frame": teacher_ms,
        "speedup": teacher_ms / yolo_ms if teacher_ms else None,
    }


def per_class_map50(scores, names: dict) -> dict[str, float | None]:
    """Class name -> mAP50 on the evaluated split; None for a class with no box there (ultralytics leaves it out)."""
    present = [int(i) for i in getattr(scores.box, "ap_class_index", [])]
    ap50 = list(getattr(scores.box, "ap50", []))
    by_index = dict(zip(present, (float(v) for v in ap50)))
    return {str(n): by_index.get(int(i)) for i, n in names.items()}


def _dataset_classes(dataset_dir: Path) -> str:
    """What the dataset's classes are: `face` (teacher-labelled kinds) or `characters` (tasks/tools/character_dataset.py)."""
    summary_path = dataset_dir / SUMMARY
    return read_json(summary_path).get("classes", "face") if summary_path.exists() else "face"


def _teacher(dataset_dir: Path) -> tuple[FaceDetector | None, str | None, int]:
    """The bootstrap detector named in dataset.json, rebuilt with its labelling settings (None if unknown)."""
    summary_path = dataset_dir / SUMMARY
    if not summary_path.exists():
        return None, None, 0
    summary = read_json(summary_path)
    p = summary["params"]
    try:
        params = DetectParams(backend=summary["teacher"], min_face=p["min_face"], min_score=p["min_score"])
    except ValueError:  # labelled by a detector castline cannot rebuild
        return None, summary["teacher"], p["min_face"]
    return make_detector(params), summary["teacher"], p["min_face"]


def _epoch_logger(log: Log, progress: Progress) -> Callable:
    """ultralytics' on_fit_epoch_end callback: one log line per epoch (loss, mAP50, recall, time) and progress."""
    def on_epoch(trainer) -> None:
        if not getattr(trainer.validator, "training", True):
            return  # ultralytics reruns this callback after training, as epoch N+1, for its final eval of best.pt
        m = trainer.metrics or {}
        loss = trainer.tloss
        loss = sum(float(v) for v in loss.values()) if isinstance(loss, dict) else float(np.sum(np.asarray(loss or 0)))
        log(f"epoch {trainer.epoch + 1}/{trainer.epochs}: loss {loss:.3f}  mAP50 {m.get('metrics/mAP50(B)', 0):.3f}  "
            f"recall {m.get('metrics/recall(B)', 0):.3f}  ({trainer.epoch_time or 0:.0f} s)")
        if progress is not None:
            progress(trainer.epoch + 1, trainer.epochs)

    return on_epoch


def _held_out_metrics(dataset_dir: Path, split: str, weights: Path, names: dict, classes: str, scores,
                      params: TrainParams, log: Log) -> tuple[dict, float, str | None]:
    """ultralytics' mAP on the held-out split, with recall and precision against the dataset's teacher at a
    confidence calibrated on val (or params.conf); logged, and returned with that confidence and the teacher."""
    teacher, teacher_name, min_face = _teacher(dataset_dir)
    # A characters dataset's classes are all faces (each one person's): recall is measured on faces of any class.
    class_map = {str(n): "face" for n in names.values()} if classes != "face" else None
    conf = params.conf or calibrate_conf(dataset_dir, "val", weights, params.imgsz, min_face, params.match_iou,
                                         class_map=class_map)
    yolo = YoloDetector(weights, imgsz=params.imgsz, conf=conf, class_map=class_map, min_side=min_face)
    comparison = compare_with_teacher(dataset_dir, split, yolo, teacher, params.match_iou)
    metrics = {"map50": float(scores.box.map50), "map50_95": float(scores.box.map), **comparison,
               "per_class_map50": per_class_map50(scores, names)}
    if len(names) > 1:
        log("per-class mAP50 on held-out " + split + ": " + ", ".join(
            f"{n} {v:.3f}" if v is not None else f"{n} (not in {split})" for n, v in metrics["per_class_map50"].items()))
    if len(comparison["per_class"]) > 1:
        log(f"per-kind recall / precision vs the teacher on held-out {split}: " + ", ".join(
            f"{kind} {c['recall_vs_teacher']:.3f} / {c['precision_vs_teacher']:.3f} ({c['teacher_boxes']} boxes)"
            for kind, c in comparison["per_class"].items()))
    log(f"held-out {split} ({comparison['held_out_frames']} frames): mAP50 {metrics['map50']:.3f}  "
        f"mAP50-95 {metrics['map50_95']:.3f}  recall {metrics['recall_vs_teacher']:.3f}  "
        f"precision {metrics['precision_vs_teacher']:.3f} vs {teacher_name} at conf {conf:g}")
    return metrics, conf, teacher_name


def train_detector(dataset_dir: str | Path, workspace_root: str | Path, params: TrainParams,
                   progress: Progress = None, log: Log | None = None) -> dict:
    """Train, evaluate on the held-out split and register; returns the registry entry.

    `progress(epoch, epochs)` is called after each epoch; `log` receives the time estimate, one line per
    epoch and the evaluation (default: stderr)."""
    log = log or _stderr
    dataset_dir = Path(dataset_dir).resolve()
    info = check_dataset(dataset_dir)
    if params.checkpoint is not None and not Path(params.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {params.checkpoint}")
    configure_offline()  # ultralytics' font must be local before it plots or checks a dataset
    from ultralytics import YOLO

    run_id = f"yolo-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    project = Path(workspace_root).resolve() / REGISTRY_DIR
    base = str(params.checkpoint) if params.checkpoint else params.model_yaml
    model = YOLO(base, task="detect")

    n_train, n_val = info["splits"]["train"]["images"], info["splits"]["val"]["images"]
    ms = measure_train_ms_per_image(model.model, params.imgsz, min(params.batch, n_train))
    estimate = EPOCH_OVERHEAD * params.epochs * (n_train + n_val / 3) * ms / 1000
    log(f"estimate: {n_train} train + {n_val} val images x {params.epochs} epochs x {ms:.0f} ms/img "
        f"(forward+backward, x{EPOCH_OVERHEAD} overhead) = ~{estimate / 60:.1f} min")

    model.add_callback("on_fit_epoch_end", _epoch_logger(log, progress))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="castline-train-") as tmp:
        # A copy of data.yaml pointing at where the dataset is now, so a moved dataset still trains.
        spec = yaml.safe_load((dataset_dir / DATA_YAML).read_text(encoding="utf-8"))
        data_yaml = Path(tmp) / DATA_YAML
        data_yaml.write_text(yaml.safe_dump({**spec, "path": str(dataset_dir)}, sort_keys=False), encoding="utf-8")
        model.train(data=str(data_yaml), epochs=params.epochs, imgsz=params.imgsz, batch=params.batch,
                    workers=params.workers, patience=params.patience, cache="ram" if params.cache else False,
                    seed=params.seed, device=device.name(), project=str(project), name=run_id, exist_ok=True,
                    plots=False, amp=False, verbose=False, pretrained=params.checkpoint is not None)
        train_seconds = time.perf_counter() - started
        trainer = model.trainer
        weights = Path(trainer.best if Path(trainer.best).exists() else trainer.last)

        split = held_out_split(dataset_dir)
        scores = YOLO(str(weights), task="detect").val(
            data=str(data_yaml), split=split, imgsz=params.imgsz, batch=params.batch, workers=0, device=device.name(),
            plots=False, verbose=False, project=str(project / run_id), name="val", exist_ok=True)
    classes = _dataset_classes(dataset_dir)
    metrics, conf, teacher_name = _held_out_metrics(dataset_dir, split, weights, info["names"], classes, scores,
                                                    params, log)
    return register_detector(workspace_root, {
        "id": run_id,
        "weights": str(weights),
        "dataset": str(dataset_dir),
        "base": base,
        "teacher": teacher_name,
        "classes": classes,
        "names": {int(k): str(v) for k, v in info["names"].items()},
        "imgsz": params.imgsz,
        "conf": conf,
        "conf_source": "fixed" if params.conf else "best F1 on val",
        "metrics": metrics,
        "train": {"epochs": params.epochs, "epochs_run": trainer.epoch + 1, "train_images": n_train,
                  "seconds": train_seconds, "estimate_seconds": estimate},
        "params": params.model_dump(mode="json"),
    })
