"""Voice activity detection: one mono WAV in; the spans of time where someone speaks out.

In: a 16 kHz mono PCM WAV (from the demux stage) and VadParams. Out: a list of Segment, written as JSON.
Backend: silero-vad (its JIT model ships in the pip package), run on CPU over the float32 samples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tasks.config import VadParams
from tasks.formats import write_segments
from tasks.records import Segment
from tasks.stage import stage_task

# silero's models exist for these two rates only.
SILERO_RATES = (8000, 16000)


def load_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples as float32 mono in [-1, 1], and their rate.

    The one place castline reads audio, so that a streaming reader for very long files can replace it.
    """
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return samples.mean(axis=1, dtype=np.float32), rate


def detect_speech(wav: Path, params: VadParams) -> list[Segment]:
    """Speech spans in seconds, in order; [] for silence or an empty file."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    samples, rate = load_wav(wav)
    if rate not in SILERO_RATES:
        raise ValueError(f"{wav.name}: silero VAD needs 8 or 16 kHz audio, got {rate} Hz")
    if samples.size == 0:
        return []
    # A fresh model per call: the JIT model keeps recurrent state, so one shared instance is not safe
    # when several videos run in threads at once, and loading it takes a few tens of milliseconds.
    model = load_silero_vad()
    stamps = get_speech_timestamps(
        torch.from_numpy(samples), model,
        threshold=params.threshold,
        sampling_rate=rate,
        min_speech_duration_ms=int(round(params.min_speech * 1000)),
        min_silence_duration_ms=int(round(params.min_silence * 1000)),
    )
    return [Segment(s["start"] / rate, s["end"] / rate) for s in stamps]


@stage_task("vad")
def vad_task(wav: Path, *, out: Path, params: VadParams) -> None:
    write_segments(out, detect_speech(Path(wav), params))
