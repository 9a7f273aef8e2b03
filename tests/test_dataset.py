"""Tests of tasks/tools/dataset.py on real sample clips, a still-image clip and a text file posing as a video.

In: data/sample montage clips at 1 fps, 192 px. Out: checks that ultralytics' own checker accepts the export, that
splits are grouped by video, that near-duplicates are dropped and that broken dataset folders fail in one line."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import cv2
import pytest
import yaml

from tasks.tools.dataset import (
    DatasetError,
    DatasetParams,
    build_dataset,
    check_dataset,
    read_label_file,
    split_videos,
)

LABEL_LINE = re.compile(r"^0 (0|1)\.\d{6} (0|1)\.\d{6} (0|1)\.\d{6} (0|1)\.\d{6}$")


@pytest.fixture(scope="module")
def library(tmp_path_factory, sample_dir) -> list[Path]:
    """Two montage clips, a 5 s still image (every frame a near-duplicate) and a text file posing as a video."""
    d = tmp_path_factory.mktemp("lib")
    still = d / "still.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-i",
                    str(sample_dir.parent / "gallery" / "barack_obama" / "obama.jpg"), "-t", "5", "-r", "5",
                    "-vf", "scale=320:-2", "-pix_fmt", "yuv420p", str(still)], check=True)
    (d / "broken.mp4").write_text("not a video\n" * 20)
    return [sample_dir / "montage_dev00.mp4", sample_dir / "montage_trn07.mp4", still, d / "broken.mp4"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, library) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ds") / "faces"
    summary = build_dataset(library, out, DatasetParams(max_side=192, contact_sheet=8))
    return out, summary


def manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_round_trips_and_ultralytics_accepts_it(dataset):
    from ultralytics.data.utils import check_det_dataset


    root, summary = dataset
    spec = yaml.safe_load((root / "data.yaml").read_text())
    assert spec["path"] == str(root.resolve()) and spec["names"] == {0: "face"}
    assert spec["train"] == "images/train" and spec["val"] == "images/val"

    checked = check_det_dataset(str(root / "data.yaml"), autodownload=False)
    assert checked["nc"] == 1 and Path(checked["train"]).is_dir() and Path(checked["val"]).is_dir()

    rows = manifest(root)
    images = sorted(p.relative_to(root).as_posix() for p in root.glob("images/*/*.jpg"))
    assert sorted(r["image"] for r in rows) == images and len(images) == summary["frames_kept"]
    n_boxes = 0
    for r in rows:
        label = root / r["image"].replace("images/", "labels/", 1).replace(".jpg", ".txt")
        lines = label.read_text().splitlines()
        assert all(LABEL_LINE.match(line) for line in lines), lines
        assert len(lines) == int(r["n_boxes"]) == len([s for s in r["scores"].split(";") if s])
        assert all(float(s) >= 0.9 for s in r["scores"].split(";") if s)  # teacher threshold applied
        assert r["detector"] == "mtcnn"
        n_boxes += len(lines)
    assert n_boxes == sum(summary["boxes"].values()) > 0

    # COCO export holds the same boxes, in pixels, as the YOLO labels
    coco_boxes = 0
    for split in ("train", "val", "test"):
        path = root / f"annotations_{split}.json"
        if not path.exists():
            continue
        coco = json.loads(path.read_text())
        by_id = {im["id"]: im for im in coco["images"]}
        for ann in coco["annotations"]:
            im = by_id[ann["image_id"]]
            label = (root / im["file_name"].replace("images/", "labels/", 1)).with_suffix(".txt")
            x, y, w, h = ann["bbox"]
            centres = [(xc * im["width"], yc * im["height"]) for _, xc, yc, _, _ in read_label_file(label, 1)]
            assert any(abs(cx - (x + w / 2)) < 0.5 and abs(cy - (y + h / 2)) < 0.5 for cx, cy in centres)
        coco_boxes += len(coco["annotations"])
    assert coco_boxes == n_boxes
    sheet = cv2.imread(str(root / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 50


def test_splits_are_grouped_by_video(dataset):
    root, summary = dataset
    splits_of = defaultdict(set)
    for r in manifest(root):
        splits_of[r["video"]].add(r["split"])
        assert r["image"].startswith(f"images/{r['split']}/")
    assert all(len(s) == 1 for s in splits_of.values()), splits_of
    assert summary["images"]["val"] > 0 and summary["images"]["train"] > 0
    assert check_dataset(root)["splits"]["val"]["images"] == summary["images"]["val"]


def test_split_assignment_is_deterministic_and_keeps_val():
    videos = [f"v{i}" for i in range(6)]
    a = split_videos(videos, 0.2, 0.2, seed=3)
    assert a == split_videos(list(reversed(videos)), 0.2, 0.2, seed=3)
    assert sorted(a.values()).count("val") == 1 and sorted(a.values()).count("test") == 1
    assert len({tuple(sorted(split_videos(videos, 0.2, 0.2, seed=s).items())) for s in range(5)}) > 1
    assert sorted(split_videos(["a", "b"], 0.0, 0.5, seed=0).values()) == ["train", "val"]
    with pytest.raises(DatasetError, match="at least 2"):
        split_videos(["only"], 0.2, 0.2, seed=0)


def test_near_duplicate_frames_are_dropped(dataset):
    root, summary = dataset
    still = [r for r in manifest(root) if r["video"] == "still"]
    assert len(still) == 1  # 5 sampled frames of one image
    per_video = defaultdict(int)
    for r in manifest(root):
        per_video[r["video"]] += 1
    assert 1 < per_video["montage_dev00"] < 30  # a 30 s montage of stills keeps one frame per distinct shot
    assert summary["duplicates_dropped"] == summary["frames_sampled"] - summary["frames_kept"] >= 4


def test_unreadable_video_is_skipped_with_its_reason(dataset):
    _, summary = dataset
    assert list(summary["skipped"]) == ["broken"]
    assert "broken.mp4" in summary["skipped"]["broken"]


def test_check_dataset_gives_one_line_errors(dataset, tmp_path):
    root, _ = dataset

    def broken(edit) -> Path:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(root, copy)
        edit(copy)
        return copy

    cases = [
        (tmp_path / "missing", "dataset folder not found"),
        (broken(lambda d: (d / "data.yaml").unlink()), "no data.yaml"),
        (broken(lambda d: (d / "data.yaml").write_text("train: [unclosed\n")), "not valid YAML"),
        (broken(lambda d: [p.unlink() for p in d.glob("images/train/*")]), "no images in images/train"),
        (broken(lambda d: next(d.glob("labels/val/*.txt")).write_text("0 0.5 0.5 0.2\n")), "line 1"),
        (broken(lambda d: next(d.glob("labels/train/*.txt")).write_text("0 0.5 1.5 0.2 0.2\n")), "values in 0..1"),
        (broken(lambda d: next(d.glob("images/train/*.jpg")).write_text("text")), "not a JPEG or PNG"),
    ]
    for path, message in cases:
        with pytest.raises(DatasetError, match=re.escape(message)) as err:
            check_dataset(path)
        assert "\n" not in str(err.value)
