"""report.html and report_files/: the page and everything it shows or links to, written so that the two can be
moved anywhere together.

In: the run's results with their timeline files and the stage results behind them (frames, tracks, embeddings,
each video's workspace WAV), the LibraryView, the run's configuration. Out: WORKSPACE/library/report.html, and
beside it report_files/ — faces/ (JPEG crops), clips/ (WAV), videos/<video folder>/ (each video's CSV, JSON,
RTTM and WebVTT) and the library tables — the folder replaced whole, by rename.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

from tasks.core.config import RunConfig
from tasks.core.formats import atomic_dir, read_timeline_json, write_text
from tasks.core.records import VideoResult
from tasks.core.workspace import Workspace
from tasks.library.html_report import REPORT_FILES, REPORT_HTML, ReportPage, VideoPage, models_used, render_html
from tasks.library.report_cast import Cast, build_cast
from tasks.library.report_clips import Clip, cut_clip, pick_clips
from tasks.library.report_faces import Thumb, choose_faces, face_candidates, write_thumb
from tasks.library.speaker_table import TABLE_CSV
from tasks.library.timeline import SPEAKERS_RTTM, SPEECH_RTTM, SPEECH_VTT, TIMELINE_CSV, TIMELINE_JSON
from tasks.library.view import NAMES_JSON, LibraryView
from tasks.video.demux import load_media_info

VIDEO_FILES = (TIMELINE_CSV, TIMELINE_JSON, SPEECH_RTTM, SPEAKERS_RTTM, SPEECH_VTT)
LIBRARY_FILES = ("timeline.csv", "appearances.csv", TABLE_CSV, NAMES_JSON)


def link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the file system allows it (the next run replaces the source, never edits it: the link
    keeps this run's version), else a copy. Either way the report's folder holds the file itself."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def copy_files(src: Path, names: Sequence[str], dest: Path, href: str) -> dict[str, str]:
    """Those of `names` that exist in `src`, into `dest`; file name -> its link `href`/name."""
    dest.mkdir(parents=True, exist_ok=True)
    links = {}
    for name in names:
        if (src / name).is_file():
            link_or_copy(src / name, dest / name)
            links[name] = f"{href}/{name}"
    return links


def write_faces(dest: Path, cast: Cast, view: LibraryView, videos: Mapping[str, VideoResult]) -> dict[str, list[Thumb]]:
    """Each character's chosen faces as JPEGs in `dest` (report_files/faces)."""
    dest.mkdir()
    thumbs: dict[str, list[Thumb]] = {}
    for key, candidates in face_candidates(view, {name: r.outputs for name, r in videos.items()}).items():
        section = cast.get(key)
        if section is None:
            continue
        thumbs[key] = [Thumb(f, f"{REPORT_FILES}/{dest.name}/"
                                f"{write_thumb(f.crop, dest / f'{section.anchor}_{n}.jpg').name}")
                       for n, f in enumerate(choose_faces(candidates))]
    return thumbs


def write_clips(dest: Path, cast: Cast, wavs: Mapping[str, Path]) -> dict[str, list[Clip]]:
    """A few turns of each section's voice, cut from its videos' workspace WAVs into `dest` (report_files/clips)."""
    dest.mkdir()
    clips: dict[str, list[Clip]] = {}
    for s in cast.sections:
        turns = [Clip(video, a, b) for video, ap in s.appearances.items() if video in wavs for a, b in ap.speaking]
        for n, c in enumerate(pick_clips(turns)):
            file = cut_clip(wavs[c.video], c.start, c.end, dest / f"{s.anchor}_{n}.wav")
            clips.setdefault(s.key, []).append(Clip(c.video, c.start, c.end, f"{REPORT_FILES}/{dest.name}/{file.name}"))
    return clips


def write_html_report(ws: Workspace, library: str, results: Sequence[VideoResult], view: LibraryView,
                      seconds: float, detector: str, config: RunConfig) -> Path:
    """report.html and report_files/ in WORKSPACE/library; returns report.html."""
    done = {r.video: r for r in results if r.ok and r.outputs and r.outputs.timeline
            and r.outputs.timeline.timeline_json.is_file()}
    timelines = {name: read_timeline_json(r.outputs.timeline.timeline_json) for name, r in done.items()}
    cast = build_cast(list(timelines.values()), view)
    with atomic_dir(ws.library_dir / REPORT_FILES) as tmp:
        videos = []
        for name, r in done.items():
            folder = r.outputs.timeline.folder  # already a safe, unique name (Workspace.video_dir)
            files = copy_files(folder, VIDEO_FILES, tmp / "videos" / folder.name,
                               f"{REPORT_FILES}/videos/{quote(folder.name)}")  # any script, URL-quoted
            duration = load_media_info(r.outputs.probe, r.outputs.video).duration
            videos.append(VideoPage(r, timelines[name], duration, files))
        library_files = copy_files(ws.library_dir, LIBRARY_FILES, tmp, REPORT_FILES)
        thumbs = write_faces(tmp / "faces", cast, view, done)
        clips = write_clips(tmp / "clips", cast, {name: r.outputs.wav for name, r in done.items()
                                                            if r.outputs.wav and r.outputs.wav.is_file()})
    page = ReportPage(library, str(ws.root), datetime.now().astimezone(), seconds, models_used(config, detector),
                      list(results), videos, cast, thumbs, clips, library_files)
    return write_text(ws.library_dir / REPORT_HTML, render_html(page))
