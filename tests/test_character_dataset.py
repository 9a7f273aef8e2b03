"""`castline dataset LIBRARY --classes characters`: a YOLO dataset whose classes are the library's characters, from a
real run of two montage episodes named by their gallery; and the multi-kind teacher dataset's class plumbing."""
from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cli import castline
from tasks.tools.character_dataset import CharacterDatasetParams, build_character_dataset
from tasks.tools.dataset import DatasetError, check_dataset, label_path, read_label_file

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture(scope="module")
def run_workspace(tmp_path_factory, sample_dir) -> tuple[Path, Path]:
    """Two montage episodes and their gallery, run once with the defaults."""
    lib = tmp_path_factory.mktemp("chars_lib")
    for name in ("montage_dev00.mp4", "montage_dev01.mp4"):
        shutil.copy(sample_dir / name, lib / name)
    shutil.copytree(REPO / "data" / "gallery", lib / "gallery")
    ws = lib / ".castline"
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 0, r.stderr[-2000:]
    return lib, ws


def _timeline_labels(ws: Path) -> set[str]:
    labels = set()
    for path in ws.glob("videos/*/timeline.csv"):
        with open(path, newline="") as fh:
            labels |= {r["character"] for r in csv.DictReader(fh) if r["kind"] == "on_screen"}
    return labels


def test_characters_dataset_names_the_library_characters(run_workspace, tmp_path):
    from ultralytics.data.utils import check_det_dataset

    lib, ws = run_workspace
    out = tmp_path / "ds"
    r = castline("dataset", str(lib), "--classes", "characters", "--out", str(out), "--min-examples", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "classes" in r.stdout and "kept" in r.stdout  # the class-balance table
    spec = yaml.safe_load((out / "data.yaml").read_text())
    names = list(spec["names"].values())
    # Class names are the timelines' characters; the gallery named them, so they are people's names.
    assert names and set(names) <= _timeline_labels(ws)
    assert any(not n.startswith("character_") for n in names)
    checked = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert checked["nc"] == len(names)

    summary = json.loads((out / "dataset.json").read_text())
    assert summary["classes"] == "characters" and len(summary["videos"]["val"]) == 1
    # Split by whole videos: every image of a video is in one split.
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len({(r["video"], r["split"]) for r in rows}) == len({r["video"] for r in rows}) == 2
    # Minimum-examples rule: every class has at least 3 train boxes; the rest are named as dropped.
    train = Counter(row[0] for image in (out / "images" / "train").glob("*.jpg")
                    for row in read_label_file(label_path(image), len(names)))
    assert all(train[k] >= 3 for k in range(len(names)))
    with open(out / "class_balance.csv", newline="") as fh:
        balance = list(csv.DictReader(fh))
    assert [b["name"] for b in balance if b["kept"] == "yes"] == names
    assert all(b["kept"].startswith("no: ") for b in balance if b["kept"] != "yes")
    assert len(list((out / "contact_sheets").glob("*.png"))) == len(names)
    coco = json.loads((out / "annotations_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == names
    assert check_dataset(out)["splits"]["val"]["boxes"] > 0


def test_characters_dataset_bad_input_is_one_line(run_workspace, tmp_path):
    lib, ws = run_workspace
    with pytest.raises(DatasetError, match="no character has 10000 train boxes"):
        build_character_dataset(ws, tmp_path / "ds", CharacterDatasetParams(min_examples=10000))
    with pytest.raises(DatasetError, match="run `castline run` first"):
        build_character_dataset(tmp_path / "empty_ws", tmp_path / "ds2", CharacterDatasetParams())
    r = castline("dataset", str(lib), "--classes", "faces,hats", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "castline: --classes: unknown class 'faces' (expected characters, or a list of face, head, person)")
    assert not (tmp_path / "ds").exists()


def test_characters_dataset_leaves_the_last_runs_audio_files_out(tmp_path):
    from tasks.core.formats import LAST_RUN_JSON, write_json
    from tasks.core.records import RunSummary, VideoOutputs, VideoResult
    from tasks.core.workspace import Workspace
    from tasks.tools.character_dataset import videos_of_last_run
    from tasks.video.pipeline import VIDEO_STAGES

    ws = Workspace.open(tmp_path / "ws")
    outputs = VideoOutputs(*(tmp_path / n for n in ("v", "p", "f", "t", "e", "c", "a", "d", "w")), interval=1.0)
    video = VideoResult("ep1.mp4", True, outputs=outputs)
    sound = VideoResult("ep2.wav", True, skipped_stages=list(VIDEO_STAGES), outputs=outputs)

    def last_run(*videos):
        summary = RunSummary("lib", str(ws.root), "", 0.0, [], [], list(videos), "", {})
        write_json(ws.library_dir / LAST_RUN_JSON, summary)

    last_run(video, sound)
    assert list(videos_of_last_run(ws)) == ["ep1.mp4"]
    last_run(sound)
    with pytest.raises(DatasetError, match="no video that succeeded"):
        videos_of_last_run(ws)


def test_teacher_dataset_with_three_kinds(tmp_path, sample_dir):
    """Faces by Haar, persons by HOG, heads by the rule, one class each, on two real clips."""
    from tasks.tools.dataset import DatasetParams, build_dataset

    videos = [sample_dir / "hamilton.mp4", sample_dir / "montage_dev00.mp4"]
    summary = build_dataset(videos, tmp_path / "ds", DatasetParams(teacher="haar", fps=0.5, max_side=640,
                                                                    min_score=0.0, kinds=["face", "head", "person"],
                                                                    test_fraction=0))
    info = check_dataset(tmp_path / "ds")
    assert info["names"] == {0: "face", 1: "head", 2: "person"}
    classes = Counter(row[0] for image in (tmp_path / "ds").glob("images/*/*.jpg")
                      for row in read_label_file(label_path(image), 3))
    # Every face gets its head: as many heads as faces at least (more where a person holds no face).
    assert classes[0] > 0 and classes[1] >= classes[0]
    coco = json.loads((tmp_path / "ds" / "annotations_val.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["face", "head", "person"]
    assert summary["boxes"]["train"] + summary["boxes"]["val"] == sum(classes.values())


def test_a_frame_with_an_interpolated_box_is_left_out(tmp_path):
    import cv2
    import numpy as np

    from tasks.core.records import Box, Frame
    from tasks.tools.character_dataset import _write_images

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    frames = [Frame(index=i, t=float(i), file=f"{i:06d}.jpg") for i in range(3)]
    for f in frames:
        cv2.imwrite(str(frames_dir / f.file), np.full((100, 100, 3), 120, np.uint8))
    face = Box(frame=0, t=0.0, x1=10, y1=10, x2=50, y2=50, score=0.99)
    boxes = {i: [("c0", Box(**{**face.__dict__, "frame": i, "t": float(i), "interpolated": i == 1}))] for i in range(3)}
    video = {"video": "v.mp4", "frames_dir": frames_dir, "frames": frames, "boxes": boxes, "split": "train"}
    rows, left_out = _write_images(tmp_path / "out", [video], {"c0": 0}, "face")
    assert left_out == 1 and sorted(r["t"] for r in rows) == [0.0, 2.0]
