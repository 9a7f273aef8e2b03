"""report.html's voice clips: a few short turns of each section's voice, cut from the workspace audio so the page
plays them without the video.

In: a section's speaking spans per video and each video's workspace WAV (the audio stage's result). Out: which
turns to play (Clip) and each as a WAV file of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CLIPS_PER_VOICE = 3
CLIP_SECONDS = 6.0  # a clip is the start of a turn, at most this long
MIN_TURN = 0.3  # shorter turns are a breath or a cough, not a voice to recognise


@dataclass(frozen=True)
class Clip:
    video: str
    start: float
    end: float
    file: str = ""  # relative to report.html, once written

    @property
    def seconds(self) -> float:
        return self.end - self.start


def pick_clips(turns: Sequence[Clip], k: int = CLIPS_PER_VOICE, seconds: float = CLIP_SECONDS) -> list[Clip]:
    """Up to k turns of one voice, the longest first but from different videos in turn (the longest video's
    turn first in each round), each cut to its first `seconds`; returned in video and time order."""
    by_video: dict[str, list[Clip]] = {}
    for t in sorted(turns, key=lambda t: -t.seconds):
        if t.seconds >= MIN_TURN:
            by_video.setdefault(t.video, []).append(t)
    picked: list[Clip] = []
    while len(picked) < k and any(by_video.values()):
        for video in sorted((v for v in by_video if by_video[v]), key=lambda v: -by_video[v][0].seconds):
            if len(picked) < k:
                t = by_video[video].pop(0)
                picked.append(Clip(t.video, t.start, min(t.end, t.start + seconds)))
    return sorted(picked, key=lambda c: (c.video, c.start))


def cut_clip(wav: Path, start: float, end: float, out: Path) -> Path:
    """Samples start..end of a workspace WAV as a 16-bit WAV of its own, read without decoding the rest."""
    import soundfile as sf

    info = sf.info(str(wav))
    a, b = int(start * info.samplerate), min(info.frames, int(math.ceil(end * info.samplerate)))
    data, rate = sf.read(str(wav), start=a, stop=max(a + 1, b), dtype="int16", always_2d=False)
    sf.write(str(out), data, rate, subtype="PCM_16", format="WAV")
    return out
