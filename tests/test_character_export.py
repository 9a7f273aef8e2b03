"""`castline export LIBRARY --out DIR`: face crops per character and audio clips per voice, from one real run of a
montage episode named by its gallery, with a tiny subtitle file beside it; and the export's one-line errors."""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from tasks.core.formats import read_rttm, sanitize_label
from tasks.tools.character_export import CLIP_FIELDS, export_characters
from tasks.tools.dataset import DatasetError
from tasks.tools.params import ExportParams
from cli import castline
from test_character_dataset import REPO, _timeline_labels  # one label reader for both

# One subtitle line inside the first seconds of speech, one after the 30 s episode has ended (overlaps nothing).
SRT = "1\n00:00:05,000 --> 00:00:06,000\nHello there.\n\n2\n00:00:40,000 --> 00:00:41,000\nNobody speaks now.\n"
SUB = (5.0, 6.0)


@pytest.fixture(scope="module")
def run_workspace(tmp_path_factory, sample_dir) -> tuple[Path, Path]:
    """One montage episode, its gallery and a subtitle file, run once with the defaults."""
    lib = tmp_path_factory.mktemp("export_lib")
    shutil.copy(sample_dir / "montage_dev00.mp4", lib / "montage_dev00.mp4")
    (lib / "montage_dev00.srt").write_text(SRT, encoding="utf-8")
    shutil.copytree(REPO / "data" / "gallery", lib / "gallery")
    ws = lib / ".castline"
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 0, r.stderr[-2000:]
    return lib, ws


@pytest.fixture(scope="module")
def exported(run_workspace, tmp_path_factory) -> Path:
    lib, _ = run_workspace
    out = tmp_path_factory.mktemp("export") / "out"
    r = castline("export", str(lib), "--out", str(out), "--max-faces", "4", "--max-clips", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "written to" in r.stdout and "no voices" not in r.stdout
    return out


def _clips(out: Path) -> list[dict]:
    with open(out / "voices" / "clips.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_faces_are_folders_of_jpegs_named_as_the_characters(run_workspace, exported):
    _, ws = run_workspace
    folders = sorted(p for p in (exported / "faces").iterdir())
    # One folder per character of the timelines, named as they name it; the gallery named them.
    assert {p.name for p in folders} == {sanitize_label(n) for n in _timeline_labels(ws)}
    assert len(folders) >= 2 and not any(p.name.startswith("character_") for p in folders)
    for folder in folders:
        jpegs = list(folder.glob("*.jpg"))
        assert 1 <= len(jpegs) <= 4, folder  # bounded by --max-faces
        assert all(p.name.startswith("montage_dev00_") for p in jpegs)
        for p in jpegs:
            with Image.open(p) as image:
                assert image.format == "JPEG" and min(image.size) >= 16
    summary = json.loads((exported / "export.json").read_text())
    assert {n: e["crops"] for n, e in summary["faces"].items()} == {p.name: len(list(p.glob("*.jpg")))
                                                                     for p in folders}
    assert summary["notes"] == [] and summary["params"] == {"max_faces": 4, "max_clips": 3}


def test_clips_are_speech_rttm_turns_cut_from_the_workspace_wav(run_workspace, exported):
    _, ws = run_workspace
    rows = _clips(exported)
    assert rows and list(rows[0]) == CLIP_FIELDS
    speech = read_rttm(ws / "videos" / "montage_dev00.mp4" / "speech.rttm")["montage_dev00"]
    speakers = read_rttm(ws / "videos" / "montage_dev00.mp4" / "speakers.rttm")["montage_dev00"]
    for row in rows:
        start, end = float(row["start"]), float(row["end"])
        # The same turn as speech.rttm (filed under the character) and speakers.rttm (the library voice id).
        label = row["character"] or f"offscreen_{row['voice']}"
        assert any(t.speaker == sanitize_label(label) and abs(t.start - start) < 1e-6 and abs(t.end - end) < 1e-6
                   for t in speech), row
        assert any(t.speaker == row["voice"] and abs(t.start - start) < 1e-6 for t in speakers), row
        info = sf.info(exported / row["file"])
        assert abs(info.frames / info.samplerate - (end - start)) <= 2 / info.samplerate, row
        assert Path(row["file"]).parent.name == sanitize_label(row["character"] or row["voice"])
        # zero-padded seconds, so a folder lists its clips in time order
        assert Path(row["file"]).name == f"montage_dev00_{float(row['start']):010.3f}-{float(row['end']):010.3f}.wav"
    per_folder = {Path(r["file"]).parent.name for r in rows}
    assert all(sum(Path(r["file"]).parent.name == f for r in rows) <= 3 for f in per_folder)  # --max-clips
    assert sorted(str(p.relative_to(exported)) for p in exported.glob("voices/*/*.wav")) == \
        sorted(r["file"] for r in rows)


def test_clip_text_is_the_subtitle_line_overlapping_the_turn(exported):
    rows = _clips(exported)
    for row in rows:
        overlaps = min(float(row["end"]), SUB[1]) > max(float(row["start"]), SUB[0])
        assert row["text"] == ("Hello there." if overlaps else ""), row
    assert any(r["text"] for r in rows)  # the longest turn, exported first, holds the line


def test_no_finished_run_is_a_one_line_error(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    r = castline("export", str(lib), "--out", str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no finished run" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_character_with_no_box_is_an_error_and_writes_nothing(run_workspace, tmp_path, monkeypatch):
    _, ws = run_workspace
    import tasks.library.view as view

    real = view.read_tracks
    monkeypatch.setattr(view, "read_tracks", lambda path: [replace(t, boxes=()) for t in real(path)])
    with pytest.raises(DatasetError, match=r"montage_dev00.mp4: character \S+ has no box"):
        export_characters(ws, tmp_path / "out", ExportParams())
    assert not (tmp_path / "out").exists()


def test_without_voices_the_faces_are_still_exported_and_it_says_so(run_workspace, tmp_path, monkeypatch):
    _, ws = run_workspace
    import tasks.tools.character_export as export

    real = export.videos_of_last_run
    monkeypatch.setattr(export, "videos_of_last_run", lambda *a, **k: {
        name: replace(v, wav=None, turns=None) for name, v in real(*a, **k).items()})
    summary = export_characters(ws, tmp_path / "out", ExportParams(max_faces=2))
    assert summary["voices"] is None and any(n.startswith("no voices") for n in summary["notes"])
    assert not (tmp_path / "out" / "voices").exists()
    assert len(list((tmp_path / "out" / "faces").glob("*/*.jpg"))) >= 2
    assert json.loads((tmp_path / "out" / "export.json").read_text())["notes"] == summary["notes"]


def test_the_export_reads_each_videos_tracks_once(run_workspace, tmp_path, monkeypatch):
    from tasks.library import view as view_module
    from tasks.tools.character_export import export_characters
    from tasks.tools.params import ExportParams

    _, ws = run_workspace
    reads = []
    real = view_module.read_tracks
    monkeypatch.setattr(view_module, "read_tracks", lambda path: reads.append(path) or real(path))
    export_characters(ws, tmp_path / "out", ExportParams())
    assert len(reads) == len(set(reads)) == 1  # one video, read once for the box check, the faces and the voices
