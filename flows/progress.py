"""A library run's progress artifact, moved each time a stage of one of its videos finishes, not only a video.

In: the run's videos (how many, how many reused whole), then each finished stage (flows/video.py `run()`) and
each finished video (flows/library.py). Out: a percentage, published in order: stages finished over stages ×
videos. A reused, finished or failed video counts all its stages (the ones it skipped too), so a run ends at 100.

The videos' flows find the run's tracker in a context variable: they run in threads of the library flow, and
the task runner copies its context into them (so does flows/video.py into the audio branch's thread). On a Dask
worker it is unset, and the artifact moves per video only.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

logger = logging.getLogger(__name__)


class StageProgress:
    """Publishes its first value at once (the reused videos), then one per finished stage or video. Thread-safe:
    the stages of several videos, and a video's two branches, finish in parallel threads."""

    def __init__(self, videos: int, stages: int, reused: int, publish: Callable[[float], object]):
        self._lock = threading.Lock()
        self._stages, self._videos = stages, max(1, videos)
        self._whole = reused  # videos counted whole
        self._done: dict[str, set[str]] = {}  # running video -> its finished stages
        self._publish = publish
        self._show()

    @property
    def percent(self) -> float:
        stages = self._whole * self._stages + sum(min(len(s), self._stages) for s in self._done.values())
        return 100.0 * stages / (self._stages * self._videos)

    def stage_finished(self, video: str, stage: str) -> None:
        with self._lock:
            self._done.setdefault(video, set()).add(stage)
            self._show()

    def video_finished(self, video: str) -> None:
        with self._lock:
            self._done.pop(video, None)
            self._whole += 1
            self._show()

    def _show(self) -> None:
        # Under the lock, so the values reach the artifact in the order they were counted (they only grow).
        try:
            self._publish(self.percent)
        except Exception as e:  # an artifact the API could not update must not fail the video
            logger.warning("progress artifact not updated: %s", e)


_tracker: ContextVar[Optional[StageProgress]] = ContextVar("castline_stage_progress", default=None)


@contextmanager
def tracking(progress: StageProgress) -> Iterator[StageProgress]:
    """The videos' flows started inside report their stages to `progress`."""
    token = _tracker.set(progress)
    try:
        yield progress
    finally:
        _tracker.reset(token)


def stage_finished(video: str, stage: str) -> None:
    """Does nothing outside `tracking` (a video flow run alone, a Dask worker)."""
    progress = _tracker.get()
    if progress is not None:
        progress.stage_finished(video, stage)


def progress_artifact(key: str, description: str) -> Callable[[float], None]:
    """A `publish` for StageProgress: creates the progress artifact at its first value, updates it after."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact = None

    def publish(percent: float) -> None:
        nonlocal artifact
        if artifact is None:
            artifact = create_progress_artifact(percent, key=key, description=description)
        else:
            update_progress_artifact(artifact, percent)

    return publish
