"""Per-character export for other trainers: face crops per character (ImageNet-style folders) and audio clips
per voice, from a finished run.

In: a workspace after `castline run` (library/last_run.json, the stage results it names: tracks, embeddings,
sampled frames, turns, the workspace WAVs; the registries and names.json), subtitle files beside the videos, and
ExportParams. Out, written as one folder by rename:
  faces/<class>/<video>_<t>.jpg   a bounded set of diverse crops per character (tasks/library/report_faces.py),
                                  cut from the sampled frames the boxes are measured in, at their own size
                                  (times in names zero-padded, 000013.000, so folders list in time order)
  voices/<folder>/<video>_<start>-<end>.wav  whole speaker turns cut from the workspace WAV; the folder is the
                                  voice's linked character, else the voice's own label
  voices/clips.csv                file, voice, character, video, start, end, text — one row per clip
  export.json                     what was written, and notes (no voices, ...)

Class names are the characters dataset's (tasks/tools/character_dataset.py): the labels the timelines give
(gallery or subtitle name, else `character_NNN`), two characters of one label kept apart with a counter. Turns
are the ones speech.rttm holds (the diarization's, in library ids, times to the millisecond as written there),
so a clip's start and end are the RTTM line's.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from tasks.core.formats import atomic_dir, sanitize_label, write_csv, write_json
from tasks.core.records import VideoOutputs
from tasks.core.workspace import Workspace
from tasks.library.report_clips import Clip, cut_clip, pick_clips
from tasks.library.report_faces import choose_faces, face_candidates, write_thumb
from tasks.library.subtitle_streams import subtitle_files
from tasks.library.subtitles import NamedLine, read_named_lines, video_lines
from tasks.library.timeline import offscreen_label, speaker_labels
from tasks.library.view import NAMES_JSON, LibraryView
from tasks.tools.character_dataset import class_names, safe_video, videos_of_last_run
from tasks.tools.dataset import DatasetError
from tasks.tools.params import ExportParams

SUMMARY = "export.json"
CLIPS_CSV = "clips.csv"
CLIP_FIELDS = ["file", "voice", "character", "video", "start", "end", "text"]


@dataclass(frozen=True)
class FaceFile:
    """One exported crop: whose, where from, and its JPEG relative to OUT."""

    name: str  # the class folder's name
    character_id: str
    video: str
    t: float
    track: int
    file: str


@dataclass(frozen=True)
class VoiceTurn:
    """One speaker turn as speech.rttm has it, with who it belongs to and what the subtitles say then."""

    voice: str  # library speaker id
    character: str  # the linked character's label; "" for a voice linked to no face
    folder: str  # voices/<folder>: the linked character's label, else the voice's own
    video: str
    start: float
    end: float
    text: str = ""
    file: str = ""  # relative to OUT, once written


def _check_boxes(view: LibraryView, videos: Mapping[str, VideoOutputs]) -> dict[str, str]:
    """character_id -> label of every character of these videos; a one-line error for a character none of
    whose tracks has a box in a video (its crops could not be cut: a stale or damaged workspace)."""
    labels: dict[str, str] = {}
    for name, outputs in sorted(videos.items()):
        records = view.named(view.video(name, outputs))
        boxed = {t.track_id for t in records.tracks if t.boxes}
        for c in records.characters:
            labels[c.character_id] = c.label
            if not boxed & set(c.track_ids):
                raise DatasetError(f"{name}: character {c.label} has no box (tracks {list(c.track_ids)} are "
                                   f"missing or empty): run `castline run` again")
    return labels


def export_faces(tmp: Path, view: LibraryView, videos: Mapping[str, VideoOutputs], k: int) -> list[FaceFile]:
    """faces/<class>/: up to k diverse crops of each character, full size, named <video>_<t>.jpg."""
    labels = _check_boxes(view, videos)
    candidates = face_candidates(view, videos)
    order = sorted(labels, key=lambda cid: (labels[cid], cid))
    names = dict(zip(order, class_names([labels[cid] for cid in order]).values()))
    files = []
    for cid in order:
        folder = tmp / "faces" / sanitize_label(names[cid])
        folder.mkdir(parents=True)
        chosen = choose_faces(candidates.get(cid, []), k)
        if not chosen:
            raise DatasetError(f"character {labels[cid]} has no box on a sampled frame of the workspace cache "
                               f"(frames removed?): run `castline run` again")
        for f in chosen:
            path = _unique(folder / f"{safe_video(f.video)}_{_stamp(f.t)}", f"_{f.track}", ".jpg")
            write_thumb(f.crop, path, height=f.crop.shape[0])  # its own size: a trainer resizes as it likes
            files.append(FaceFile(names[cid], cid, f.video, f.t, f.track, path.relative_to(tmp).as_posix()))
    return files


def _stamp(t: float) -> str:
    """Seconds in a file name, zero-padded to 6 integer digits (277 h) so a folder lists in time order."""
    return f"{t:010.3f}"


def _unique(stem: Path, suffix: str, ext: str) -> Path:
    """stem+ext, or stem+suffix+ext when that is taken (two tracks of one character at one time)."""
    path = stem.with_name(stem.name + ext)
    return path if not path.exists() else stem.with_name(stem.name + suffix + ext)


def voice_turns(ws: Workspace, view: LibraryView, videos: Mapping[str, VideoOutputs]) -> list[VoiceTurn]:
    """Every turn of these videos, as publish_timeline writes speech.rttm: library speaker ids, filed under the
    linked character's label (tasks/library/timeline.py speaker_labels), times as the RTTM line gives them."""
    out = []
    for name, outputs in sorted(videos.items()):
        records = view.video(name, outputs)
        named = view.named(records)
        filed = speaker_labels(named.characters, named.links)
        lines = subtitle_lines(outputs, ws)
        for turn, shown in zip(records.turns, named.turns):  # the same turns, relabelled one by one
            start, length = round(turn.start, 3), round(turn.duration, 3)
            if length <= 0:  # not in the RTTM (tasks/core/formats.py rttm_lines)
                continue
            end = round(start + length, 3)
            label = filed.get(shown.speaker, offscreen_label(shown.speaker))
            character = "" if label == offscreen_label(shown.speaker) else label
            out.append(VoiceTurn(turn.speaker, character, character or shown.speaker, name, start, end,
                                 overlapping_text(lines, start, end)))
    return out


def subtitle_lines(outputs: VideoOutputs, ws: Workspace) -> list[NamedLine]:
    """Every line of the subtitle file the naming step reads for this video (the one naming the most speakers),
    else of its first subtitle file (beside it or inside it); none without subtitles."""
    files = subtitle_files(outputs, ws)[0]
    source = video_lines(files)[0] or next(iter(files), None)
    return read_named_lines(source.path, unnamed=True)[0] if source else []


def overlapping_text(lines: Sequence[NamedLine], start: float, end: float) -> str:
    """The text of the lines that overlap start..end, in time order, joined by " / "."""
    return " / ".join(line.text for line in sorted(lines, key=lambda l: l.start)
                      if min(line.end, end) > max(line.start, start) and line.text)


def export_voices(tmp: Path, turns: Sequence[VoiceTurn], wavs: Mapping[str, Path], k: int) -> list[VoiceTurn]:
    """voices/<folder>/: up to k whole turns per folder (the longest first, from different videos in turn), cut
    from the workspace WAVs, and voices/clips.csv; returns the clips written."""
    by_folder: dict[str, list[VoiceTurn]] = defaultdict(list)
    for t in turns:
        if t.video in wavs:
            by_folder[t.folder].append(t)
    written = []
    for folder_name, group in sorted(by_folder.items()):
        folder = tmp / "voices" / sanitize_label(folder_name)
        folder.mkdir(parents=True)
        turn_of = {(t.video, t.start, t.end): t for t in reversed(group)}  # the first of identical turns
        for c in pick_clips([Clip(t.video, t.start, t.end) for t in group], k, seconds=math.inf):
            t = turn_of[(c.video, c.start, c.end)]
            path = _unique(folder / f"{safe_video(t.video)}_{_stamp(t.start)}-{_stamp(t.end)}", f"_{t.voice}", ".wav")
            cut_clip(wavs[t.video], t.start, t.end, path)
            written.append(replace(t, file=path.relative_to(tmp).as_posix()))
    if written:
        write_csv(tmp / "voices" / CLIPS_CSV, CLIP_FIELDS,
                  ([t.file, t.voice, t.character, t.video, f"{t.start:.3f}", f"{t.end:.3f}", t.text]
                   for t in written))
    return written


def export_characters(workspace: str | Path, out_dir: str | Path, params: ExportParams) -> dict:
    """Write the faces and voices of the workspace's last run to out_dir; returns the summary (export.json)."""
    ws = Workspace.open(workspace)
    if not (ws.library_dir / NAMES_JSON).is_file():
        raise DatasetError(f"no finished run in {ws.root} (no library/{NAMES_JSON}): run `castline run` first")
    files = videos_of_last_run(ws, pictures=False)
    try:
        pictures = videos_of_last_run(ws)
    except DatasetError:  # only audio files: voices alone
        pictures = {}
    view = LibraryView.load(ws)
    wavs = {name: v.wav for name, v in files.items() if v.wav and v.wav.is_file()}
    notes = [] if pictures else [f"no video with pictures in the last run of {ws.root}: no faces exported"]
    with atomic_dir(out_dir) as tmp:
        faces = export_faces(tmp, view, pictures, params.max_faces) if pictures else []
        turns = voice_turns(ws, view, {name: files[name] for name in wavs})
        clips = export_voices(tmp, turns, wavs, params.max_clips)
        if not clips:
            notes.append(f"no voices in the last run of {ws.root} (no file with speech and its audio): "
                         "faces only, no voices/")
        summary = _summary(ws, params, faces, clips, notes)
        write_json(tmp / SUMMARY, summary)
    return summary


def _summary(ws: Workspace, params: ExportParams, faces: Sequence[FaceFile], clips: Sequence[VoiceTurn],
             notes: list[str]) -> dict:
    per_class: dict[str, dict] = {}
    for f in faces:
        entry = per_class.setdefault(f.name, {"character_id": f.character_id, "crops": 0, "videos": []})
        entry["crops"] += 1
        entry["videos"] = sorted({*entry["videos"], f.video})
    per_folder: dict[str, dict] = {}
    for c in clips:
        entry = per_folder.setdefault(c.folder, {"character": c.character, "voices": [], "clips": 0, "seconds": 0.0})
        entry["clips"] += 1
        entry["seconds"] = round(entry["seconds"] + c.end - c.start, 3)
        entry["voices"] = sorted({*entry["voices"], c.voice})
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "workspace": str(ws.root),
            "params": params.model_dump(), "faces": per_class, "voices": per_folder or None,
            "clips_csv": f"voices/{CLIPS_CSV}" if clips else None, "notes": notes}
