"""Timeline: per-character spans of screen time and speech for one video.

In: tracks + characters (faces), speaker turns + speaker links (voices), the sampling interval.
Out: TimelineSpan rows written as timeline.json (per character), timeline.csv (one row per span), an RTTM
and a WebVTT of speech labelled by character, a PNG plot (in report.html's colours), faces.jpg (a few faces of
each character: tasks/library/face_sheet.py), and tracks.json with its boxes in source-video pixels. Voices
linked to no face: `offscreen_<speaker>`.
"""
from __future__ import annotations

import shutil
from dataclasses import astuple, fields, replace
from pathlib import Path
from typing import Sequence

from PIL import Image

from tasks.video.align import box_intervals, merge_intervals
from tasks.video.body_link import KIND_ORDER, linked_tracks, subtract

from tasks.core.formats import (
    atomic_dir,
    read_frames,
    read_json,
    read_timeline_json,
    write_characters,
    write_rttm,
    write_timeline_csv,
    write_timeline_json,
    write_text,
    write_tracks,
    write_webvtt,
)
from tasks.video.demux import load_media_info
from tasks.library.drawn import drawn
from tasks.library.face_sheet import write_face_sheet
from tasks.library.plots import plot_timeline
from tasks.library.report_cast import timeline_colours
from tasks.library.view import GlobalView, LibraryView
from tasks.core.stage import always_task
from tasks.core.records import (OFFSCREEN_PREFIX, Box, Character, Segment, SpeakerLink, SpeechTurn, TimelineFiles,
                                TimelineSpan, Track, VideoOutputs)
from tasks.core.workspace import Workspace, code_fingerprint, params_digest

TIMELINE_JSON = "timeline.json"
TIMELINE_CSV = "timeline.csv"
SPEECH_RTTM = "speech.rttm"
CHARACTERS_JSON = "characters.json"
TRACKS_JSON = "tracks.json"
SPEAKERS_RTTM = "speakers.rttm"
SPEECH_VTT = "speech.vtt"
TIMELINE_PNG = "timeline.png"  # turns labelled by library speaker id (not by character)
FOLDER_KEY = "folder.key"  # what the folder was written from, then the files it was written with


def offscreen_label(speaker: str) -> str:
    return f"{OFFSCREEN_PREFIX}{speaker}"


def speaker_labels(characters: Sequence[Character], links: Sequence[SpeakerLink]) -> dict[str, str]:
    """speaker -> the label its speech is filed under (its character, or an off-screen voice)."""
    by_id = {c.character_id: c for c in characters}
    return {link.speaker: by_id[link.character_id].label if link.character_id in by_id
            else offscreen_label(link.speaker) for link in links}


def build_timeline(video: str, tracks: Sequence[Track], characters: Sequence[Character],
                   turns: Sequence[SpeechTurn], links: Sequence[SpeakerLink], interval: float) -> list[TimelineSpan]:
    """On-screen spans join sampled boxes less than 1.5 intervals apart (one missed frame is tolerated)."""
    spans: list[TimelineSpan] = []
    by_id = {t.track_id: t for t in tracks}
    linked = linked_tracks(tracks, characters)  # head and person tracks (tasks/video/body_link.py)
    for c in characters:
        covered: list[Segment] = []
        # Face time first, then the head and person time when no face of the character shows (box_kind says which).
        for kind in KIND_ORDER:
            per_track = {tid: box_intervals(by_id[tid], interval)
                         for tid in (*c.track_ids, *linked.get(c.character_id, ())) if by_id[tid].label == kind}
            merged = merge_intervals([iv for ivs in per_track.values() for iv in ivs], gap=interval * 0.5)
            for seg in subtract(merged, covered):
                if round(seg.end, 3) <= round(seg.start, 3):
                    continue
                # The source names the tracks seen in this span, so a row leads back to its boxes.
                sources = [tid for tid, ivs in per_track.items() if any(a < seg.end and b > seg.start for a, b in ivs)]
                spans.append(TimelineSpan(video, c.label, "on_screen", round(seg.start, 3), round(seg.end, 3),
                                          ",".join(map(str, sorted(sources))), box_kind=kind))
            covered = merge_intervals([(s.start, s.end) for s in [*covered, *merged]])
    label = speaker_labels(characters, links)
    for t in turns:
        spans.append(TimelineSpan(video, label.get(t.speaker, offscreen_label(t.speaker)), "speaking",
                                  round(t.start, 3), round(t.end, 3), t.speaker))
    return sorted(spans, key=lambda s: (s.start, s.character, s.kind))


def character_turns(turns: Sequence[SpeechTurn], labels: dict[str, str]) -> list[SpeechTurn]:
    return [SpeechTurn(t.start, t.end, labels.get(t.speaker, offscreen_label(t.speaker))) for t in turns]


def write_timeline(folder: Path, video: str, tracks: Sequence[Track], characters: Sequence[Character],
                   turns: Sequence[SpeechTurn], links: Sequence[SpeakerLink], interval: float,
                   duration: float, view: LibraryView, previous: Path | None = None) -> list[TimelineSpan]:
    """The timeline files in `folder`; the PNG colours each character as report.html does, from the timeline.json
    the report reads (`view` says which library character an off-screen voice belongs to), and is copied from
    the `previous` folder when it would show the same (tasks/library/drawn.py)."""
    spans = build_timeline(video, tracks, characters, turns, links, interval)
    by_character = character_turns(turns, speaker_labels(characters, links))
    timeline = read_timeline_json(write_timeline_json(folder / TIMELINE_JSON, video, spans, characters, links))
    write_timeline_csv(folder / TIMELINE_CSV, spans)
    write_rttm(folder / SPEECH_RTTM, Path(video).stem, by_character)
    write_webvtt(folder / SPEECH_VTT, by_character)
    colours = timeline_colours(timeline, view)
    key = params_digest([astuple(s) for s in spans], duration, video, colours, code_fingerprint("tasks.library.plots"))
    drawn(folder, TIMELINE_PNG, key, lambda out: plot_timeline(spans, duration, video, colours, out), previous)
    return spans


def sampled_size(frames_index: Path) -> tuple[int, int] | None:
    """Width, height of the stored sampled frames, from the first one's header (None when none was
    sampled): the pixels every box of the detect and track stages is measured in."""
    frames = read_frames(frames_index)
    if not frames:
        return None
    with Image.open(frames_index.parent / frames[0].file) as image:
        return image.size


def in_source_pixels(tracks: Sequence[Track], sampled: tuple[int, int] | None,
                     source: tuple[int, int] | None) -> list[Track]:
    """Tracks with their boxes moved from sampled-frame pixels (long side at most demux.max_side) to the
    source video's: what a reader of tracks.json can draw on the video itself. Nothing sampled (an audio file,
    whose `source` is None): the tracks, none, as they are."""
    if sampled is None:
        return list(tracks)
    sx, sy = source[0] / sampled[0], source[1] / sampled[1]

    def scaled(b: Box) -> Box:
        return replace(b, x1=round(b.x1 * sx, 2), y1=round(b.y1 * sy, 2), x2=round(b.x2 * sx, 2), y2=round(b.y2 * sy, 2))

    return [replace(t, boxes=tuple(scaled(b) for b in t.boxes)) for t in tracks]


def write_source_tracks(path: Path, cached: Path, tracks: Sequence[Track], frames_index: Path,
                        source: tuple[int, int] | None) -> Path:
    """tracks.json: the track stage's result (its shots too) with boxes in source pixels, saying so; an audio
    file has no source size (frame_size null) and no track."""
    meta = {k: v for k, v in read_json(cached).items() if k != "tracks"}
    return write_tracks(path, in_source_pixels(tracks, sampled_size(frames_index), source), **meta,
                        coordinates="source pixels", frame_size=list(source) if source else None)


def folder_key(name: str, outputs: VideoOutputs, records: GlobalView, named: GlobalView, extra: dict[str, Path]) -> str:
    """What a video's timeline folder is written from: its stage results (cache paths, keyed by content), its
    characters and voices in library ids and as named and linked, the files copied in, and the code that writes
    it. Colours follow from the ids and links (report_cast.colour), the face sheet from the same records."""
    stage_results = {f.name: str(getattr(outputs, f.name)) for f in fields(outputs) if f.name != "timeline"}
    # named.characters are records.characters with their names: the ids are in them already.
    return params_digest(name, stage_results, records.turns, records.links, named.characters, named.turns,
                         named.links, sorted((file, str(src)) for file, src in extra.items()),
                         code_fingerprint(__name__))


def _unchanged(folder: Path, key: str) -> bool:
    """Whether `folder` was written from `key` and still holds every file it was written with."""
    path = folder / FOLDER_KEY
    if not path.is_file():
        return False
    written_from, *files = path.read_text(encoding="utf-8").splitlines()
    return written_from == key and all((folder / f).is_file() for f in files)


def publish_timeline(ws: Workspace, name: str, outputs: VideoOutputs, view: LibraryView,
                     extra: dict[str, Path]) -> TimelineFiles:
    """Write a video's timeline in library terms to WORKSPACE/videos/<name>/, all files in one rename, unless
    the folder there was written from the same (folder_key): a run that adds an episode to a library of
    hundreds leaves the others' folders alone. Names (gallery, subtitles) label the timeline; speakers.rttm keeps
    the library speaker ids."""
    records = view.video(name, outputs)
    named = view.named(records)
    dest = ws.video_dir(name)
    key = folder_key(name, outputs, records, named, extra)
    if _unchanged(dest, key):
        return timeline_files(ws, name)
    with atomic_dir(dest) as tmp:
        info = load_media_info(outputs.probe, outputs.video)
        write_timeline(tmp, name, records.tracks, named.characters, named.turns, named.links, outputs.interval,
                       info.duration, view, previous=dest)
        write_face_sheet(tmp, name, outputs, view, previous=dest)
        write_source_tracks(tmp / TRACKS_JSON, outputs.tracks, records.tracks, outputs.frames, info.display_size)
        write_characters(tmp / CHARACTERS_JSON, named.characters)
        write_rttm(tmp / SPEAKERS_RTTM, Path(name).stem, records.turns)
        for file, src in extra.items():
            shutil.copy2(src, tmp / file)
        write_text(tmp / FOLDER_KEY, "\n".join([key, *sorted(p.name for p in tmp.iterdir())]) + "\n")
    return timeline_files(ws, name)


def timeline_files(ws: Workspace, name: str) -> TimelineFiles:
    """Where publish_timeline writes a video's timeline files."""
    dest = ws.video_dir(name)
    return TimelineFiles(timeline_json=dest / TIMELINE_JSON, timeline_csv=dest / TIMELINE_CSV, rttm=dest / SPEECH_RTTM,
                         speakers_rttm=dest / SPEAKERS_RTTM, folder=dest)


@always_task("timelines")
def timelines_task(workspace: str, videos: dict[str, VideoOutputs], names_path: Path) -> dict[str, VideoOutputs]:
    """Every video's timeline, on every run that changes the library (library ids or names may have changed; a
    folder written from the same is kept), from one read of the registries: one task and one view for the library,
    not one per video, which on a 301-video library had cost 10 s of registry reads and 16 s of task bookkeeping.
    Returns each video's manifest with its timeline files."""
    ws = Workspace.open(workspace)
    view = LibraryView.load(ws, names_path)
    return {name: replace(outputs, timeline=publish_timeline(ws, name, outputs, view, {"media.json": outputs.probe}))
            for name, outputs in videos.items()}
