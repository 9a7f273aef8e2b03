"""Audio features for language models: one vector per speaker turn from a pretrained audio encoder.

In: a turn's samples (16 kHz mono float32), or the workspace of a finished run — each video's speaker turns in
library speaker ids and names (tasks/library/view.py) and its 16 kHz WAV (the demux stage's), read turn by turn.
Out: a (dim,) float32 vector per turn; per library speaker the duration-weighted mean; in the export folder
audio_features.parquet, speaker_audio_features.parquet (each speaker with its subtitle name, as in
speakers_table.parquet) and audio_features.json, with a per-video cache under
WORKSPACE/cache/audio_features/. Backends: transformers Whisper encoder (30 s window, mean of the 20 ms frames
that cover the audio) and Audio Spectrogram Transformer (10.24 s window, pooler output), offline only.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch

from tasks.core import device as castline_device
from tasks.core.audio_stream import RATE, AudioStream
from tasks.video.embed.hf import _offline
from tasks.core.formats import (
    LAST_RUN_JSON,
    read_npy,
    read_run_summary,
    vector_column,
    write_json,
    write_npy,
    write_parquet,
)
from tasks.core.records import SpeechTurn
from tasks.library.view import LibraryView, global_turns
from tasks.core.stage import Progress
from tasks.core.workspace import Workspace, code_fingerprint, folder_identity, params_digest

CACHE_STAGE = "audio_features"
TURNS_PARQUET = "audio_features.parquet"
SPEAKERS_PARQUET = "speaker_audio_features.parquet"
SUMMARY_JSON = "audio_features.json"
# Shorter pieces are padded with silence to this length: AST's Kaldi filterbank needs at least one 25 ms
# window, and a few frames of context keep a 10 ms turn from being encoded from a single frame.
MIN_SECONDS = 0.1
# ASTFeatureExtractor computes Kaldi fbank frames with Kaldi's default 10 ms shift (not configurable there).
AST_FRAME_SHIFT = 0.01


class AudioFeatures(ABC):
    """`features(samples)`: one (dim,) float32 vector for 16 kHz mono float32 samples of any length.

    The audio is resampled to the model's rate, cut into pieces of at most the model's window (`window`
    seconds), pieces shorter than MIN_SECONDS padded with silence; each piece is encoded alone and the
    pieces' vectors are averaged weighted by their real length."""

    backend: ClassVar[str]

    def __init__(self, model: str | Path, batch_size: int = 8, device: str | None = None):
        self.model_id = str(model)
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device else castline_device.torch_device()
        self.processor = self._load_processor()
        self._net = self._load_model().eval().to(self.device)
        self.rate = int(self.processor.sampling_rate)
        self.window = self._window()
        self.dim = int(self._net.config.hidden_size)  # Whisper's config maps hidden_size to d_model

    # -- per-backend parts --
    @abstractmethod
    def _load_processor(self) -> Any: ...

    @abstractmethod
    def _load_model(self) -> torch.nn.Module: ...

    @abstractmethod
    def _window(self) -> float: ...

    @abstractmethod
    def _encode(self, pieces: Sequence[np.ndarray]) -> torch.Tensor:
        """(len(pieces), dim) for pieces at the model's rate, none longer than the window."""

    # -- shared --
    def features(self, samples: np.ndarray) -> np.ndarray:
        audio = np.asarray(samples, np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {audio.shape}")
        if audio.size == 0:
            raise ValueError("no samples: an empty turn has no audio features")
        if self.rate != RATE:
            import torchaudio.functional as AF

            audio = AF.resample(torch.from_numpy(audio), RATE, self.rate).numpy()
        step = int(round(self.window * self.rate))
        pieces = [audio[i:i + step] for i in range(0, len(audio), step)]
        shortest = int(math.ceil(MIN_SECONDS * self.rate))
        padded = [np.pad(p, (0, shortest - len(p))) if len(p) < shortest else p for p in pieces]
        vectors = []
        with torch.no_grad():
            for i in range(0, len(padded), self.batch_size):
                vectors.append(self._encode(padded[i:i + self.batch_size]).float().cpu().numpy())
        return np.average(np.concatenate(vectors), axis=0, weights=[len(p) for p in pieces]).astype(np.float32)

    def cache_identity(self) -> dict[str, Any]:
        """What the features depend on besides the audio: the backend, the model and the files it was read
        from — a local folder or the hub cache's snapshot; their sizes and times change when weights or
        preprocessing settings are replaced, so cached features are never reused for another model."""
        from transformers.utils import cached_file

        folder = Path(cached_file(self.model_id, "config.json", local_files_only=True)).parent
        return {"backend": self.backend, "model": self.model_id, "files": folder_identity(folder)}


class WhisperFeatures(AudioFeatures):
    """Whisper's encoder. Whisper only accepts its full window (30 s of log-mel frames), so every piece is
    padded to it; the vector is the mean of the encoder frames that cover the real audio, not the padding."""

    backend = "whisper"

    def _load_processor(self):
        from transformers import WhisperFeatureExtractor

        return _offline(WhisperFeatureExtractor, self.model_id)

    def _load_model(self):
        from transformers import WhisperModel

        # Only the encoder is kept; the decoder's weights are freed with the full model.
        return _offline(WhisperModel, self.model_id).get_encoder()

    def _window(self) -> float:
        return self.processor.n_samples / self.rate

    def _encode(self, pieces):
        mel = self.processor(list(pieces), sampling_rate=self.rate, return_tensors="pt").input_features
        frames = self._net(mel.to(self.device, self._net.dtype)).last_hidden_state
        # An encoder frame covers `stride` mel hops (two 10 ms hops: 20 ms); a frame is kept when it
        # starts inside the real audio.
        stride = self._net.conv1.stride[0] * self._net.conv2.stride[0]
        covered = [min(frames.shape[1], math.ceil(len(p) / (self.processor.hop_length * stride))) for p in pieces]
        return torch.stack([frames[i, :n].mean(0) for i, n in enumerate(covered)])


class ASTFeatures(AudioFeatures):
    """Audio Spectrogram Transformer: the pooler output (mean of its CLS and distillation tokens) over a
    window of `max_length` filterbank frames of 10 ms (1024: 10.24 s), padded as AST was trained."""

    backend = "ast"

    def _load_processor(self):
        from transformers import ASTFeatureExtractor

        return _offline(ASTFeatureExtractor, self.model_id)

    def _load_model(self):
        from transformers import ASTModel

        return _offline(ASTModel, self.model_id)

    def _window(self) -> float:
        return self.processor.max_length * AST_FRAME_SHIFT

    def _encode(self, pieces):
        values = self.processor(list(pieces), sampling_rate=self.rate, return_tensors="pt").input_values
        return self._net(input_values=values.to(self.device, self._net.dtype)).pooler_output


BACKENDS: dict[str, type[AudioFeatures]] = {cls.backend: cls for cls in (WhisperFeatures, ASTFeatures)}


def make_extractor(backend: str, model: str | Path, **kwargs: Any) -> AudioFeatures:
    """The backend's extractor for a local folder or a Hugging Face id in the local cache; ModelUnavailable
    (tasks/core/errors.py) when it is neither."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown audio backend {backend!r}: use one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](model, **kwargs)


# --- library ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoTurns:
    """One video's speaker turns to encode and where their audio and cached features are."""

    video: str
    turns: list[SpeechTurn]  # library speaker ids, positive durations, in the turns file's order
    wav: Path
    cache: Path


def library_turns(ws: Workspace, view: LibraryView, extractor: AudioFeatures) -> tuple[list[VideoTurns], list[str]]:
    """The turns of every video of the last run that has audio, and the names of those without audio.
    A video's cached features are keyed by its turns and WAV stage results, the extractor and the code (this
    module and every castline module it imports)."""
    last_run = ws.library_dir / LAST_RUN_JSON
    if not last_run.is_file():
        raise FileNotFoundError(f"no finished run in {ws.root} (no library/{LAST_RUN_JSON}): run `castline run` first")
    identity = extractor.cache_identity()
    videos, silent = [], []
    for v in read_run_summary(last_run).videos:
        if not v.ok:
            continue
        outputs = v.outputs
        if outputs.turns is None:
            silent.append(v.video)
            continue
        if outputs.wav is None:  # a run of an older castline, which did not record it
            raise FileNotFoundError(f"{v.video}: the last run did not record its audio: run `castline run` again")
        # Stage results are named by their own content keys (tasks/core/workspace.py): no need to hash them again.
        key = params_digest(outputs.turns.name, outputs.wav.name, identity, code_fingerprint(__name__))
        # One voice at a time: a clip of two people talking at once would describe neither.
        turns = [t for t in global_turns(outputs.turns, view.speakers.mapping(v.video), exclusive=True)
                 if t.duration > 0]
        videos.append(VideoTurns(v.video, turns, outputs.wav,
                                 ws.root / "cache" / CACHE_STAGE / outputs.probe.parent.name / f"{key}.npy"))
    return videos, silent


def turn_features(wav: Path, turns: Sequence[SpeechTurn], extractor: AudioFeatures) -> Iterator[np.ndarray]:
    """Each turn's vector in order, its samples read from the WAV on their own (never the whole file)."""
    with AudioStream(wav) as stream:
        for t in turns:
            start = int(round(t.start * RATE))
            yield extractor.features(stream.read(start, max(1, int(round(t.end * RATE)) - start)))


def export_audio_features(workspace: str | Path, extractor: AudioFeatures, out_dir: str | Path,
                          progress: Progress = None) -> dict[str, Any]:
    """Encode every speaker turn of the workspace's last run (cached per video) and write the export files
    to `out_dir`; returns the summary also written to audio_features.json. `progress(done, total)` counts turns."""
    ws = Workspace.open(workspace)
    out_dir = Path(out_dir)
    view = LibraryView.load(ws)
    videos, silent = library_turns(ws, view, extractor)
    total, done, reused = sum(len(v.turns) for v in videos), 0, 0
    rows: list[tuple[str, SpeechTurn]] = []
    blocks: list[np.ndarray] = []
    for v in videos:
        if v.cache.exists():
            features = read_npy(v.cache)
            reused += 1
            done += len(v.turns)
            if progress and v.turns:
                progress(done, total)
        else:
            features = np.zeros((len(v.turns), extractor.dim), np.float32)
            for i, vector in enumerate(turn_features(v.wav, v.turns, extractor)):
                features[i] = vector
                done += 1
                if progress:
                    progress(done, total)
            write_npy(v.cache, features)
        order = sorted(range(len(v.turns)), key=lambda i: (v.turns[i].start, v.turns[i].speaker))
        rows += [(v.video, v.turns[i]) for i in order]
        blocks.append(features[order])
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, extractor.dim), np.float32)

    meta = {b"backend": extractor.backend.encode(), b"model": extractor.model_id.encode()}
    write_parquet(out_dir / TURNS_PARQUET, {
        "video": pa.array([video for video, _ in rows], pa.string()),
        "speaker": pa.array([t.speaker for _, t in rows], pa.string()),
        "name": pa.array([view.speaker_name(t.speaker) for _, t in rows], pa.string()),
        "start": pa.array([t.start for _, t in rows], pa.float64()),
        "end": pa.array([t.end for _, t in rows], pa.float64()),
        "feature": vector_column(matrix),
    }, meta)
    by_speaker: dict[str, list[int]] = {}
    for i, (_, t) in enumerate(rows):
        by_speaker.setdefault(t.speaker, []).append(i)
    speakers = sorted(by_speaker)
    seconds = [sum(rows[i][1].duration for i in by_speaker[s]) for s in speakers]
    means = np.zeros((len(speakers), extractor.dim), np.float32)
    for k, s in enumerate(speakers):
        means[k] = np.average(matrix[by_speaker[s]], axis=0, weights=[rows[i][1].duration for i in by_speaker[s]])
    write_parquet(out_dir / SPEAKERS_PARQUET, {
        "speaker": pa.array(speakers, pa.string()),
        "name": pa.array([view.speaker_name(s) for s in speakers], pa.string()),
        "seconds": pa.array(seconds, pa.float64()),
        "n_turns": pa.array([len(by_speaker[s]) for s in speakers], pa.int32()),
        "feature": vector_column(means),
    }, meta)
    summary = {
        "backend": extractor.backend, "model": extractor.model_id, "dim": extractor.dim,
        "sample_rate": extractor.rate, "window_seconds": extractor.window,
        "counts": {"videos": len(videos), "turns": len(rows), "speakers": len(speakers), "seconds": sum(seconds),
                   "videos_reused": reused, "videos_computed": len(videos) - reused},
        "videos_without_audio": silent,
        "files": [str(out_dir / name) for name in (TURNS_PARQUET, SPEAKERS_PARQUET, SUMMARY_JSON)],
    }
    write_json(out_dir / SUMMARY_JSON, summary)
    return summary
