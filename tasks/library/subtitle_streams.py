"""Subtitle tracks inside a video file — Matroska's ASS, SubRip and WebVTT, MP4's mov_text — as files the naming
step reads like the ones beside the video (an anime release carries its subtitles, with ASS `Name` fields, inside
the .mkv; rarely beside it).

In: a processed video's probe result (its streams) and a cache folder. Out: one file per text subtitle stream,
extracted by one ffmpeg pass the first time and kept under the cache, keyed by the probe result (itself keyed by
the video's content) and this module's code; plus one-line notes for streams that are pictures (PGS, VobSub, DVB:
no text to read without OCR) or that ffmpeg could not extract. Times are as ffmpeg writes them by default, shifted
by the file's start time as the extracted audio is, so a line and the voice under it keep their distance.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import ffmpeg

from tasks.core.formats import atomic_dir, read_json, write_json
from tasks.core.records import StreamInfo, VideoOutputs
from tasks.core.workspace import Workspace, code_version, params_digest
from tasks.library.subtitles import SubtitleFile, find_subtitles
from tasks.video.demux import _ffmpeg_reason, load_media_info

# ASS, SubRip and WebVTT are copied as stored (ASS keeps its Name field, WebVTT its <v Name> tags); any other
# text codec (mov_text, bare text, closed captions …) is converted to SubRip by ffmpeg.
COPIED = {"ass": ".ass", "ssa": ".ass", "subrip": ".srt", "webvtt": ".vtt"}
PICTURE_CODECS = {"hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle", "xsub", "dvb_teletext"}
SUBTITLE_STREAMS = "subtitle_streams"  # in WORKSPACE/cache/
INDEX = "streams.json"  # in each extraction folder: what was extracted, and why not

log = logging.getLogger("castline")


def _name(stream: StreamInfo) -> str:
    return f"subtitle stream {stream.index} ({stream.codec})"


def _pictures(stream: StreamInfo) -> str:
    return f"{_name(stream)} is pictures, not text (no OCR here): not read"


def _file(stream: StreamInfo) -> str:
    return f"{stream.index}{COPIED.get(stream.codec, '.srt')}"


def _extract(video: Path, streams: list[StreamInfo], folder: Path) -> None:
    """One ffmpeg pass that writes each of `streams` to folder/<index><ext>; raises ffmpeg.Error."""
    source = ffmpeg.input(str(video))
    outputs = [source[str(s.index)].output(str(folder / _file(s)), **{"c:s": "copy" if s.codec in COPIED else "srt"})
               for s in streams]
    (ffmpeg.merge_outputs(*outputs).global_args("-nostdin", "-hide_banner", "-loglevel", "error")
     .overwrite_output().run(capture_stdout=True, capture_stderr=True))


def extract_streams(video: Path, streams: list[StreamInfo], folder: Path) -> None:
    """Extract the text streams into `folder` (atomically: all of them or none), with INDEX saying which file
    holds which stream and the reason for each that ffmpeg refused. All go in one pass (ffmpeg reads the
    whole file for them once); when that fails, each is tried alone, so one broken track does not cost the
    others."""
    with atomic_dir(folder) as tmp:
        failed: dict[int, str] = {}
        try:
            _extract(video, streams, tmp)
        except ffmpeg.Error:
            for s in streams:
                try:
                    _extract(video, [s], tmp)
                except ffmpeg.Error as e:
                    failed[s.index] = _ffmpeg_reason(e.stderr, video)
        write_json(tmp / INDEX, [{"index": s.index, "codec": s.codec,
                                  "file": None if s.index in failed else _file(s),
                                  "error": failed.get(s.index)} for s in streams])


def embedded_subtitles(outputs: VideoOutputs, streams: Sequence[StreamInfo],
                       cache: Path) -> tuple[list[SubtitleFile], list[str]]:
    """The text tracks among a processed video's subtitle `streams` as files (extracted into `cache` once), and
    notes on the tracks that could not be extracted."""
    text = [s for s in streams if s.codec not in PICTURE_CODECS]
    if not text:
        return [], []
    # The probe result's file name is its key, which hashes the video's content.
    folder = cache / params_digest(outputs.probe.stem, [(s.index, s.codec) for s in text], code_version(__name__))
    if not (folder / INDEX).is_file():
        if not outputs.video.is_file():  # moved or unmounted since its run: nothing to remember as failed
            return [], [f"{outputs.video.name}: not found, its subtitle streams not read"]
        # ffmpeg reads the whole file for them: seconds for a long film, once.
        log.info("%s: extracting %d subtitle track(s)", outputs.video.name, len(text))
        extract_streams(outputs.video, text, folder)
    files, notes = [], []
    by_index = {s.index: s for s in text}
    for entry in read_json(folder / INDEX):
        stream = by_index[entry["index"]]
        if entry["file"]:
            files.append(SubtitleFile(folder / entry["file"], f"{outputs.video} {_name(stream)}", _name(stream)))
        else:
            notes.append(f"{outputs.video.name}: {_name(stream)} could not be extracted ({entry['error']}): not read")
    return files, notes


def subtitle_files(outputs: VideoOutputs, ws: Workspace) -> tuple[list[SubtitleFile], list[str]]:
    """Every subtitle file of a video: the files beside it first (a tie in named lines goes to them), then its
    own text tracks, extracted into WORKSPACE/cache/subtitle_streams/; and notes on the tracks not read. Tracks
    that are pictures are noted only when the video has no text to read: otherwise they are not missed."""
    streams = [s for s in load_media_info(outputs.probe, outputs.video).streams if s.kind == "subtitle"]
    embedded, notes = embedded_subtitles(outputs, streams, ws.root / "cache" / SUBTITLE_STREAMS)
    files = [SubtitleFile.beside(p) for p in find_subtitles(outputs.video)] + embedded
    if not files:
        notes += [f"{outputs.video.name}: {_pictures(s)}" for s in streams if s.codec in PICTURE_CODECS]
    return files, notes


def subtitle_plan(video: Path, streams: Sequence[StreamInfo]) -> list[str]:
    """What the naming step would read of a video's subtitles, one line each (for `castline inspect`)."""
    plan = [f"read for names: {p.name} (beside it)" for p in find_subtitles(video)]
    for s in streams:
        if s.kind == "subtitle":
            plan.append(_pictures(s) if s.codec in PICTURE_CODECS else f"read for names: {_name(s)}")
    return plan
