"""A face-detection training set labelled by a bootstrap detector, in the standard ultralytics layout.

In: library videos and DatasetParams. Out: data.yaml, images/ and labels/ per split (grouped by video), manifest.csv,
dataset.json, optional COCO JSON, contact_sheet.png — written as one folder by rename. Backends: ffmpeg, MTCNN/dlib/Haar.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import yaml

from tasks.core.config import DemuxParams, DetectParams
from tasks.video.demux import MediaError, probe, require_video, sample_frames
from tasks.video.detect import FaceDetector, detect_faces, make_detector, read_rgb
from tasks.core.formats import atomic_dir, to_jsonable, write_csv
from tasks.core.records import Box, Frame
from tasks.core.stage import Progress
from tasks.core.workspace import safe_name
from tasks.tools.params import DatasetParams

DATA_YAML = "data.yaml"
MANIFEST = "manifest.csv"
SUMMARY = "dataset.json"
CONTACT_SHEET = "contact_sheet.png"
SPLITS = ("train", "val", "test")
CLASS_NAMES = {0: "face"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DatasetError(ValueError):
    """A dataset folder castline cannot train on; the message is one line naming the file at fault."""


@dataclass
class _Labelled:
    video: str
    frames_dir: Path
    frames: list[Frame]
    boxes: dict[int, list[Box]] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # width, height of every sampled frame of this video


# --- near-duplicates -------------------------------------------------------------------------------

def dhash(image_rgb: np.ndarray, size: int = 8) -> int:
    """Difference hash: 64 bits saying whether each pixel of a 9x8 grey thumbnail is brighter than its right
    neighbour; survives re-encoding and small shifts, changes on a cut."""
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def dedup_frames(frames_dir: Path, frames: Sequence[Frame], max_hamming: int | None) -> list[Frame]:
    """Frames of one video whose dHash is farther than max_hamming bits from every frame kept before them."""
    if max_hamming is None:
        return list(frames)
    kept: list[Frame] = []
    hashes: list[int] = []
    for frame in frames:
        h = dhash(read_rgb(Path(frames_dir) / frame.file))
        if all(bin(h ^ k).count("1") > max_hamming for k in hashes):
            kept.append(frame)
            hashes.append(h)
    return kept


# --- splits --------------------------------------------------------------------------------------

def split_videos(videos: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """video -> split, whole videos only, so no scene leaks between train and evaluation.

    Validation always gets a video (ultralytics needs one); test gets one only when train keeps at least one.
    """
    if len(videos) < 2:
        raise DatasetError(f"need at least 2 readable videos to split train/val by video, got {len(videos)}")
    order = sorted(videos)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n - n_val >= 2 else 0
    n_test = min(n_test, n - n_val - 1)
    return {v: "val" if i < n_val else "test" if i < n_val + n_test else "train" for i, v in enumerate(order)}


def unique_video_names(videos: Sequence[Path]) -> list[str]:
    """File stems made safe for file names; repeated stems (same name in two folders) get a counter."""
    names: list[str] = []
    for v in videos:
        base = safe_name(Path(v).stem)
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


# --- labels --------------------------------------------------------------------------------------

def yolo_line(box: Box, width: int, height: int, cls: int = 0) -> str:
    xc, yc = (box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height
    w, h = (box.x2 - box.x1) / width, (box.y2 - box.y1) / height
    return f"{cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}"


def read_label_file(path: Path, n_classes: int) -> list[tuple[int, float, float, float, float]]:
    """(class, xc, yc, w, h) rows of a YOLO label file; DatasetError naming the first bad line."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cls, (xc, yc, w, h) = int(parts[0]), map(float, parts[1:])
            ok = 0 <= cls < n_classes and all(0 <= v <= 1 for v in (xc, yc, w, h)) and w > 0 and h > 0
        except ValueError:  # wrong field count or a non-number
            ok = False
        if not ok:
            raise DatasetError(f"{path.parent.parent.name}/{path.parent.name}/{path.name} line {n}: expected "
                               f"'class xc yc w h' (class < {n_classes}, values in 0..1), got {line.strip()[:60]!r}")
        rows.append((cls, xc, yc, w, h))
    return rows


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _looks_like_image(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head.startswith(b"\xff\xd8") or head.startswith(b"\x89PNG")


def check_dataset(path: str | Path) -> dict:
    """Validate a dataset folder; returns {"names", "splits": {split: {"images", "boxes", "empty"}}}.

    Raises DatasetError with one line for a missing folder or data.yaml, a split without images, an
    image that is not a JPEG/PNG, or a label file with a bad line. Split folders are read relative to
    the dataset folder, so a moved dataset still checks."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    yaml_path = root / DATA_YAML
    if not yaml_path.is_file():
        raise DatasetError(f"not a dataset (no {DATA_YAML}): {root}")
    try:
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DatasetError(f"{DATA_YAML} is not valid YAML ({str(e).splitlines()[0]}): {root}") from None
    if not isinstance(spec, dict) or not all(k in spec for k in ("train", "val", "names")):
        raise DatasetError(f"{DATA_YAML} needs train, val and names: {root}")
    names = spec["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else dict(names or {})
    if not names:
        raise DatasetError(f"{DATA_YAML} lists no class names: {root}")
    splits = {}
    for split in SPLITS:
        if not spec.get(split):
            continue
        images = list_images(root / spec[split])
        if not images:
            if split == "test":
                continue
            raise DatasetError(f"no images in {spec[split]} of {root}")
        boxes = empty = 0
        for image in images:
            if not _looks_like_image(image):
                raise DatasetError(f"not a JPEG or PNG image (empty or corrupt): {image.relative_to(root)}")
            label = label_path(image)
            rows = read_label_file(label, len(names)) if label.exists() else []
            boxes += len(rows)
            empty += not rows
        splits[split] = {"images": len(images), "boxes": boxes, "empty": empty}
    return {"names": names, "splits": splits}


def held_out_split(path: str | Path) -> str:
    """The split evaluation uses: test when it has images, else val."""
    return "test" if "test" in check_dataset(path)["splits"] else "val"


# --- writing -------------------------------------------------------------------------------------

def _coco(rows: list[dict], split: str) -> dict:
    images, annotations = [], []
    for image_id, row in enumerate((r for r in rows if r["split"] == split), 1):
        images.append({"id": image_id, "file_name": row["image"], "width": row["width"], "height": row["height"]})
        for b in row["boxes"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": class_names(rows).index(b.label) + 1,
                                "bbox": [round(b.x1, 2), round(b.y1, 2), round(b.x2 - b.x1, 2), round(b.y2 - b.y1, 2)],
                                "area": round(b.area, 2), "iscrowd": 0, "score": round(b.score, 4)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names(rows))]}


def class_names(rows: list[dict]) -> list[str]:
    """The dataset's class names in id order (its kinds; a face dataset before kinds existed: face)."""
    return rows[0].get("kinds", list(CLASS_NAMES.values())) if rows else list(CLASS_NAMES.values())


def contact_sheet(root: Path, rows: list[dict], count: int, tile_w: int = 240) -> np.ndarray:
    """A grid of `count` images spread evenly over the dataset, teacher boxes in green, split/video/time below."""
    picks = [rows[round(i)] for i in np.linspace(0, len(rows) - 1, min(count, len(rows)))]
    tile_h = tile_w * 9 // 16 + 18
    cols = math.ceil(math.sqrt(len(picks) * 16 / 9 / 1.5))
    sheet = np.full((math.ceil(len(picks) / cols) * tile_h, cols * tile_w, 3), 255, np.uint8)
    for n, row in enumerate(picks):
        image = cv2.imread(str(root / row["image"]))
        scale = min(tile_w / row["width"], (tile_h - 18) / row["height"])
        for b in row["boxes"]:
            cv2.rectangle(image, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), (0, 200, 0), max(1, int(2 / scale)))
        small = cv2.resize(image, (int(row["width"] * scale), int(row["height"] * scale)), interpolation=cv2.INTER_AREA)
        y, x = (n // cols) * tile_h, (n % cols) * tile_w
        sheet[y:y + small.shape[0], x:x + small.shape[1]] = small
        cv2.putText(sheet, f"{row['split']} {row['video'][:18]} {row['t']:.0f}s", (x + 3, y + tile_h - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def _label_video(video: Path, name: str, scratch: Path, params: DatasetParams,
                 detector: FaceDetector, detect_params: DetectParams) -> tuple[_Labelled, int, float]:
    """Sample, de-duplicate and label one video; returns it, the frames sampled and the teacher's seconds."""
    info = probe(video)
    require_video(info)
    frames_dir = scratch / name
    frames_dir.mkdir()
    frames = sample_frames(info, frames_dir, DemuxParams(fps=params.fps, max_side=params.max_side,
                                                         jpeg_quality=params.jpeg_quality))
    kept = dedup_frames(frames_dir, frames, params.dedup_hamming)
    started = time.perf_counter()
    boxes = detect_faces(frames_dir, kept, detect_params, detector=detector)
    seconds = time.perf_counter() - started
    height, width = read_rgb(frames_dir / kept[0].file).shape[:2]
    item = _Labelled(video=name, frames_dir=frames_dir, frames=kept, size=(width, height))
    for b in boxes:
        item.boxes.setdefault(b.frame, []).append(b)
    return item, len(frames), seconds


def build_dataset(library_videos: list[Path], out_dir: Path, params: DatasetParams, progress: Progress = None,
                  detector: FaceDetector | None = None) -> dict:
    """Sample, de-duplicate and teacher-label every video, split by video, and write the dataset folder at once.

    A video that cannot be read is skipped and named in the summary; `detector` overrides the teacher named in
    params (tests pass a fast one). Returns the summary also written to dataset.json."""
    out_dir = Path(out_dir)
    names = unique_video_names(library_videos)
    detect_params = DetectParams(backend=params.teacher, min_face=params.min_face, min_score=params.min_score,
                                 kinds=params.kinds)
    detector = detector or make_detector(detect_params)
    detector.detect(np.zeros((64, 64, 3), np.uint8))  # loads the model, so teacher_ms_per_frame is detection only
    labelled: list[_Labelled] = []
    skipped: dict[str, str] = {}
    sampled = 0
    teacher_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="castline-dataset-") as scratch:
        for n, (video, name) in enumerate(zip(library_videos, names), 1):
            try:
                item, n_sampled, seconds = _label_video(Path(video), name, Path(scratch), params, detector,
                                                        detect_params)
                labelled.append(item)
                sampled += n_sampled
                teacher_seconds += seconds
            except MediaError as e:
                skipped[name] = str(e)
            if progress is not None:
                progress(n, len(library_videos))
        split_of = split_videos([item.video for item in labelled], params.val_fraction, params.test_fraction,
                                params.seed)
        with atomic_dir(out_dir) as tmp:
            rows = _write_layout(tmp, labelled, split_of, detector.name, params.kinds)
            summary = _write_metadata(tmp, out_dir, rows, split_of, params, detector.name, sampled,
                                      teacher_seconds, skipped)
    return summary


def _write_layout(tmp: Path, labelled: list[_Labelled], split_of: dict[str, str], teacher: str,
                  kinds: Sequence[str] = ("face",)) -> list[dict]:
    for split in SPLITS:
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
    rows = []
    for item in labelled:
        split = split_of[item.video]
        width, height = item.size
        for frame in item.frames:
            stem = f"{item.video}_{frame.index:06d}"
            image = Path("images") / split / f"{stem}.jpg"
            shutil.copyfile(item.frames_dir / frame.file, tmp / image)
            boxes = item.boxes.get(frame.index, [])
            (tmp / "labels" / split / f"{stem}.txt").write_text(
                "".join(yolo_line(b, width, height, kinds.index(b.label)) + "\n" for b in boxes), encoding="utf-8")
            rows.append({"image": image.as_posix(), "split": split, "video": item.video, "t": frame.t,
                         "detector": teacher, "boxes": boxes, "width": width, "height": height, "kinds": list(kinds)})
    return rows


def _write_metadata(tmp: Path, out_dir: Path, rows: list[dict], split_of: dict[str, str], params: DatasetParams,
                    teacher: str, sampled: int, teacher_seconds: float, skipped: dict[str, str]) -> dict:
    has = {s: any(r["split"] == s for r in rows) for s in SPLITS}
    spec = {"path": str(out_dir.resolve()), "train": "images/train", "val": "images/val",
            **({"test": "images/test"} if has["test"] else {}), "names": dict(enumerate(params.kinds))}
    (tmp / DATA_YAML).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    write_csv(tmp / MANIFEST, ["image", "split", "video", "timestamp", "detector", "n_boxes", "scores"],
              ([r["image"], r["split"], r["video"], f"{r['t']:.3f}", r["detector"], len(r["boxes"]),
                ";".join(f"{b.score:.4f}" for b in r["boxes"])] for r in rows))

    if params.coco:
        for split in SPLITS:
            if has[split]:
                (tmp / f"annotations_{split}.json").write_text(json.dumps(_coco(rows, split)), encoding="utf-8")
    if params.contact_sheet and rows:
        cv2.imwrite(str(tmp / CONTACT_SHEET), contact_sheet(tmp, rows, params.contact_sheet))

    labelled_frames = len(rows)
    summary = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "teacher": teacher,
        "params": params.model_dump(),
        "videos": {s: sorted(v for v, sp in split_of.items() if sp == s) for s in SPLITS},
        "skipped": skipped,
        "frames_sampled": sampled,
        "frames_kept": labelled_frames,
        "duplicates_dropped": sampled - labelled_frames,
        "images": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
        "boxes": {s: sum(len(r["boxes"]) for r in rows if r["split"] == s) for s in SPLITS},
        "teacher_ms_per_frame": 1000 * teacher_seconds / max(1, labelled_frames),
    }
    (tmp / SUMMARY).write_text(json.dumps(to_jsonable(summary), indent=1) + "\n", encoding="utf-8")
    return summary
