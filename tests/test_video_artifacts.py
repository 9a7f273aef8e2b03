import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import published
from flows.video_artifacts import MAX_IMAGE_BYTES, found_markdown, image_data_url, video_artifacts, video_key
from tasks.core.contact_sheet import TITLE_HEIGHT
from tasks.core.formats import (write_characters, write_evidence, write_frames, write_npy, write_timeline_json,
                                write_tracks)
from tasks.core.records import Box, Character, Frame, SpeakerLink, TimelineSpan, Track, VideoOutputs, VideoResult
from tasks.library.character_outputs import sheet_title
from tasks.library.face_sheet import FACES_JPG, TILE, write_face_sheet
from tasks.library.gallery import GalleryMatch
from tasks.library.registry import Registry
from tasks.library.view import LibraryNames, LibraryView


def test_video_keys_are_valid_and_distinct_per_video(tmp_path):
    keys = {video_key(tmp_path / "lib", v, "found") for v in ("é.mp4", "日本語.mp4", "a.mp4", "season 1/a.mp4")}
    assert len(keys) == 4 and all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys)


def test_found_table_has_readable_headers_names_and_voices(tmp_path):
    chars = [Character("character_001", (0,), name="Bea"), Character("character_002", (1,))]
    spans = [TimelineSpan("ep.mp4", "Bea", "on_screen", 0.0, 4.0),
             TimelineSpan("ep.mp4", "character_002", "on_screen", 1.0, 2.0),
             TimelineSpan("ep.mp4", "Bea", "speaking", 1.0, 2.5, "speaker_000")]
    links = [SpeakerLink("speaker_000", "character_001", 0.9, 1.5, 1.4), SpeakerLink("speaker_001", None, 0.0, 3.0, 0.0)]
    write_timeline_json(tmp_path / "t.json", "ep.mp4", spans, chars, links)
    r = VideoResult("ep.mp4", True, outputs=published(tmp_path / "t.json"))
    md = found_markdown(r, tmp_path / "report.html")
    assert "| Character | Name | On screen (s) | Speaking (s) | Voices |" in md
    assert "| character_001 | Bea | 4.0 | 1.5 | speaker_000 |" in md
    assert "| character_002 | *unnamed* | 1.0 | 0.0 | — |" in md
    assert "| speaker_000 | Bea | 1.5 | 1.4 | 0.93 |" in md and "| speaker_001 | *off-screen* |" in md
    assert f"({(tmp_path / 'report.html').as_uri()})" in md


def test_an_audio_files_found_table_says_it_has_no_pictures_and_lists_its_voice(tmp_path):
    spans = [TimelineSpan("ep.wav", "offscreen_speaker_000", "speaking", 1.0, 2.5, "speaker_000")]
    links = [SpeakerLink("speaker_000", "character_001", 0.0, 1.5, 0.0)]  # her face was seen in another episode
    write_timeline_json(tmp_path / "t.json", "ep.wav", spans, [], links)
    r = VideoResult("ep.wav", True, skipped_stages=["frames", "detect", "track", "embed", "cluster"],
                    outputs=published(tmp_path / "t.json"))
    md = found_markdown(r, tmp_path / "report.html")
    assert "| — | *audio file: no pictures* | | | |" in md and "offscreen_speaker_000 |" not in md
    assert "| speaker_000 | character_001 | 1.5 | 0.0 | 0.00 |" in md


def test_timeline_png_is_embedded_as_a_data_url(tmp_path):
    png = tmp_path / "timeline.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    assert image_data_url(png).startswith("data:image/png;base64,iVBORw0KGgo")
    assert image_data_url(tmp_path / "missing.png") is None


def test_a_jpeg_is_embedded_as_a_jpeg(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / FACES_JPG, "JPEG")
    assert image_data_url(tmp_path / FACES_JPG).startswith("data:image/jpeg;base64,/9j/")


def stage_results(folder: Path, characters: list[Character], tracks: list[Track]) -> VideoOutputs:
    """One video's stage results as the library reads them: three noisy frames 3 s apart (a face crop has some
    sharpness; the report never picks two crops of a track a second apart), its tracks, characters and one
    embedding per track; no audio."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    write_frames(folder / "frames.json", [Frame(i, 3.0 * i, f"{i:06d}.png") for i in range(3)])
    write_tracks(folder / "tracks.json", tracks)
    write_characters(folder / "characters.json", characters)
    write_npy(folder / "embeddings.npy", rng.normal(size=(len(tracks), 4)).astype(np.float32))
    write_evidence(folder / "evidence.json", [])
    return VideoOutputs(folder / "ep.mp4", folder / "probe.json", folder / "frames.json", folder / "tracks.json",
                        folder / "embeddings.npy", folder / "characters.json", folder / "evidence.json",
                        turns=None, wav=None, interval=1.0)


def view(names: LibraryNames = LibraryNames()) -> LibraryView:
    return LibraryView(Registry("character", "euclidean"), Registry("speaker", "cosine"), names)


def test_a_face_sheet_has_a_labelled_row_of_faces_per_character_and_is_small(tmp_path):
    tracks = [Track(t, tuple(Box(i, 3.0 * i, 40 + 100 * t, 40, 120 + 100 * t, 140, 0.99) for i in range(3)))
              for t in (0, 1)]
    outputs = stage_results(tmp_path / "ep", [Character("character_000", (0,)), Character("character_001", (1,))],
                            tracks)
    names = LibraryNames({"character_001": GalleryMatch("character_001", "Bea", 0.3)})
    out = write_face_sheet(tmp_path, "ep.mp4", outputs, view(names))
    with Image.open(out) as image:
        # Three faces each (one per frame), a title band and a row of tiles per character.
        assert image.format == "JPEG" and image.size == (3 * TILE, 2 * (TITLE_HEIGHT + TILE))
    assert out.stat().st_size < MAX_IMAGE_BYTES
    assert sheet_title("Bea", "character_001") == "Bea (character_001)"
    assert sheet_title("character_000", "character_000") == "character_000"


def test_a_face_sheet_is_copied_while_its_faces_and_names_stay_the_same(tmp_path, monkeypatch):
    from tasks.library import face_sheet as module

    tracks = [Track(0, tuple(Box(i, 3.0 * i, 40, 40, 120, 140, 0.99) for i in range(3)))]
    outputs = stage_results(tmp_path / "ep", [Character("character_000", (0,))], tracks)
    first, second, renamed = (tmp_path / k for k in ("first", "second", "renamed"))
    for folder in (first, second, renamed):
        folder.mkdir()
    write_face_sheet(first, "ep.mp4", outputs, view())
    drawn = []
    monkeypatch.setattr(module, "face_sheet", lambda *a: drawn.append(a) or Image.new("RGB", (8, 8)))
    write_face_sheet(second, "ep.mp4", outputs, view(), previous=first)
    assert not drawn and (second / FACES_JPG).read_bytes() == (first / FACES_JPG).read_bytes()
    names = LibraryNames({"character_000": GalleryMatch("character_000", "Bea", 0.3)})
    write_face_sheet(renamed, "ep.mp4", outputs, view(names), previous=second)  # a new name: drawn again
    assert len(drawn) == 1


def test_a_video_without_a_face_gets_no_face_sheet(tmp_path):
    outputs = stage_results(tmp_path / "ep", [], [])
    assert write_face_sheet(tmp_path, "ep.mp4", outputs, view()) is None
    assert not (tmp_path / FACES_JPG).exists()


def test_the_face_sheet_is_an_image_artifact_of_a_video_with_faces_only(tmp_path):
    made = []
    for video in ("seen.mp4", "heard.wav"):
        folder = tmp_path / video
        folder.mkdir()
        write_timeline_json(folder / "timeline.json", video, [], [], [])
        if video == "seen.mp4":
            Image.new("RGB", (8, 8)).save(folder / FACES_JPG, "JPEG")
        result = VideoResult(video, True, outputs=published(folder / "timeline.json"))
        made += video_artifacts(str(tmp_path / "lib"), result, tmp_path / "report.html").values()
    images = {a.key: a.data for a in made if a.kind == "image"}
    assert images[video_key(tmp_path / "lib", "seen.mp4", "faces")].startswith("data:image/jpeg;base64,")
    assert video_key(tmp_path / "lib", "heard.wav", "faces") not in images
    assert sum(a.kind == "markdown" for a in made) == 2


def test_a_timeline_folder_is_kept_while_what_it_is_written_from_stays_the_same(tmp_path, monkeypatch):
    """Adding an episode to a library of hundreds must not rewrite every other video's folder; a new name, a
    deleted file or new stage results must."""
    from tasks.core.workspace import Workspace
    from tasks.library import timeline as module
    from tasks.video.demux import probe_task

    tracks = [Track(0, tuple(Box(i, 3.0 * i, 40, 40, 120, 140, 0.99) for i in range(3)))]
    outputs = stage_results(tmp_path / "ep", [Character("character_000", (0,))], tracks)
    probe_task.fn(Path(__file__).parents[1] / "data" / "sample" / "hamilton.mp4", out=outputs.probe)
    ws = Workspace.open(tmp_path / "ws")
    extra = {"media.json": outputs.probe}
    folder = module.publish_timeline(ws, "ep.mp4", outputs, view(), extra).folder
    assert (folder / "timeline.json").is_file() and (folder / FACES_JPG).is_file()
    writes = []
    real = module.write_timeline
    monkeypatch.setattr(module, "write_timeline", lambda *a, **k: writes.append(a) or real(*a, **k))
    module.publish_timeline(ws, "ep.mp4", outputs, view(), extra)
    assert writes == []
    bea = LibraryNames({"character_000": GalleryMatch("character_000", "Bea", 0.3)})
    module.publish_timeline(ws, "ep.mp4", outputs, view(bea), extra)
    assert len(writes) == 1 and '"Bea"' in (folder / "timeline.json").read_text()
    (folder / FACES_JPG).unlink()
    module.publish_timeline(ws, "ep.mp4", outputs, view(bea), extra)
    assert len(writes) == 2 and (folder / FACES_JPG).is_file()
    moved = VideoOutputs(**{**outputs.__dict__, "interval": 0.5})  # other stage results: another key
    module.publish_timeline(ws, "ep.mp4", moved, view(bea), extra)
    assert len(writes) == 3
