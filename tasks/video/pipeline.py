"""The per-video stages, each declared once: its name, the stages it reads, what it writes, and what its key covers.

In: a video's content hash and the RunConfig. Out: each stage's StageKey, hence the path of its result,
`cache/<stage>/<video-hash>/<key><suffix>`. A key hashes the keys of the stages the stage reads, its parameters,
the source of its module and of every castline module that one imports (tasks/core/workspace.py code_fingerprint:
backends imported inside functions included) and the file stats of the model files it names. flows/video.py
runs each stage by its name here and hands it the results its declaration reads, so no stage runs without a
key, and a backend or helper module is covered as soon as the stage imports it, without being listed. The two
branches' stage lists are here too (AUDIO_STAGES, VIDEO_STAGES), and the fixed empty results that stand for
an audio file's skipped video stages (no_video_results).

Model files hook: a stage whose weights are not pinned by a pip package names them with a function of its module,
`model_files(params) -> list[Path]` (tasks/video/detect/__init__.py, tasks/video/embed/__init__.py, tasks/video/diarize/__init__.py), raising
tasks.core.errors.ModelUnavailable when a model is not there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np

from tasks.video import detect, diarize, embed
from tasks.core.config import RunConfig
from tasks.core.formats import write_boxes, write_characters, write_frames, write_npy, write_tracks
from tasks.video.demux import FRAMES_INDEX
from tasks.core.workspace import StageKey, Workspace, code_fingerprint, model_identity, params_digest


# The stages of a video's audio branch: skipped for a video without sound, run beside the video branch.
AUDIO_STAGES = ("audio", "diarize")
# The stages of its video branch: skipped for an audio file (tasks/video/demux.py is_audio_file).
VIDEO_STAGES = ("frames", "detect", "track", "embed", "cluster")
NO_VIDEO_DIR = "no_video"  # in WORKSPACE/cache/: what the skipped video stages of an audio file stand for


def _no_params(cfg: RunConfig) -> dict:
    return {}


def _no_models(cfg: RunConfig) -> list[Path]:
    return []


@dataclass(frozen=True)
class Stage:
    name: str  # its folder under cache/
    module: str  # computes it; the key covers this module and every castline module it imports
    upstream: tuple[str, ...]  # the stages whose results it reads, in its task's argument order
    suffix: str  # of its result; "" for a folder
    params: Callable[[RunConfig], Any] = _no_params  # what in the configuration decides its result
    model_files: Callable[[RunConfig], Sequence[Path]] = _no_models  # weights files or folders it reads
    index: str | None = None  # for a folder result: the file inside it that readers are given

    def key(self, video_id: str, cfg: RunConfig, upstream: Sequence[StageKey | None]) -> StageKey:
        # A stage that reads nothing reads the video itself; a skipped upstream stage (no audio) hashes as None.
        feeds = [k.key if k else None for k in upstream] if self.upstream else video_id
        models = [model_identity(p) for p in self.model_files(cfg)]
        return StageKey(self.name, video_id,
                        params_digest(feeds, self.name, code_fingerprint(self.module), self.params(cfg), models))

    def result(self, ws: Workspace, key: StageKey) -> Path:
        path = ws.stage_path(key, self.suffix)
        return path / self.index if self.index else path


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("probe", "tasks.video.demux", (), ".json"),
    # sample_rate only shapes the audio stage
    Stage("frames", "tasks.video.demux", ("probe",), "", lambda c: c.demux.model_dump(exclude={"sample_rate"}),
          index=FRAMES_INDEX),
    # detect's threads change how fast the results come, not what they are
    Stage("detect", "tasks.video.detect", ("frames",), ".json", lambda c: c.detect.model_dump(exclude={"threads"}),
          lambda c: detect.model_files(c.detect)),
    Stage("track", "tasks.video.track", ("frames", "detect"), ".json", lambda c: c.track.model_dump()),
    Stage("embed", "tasks.video.embed", ("frames", "track"), ".npy", lambda c: c.embed.model_dump(),
          lambda c: embed.model_files(c.embed)),
    Stage("cluster", "tasks.video.cluster", ("track", "embed"), ".json", lambda c: c.cluster.model_dump()),
    Stage("audio", "tasks.video.demux", ("probe",), ".wav", lambda c: c.demux.sample_rate),
    Stage("diarize", "tasks.video.diarize", ("audio",), ".json", lambda c: c.diarize.model_dump(),
          lambda c: diarize.model_files(c.diarize)),
    Stage("align", "tasks.video.align", ("diarize", "track", "cluster"), ".json"),
)}


class StageKeys:
    """One video's stage keys, each computed the first time it is asked for, so a stage that never runs (the
    audio stages of a video without audio) never looks for its model."""

    def __init__(self, video_id: str, cfg: RunConfig):
        self.video_id = video_id
        self.cfg = cfg
        self._skipped: set[str] = set()
        self._keys: dict[str, StageKey] = {}

    def skip(self, names: Collection[str]) -> None:
        """Stages that will not run for this video (before any key reading them is used): the stages reading
        them hash their absence."""
        self._skipped.update(names)

    def __getitem__(self, name: str) -> StageKey | None:
        if name in self._skipped:
            return None
        if name not in self._keys:
            stage = STAGES[name]
            self._keys[name] = stage.key(self.video_id, self.cfg, [self[u] for u in stage.upstream])
        return self._keys[name]


# An empty result per video stage: no frame, no box, no track, no embedding, no character.
_EMPTY = {"frames": lambda p: write_frames(p, []), "detect": lambda p: write_boxes(p, []),
          "track": lambda p: write_tracks(p, [], shots=[]),
          "embed": lambda p: write_npy(p, np.zeros((0, 0), np.float32)), "cluster": lambda p: write_characters(p, [])}


def no_video_results(ws: Workspace) -> dict[str, Path]:
    """What the skipped video stages of an audio file stand for, written once in WORKSPACE/cache/no_video/ (each
    file whole, by rename): align, identities, timelines and character outputs then read an episode without
    pictures as they read a video in which nobody was seen, with no special case of their own."""
    folder = ws.root / "cache" / NO_VIDEO_DIR
    paths = {}
    for name in VIDEO_STAGES:
        paths[name] = folder / (STAGES[name].index or f"{name}{STAGES[name].suffix}")
        if not paths[name].exists():
            folder.mkdir(parents=True, exist_ok=True)
            _EMPTY[name](paths[name])
    return paths
