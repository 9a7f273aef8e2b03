"""Voice activity detection: one audio file in; the spans of time where someone speaks out.

In: an audio file (the demux stage's 16 kHz mono WAV; other rates and channel counts are mixed down
and resampled) and VadParams. Out: a list of Segment, written as JSON.
Backend: silero-vad (its JIT model ships in the pip package), run on CPU.

Long files are streamed (tasks/audio_stream.py): `VadParams.chunk` seconds of audio are read at a time
and cut into rows of ROW_FRAMES silero frames, each preceded by WARMUP_FRAMES frames of the audio before
it, and the rows of a chunk run through silero as one batch from a reset state. Only the per-frame speech
probabilities (one float per 32 ms) are kept; silero's own hysteresis (min speech, min silence, padding)
then runs once over all of them, so speech that crosses a chunk or row border is one segment and the
result does not depend on the chunk size. Batching the rows is ~10x faster than silero's frame-by-frame
loop; the price is that silero's recurrent state restarts every ROW_FRAMES frames (after a warm-up),
which moves speech probabilities slightly (measured: 1-2 % of frames cross the threshold differently).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.audio_stream import RATE, AudioStream
from tasks.config import VadParams
from tasks.formats import write_segments
from tasks.records import Segment
from tasks.stage import Progress, stage_task

# silero's frame at 16 kHz; its model consumes exactly this many samples per call.
FRAME_SAMPLES = 512
# Rows of 10.24 s: silero restarts its state at each (a longer row means fewer restarts, but fewer rows
# per batch); each row first sees ~1 s of the audio before it.
ROW_FRAMES = 320
WARMUP_FRAMES = 32


def load_wav(path: Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 mono in [-1, 1] at 16 kHz, and that rate.

    For short files and tools only: the pipeline streams (tasks/audio_stream.py) and never holds a whole file.
    """
    with AudioStream(path) as stream:
        return stream.read(0, stream.frames), RATE


def _model():
    # A fresh model per call: the JIT model keeps recurrent state, so one shared instance is not safe
    # when several videos run in threads at once, and loading it takes a few tens of milliseconds.
    import torch

    # Importing silero_vad sets torch to one thread for the whole process; the other stages keep theirs.
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad

    torch.set_num_threads(threads)
    return load_silero_vad()


def speech_probabilities(stream: AudioStream, chunk: float, progress: Progress = None) -> np.ndarray:
    """silero's speech probability per FRAME_SAMPLES frame of the stream, float32, chunk by chunk."""
    import torch

    model = _model()
    row = ROW_FRAMES * FRAME_SAMPLES
    warm = WARMUP_FRAMES * FRAME_SAMPLES
    n_frames = -(-stream.frames // FRAME_SAMPLES)
    # A chunk is a whole number of rows, so every chunk size gives the same rows and the same result.
    rows_per_chunk = max(1, int(round(chunk * RATE / row)))
    probs = np.zeros(n_frames, dtype=np.float32)
    for first in range(0, n_frames, rows_per_chunk * ROW_FRAMES):
        start = first * FRAME_SAMPLES
        n_rows = min(rows_per_chunk, -(-(n_frames - first) // ROW_FRAMES))
        # This chunk's audio with the warm-up before it (silence before the file's start), zero-padded
        # to whole rows; rows are overlapping views into it, not copies.
        audio = np.zeros(warm + n_rows * row, dtype=np.float32)
        before = min(warm, start)
        got = stream.read(start - before, before + n_rows * row)
        audio[warm - before:warm - before + len(got)] = got
        rows = np.lib.stride_tricks.sliding_window_view(audio, warm + row)[::row]
        batch = torch.from_numpy(np.array(rows))
        model.reset_states()
        out = np.empty((n_rows, WARMUP_FRAMES + ROW_FRAMES), dtype=np.float32)
        with torch.inference_mode():
            for t in range(WARMUP_FRAMES + ROW_FRAMES):
                out[:, t] = model(batch[:, t * FRAME_SAMPLES:(t + 1) * FRAME_SAMPLES], RATE)[:, 0].numpy()
        chunk_probs = out[:, WARMUP_FRAMES:].reshape(-1)
        take = min(len(chunk_probs), n_frames - first)
        probs[first:first + take] = chunk_probs[:take]
        if progress is not None:
            progress(first + take, n_frames)
    return probs


def segments_from_probabilities(probs: np.ndarray, n_samples: int, params: VadParams) -> list[Segment]:
    """silero's own post-processing (hysteresis, min speech/silence, padding) over the whole file."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    if n_samples == 0 or len(probs) == 0:
        return []
    stamps = get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=RATE,
        threshold=params.threshold,
        min_speech_duration_ms=int(round(params.min_speech * 1000)),
        min_silence_duration_ms=int(round(params.min_silence * 1000)),
        audio_length_samples=n_samples,
    )
    return [Segment(s["start"] / RATE, s["end"] / RATE) for s in stamps]


def detect_speech(wav: Path, params: VadParams, progress: Progress = None) -> list[Segment]:
    """Speech spans in seconds, in order; [] for silence or an empty file."""
    with AudioStream(wav) as stream:
        if stream.frames == 0:
            return []
        probs = speech_probabilities(stream, params.chunk, progress)
        return segments_from_probabilities(probs, stream.frames, params)


@stage_task("vad")
def vad_task(wav: Path, *, out: Path, params: VadParams) -> None:
    write_segments(out, detect_speech(Path(wav), params))
