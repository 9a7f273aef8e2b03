"""A library run's own logic, below the flow: which files are its videos, where its workspace and gallery are,
and what it writes once every video is through (combined timeline, reports, run summary).

In: a library folder, the per-video results of a run and the names the identities step decided.
Out: the video list and names; WORKSPACE/library/timeline.csv, report.md, report.html with report_files/; the
run summary (tasks/core/formats.py RunSummary) in runs/<time>.json and library/last_run.json. flows/library.py
only orchestrates: it calls these in order and turns the summary into the flow's state.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tasks.core.config import DetectParams, RunConfig
from tasks.core.formats import (
    LAST_RUN_JSON,
    RunSummary,
    read_timeline_csv,
    write_json,
    write_text,
    write_timeline_csv,
)
from tasks.core.records import VideoResult
from tasks.core.workspace import Workspace
from tasks.library.report import render_report
from tasks.library.report_files import write_html_report
from tasks.library.view import LibraryNames, LibraryView
from tasks.video.demux import AUDIO_EXTENSIONS

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
# Audio files are episodes too (voices only; tasks/video/demux.py is_audio_file).
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
WORKSPACE_DIRNAME = ".castline"


def default_workspace(library: str | Path) -> Path:
    return Path(library) / WORKSPACE_DIRNAME


def list_videos(library: Path, workspace: Path, audio: bool = True) -> list[Path]:
    """Video files (and, with `audio`, audio files) under `library` by extension, sorted; hidden folders and
    the workspace are skipped, and symlinked folders are not followed (a symlink loop cannot trap the walk)."""
    extensions = MEDIA_EXTENSIONS if audio else VIDEO_EXTENSIONS
    if not library.is_dir():
        raise NotADirectoryError(f"library folder not found: {library}")
    found = []
    for dirpath, dirnames, filenames in os.walk(library):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (here / d).resolve() != workspace.resolve())
        found += [here / f for f in filenames if Path(f).suffix.lower() in extensions]
    return sorted(found)


def video_name(library: Path, video: Path) -> str:
    """Unique, readable name of a video: its path inside the library ('season1/ep01.mkv')."""
    return video.relative_to(library).as_posix()


def no_videos_message(library: Path) -> str:
    return (f"no video found in {library} (looked for {' '.join(sorted(VIDEO_EXTENSIONS))} and audio files "
            f"{' '.join(sorted(AUDIO_EXTENSIONS))})")


def failure_message(results: Sequence[VideoResult]) -> str | None:
    """What the library run's state says when any video failed ("2 of 3 videos failed"), else None."""
    failed = sum(not r.ok for r in results)
    return f"{failed} of {len(results)} videos failed" if failed else None


def gallery_folder(library: Path, config: RunConfig) -> str | None:
    """The configured gallery, else LIBRARY/gallery when there is one. ValueError when the configured folder
    is missing or LIBRARY/gallery is a link to nothing: a run would otherwise name no one without a word."""
    if config.library.gallery:
        configured = Path(config.library.gallery).expanduser()
        if not configured.is_dir():
            raise ValueError(f"gallery folder not found: {config.library.gallery} (library.gallery)")
        return str(configured)
    default = library / "gallery"
    if default.is_symlink() and not default.is_dir():
        raise ValueError(f"{default} links to {os.readlink(default)}, which is not a folder: fix or remove the link")
    return str(default) if default.is_dir() else None


def write_library_timeline(ws: Workspace, done: Sequence[VideoResult]) -> Path:
    """Every video's timeline rows in one CSV."""
    spans = [s for r in done for s in read_timeline_csv(r.outputs.timeline.timeline_csv)]
    return write_timeline_csv(ws.library_dir / "timeline.csv", spans)


def write_reports(lib: Path, ws: Workspace, ordered: Sequence[VideoResult], names_path: Path | None,
                  seconds: float, detector: str, config: RunConfig) -> Path:
    """report.md, and report.html with its report_files/ (the models of `config` in its header); returns
    report.md. `names_path` None: no video was processed, so there are no names."""
    view = LibraryView.load(ws, names_path)
    names = view.names if names_path else LibraryNames()
    report = ws.library_dir / "report.md"
    write_text(report, render_report(str(lib), str(ws.root), list(ordered), seconds, detector=detector,
                                     gallery=list(names.gallery.values()), subtitles=names.subtitles))
    write_html_report(ws, str(lib), ordered, view, seconds, detector, config)
    return report


def write_summary(lib: Path, ws: Workspace, ordered: Sequence[VideoResult], seconds: float, report: Path,
                  detect: DetectParams, why: str) -> RunSummary:
    """The run summary, kept per run (runs/<time>.json) and as the last one (library/last_run.json)."""
    now = datetime.now(timezone.utc)
    summary = RunSummary(
        library=str(lib), workspace=str(ws.root), finished_at=now.isoformat(timespec="seconds"),
        seconds=round(seconds, 2), succeeded=[r.video for r in ordered if r.ok],
        failed=[{"video": r.video, "error": r.error} for r in ordered if not r.ok], videos=list(ordered),
        report=str(report), detector={"backend": detect.backend, "weights": detect.yolo_weights, "why": why})
    write_json(ws.runs_dir / f"{now:%Y%m%dT%H%M%S}.json", summary)
    write_json(ws.library_dir / LAST_RUN_JSON, summary)
    return summary
