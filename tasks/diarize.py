"""Speaker diarization: one mono WAV and its speech segments in; who spoke when, within that file, out.

In: a 16 kHz mono WAV, the VAD stage's speech segments and DiarizeParams. Out: SpeechTurns labelled
SPEAKER_00, SPEAKER_01... (per file) and each speaker's voice centroid (256-d, for cross-file matching).
Backend: offline — resemblyzer's GE2E voice encoder (weights ship in the package) + agglomerative clustering.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.cluster import average_linkage
from tasks.config import DiarizeParams
from tasks.formats import read_segments, write_turns
from tasks.records import Segment, SpeechTurn
from tasks.stage import Progress, ProgressBar, stage_task
from tasks.vad import load_wav

# resemblyzer's mel hop; frame-level labels use the same grid so windows map onto frames exactly.
FRAME = 0.01
SAMPLE_RATE = 16000
# resemblyzer feeds its encoder un-logged mel power, so loudness changes the embedding; speech is
# brought to the level resemblyzer's own preprocessing gives utterances (hparams.audio_norm_target_dBFS).
TARGET_DBFS = -30.0
BATCH = 64
# Windows shorter than this share of DiarizeParams.window are assigned to speakers, never found them.
MIN_CLUSTERED = 0.5


@functools.lru_cache(maxsize=1)
def _encoder():
    # Inference only (no_grad, no state between calls), so one instance serves every thread.
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device="cpu", verbose=False).eval()


def segment_windows(seg: Segment, window: float, step: float) -> list[tuple[float, float]]:
    """Windows of `window` s every `step` s inside the segment; the last one ends on the segment's end,
    so every speech frame is covered; a segment shorter than `window` is one window."""
    if seg.duration <= window:
        return [(seg.start, seg.end)]
    starts = np.arange(seg.start, seg.end - window, step)
    return [(float(a), float(a) + window) for a in starts] + [(seg.end - window, seg.end)]


def _speech_gain(samples: np.ndarray, speech: Sequence[Segment]) -> float:
    voiced = np.concatenate([samples[int(s.start * SAMPLE_RATE):int(s.end * SAMPLE_RATE)] for s in speech])
    rms = float(np.sqrt(np.mean(np.square(voiced, dtype=np.float64)))) if voiced.size else 0.0
    return 10 ** (TARGET_DBFS / 20) / rms if rms > 0 else 1.0


def embed_windows(samples: np.ndarray, windows: Sequence[tuple[float, float]],
                  progress: Progress = None) -> np.ndarray:
    """One L2-normalised 256-d embedding per window, float32, shape (len(windows), 256)."""
    import torch
    from resemblyzer.audio import wav_to_mel_spectrogram

    encoder = _encoder()
    spans = [(int(round(a * SAMPLE_RATE)), int(round((b - a) * SAMPLE_RATE))) for a, b in windows]
    # The LSTM needs equal lengths within a batch: full windows share one length, short segments vary.
    by_length: dict[int, list[int]] = {}
    for i, (_, n) in enumerate(spans):
        by_length.setdefault(n, []).append(i)
    out = np.zeros((len(windows), 256), dtype=np.float32)
    done = 0
    for idx in by_length.values():
        for k in range(0, len(idx), BATCH):
            chunk = idx[k:k + BATCH]
            # Spectrograms are made batch by batch: overlapping windows would hold the audio several times.
            mels = np.stack([wav_to_mel_spectrogram(samples[a:a + n]) for a, n in (spans[i] for i in chunk)])
            with torch.no_grad():
                out[chunk] = encoder(torch.from_numpy(mels)).numpy()
            done += len(chunk)
            if progress is not None:
                progress(done, len(windows))
    # Digital silence gives an all-zero embedding that the encoder divides by its zero norm.
    return np.nan_to_num(out, nan=0.0)


def cluster_windows(embeddings: np.ndarray, durations: np.ndarray, threshold: float,
                    max_speakers: int | None, min_duration: float) -> np.ndarray:
    """Cluster index per embedding.

    Windows of at least `min_duration` s are clustered: average-linkage agglomerative clustering on the
    cosine distance between embeddings minus their mean, stopped at `threshold`, at most `max_speakers`
    clusters. GE2E embeddings are non-negative, so every voice sits in one narrow cone whose width
    changes from recording to recording; removing the file's mean voice makes one threshold hold across
    files (on raw embeddings, one speaker of an AMI episode spreads wider than two speakers of another
    file). Shorter windows give embeddings so far from everything that each would found a speaker of
    its own, so they only join the nearest cluster afterwards. When no window is that long, all are clustered.
    """
    reliable = durations >= min_duration
    if not reliable.any():
        reliable[:] = True
    centred = embeddings - embeddings[reliable].mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
    core = centred[reliable]
    if len(core) < 2:
        core_labels = np.zeros(len(core), dtype=int)
    else:
        distances = np.clip(1.0 - core @ core.T, 0.0, 2.0)
        core_labels = average_linkage(distances, threshold, max_clusters=max_speakers)
    labels = np.empty(len(embeddings), dtype=int)
    labels[reliable] = core_labels
    labels[~reliable] = (centred[~reliable] @ _centroids(core, core_labels).T).argmax(axis=1)
    return labels


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """L2-normalised mean embedding per cluster index, float32, shape (labels.max() + 1, 256)."""
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)])
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def _frame_turns(speech: Sequence[Segment], per_segment: Sequence[list[tuple[float, float]]],
                 labels: np.ndarray) -> list[tuple[float, float, int]]:
    """Each speech frame takes the majority label of the windows covering it; runs become turns."""
    n_clusters = int(labels.max()) + 1
    turns: list[tuple[float, float, int]] = []
    w = 0
    for seg, windows in zip(speech, per_segment):
        n = max(1, int(np.ceil(seg.duration / FRAME - 1e-6)))
        votes = np.zeros((n, n_clusters))
        for a, b in windows:
            i, j = int(round((a - seg.start) / FRAME)), int(round((b - seg.start) / FRAME))
            votes[max(0, i):max(i + 1, j), labels[w]] += 1
            w += 1
        frame_labels = votes.argmax(axis=1)
        cuts = np.flatnonzero(np.diff(frame_labels)) + 1
        for i, j in zip(np.r_[0, cuts], np.r_[cuts, n]):
            turns.append((seg.start + i * FRAME, min(seg.end, seg.start + j * FRAME), int(frame_labels[i])))
    return turns


def diarize(wav: Path, speech: Sequence[Segment], params: DiarizeParams,
            progress: Progress = None) -> tuple[list[SpeechTurn], dict[str, np.ndarray]]:
    """Turns labelled SPEAKER_00, SPEAKER_01... in order of first speech, and per label the L2-normalised
    mean of its windows' raw embeddings (not mean-removed, so centroids of different files compare)."""
    samples, rate = load_wav(wav)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{Path(wav).name}: the voice encoder needs 16 kHz audio, got {rate} Hz")
    end = len(samples) / rate
    speech = [Segment(max(0.0, s.start), min(end, s.end)) for s in sorted(speech, key=lambda s: s.start)]
    speech = [s for s in speech if s.duration >= FRAME]
    if not speech:
        return [], {}

    samples = samples * _speech_gain(samples, speech)
    per_segment = [segment_windows(s, params.window, params.step) for s in speech]
    windows = [w for ws in per_segment for w in ws]
    embeddings = embed_windows(samples, windows, progress)
    durations = np.array([b - a for a, b in windows])
    labels = cluster_windows(embeddings, durations, params.threshold, params.max_speakers,
                             MIN_CLUSTERED * params.window)
    raw_turns = _frame_turns(speech, per_segment, labels)

    # Clusters outvoted on every frame have no turns and so no speaker.
    order: dict[int, str] = {}
    for _, _, c in raw_turns:
        order.setdefault(c, f"SPEAKER_{len(order):02d}")
    turns = [SpeechTurn(round(float(a), 3), round(float(b), 3), order[c]) for a, b, c in raw_turns]
    centroids = _centroids(embeddings, labels)
    return turns, {name: centroids[c] for c, name in order.items()}


@stage_task("diarize")
def diarize_task(wav: Path, speech_path: Path, *, out: Path, params: DiarizeParams) -> None:
    bar = ProgressBar(f"diarize {Path(wav).name}")
    turns, centroids = diarize(Path(wav), read_segments(speech_path), params, bar)
    bar.close()
    write_turns(out, turns, centroids={k: v.tolist() for k, v in centroids.items()})
