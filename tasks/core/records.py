"""Record types that pass between castline's stages.

In: nothing (pure definitions). Out: typed dataclasses for media info, frames, boxes, tracks,
speech turns, characters, timeline spans and a video's timeline.json, each video's manifest of results
(VideoOutputs) and the run summary, and the box overlap (IoU) every stage measures the same way. Every on-disk
form of them lives in tasks/core/formats.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "video" | "audio" | "subtitle" | ...
    codec: str
    # video
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    avg_fps: float | None = None
    rotation: int = 0
    # audio
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a file, reduced to what the stages need."""

    path: str
    format_name: str
    duration: float
    size_bytes: int
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def vfr(self) -> bool:
        """Variable frame rate: nominal and average rates disagree by more than 1 %."""
        v = self.video
        if v is None or not v.fps or not v.avg_fps:
            return False
        return abs(v.fps - v.avg_fps) / v.fps > 0.01

    @property
    def display_size(self) -> tuple[int, int] | None:
        """Width, height after applying the rotation ffmpeg auto-applies on decode."""
        v = self.video
        if v is None or v.width is None or v.height is None:
            return None
        if v.rotation % 180 == 90:
            return v.height, v.width
        return v.width, v.height


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its position in the sample, its time, and where its image is stored."""

    index: int
    t: float
    file: str  # relative to the frame store's folder


# Box kinds: a face (what the face detectors find, and what is embedded and clustered), a head (the face+hair
# region, also seen from behind) and a person (the whole body). Only faces carry identity; head and person tracks
# are linked to the face tracks they contain (tasks/video/body_link.py).
KINDS = ("face", "head", "person")


@dataclass(frozen=True)
class Box:
    """One detection on one sampled frame, in pixels of that frame (x1, y1, x2, y2)."""

    frame: int
    t: float
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str = "face"  # the box kind, one of KINDS (records written before kinds existed load as faces)
    # Drawn between two detected frames of a still stretch (tasks/video/detect/stride.py), not found by a detector:
    # never a training label, and a track's crops come from its detected boxes first.
    interpolated: bool = False

    @property
    def kind(self) -> str:
        return self.label

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when either is empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Track:
    """Boxes of one face linked over consecutive sampled frames of one shot."""

    track_id: int
    boxes: tuple[Box, ...]
    label: str = "face"  # the kind of all its boxes (tracking links boxes of one kind only)

    @property
    def kind(self) -> str:
        return self.label

    @property
    def start(self) -> float:
        return self.boxes[0].t

    @property
    def end(self) -> float:
        return self.boxes[-1].t

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(b.frame for b in self.boxes)


@dataclass(frozen=True)
class Segment:
    """A span of time in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class SpeechTurn:
    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class Diarization:
    """One file's voices: turns that may overlap (two people at once), the same turns one speaker at a time
    (for what needs one label per moment: audio cut per speaker), and one unit voice centroid per speaker."""
    turns: list[SpeechTurn]
    exclusive: list[SpeechTurn]
    centroids: dict[str, np.ndarray]


@dataclass(frozen=True)
class Character:
    """A group of tracks judged to be one person within a video (or library)."""

    character_id: str
    track_ids: tuple[int, ...]
    name: str | None = None
    speakers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.character_id


@dataclass(frozen=True)
class Cooccurrence:
    """How long one voice and one character were heard and seen together in one video: on-screen time
    during the voice's speech, and the same with each moment divided by the characters on screen.
    With character_id None, both hold the voice's total speech in that video."""

    speaker: str
    character_id: str | None
    weighted_seconds: float
    together_seconds: float


@dataclass(frozen=True)
class SpeakerLink:
    """The evidence for linking one voice to one on-screen character (or to nobody)."""

    speaker: str
    character_id: str | None  # None: off-screen voice
    score: float  # on-screen seconds weighted 1/(faces on screen) over speech seconds: what ranks the faces
    speech_seconds: float
    overlap_seconds: float  # seconds of its speech with that face on screen

    @property
    def on_screen_share(self) -> float:
        """The share of the voice's speech with its face on screen: what align.min_score judges, and what a
        person reading the evidence expects (the weighted score reads low over every two-shot)."""
        return self.overlap_seconds / self.speech_seconds if self.speech_seconds > 0 else 0.0


@dataclass(frozen=True)
class TimelineSpan:
    """One row of a character timeline: on screen or speaking, from start to end, in one video."""

    video: str
    character: str
    kind: str  # "on_screen" | "speaking"
    start: float
    end: float
    source: str = ""  # track id or speaker label the span came from
    box_kind: str = ""  # on_screen spans: the box kind that shows the character then (face, else head, else person)


# The label (and id) of a voice linked to no face in its video: offscreen_<speaker>.
OFFSCREEN_PREFIX = "offscreen_"


@dataclass(frozen=True)
class TimelineCharacter:
    """One character of a video's timeline.json: its spans on screen and speaking, and the voices filed under it."""

    character_id: str
    name: str | None
    speakers: list[str] = field(default_factory=list)
    on_screen: list[tuple[float, float]] = field(default_factory=list)
    speaking: list[tuple[float, float]] = field(default_factory=list)
    screen_seconds: float = 0.0
    speech_seconds: float = 0.0
    screen_seconds_by_kind: dict[str, float] = field(default_factory=dict)  # face / head / person

    @property
    def offscreen(self) -> bool:
        """A voice heard with no face in this video: its entry's id is its offscreen_ label, not a character's."""
        return self.character_id.startswith(OFFSCREEN_PREFIX)


@dataclass(frozen=True)
class Timeline:
    """A video's timeline.json: its characters by label (name, else library id; off-screen voices too) and
    the voice-to-character links, in this video's speech."""

    video: str
    characters: dict[str, TimelineCharacter]
    speaker_links: list[SpeakerLink]


@dataclass(frozen=True)
class TimelineFiles:
    """Where the library step wrote one video's timeline (WORKSPACE/videos/<name>/)."""

    timeline_json: Path
    timeline_csv: Path
    rttm: Path
    speakers_rttm: Path
    folder: Path


@dataclass(frozen=True)
class VideoOutputs:
    """The manifest of one processed video: where its stage results are (the per-video flow's), and once the
    library step has run, its timeline files. turns and wav are None for a video without audio."""

    video: Path
    probe: Path
    frames: Path
    tracks: Path
    embeddings: Path
    characters: Path
    evidence: Path
    turns: Path | None
    wav: Path | None
    interval: float  # seconds between sampled frames
    timeline: TimelineFiles | None = None


@dataclass
class VideoResult:
    """What the per-video flow reports back to the library flow."""

    video: str
    ok: bool
    error: str | None = None
    skipped_stages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outputs: VideoOutputs | None = None  # None: the video failed
    seconds: float = 0.0
    # Wall time of each stage in this run (a stage finished in an earlier run takes ~0).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def audio_only(self) -> bool:
        """An audio file: its video stages were skipped (flows/video.py), so it has no picture and no face."""
        return "frames" in self.skipped_stages


@dataclass
class RunSummary:
    """What a library run did (runs/<time>.json, library/last_run.json, the flow's return value)."""

    library: str
    workspace: str
    finished_at: str  # ISO 8601, UTC, seconds
    seconds: float
    succeeded: list[str]
    failed: list[dict[str, str | None]]  # {"video", "error"}
    videos: list[VideoResult]
    report: str  # library/report.md
    detector: dict[str, str | None]  # {"backend", "weights", "why"}: the face detector the run used, and why
