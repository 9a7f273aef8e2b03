"""Subtitle tracks inside a video: extracted once per content, read like the files beside it."""
from pathlib import Path

import ffmpeg as ffmpeg_python
import pytest
from conftest import ffmpeg

from tasks.core.formats import write_json
from tasks.core.records import MediaInfo, StreamInfo, VideoOutputs
from tasks.core.workspace import Workspace
from tasks.library import subtitle_streams
from tasks.library.subtitle_streams import subtitle_files
from tasks.library.subtitles import read_named_lines, video_lines
from tasks.video.demux import probe
from test_subtitles import ASS_HEADER

ASS = ASS_HEADER + """Dialogue: 0,0:00:01.00,0:00:02.00,Default,Zoë,0,0,0,,Hello
Dialogue: 0,0:00:03.00,0:00:04.00,Default,Bob,0,0,0,,Hi
Dialogue: 0,0:00:05.00,0:00:06.00,Default,Zoë,0,0,0,,Bye
"""
VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Zoë>Hello\n\n00:00:03.000 --> 00:00:04.000\n<v Bob>Hi\n"
SRT = "1\n00:00:01,000 --> 00:00:02,000\nZOË: Hello\n"


def outputs_of(video: Path, probe_path: Path) -> VideoOutputs:
    """A manifest whose probe result is real; the other stage results are not read here."""
    none = probe_path.parent / "unused"
    return VideoOutputs(video, probe_path, none, none, none, none, none, None, None, 1.0)


def probed(video: Path, tmp_path: Path, info: MediaInfo | None = None) -> VideoOutputs:
    path = tmp_path / "cache" / "probe" / "0123456789abcdef.json"  # named by its key, as the stage names it
    write_json(path, info or probe(video))
    return outputs_of(video, path)


@pytest.fixture
def subtitled(tmp_path) -> Path:
    """A tiny Matroska file with an ASS, a WebVTT and a SubRip track, and an MP4 with a mov_text track."""
    for name, text in (("a.ass", ASS), ("a.vtt", VTT), ("a.srt", SRT)):
        (tmp_path / name).write_text(text)
    ffmpeg("-f", "lavfi", "-i", "color=size=64x64:rate=5:duration=7", "-i", str(tmp_path / "a.ass"),
           "-i", str(tmp_path / "a.vtt"), "-i", str(tmp_path / "a.srt"), "-map", "0", "-map", "1", "-map", "2",
           "-map", "3", "-c:v", "mpeg4", "-c:s", "copy", str(tmp_path / "episode.mkv"))
    return tmp_path / "episode.mkv"


def test_text_tracks_are_extracted_once_and_read_like_files_beside_the_video(tmp_path, subtitled, monkeypatch):
    ws = Workspace.open(tmp_path / "ws")
    outputs = probed(subtitled, tmp_path)
    files, notes = subtitle_files(outputs, ws)
    assert notes == []
    assert [f.name for f in files] == ["subtitle stream 1 (ass)", "subtitle stream 2 (webvtt)",
                                       "subtitle stream 3 (subrip)"]
    assert files[0].label == f"{subtitled} subtitle stream 1 (ass)"
    assert [[(round(l.start, 1), l.name) for l in read_named_lines(f.path)[0]] for f in files] == [
        [(1.0, "Zoë"), (3.0, "Bob"), (5.0, "Zoë")], [(1.0, "Zoë"), (3.0, "Bob")], [(1.0, "ZOË")]]
    # The naming step takes the track with the most named lines: the ASS one.
    assert video_lines(files)[0] == files[0]
    # A file beside the video comes first, and wins a tie.
    (tmp_path / "episode.en.ass").write_text(ASS)
    files, _ = subtitle_files(outputs, ws)
    assert files[0].label == str(tmp_path / "episode.en.ass") and video_lines(files)[0] == files[0]

    # Kept: the next run reads the extracted files without running ffmpeg.
    def refuse(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(subtitle_streams, "extract_streams", refuse)
    assert len(subtitle_files(outputs, ws)[0]) == 4


def test_mov_text_is_converted_to_subrip(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    video = tmp_path / "episode.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=size=64x64:rate=5:duration=3", "-i", str(tmp_path / "a.srt"),
           "-map", "0", "-map", "1", "-c:v", "mpeg4", "-c:s", "mov_text", str(video))
    files, notes = subtitle_files(probed(video, tmp_path), Workspace.open(tmp_path / "ws"))
    assert notes == [] and [f.name for f in files] == ["subtitle stream 1 (mov_text)"]
    assert [(l.start, l.name, l.text) for l in read_named_lines(files[0].path)[0]] == [(1.0, "ZOË", "Hello")]


def test_a_track_ffmpeg_refuses_is_noted_and_costs_the_others_nothing(tmp_path, subtitled, monkeypatch):
    extract = subtitle_streams._extract

    def broken_vtt(video, streams, folder):
        if any(s.codec == "webvtt" for s in streams):
            raise ffmpeg_python.Error("ffmpeg", b"", b"[matroska @ 0x1] broken packet\n")
        extract(video, streams, folder)

    monkeypatch.setattr(subtitle_streams, "_extract", broken_vtt)
    files, notes = subtitle_files(probed(subtitled, tmp_path), Workspace.open(tmp_path / "ws"))
    assert [f.name for f in files] == ["subtitle stream 1 (ass)", "subtitle stream 3 (subrip)"]
    assert notes == ["episode.mkv: subtitle stream 2 (webvtt) could not be extracted (broken packet): not read"]


def test_picture_tracks_are_noted_only_when_nothing_else_can_be_read(tmp_path):
    video = tmp_path / "film.mkv"
    video.write_bytes(b"")
    info = MediaInfo(str(video), "matroska,webm", 10.0, 0, (
        StreamInfo(0, "video", "h264"), StreamInfo(1, "subtitle", "hdmv_pgs_subtitle")))
    outputs = probed(video, tmp_path, info)
    ws = Workspace.open(tmp_path / "ws")
    assert subtitle_files(outputs, ws) == (
        [], ["film.mkv: subtitle stream 1 (hdmv_pgs_subtitle) is pictures, not text (no OCR here): not read"])
    (tmp_path / "film.srt").write_text(SRT)
    files, notes = subtitle_files(outputs, ws)
    assert [f.name for f in files] == ["film.srt"] and notes == []


def test_a_video_gone_since_its_run_is_noted_not_remembered(tmp_path, subtitled):
    outputs = probed(subtitled, tmp_path)
    moved = tmp_path / "elsewhere.mkv"
    subtitled.rename(moved)
    ws = Workspace.open(tmp_path / "ws")
    assert subtitle_files(outputs, ws) == ([], ["episode.mkv: not found, its subtitle streams not read"])
    files, notes = subtitle_files(outputs_of(moved, outputs.probe), ws)
    assert len(files) == 3 and notes == []
