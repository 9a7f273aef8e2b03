"""The thin layer every stage shares: skip-if-finished Prefect tasks and progress hooks.

In: a stage function that writes its result to `out` (atomically, via tasks/core/formats.py).
Out: a Prefect task that returns `out` at once when it already exists (the cache key is in its path),
and a progress hook (tqdm bar) that stage functions call as `progress(done, total)`.
"""
from __future__ import annotations

import functools
import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator, Optional

from tqdm.auto import tqdm

Progress = Optional[Callable[[int, int], None]]
# The video whose stages run in this context (set by flows/video.py): names task runs and progress bars.
current_video: ContextVar[Optional[str]] = ContextVar("castline_video", default=None)


@contextmanager
def video_named(name: str) -> Iterator[None]:
    """Stages run inside carry `name`. A flow uses this, not `current_video` itself: a Dask worker receives the
    flow's function pickled by value with the globals it names, and a ContextVar cannot be pickled."""
    token = current_video.set(name)
    try:
        yield
    finally:
        current_video.reset(token)


class ProgressBar:
    """A progress hook that draws one terminal bar per stage and video (pyannote's ProgressHook idea)."""

    # A display that draws the bars itself (flows/display.py): sink(bar, done, total), total None at close.
    sink: Optional[Callable[["ProgressBar", int, Optional[int]], None]] = None

    def __init__(self, desc: str, unit: str = "it"):
        self.desc = desc
        self.unit = unit
        self.video = current_video.get()
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if ProgressBar.sink is not None:
            return ProgressBar.sink(self, done, total)
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if ProgressBar.sink is not None:
            ProgressBar.sink(self, 0, None)
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _logger() -> logging.Logger:
    try:
        from prefect.logging import get_run_logger
        return get_run_logger()  # type: ignore[return-value]
    except Exception:
        return logging.getLogger("castline")


def stage_task(name: str, **task_options):
    """Wrap `fn(*args, out=Path, **kw)` as a stage: when `out` exists it is returned at once, without
    creating a Prefect task run; otherwise a Prefect task named `name` computes it.

    castline's one caching mechanism is the path itself (content hash + parameters + code version), so
    Prefect's own result caching is switched off. `stage.fn` is the same check around the plain function
    (no Prefect). The Prefect task is made at the first call that needs one: importing a stage module does not
    import Prefect (its 1 s and ~100 MB would be paid again by every worker process of detect and embed).
    """

    def decorate(fn: Callable[..., object]):
        def compute(*args, out: Path, **kwargs) -> Path:
            fn(*args, out=out, **kwargs)
            if not out.exists():
                raise RuntimeError(f"stage {name} finished without writing {out}")
            return out

        def run_name() -> str:  # `detect · hamilton.mp4` in the Prefect UI
            video = current_video.get()
            return f"{name} · {video}" if video else name

        @functools.lru_cache(maxsize=1)
        def prefect_task():
            from prefect import task
            from prefect.cache_policies import NO_CACHE

            return task(name=name, task_run_name=run_name, cache_policy=NO_CACHE, persist_result=False,
                        **task_options)(functools.wraps(fn)(compute))

        def skipping(call: Callable[..., Path]) -> Callable[..., Path]:
            @functools.wraps(fn)
            def run(*args, out: Path, **kwargs) -> Path:
                out = Path(out)
                if out.exists():
                    _logger().info("%s: reusing %s", name, out.name)
                    return out
                return call(*args, out=out, **kwargs)
            return run

        stage = skipping(lambda *args, **kwargs: prefect_task()(*args, **kwargs))
        stage.fn = skipping(compute)  # type: ignore[attr-defined]
        return stage

    return decorate


def always_task(name: str):
    """A Prefect task that runs every time: library steps that are cheap and whose inputs (library ids,
    names) change from run to run. Off Prefect's cache, like every castline task."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, cache_policy=NO_CACHE, persist_result=False)
