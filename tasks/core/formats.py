"""Every on-disk format castline writes or reads, in one place.

In: record objects (tasks/core/records.py), numpy arrays. Out: files written atomically (temp file in the
same folder + os.replace), so a killed run never leaves a half-written result that a re-run would trust.
Formats: JSON records, NumPy .npy, RTTM (NIST 10 fields), timeline CSV/JSON (typed both ways: Timeline), WebVTT,
CSV tables, Parquet tables, Pillow images (PNG, JPEG), the run summary with each video's manifest (VideoOutputs);
WAV is written by ffmpeg.
Every file castline writes goes through one writer here (tests/test_formats.py checks no other module writes
one itself), and every file it reads back has its typed reader here: hence a module over 400 lines, in short
sections, one per format.
"""
from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from tasks.core.records import (
    Box,
    Character,
    Cooccurrence,
    Diarization,
    Frame,
    MediaInfo,
    RunSummary,
    SpeakerLink,
    SpeechTurn,
    StreamInfo,
    Timeline,
    TimelineCharacter,
    TimelineFiles,
    TimelineSpan,
    Track,
    VideoOutputs,
    VideoResult,
)

if TYPE_CHECKING:
    from PIL import Image

# Names of in-progress files and folders: a killed run leaves only these behind.
TEMP_SUFFIX = ".partial"

# mkstemp/mkdtemp create owner-only entries; results get the modes the user's umask gives new files.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


# --- atomic writes -------------------------------------------------------------------------------

@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it becomes `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing) for a read-modify-write that two processes may
    attempt at once: the atomic rename alone would keep only the last writer's version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(to_jsonable(obj), indent=1, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV table with a header row, "\n" line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def write_image(path: str | Path, image: "Image.Image", fmt: str, **options: Any) -> Path:
    """A Pillow image as `fmt` (PNG, JPEG; `options` as Pillow's save takes them). The temp name ends in
    .partial, so the format cannot come from the extension."""
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **options)
    return Path(path)


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def read_npy(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, VideoOutputs):
        return video_outputs_json(obj)
    if isinstance(obj, VideoResult):  # its manifest flat, {} for a failed video
        return {f.name: video_outputs_json(obj.outputs) if f.name == "outputs" else to_jsonable(getattr(obj, f.name))
                for f in dataclasses.fields(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


# --- records <-> JSON ----------------------------------------------------------------------------

def media_info_from_dict(d: dict) -> MediaInfo:
    return MediaInfo(
        path=d["path"],
        format_name=d["format_name"],
        duration=d["duration"],
        size_bytes=d["size_bytes"],
        streams=tuple(StreamInfo(**s) for s in d["streams"]),
    )


def write_frames(path: str | Path, frames: Sequence[Frame]) -> Path:
    return write_json(path, {"frames": frames})


def read_frames(path: str | Path) -> list[Frame]:
    return [Frame(**f) for f in read_json(path)["frames"]]


def write_boxes(path: str | Path, boxes: Sequence[Box], **meta: Any) -> Path:
    return write_json(path, {**meta, "boxes": boxes})


def read_boxes(path: str | Path) -> list[Box]:
    return [Box(**b) for b in read_json(path)["boxes"]]


def write_tracks(path: str | Path, tracks: Sequence[Track], **meta: Any) -> Path:
    return write_json(path, {**meta, "tracks": tracks})


def read_tracks(path: str | Path) -> list[Track]:
    return [
        Track(track_id=t["track_id"], label=t.get("label", "face"), boxes=tuple(Box(**b) for b in t["boxes"]))
        for t in read_json(path)["tracks"]
    ]


def write_turns(path: str | Path, turns: Sequence[SpeechTurn], **meta: Any) -> Path:
    return write_json(path, {**meta, "turns": turns})


def read_turns(path: str | Path) -> list[SpeechTurn]:
    return [SpeechTurn(**t) for t in read_json(path)["turns"]]


def write_diarization(path: str | Path, result: Diarization) -> Path:
    """A diarize stage result: turns, the exclusive view and the centroids, in one file."""
    return write_turns(path, result.turns, exclusive=result.exclusive,
                       centroids={k: v.tolist() for k, v in result.centroids.items()})


def read_exclusive_turns(path: str | Path) -> list[SpeechTurn]:
    """The one-speaker-at-a-time view of a turns file (the turns themselves for files written without one)."""
    data = read_json(path)
    return [SpeechTurn(**t) for t in data.get("exclusive", data["turns"])]


def write_characters(path: str | Path, characters: Sequence[Character], **meta: Any) -> Path:
    return write_json(path, {**meta, "characters": characters})


def read_characters(path: str | Path) -> list[Character]:
    out = []
    for c in read_json(path)["characters"]:
        out.append(Character(
            character_id=c["character_id"], track_ids=tuple(c["track_ids"]),
            name=c.get("name"), speakers=tuple(c.get("speakers", ())),
        ))
    return out


def write_evidence(path: str | Path, rows: Sequence[Cooccurrence]) -> Path:
    return write_json(path, {"cooccurrence": rows})


def read_evidence(path: str | Path) -> list[Cooccurrence]:
    return [Cooccurrence(**d) for d in read_json(path)["cooccurrence"]]


# --- RTTM ----------------------------------------------------------------------------------------

_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")


def sanitize_label(name: str) -> str:
    """A name safe as an RTTM field and a file name: no spaces, no path separators."""
    cleaned = _LABEL_BAD.sub("_", name.strip()).strip("._")
    return cleaned or "unnamed"


def rttm_lines(uri: str, turns: Iterable[SpeechTurn]) -> list[str]:
    uri = sanitize_label(uri)
    return [
        f"SPEAKER {uri} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {sanitize_label(t.speaker)} <NA> <NA>"
        for t in sorted(turns, key=lambda t: (t.start, t.speaker))
        if t.duration > 0
    ]


def write_rttm(path: str | Path, uri: str, turns: Iterable[SpeechTurn]) -> Path:
    lines = rttm_lines(uri, turns)
    return write_text(path, "".join(line + "\n" for line in lines))


def read_rttm(path: str | Path) -> dict[str, list[SpeechTurn]]:
    """uri -> turns, from an RTTM file (SPEAKER lines only)."""
    out: dict[str, list[SpeechTurn]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) < 8 or f[0] != "SPEAKER":
            continue
        start, dur = float(f[3]), float(f[4])
        out.setdefault(f[1], []).append(SpeechTurn(start, start + dur, f[7]))
    return out


# --- timelines -----------------------------------------------------------------------------------

TIMELINE_FIELDS = [f.name for f in dataclasses.fields(TimelineSpan)]


def write_timeline_csv(path: str | Path, spans: Sequence[TimelineSpan]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TIMELINE_FIELDS, lineterminator="\n")
    w.writeheader()
    for s in spans:
        w.writerow(to_jsonable(s))
    return write_text(path, buf.getvalue())


def read_timeline_csv(path: str | Path) -> list[TimelineSpan]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            TimelineSpan(video=r["video"], character=r["character"], kind=r["kind"],
                         start=float(r["start"]), end=float(r["end"]), source=r["source"],
                         box_kind=r.get("box_kind") or "")
            for r in csv.DictReader(fh)
        ]


def timeline_record(video: str, spans: Sequence[TimelineSpan], characters: Sequence[Character],
                    links: Sequence[SpeakerLink]) -> Timeline:
    """Per-character view: each character with its on-screen and speaking spans and its voices; a label the
    characters do not hold (an off-screen voice) gets an entry of its own, after them, in span order."""
    label_of = {c.character_id: c.label for c in characters}
    ids = {c.label: (c.character_id, c.name) for c in characters}
    spans_of: dict[str, list[TimelineSpan]] = {label: [] for label in ids}
    for s in spans:
        spans_of.setdefault(s.character, []).append(s)
    entries = {}
    for label, own in spans_of.items():
        speakers = [link.speaker for link in links if label_of.get(link.character_id) == label]
        screen = [s for s in own if s.kind == "on_screen"]
        speech = [s for s in own if s.kind == "speaking"]
        speakers += dict.fromkeys(s.source for s in speech if s.source not in speakers)  # first seen first
        by_kind: dict[str, float] = {}
        for s in screen:
            by_kind[s.box_kind or "face"] = by_kind.get(s.box_kind or "face", 0.0) + s.end - s.start
        entries[label] = TimelineCharacter(
            *ids.get(label, (label, None)), speakers, [(s.start, s.end) for s in screen],
            [(s.start, s.end) for s in speech], sum((s.end - s.start for s in screen), 0.0),
            sum((s.end - s.start for s in speech), 0.0), by_kind)
    return Timeline(video, entries, list(links))


def write_timeline_json(path: str | Path, video: str, spans: Sequence[TimelineSpan],
                        characters: Sequence[Character], links: Sequence[SpeakerLink]) -> Path:
    return write_json(path, timeline_record(video, spans, characters, links))


def read_timeline_json(path: str | Path) -> Timeline:
    d = read_json(path)
    characters = {label: TimelineCharacter(**{**c, "on_screen": [tuple(x) for x in c["on_screen"]],
                                              "speaking": [tuple(x) for x in c["speaking"]]})
                  for label, c in d["characters"].items()}
    return Timeline(d["video"], characters, [SpeakerLink(**link) for link in d["speaker_links"]])


# --- voice centroids -----------------------------------------------------------------------------

def read_centroids(path: str | Path) -> dict[str, np.ndarray]:
    """Speaker label -> voice centroid (float32), from a turns file written with `centroids=`."""
    return {k: np.asarray(v, dtype=np.float32) for k, v in read_json(path).get("centroids", {}).items()}


# --- WebVTT ---------------------------------------------------------------------------------------

def _vtt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def write_webvtt(path: str | Path, turns: Iterable[SpeechTurn]) -> Path:
    """Who speaks when, as WebVTT cues with voice tags (`<v Name>`), so a player shows the names."""
    lines = ["WEBVTT", ""]
    for t in sorted(turns, key=lambda t: (t.start, t.speaker)):
        if t.duration <= 0:
            continue
        name = t.speaker.replace(">", "").replace("<", "")
        lines += [f"{_vtt_time(t.start)} --> {_vtt_time(t.end)}", f"<v {name}>{name}", ""]
    return write_text(path, "\n".join(lines) + "\n")


# --- Parquet -------------------------------------------------------------------------------------

def vector_column(matrix: np.ndarray):
    """(n, d) -> fixed_size_list<float32>[d], the registries' own embedding type; with no vectors to give
    d (an empty library), an empty list<float32> column, as the registries write then."""
    import pyarrow as pa

    if matrix.shape[1] == 0:
        return pa.array([[] for _ in range(len(matrix))], pa.list_(pa.float32()))
    flat = pa.array(np.ascontiguousarray(matrix, np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def write_parquet(path: str | Path, columns: "dict[str, Any] | Any", metadata: dict[bytes, bytes] | None = None
                  ) -> Path:
    """One table (a pyarrow Table, or its columns by name), written atomically, with file-level metadata
    saying what made it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = columns if isinstance(columns, pa.Table) else pa.table(columns, metadata=metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


# --- run summary ---------------------------------------------------------------------------------

LAST_RUN_JSON = "last_run.json"  # in WORKSPACE/library/


# A video's manifest (VideoOutputs) is one flat object of strings, as castline has always written it: a stage
# result's path, "" for the audio stages of a silent video, the frame interval as text, then the timeline files.

def video_outputs_json(outputs: VideoOutputs | None) -> dict[str, str]:
    if outputs is None:
        return {}
    flat = {f.name: "" if getattr(outputs, f.name) is None else str(getattr(outputs, f.name))
            for f in dataclasses.fields(outputs) if f.name != "timeline"}
    if outputs.timeline is not None:
        flat.update({k: str(v) for k, v in dataclasses.asdict(outputs.timeline).items()})
    return flat


def video_outputs_from_json(d: dict[str, str]) -> VideoOutputs | None:
    """The manifest back; None for a failed video's `{}`. A run of an older castline may lack "wav"."""
    if not d:
        return None
    timeline = (TimelineFiles(**{f.name: Path(d[f.name]) for f in dataclasses.fields(TimelineFiles)})
                if d.get("timeline_json") else None)
    optional = {k: Path(d[k]) if d.get(k) else None for k in ("turns", "wav")}
    return VideoOutputs(**{k: Path(d[k]) for k in ("video", "probe", "frames", "tracks", "embeddings",
                                                   "characters", "evidence")},
                        **optional, interval=float(d["interval"]), timeline=timeline)


def video_result_from_json(d: dict[str, Any]) -> VideoResult:
    return VideoResult(**{**d, "outputs": video_outputs_from_json(d.get("outputs") or {})})


def run_summary_from_json(d: dict[str, Any]) -> RunSummary:
    return RunSummary(**{**d, "videos": [video_result_from_json(v) for v in d["videos"]]})


def read_run_summary(path: str | Path) -> RunSummary:
    return run_summary_from_json(read_json(path))

