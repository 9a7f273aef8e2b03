"""A YOLO dataset whose classes are the library's characters, from a finished run's tracks.

In: a workspace after `castline run` (library/last_run.json, the stage results it names, the registries and
names.json) and CharacterDatasetParams. Out: the tasks/tools/dataset.py layout (data.yaml with one class per character,
images/ and labels/ per split, split by whole videos, manifest.csv, dataset.json, COCO JSON per split) plus
class_balance.csv and contact_sheets/<class>.png (that class's boxes cropped) — written as one folder by rename.

Class names are the characters' labels as the timelines give them: a gallery or subtitle name where the library
step found one, `character_NNN` otherwise. Boxes are each character's face boxes (or head boxes by the face+hair
rule, tasks/video/detect/head_boxes.py), in the sampled frames' pixels, on the sampled frames themselves.

Minimum-examples rule: a character with fewer than `min_examples` boxes in the train split is not a class (a
detector cannot learn it, and a held-out-only class has no train example at all). The frames that show such a
character are left out entirely, rather than kept with that face unlabelled, which would teach the detector
that the face is background.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import cv2
import yaml
from pydantic import Field

from tasks.core.contact_sheet import character_sheet, crop_box
from tasks.tools.dataset import (CONTACT_SHEET, DATA_YAML, MANIFEST, SPLITS, SUMMARY, DatasetError, contact_sheet,
                           dedup_frames, split_videos, yolo_line)
from tasks.video.detect import read_rgb
from tasks.core.formats import (LAST_RUN_JSON, atomic_dir, read_frames, read_run_summary, sanitize_label, to_jsonable,
                                 write_csv)
from tasks.video.detect.head_boxes import head_from_face
from tasks.core.records import Box, VideoOutputs
from tasks.tools.params import DatasetLayout
from tasks.core.workspace import Workspace

CLASS_BALANCE = "class_balance.csv"
CLASS_SHEETS = "contact_sheets"
CLASSES = "characters"  # dataset.json "classes": what its class ids mean


class CharacterDatasetParams(DatasetLayout):
    box: Literal["face", "head"] = Field("face", description="box drawn per character: its face box, or the "
                                                             "face+hair region by tasks/video/detect/head_boxes.py's rule")
    min_examples: int = Field(10, ge=1, description="a character with fewer train boxes is not a class, and the "
                                                    "frames showing it are left out")
    sheet_crops: int = Field(24, ge=1, description="crops per class on contact_sheets/<class>.png")


def videos_of_last_run(ws: Workspace, pictures: bool = True) -> dict[str, VideoOutputs]:
    """The files that succeeded in the last run; with `pictures`, only those with frames (not audio files)."""
    last_run = ws.library_dir / LAST_RUN_JSON
    if not last_run.is_file():
        raise DatasetError(f"no finished run in {ws.root} (no library/{LAST_RUN_JSON}): run `castline run` first")
    # An audio file has no picture to label, and must not take a split's place.
    videos = {r.video: r.outputs for r in read_run_summary(last_run).videos
              if r.ok and not (pictures and r.audio_only)}
    if not videos:
        raise DatasetError(f"the last run in {ws.root} has no video that succeeded"
                           + (" (audio files have no pictures)" if pictures else ""))
    return videos


def character_boxes(ws: Workspace) -> tuple[list[dict], dict[str, str]]:
    """Per video of the last run: {video, frames_dir, frames, boxes: frame -> [(character_id, Box)]}, and
    character_id -> label (gallery or subtitle name, else the library id), as the timelines name them."""
    from tasks.library.view import NAMES_JSON, LibraryView

    if not (ws.library_dir / NAMES_JSON).is_file():
        raise DatasetError(f"no library/{NAMES_JSON} in {ws.root}: run `castline run` first")
    view = LibraryView.load(ws)
    videos, labels = [], {}
    for name, v in sorted(videos_of_last_run(ws).items()):
        records = view.named(view.video(name, v))
        by_id = {t.track_id: t for t in records.tracks}
        boxes: dict[int, list[tuple[str, Box]]] = defaultdict(list)
        for c in records.characters:
            labels[c.character_id] = c.label
            for tid in c.track_ids:
                track = by_id.get(tid)
                if track is None:
                    raise DatasetError(f"{name}: character {c.label} names track {tid}, which is not in its tracks")
                for b in track.boxes:
                    if b.label == "face":
                        boxes[b.frame].append((c.character_id, b))
        videos.append({"video": name, "frames_dir": v.frames.parent, "frames": read_frames(v.frames),
                       "boxes": boxes})
    return videos, labels


def _class_counts(videos: list[dict]) -> tuple[dict[str, Counter], dict[str, set[str]]]:
    """Boxes per character and split, and the videos each character is in (before the minimum-examples rule)."""
    count: dict[str, Counter] = defaultdict(Counter)
    seen_in: dict[str, set[str]] = defaultdict(set)
    for v in videos:
        for frame in v["frames"]:
            for cid, _ in v["boxes"].get(frame.index, []):
                count[cid][v["split"]] += 1
                seen_in[cid].add(v["video"])
    return count, seen_in


def _choose_classes(count: dict[str, Counter], labels: dict[str, str], min_examples: int, root: Path) -> list[str]:
    """The characters with at least `min_examples` train boxes, in label order; a one-line error when none."""
    if not count:
        raise DatasetError(f"the last run in {root} has no character with a face box")
    classes = sorted((cid for cid in count if count[cid]["train"] >= min_examples), key=lambda cid: (labels[cid], cid))
    if not classes:
        best = max(count, key=lambda cid: count[cid]["train"])
        raise DatasetError(f"no character has {min_examples} train boxes (min_examples); the most is "
                           f"{labels[best]} with {count[best]['train']}: lower --min-examples or add videos")
    return classes


def _write_images(tmp: Path, videos: list[dict], class_of: dict[str, int], box: str) -> tuple[list[dict], int]:
    """Every kept frame whose characters are all classes, as an image and its YOLO label file; returns the
    manifest rows and how many frames were left out (a box of a dropped character would teach "background")."""
    for split in SPLITS:
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
    rows, left_out = [], 0
    for v in videos:
        split, stem_base = v["split"], safe_video(v["video"])
        size = None
        for frame in v["frames"]:
            on_frame = v["boxes"].get(frame.index, [])
            # An interpolated box is a guess, not a label; a frame with one would teach it or, left out, "background".
            if any(cid not in class_of or b.interpolated for cid, b in on_frame):
                left_out += 1
                continue
            if size is None:
                size = read_rgb(v["frames_dir"] / frame.file).shape[1::-1]
            width, height = size
            boxes = [(class_of[cid], head_from_face(b, width, height) if box == "head" else b) for cid, b in on_frame]
            stem = f"{stem_base}_{frame.index:06d}"
            image = Path("images") / split / f"{stem}.jpg"
            shutil.copyfile(v["frames_dir"] / frame.file, tmp / image)
            (tmp / "labels" / split / f"{stem}.txt").write_text(
                "".join(yolo_line(b, width, height, k) + "\n" for k, b in boxes), encoding="utf-8")
            rows.append({"image": image.as_posix(), "split": split, "video": v["video"], "t": frame.t,
                         "detector": CLASSES, "boxes": [b for _, b in boxes], "classes": [k for k, _ in boxes],
                         "width": width, "height": height})
    return rows, left_out


def build_character_dataset(workspace: str | Path, out_dir: str | Path, params: CharacterDatasetParams) -> dict:
    """Write the characters dataset of the workspace's last run to out_dir; returns the summary (dataset.json)."""
    ws = Workspace.open(workspace)
    out_dir = Path(out_dir)
    videos, labels = character_boxes(ws)
    split_of = split_videos([safe_video(v["video"]) for v in videos], params.val_fraction, params.test_fraction,
                            params.seed)
    for v in videos:
        v["split"] = split_of[safe_video(v["video"])]
        v["frames"] = dedup_frames(v["frames_dir"], v["frames"], params.dedup_hamming)
    count, seen_in = _class_counts(videos)
    classes = _choose_classes(count, labels, params.min_examples, ws.root)
    names = class_names([labels[cid] for cid in classes])
    dropped = sorted(set(count) - set(classes))
    with atomic_dir(out_dir) as tmp:
        rows, frames_left_out = _write_images(tmp, videos, {cid: k for k, cid in enumerate(classes)}, params.box)
        has = {s: any(r["split"] == s for r in rows) for s in SPLITS}
        if not has["train"] or not has["val"]:
            missing = "train" if not has["train"] else "val"
            raise DatasetError(f"no {missing} image is left after the minimum-examples rule "
                               f"(videos split {dict(sorted(split_of.items()))})")
        spec = {"path": str(out_dir.resolve()), "train": "images/train", "val": "images/val",
                **({"test": "images/test"} if has["test"] else {}), "names": names}
        (tmp / DATA_YAML).write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        _write_manifest(tmp, rows, names)
        balance = _write_balance(tmp, classes, names, labels, count, seen_in, dropped, params.min_examples)
        if params.coco:
            for split in (s for s in SPLITS if has[s]):
                (tmp / f"annotations_{split}.json").write_text(json.dumps(_coco(rows, split, names)), encoding="utf-8")
        if params.contact_sheet and rows:
            cv2.imwrite(str(tmp / CONTACT_SHEET), contact_sheet(tmp, rows, params.contact_sheet))
        _class_sheets(tmp, rows, names, params.sheet_crops)
        summary = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "classes": CLASSES,
            "teacher": CLASSES,  # the labels come from the run's identities, not from a detector
            "workspace": str(ws.root),
            "params": {**params.model_dump(), "min_face": 0, "min_score": 0.0},
            "names": names,
            "videos": {s: sorted(v["video"] for v in videos if v["split"] == s) for s in SPLITS},
            "skipped": {},
            "class_balance": balance,
            "dropped_characters": {labels[cid]: dict(count[cid]) for cid in dropped},
            "frames_left_out": frames_left_out,
            "frames_kept": len(rows),
            "duplicates_dropped": 0,
            "images": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
            "boxes": {s: sum(len(r["boxes"]) for r in rows if r["split"] == s) for s in SPLITS},
        }
        (tmp / SUMMARY).write_text(json.dumps(to_jsonable(summary), indent=1) + "\n", encoding="utf-8")
    return summary


def safe_video(name: str) -> str:
    from tasks.core.workspace import safe_name

    return safe_name(Path(name).with_suffix("").as_posix().replace("/", "_"))


def class_names(labels: list[str]) -> dict[int, str]:
    """Class id -> name; two characters given the same label keep it apart with a counter."""
    out, used = {}, Counter()
    for k, label in enumerate(labels):
        used[label] += 1
        out[k] = label if used[label] == 1 else f"{label}_{used[label]}"
    return out


def _write_manifest(tmp: Path, rows: list[dict], names: dict[int, str]) -> None:
    write_csv(tmp / MANIFEST, ["image", "split", "video", "timestamp", "source", "n_boxes", "classes"],
              ([r["image"], r["split"], r["video"], f"{r['t']:.3f}", r["detector"], len(r["boxes"]),
                ";".join(names[k] for k in r["classes"])] for r in rows))


def _write_balance(tmp: Path, classes, names, labels, count, seen_in, dropped, min_examples) -> list[dict]:
    """class_balance.csv: one row per character, kept or dropped by the minimum-examples rule."""
    table = []
    for cid in [*classes, *dropped]:
        kept = cid in classes
        table.append({"class": classes.index(cid) if kept else "", "name": names[classes.index(cid)] if kept
                      else labels[cid], "character_id": cid, **{s: count[cid][s] for s in SPLITS},
                      "videos": len(seen_in[cid]),
                      "kept": "yes" if kept else f"no: {count[cid]['train']} train boxes < {min_examples}"})
    write_csv(tmp / CLASS_BALANCE, list(table[0]), ([row[k] for k in table[0]] for row in table))
    return table


def _coco(rows: list[dict], split: str, names: dict[int, str]) -> dict:
    images, annotations = [], []
    for image_id, row in enumerate((r for r in rows if r["split"] == split), 1):
        images.append({"id": image_id, "file_name": row["image"], "width": row["width"], "height": row["height"]})
        for k, b in zip(row["classes"], row["boxes"]):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": k + 1,
                                "bbox": [round(b.x1, 2), round(b.y1, 2), round(b.x2 - b.x1, 2), round(b.y2 - b.y1, 2)],
                                "area": round(b.area, 2), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in names.items()]}


def _class_sheets(tmp: Path, rows: list[dict], names: dict[int, str], k: int) -> None:
    """contact_sheets/<class>.png: up to k crops of the class's boxes, spread over its images."""
    per_class: dict[int, list[tuple[dict, Box]]] = defaultdict(list)
    for r in rows:
        for cls, b in zip(r["classes"], r["boxes"]):
            per_class[cls].append((r, b))
    (tmp / CLASS_SHEETS).mkdir()
    for cls, items in sorted(per_class.items()):
        step = max(1, len(items) // k)
        crops = [crop_box(read_rgb(tmp / r["image"]), b.xyxy, 0.2) for r, b in items[::step][:k]]
        character_sheet(crops, f"{cls}: {names[cls]} ({len(items)} boxes)",
                        tmp / CLASS_SHEETS / f"{cls:03d}_{sanitize_label(names[cls])}.png")
