"""Bounded-memory audio reading: any file libsndfile decodes, as 16 kHz mono float32, a block at a time.

In: an audio file (WAV from the demux stage, but also FLAC/OGG/MP3, any rate, any channel count).
Out: `AudioStream`, which reads spans of it mixed down to mono and resampled to
16 kHz; only the block being read is ever in memory, so hours-long films cost what one block costs.
A file that cannot be decoded raises a one-line ValueError naming the file.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
# Source samples read either side of a span that is resampled, so the polyphase filter's edges fall
# outside the span and consecutive spans join without a seam (resample_poly's filter is ~10 taps/phase).
_RESAMPLE_MARGIN = 0.02


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class AudioStream:
    """An open audio file read as 16 kHz mono float32. Use as a context manager."""

    def __init__(self, path: str | Path, rate: int = RATE):
        self.path = Path(path)
        self.rate = rate
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as err:  # libsndfile's errors differ by format and version
            raise ValueError(f"{self.path.name}: cannot decode audio ({_one_line(err)})") from None
        self.source_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        if self.source_rate <= 0 or self.channels <= 0:
            self._file.close()
            raise ValueError(f"{self.path.name}: cannot decode audio (rate {self.source_rate}, "
                             f"{self.channels} channels)")
        g = gcd(self.rate, self.source_rate)
        self._up, self._down = self.rate // g, self.source_rate // g
        self.frames = int(round(self._file.frames * self.rate / self.source_rate))

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _read_source(self, start: int, n: int) -> np.ndarray:
        """`n` source frames from `start`, mono float32 (fewer at the end of the file)."""
        start = max(0, start)
        n = max(0, min(n, self._file.frames - start))
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        try:
            self._file.seek(start)
            block = self._file.read(n, dtype="float32", always_2d=True)
        except Exception as err:
            raise ValueError(f"{self.path.name}: cannot decode audio at {start / self.source_rate:.1f} s "
                             f"({_one_line(err)})") from None
        if block.shape[1] == 1:
            return block[:, 0]
        return block.mean(axis=1, dtype=np.float32)

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start + n) at 16 kHz, mono float32; shorter past the end of the file."""
        start = max(0, int(start))
        n = max(0, min(int(n), self.frames - start))
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if self._up == self._down:
            return self._read_source(start, n)
        from scipy.signal import resample_poly

        margin = int(np.ceil(_RESAMPLE_MARGIN * self.source_rate))
        # Output sample k sits at source position k·down/up; the source span covering the output span is
        # widened by the margin and resampled, and the output span cut out of the result.
        # lo is a multiple of `down`, so output sample `start` falls exactly on an output of this span.
        lo = max(0, (start * self._down // self._up - margin) // self._down * self._down)
        src1 = -(-(start + n) * self._down // self._up) + margin
        source = self._read_source(lo, src1 - lo)
        out = resample_poly(source, self._up, self._down).astype(np.float32, copy=False)
        offset = start - lo * self._up // self._down
        piece = out[offset:offset + n]
        if len(piece) < n:  # the last samples of the file
            piece = np.pad(piece, (0, n - len(piece)))
        return piece


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, from the header (nothing decoded)."""
    with AudioStream(path) as stream:
        return stream.duration
