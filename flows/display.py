"""The terminal of a `castline run`: one display that owns the screen.

On a terminal: a Rich live area at the bottom — a row per video being processed and one more for its audio branch
while that runs beside the video's (its name, the stage it is in, that stage's progress in real units: frames, seconds of audio) and one row over the videos — with the
log lines printed above it, whole. Elsewhere (CI, a pipe, a file): plain log lines, no bars, no control codes.

Either way the log lines are Prefect's own, filtered (`TerminalFilter`): without `-v` the per-task
"Finished in state Completed()" lines, the subflow banners and the per-stage "reusing" lines are left out,
and so is anything that repeats an expected failure — each failed video gets one line, at the end of the
run. Only the terminal is filtered: the Prefect UI log keeps every record.

How it is fed: tasks/core/stage.py's ProgressBar hands its calls to `ProgressBar.sink` (the bars of a stage in a
video's flow know the video through tasks.core.stage.current_video), and the flows call `video_started`,
`stage_started` and `video_finished` below, which do nothing when no display is active (a served
deployment, a Dask worker, the tests that call the flows directly).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Optional, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text
from rich.theme import Theme

from flows.temporary_server import TEMPORARY_API
from tasks.video.pipeline import AUDIO_STAGES  # their own row: the audio branch runs beside the video branch

# Units of the stages that report progress: what their `done` and `total` count.
FRAME_STAGES = {"frames", "detect", "embed"}
# Prefect's console styles (its logging.yml), for log lines on a terminal.
STYLES = {"log.web_url": "bright_blue", "log.local_url": "bright_blue", "log.info_level": "cyan",
          "log.warning_level": "yellow3", "log.error_level": "red3", "log.critical_level": "bright_red",
          "log.completed_state": "green", "log.cancelled_state": "yellow3", "log.failed_state": "red3",
          "log.crashed_state": "bright_red", "log.cached_state": "bright_blue", "log.flow_run_name": "magenta",
          "log.flow_name": "bold magenta"}

_active: Optional["Display"] = None


def active() -> Optional["Display"]:
    return _active


def video_started(video: str) -> None:
    if _active is not None:
        _active.video_started(video)


def set_total(videos: int, done: int) -> None:
    if _active is not None:
        _active.set_total(videos, done)


def stage_started(video: str, stage: str) -> None:
    if _active is not None:
        _active.stage_started(video, stage)


def video_finished(video: str, ok: bool) -> None:
    if _active is not None:
        _active.video_finished(video, ok)


class TerminalFilter(logging.Filter):
    """What the terminal leaves out without `-v` (see the module docstring). The library flow's run keeps its
    banner and its UI link ("View at ..."); its subflows and tasks say nothing routine."""

    ROUTINE = ("Finished in state Completed", "Beginning subflow run", "Created subflow run", "Created task run",
               "Executing ")

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        message = record.getMessage()
        if record.msg == "%s: reusing %s":  # tasks/core/stage.py, once per finished stage
            return False
        if record.name in ("prefect.task_runs", "prefect.flow_runs"):
            if message.startswith(self.ROUTINE):
                return False
            # The failure of a video is said once, by the summary; a crash still shows ("Crashed", tracebacks).
            if message.startswith("Finished in state Failed") or record.msg == "%s: FAILED: %s":
                return False
            run = str(getattr(record, "flow_run_name", "") or "")
            if message.startswith("View at ") and not run.startswith("library "):
                return False
        return True


class StageColumn(ProgressColumn):
    """The stage and its count in real units: `detect  12/30 frames`, `diarize  60/300 s of audio`."""

    def render(self, task) -> Text:
        stage = task.fields.get("stage", "")
        if task.total is None or not task.fields.get("counted"):
            return Text(f"{stage:<8}", style="cyan")
        unit = task.fields.get("unit", "")
        return Text(f"{stage:<8} {int(task.completed)}/{int(task.total)} {unit}", style="cyan")


class TerminalFormatter(logging.Formatter):
    """Prefect's line (`08:03:12.345 | INFO    | …`), naming the run only when it is not the library run:
    `detect · hamilton.mp4 - …`, `video · hamilton.mp4 - …`, `prefect - …`."""

    def __init__(self):
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(where)s%(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)  # the other handlers (the UI's) get it unchanged
        run = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None)
        where = run if run else None if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")) else record.name
        record.where = "" if not where or str(where).startswith("library ") else f"{where} - "
        return super().format(record)


class DisplayHandler(logging.Handler):
    """Prints each record whole: above the live area on a terminal, as a plain line elsewhere."""

    def __init__(self, display: "Display", level: int):
        super().__init__(level)
        self.display = display
        self.setFormatter(TerminalFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.display.line(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class Display:
    """`with Display(verbose) as d:` around a library run; see the module docstring."""

    def __init__(self, verbose: bool = False, stream: TextIO | None = None, tty: bool | None = None):
        from prefect.logging.highlighters import PrefectConsoleHighlighter

        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, highlighter=PrefectConsoleHighlighter(), theme=Theme(STYLES),
                               highlight=True)
        self.tty = self.console.is_terminal if tty is None else tty
        self._lock = threading.RLock()
        self._rows: dict[tuple[str, str], TaskID] = {}  # (video, branch) -> its row
        self._videos: TaskID | None = None
        self._counts = {"done": 0, "failed": 0, "total": 0}
        self._replaced: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(bar_width=30), StageColumn(),
            TimeElapsedColumn(), console=self.console, transient=True, redirect_stdout=True,
            redirect_stderr=True, refresh_per_second=4)
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> "Display":
        global _active
        from prefect.logging.handlers import PrefectConsoleHandler
        from tasks.core.stage import ProgressBar

        terminal_filter = TerminalFilter(self.verbose)
        loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
        for logger in loggers:
            for handler in list(getattr(logger, "handlers", [])):
                if isinstance(handler, PrefectConsoleHandler):
                    ours = DisplayHandler(self, handler.level)
                    ours.addFilter(terminal_filter)
                    logger.removeHandler(handler)
                    logger.addHandler(ours)
                    self._replaced.append((logger, handler, ours))
        ProgressBar.sink = self.bar
        # Processes started from here (a local Dask cluster's workers) draw no bars of their own.
        os.environ.setdefault("TQDM_DISABLE", "1")
        _active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        from tasks.core.stage import ProgressBar

        _active = None
        ProgressBar.sink = None
        with self._lock:
            if self._started:
                self.progress.stop()
                self._started = False
        for logger, theirs, ours in self._replaced:
            logger.removeHandler(ours)
            logger.addHandler(theirs)
        self._replaced.clear()

    def _live(self) -> None:
        """Starts the live area at the first video (not before: the temporary Prefect server's own prints)."""
        if self.tty and not self._started:
            self.progress.start()
            self._started = True

    # --- what is shown ----------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One whole line: above the bars on a terminal, plain text elsewhere."""
        if self.tty:
            self.console.print(text, markup=False, emoji=False, highlight=True, soft_wrap=True)
        else:
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()

    def set_total(self, videos: int, done: int = 0) -> None:
        with self._lock:
            self._counts.update(total=videos, done=done)
            self._live()
            if self.tty:
                if self._videos is None:
                    self._videos = self.progress.add_task("videos", total=videos, completed=done, stage="")
                self._update_videos()

    def _update_videos(self) -> None:
        c = self._counts
        stage = f"{c['done']}/{c['total']}" + (f" · {c['failed']} failed" if c["failed"] else "")
        if self._videos is not None:
            self.progress.update(self._videos, completed=c["done"], stage=stage, counted=False)

    def video_started(self, video: str) -> None:
        with self._lock:
            if self.tty and (video, "video") not in self._rows:
                self._live()
                self._rows[video, "video"] = self.progress.add_task(_short(video), total=None, stage="starting")

    def stage_started(self, video: str, stage: str) -> None:
        with self._lock:
            row = self._row(video, stage)
            if row is not None:
                self.progress.update(row, total=None, completed=0, stage=stage, counted=False)

    def video_finished(self, video: str, ok: bool) -> None:
        with self._lock:
            for branch in ("video", "audio"):
                row = self._rows.pop((video, branch), None)
                if row is not None:
                    self.progress.remove_task(row)
            self._counts["done"] += 1
            self._counts["failed"] += 0 if ok else 1
            self._update_videos()

    def _row(self, video: str, stage: str) -> TaskID | None:
        """The row of the branch `stage` belongs to; an audio stage's row is added under its video's."""
        if (video, "video") not in self._rows:
            return None
        if stage not in AUDIO_STAGES:
            return self._rows[video, "video"]
        if (video, "audio") not in self._rows:
            self._rows[video, "audio"] = self.progress.add_task(_short(video), total=None, stage=stage)
        return self._rows[video, "audio"]

    def bar(self, bar, done: int, total: int | None) -> None:
        """tasks.core.stage.ProgressBar.sink: `total` None when the stage's bar closes."""
        video = getattr(bar, "video", None)
        stage = bar.desc.split(" ", 1)[0]
        with self._lock:
            row = self._row(video, stage) if video else None
            if row is None or total is None:
                return
            unit = "frames" if stage in FRAME_STAGES else "s of audio" if bar.unit == "s" else bar.unit
            self.progress.update(row, total=max(total, 1), completed=done, stage=stage, unit=unit, counted=True)


def _short(video: str, width: int = 28) -> str:
    """A video's name in a fixed width: its path inside the library, its start cut if too long."""
    return video if len(video) <= width else "…" + video[-(width - 1):]


# --- the end of a run ------------------------------------------------------------------------------

def _elsewhere(character_id: str | None, names) -> str:
    """A voice linked to no face of this video: off-screen, or the library character it is linked to in another
    episode (an audio file's voices always are), by its gallery name when it has one."""
    if character_id is None:
        return "off-screen"
    match = names.gallery.get(character_id) if names is not None else None
    return f"{match.name if match else character_id} (another episode)"


def found_lines(summary: dict) -> list[str]:
    """Per succeeded video: its characters (names first, then how many are unnamed) and its voices (the
    character each is linked to, or off-screen)."""
    from tasks.core.formats import read_timeline_json, video_result_from_json
    from tasks.library.view import NAMES_JSON, read_names

    names_path = Path(summary.get("workspace") or "") / "library" / NAMES_JSON
    names = read_names(names_path) if summary.get("workspace") and names_path.is_file() else None
    lines = []
    videos = [r for r in map(video_result_from_json, summary.get("videos", [])) if r.ok]
    width = max((len(v.video) for v in videos), default=0)
    for v in videos:
        files = v.outputs.timeline if v.outputs else None
        if files is None or not files.timeline_json.exists():
            continue
        t = read_timeline_json(files.timeline_json)
        # A voice never seen with a face has a timeline entry of its own (offscreen_…), not a character.
        chars = {label: c for label, c in t.characters.items() if not c.offscreen}
        named = sorted({c.name for c in chars.values() if c.name})
        unnamed = sum(1 for c in chars.values() if not c.name)
        who = ", ".join(named + ([f"{unnamed} unnamed"] if unnamed else [])) or "none"
        label_of = {c.character_id: label for label, c in chars.items()}
        voices = [label_of.get(link.character_id) or _elsewhere(link.character_id, names) for link in t.speaker_links]
        said = f"{len(voices)} voice{'s' if len(voices) != 1 else ''}" + (f" → {', '.join(voices)}" if voices else "")
        if "diarize" in v.skipped_stages:
            said = "no audio"
        if v.audio_only:
            lines.append(f"  {v.video:<{width}}  audio file, no pictures; {said}")
            continue
        lines.append(f"  {v.video:<{width}}  {len(chars)} character{'s' if len(chars) != 1 else ''} "
                     f"({who}); {said}")
    return lines


def ui_run_url(flow_run_id: Any) -> str | None:
    """The library run's page in the Prefect UI, when a server (not the ephemeral API) holds the run."""
    api = os.environ.get("PREFECT_API_URL")
    if not api or api == os.environ.get(TEMPORARY_API) or flow_run_id is None:
        return None
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None
