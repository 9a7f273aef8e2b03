"""Speaker diarization: one audio file and its speech segments in; who spoke when, within that file, out.

In: a 16 kHz mono WAV (other rates/channel counts are mixed down and resampled), the VAD stage's speech
segments and DiarizeParams. Out: SpeechTurns labelled SPEAKER_00, SPEAKER_01... (per file) and each
speaker's voice centroid (for cross-file matching).
Backends (DiarizeParams.backend): offline — resemblyzer's GE2E voice encoder (weights ship in the package) +
agglomerative clustering, below; pyannote — a pyannote.audio 4 pipeline (tasks/diarize_pyannote.py).

Long-form (offline): the audio is streamed (tasks/audio_stream.py) — one pass measures the speech level, a
second embeds the windows of each `chunk` seconds; only the embeddings (256 floats per window) and their
times are kept. Clustering is two-stage: the windows of each chunk are clustered (centred-cosine average
linkage, as for a short file), then the chunks' speakers are clustered across the file
(`global_threshold`), never two speakers of one chunk together; a file of one chunk is clustered once.
Memory is the models, one chunk of audio and its distance matrix, plus the embeddings.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.audio_stream import AudioStream
from tasks.cluster import average_linkage
from tasks.config import DiarizeParams
from tasks.formats import read_segments, write_turns
from tasks.records import Segment, SpeechTurn
from tasks.stage import Progress, ProgressBar, stage_task
from tasks.workspace import code_version

# resemblyzer's mel hop; frame-level labels use the same grid so windows map onto frames exactly.
FRAME = 0.01
SAMPLE_RATE = 16000
# resemblyzer feeds its encoder un-logged mel power, so loudness changes the embedding; speech is
# brought to the level resemblyzer's own preprocessing gives utterances (hparams.audio_norm_target_dBFS).
TARGET_DBFS = -30.0
BATCH = 64
# resemblyzer's mel spectrogram: 25 ms Hann windows every 10 ms, 40 mel bands.
MEL_FFT, MEL_HOP, MEL_BANDS = 400, 160, 40
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


def _speech_gain(stream: AudioStream, speech: Sequence[Segment], block: float) -> float:
    """Gain that brings the file's speech to TARGET_DBFS, from one streamed pass over the speech."""
    step = max(1, int(round(block * SAMPLE_RATE)))
    spans = [(int(s.start * SAMPLE_RATE), int(s.end * SAMPLE_RATE)) for s in speech]
    total, count = 0.0, 0
    for b0 in range(0, spans[-1][1], step):
        inside = [(max(a, b0), min(b, b0 + step)) for a, b in spans if a < b0 + step and b > b0]
        if not inside:
            continue
        lo, hi = inside[0][0], max(b for _, b in inside)
        samples = stream.read(lo, hi - lo)
        for a, b in inside:
            piece = samples[a - lo:b - lo].astype(np.float64)
            total += float(np.dot(piece, piece))
            count += len(piece)
    rms = np.sqrt(total / count) if count else 0.0
    return 10 ** (TARGET_DBFS / 20) / rms if rms > 0 else 1.0


@functools.lru_cache(maxsize=1)
def _mel_constants() -> tuple[np.ndarray, np.ndarray]:
    import librosa
    from scipy.signal import get_window

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=MEL_FFT, n_mels=MEL_BANDS).astype(np.float32)
    return get_window("hann", MEL_FFT, fftbins=True).astype(np.float32), basis


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """resemblyzer's `wav_to_mel_spectrogram` (librosa power mel, n_fft 400, hop 160, 40 bands, centred
    with zero padding), shape (1 + len // 160, 40), in plain numpy: librosa rebuilds its mel filters on
    every call, which cost more than the encoder itself."""
    window, basis = _mel_constants()
    padded = np.pad(np.asarray(wav, dtype=np.float32), MEL_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_FFT)[::MEL_HOP]
    import scipy.fft

    power = np.abs(scipy.fft.rfft(frames * window, axis=1)) ** 2
    return power @ basis.T


def _embed_batches(samples: np.ndarray, spans: Sequence[tuple[int, int]], out: np.ndarray,
                   rows: Sequence[int], tick) -> None:
    """Embeddings of the sample spans (start, length) into out[rows], batched by length."""
    import torch

    encoder = _encoder()
    # The LSTM needs equal lengths within a batch: full windows share one length, short segments vary.
    by_length: dict[int, list[int]] = {}
    for k, (_, n) in enumerate(spans):
        by_length.setdefault(n, []).append(k)
    for ks in by_length.values():
        for i in range(0, len(ks), BATCH):
            batch = ks[i:i + BATCH]
            # Spectrograms are made batch by batch: overlapping windows would hold the audio several times.
            mels = np.stack([mel_spectrogram(samples[a:a + n]) for a, n in (spans[k] for k in batch)])
            with torch.inference_mode():
                out[[rows[k] for k in batch]] = encoder(torch.from_numpy(mels)).numpy()
            tick(len(batch))


def embed_windows(samples: np.ndarray, windows: Sequence[tuple[float, float]],
                  progress: Progress = None) -> np.ndarray:
    """One L2-normalised 256-d embedding per window of in-memory 16 kHz samples, float32,
    shape (len(windows), 256)."""
    out = np.zeros((len(windows), 256), dtype=np.float32)
    spans = [(int(round(a * SAMPLE_RATE)), int(round((b - a) * SAMPLE_RATE))) for a, b in windows]
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(windows))

    _embed_batches(samples, spans, out, range(len(windows)), tick)
    # Digital silence gives an all-zero embedding that the encoder divides by its zero norm.
    return np.nan_to_num(out, nan=0.0)


def embed_stream(stream: AudioStream, windows: Sequence[tuple[float, float]], gain: float, block: float,
                 progress: Progress = None) -> np.ndarray:
    """`embed_windows` over a file read `block` seconds at a time: each block is read with enough
    overlap to hold every window that starts in it whole; blocks without windows are not read."""
    out = np.zeros((len(windows), 256), dtype=np.float32)
    step = max(1, int(round(block * SAMPLE_RATE)))
    spans = [(int(round(a * SAMPLE_RATE)), int(round((b - a) * SAMPLE_RATE))) for a, b in windows]
    by_block: dict[int, list[int]] = {}
    for i, (a, _) in enumerate(spans):
        by_block.setdefault(a // step, []).append(i)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(windows))

    for b in sorted(by_block):
        rows = by_block[b]
        lo = min(spans[i][0] for i in rows)
        hi = max(spans[i][0] + spans[i][1] for i in rows)
        samples = stream.read(lo, hi - lo)
        samples *= gain
        if len(samples) < hi - lo:  # a speech segment past the end of a truncated file
            samples = np.pad(samples, (0, hi - lo - len(samples)))
        _embed_batches(samples, [(spans[i][0] - lo, spans[i][1]) for i in rows], out, rows, tick)
    return np.nan_to_num(out, nan=0.0)


def cluster_windows(embeddings: np.ndarray, durations: np.ndarray, threshold: float,
                    max_speakers: int | None, min_duration: float, mean: np.ndarray | None = None) -> np.ndarray:
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
    centred = embeddings - (embeddings[reliable].mean(axis=0) if mean is None else mean)
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


def cluster_chunks(embeddings: np.ndarray, starts: np.ndarray, durations: np.ndarray,
                   params: DiarizeParams) -> np.ndarray:
    """Cluster index per embedding, two-stage: `cluster_windows` within each `params.chunk` seconds
    (by window start), then average linkage of the chunks' clusters across the file, on the cosine
    distance between their mean embeddings minus the file's mean, cut at `params.global_threshold`,
    with no two clusters of one chunk joined (the first stage already kept them apart).

    Every window is centred by the file's mean (of its long windows), in both stages, so a chunk where
    one voice dominates is not split by removing that voice. The clusters are compared by the mean
    cosine distance between their windows, so `threshold` holds for both stages (measured with 10 s
    chunks on the 30 s test files: other thresholds for the second stage do worse)."""
    min_duration = MIN_CLUSTERED * params.window
    chunk_of = np.floor(np.asarray(starts) / params.chunk).astype(int)
    chunks = np.unique(chunk_of)
    if len(chunks) <= 1:
        return cluster_windows(embeddings, durations, params.threshold, params.max_speakers, min_duration)
    reliable = durations >= min_duration
    if not reliable.any():
        reliable = np.ones(len(embeddings), dtype=bool)
    mean = embeddings[reliable].mean(axis=0)
    local = np.empty(len(embeddings), dtype=int)
    owner: list[int] = []  # chunk of each local cluster
    for c in chunks:
        rows = np.flatnonzero(chunk_of == c)
        labels = cluster_windows(embeddings[rows], durations[rows], params.threshold,
                                 params.max_speakers, min_duration, mean=mean)
        local[rows] = labels + len(owner)
        owner += [int(c)] * (int(labels.max()) + 1)
    # Average linkage between windows on cosine distance is linear in each window's unit vector: the mean
    # distance between the windows of clusters A and B is 1 - m_A·m_B, with m the mean of the clusters'
    # centred unit vectors (not renormalised). So the chunks' clusters are compared exactly as their
    # windows would be, and the windows' threshold holds for them too.
    centred = embeddings - mean
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
    use = reliable & np.isin(local, np.unique(local[reliable]))
    # A cluster of short windows only (a chunk with no long window) is described by all its windows.
    use |= ~np.isin(local, np.unique(local[reliable]))
    sums = np.zeros((len(owner), embeddings.shape[1]))
    counts = np.zeros(len(owner))
    np.add.at(sums, local[use], centred[use])
    np.add.at(counts, local[use], 1)
    means = sums / counts[:, None]
    distances = np.clip(1.0 - means @ means.T, 0.0, 2.0)
    owner_arr = np.array(owner)
    same_chunk = [(i, j) for i in range(len(owner)) for j in range(i + 1, len(owner))
                  if owner_arr[i] == owner_arr[j]]
    threshold = params.threshold if params.global_threshold is None else params.global_threshold
    merged = average_linkage(distances, threshold, cannot_link=same_chunk,
                             max_clusters=params.max_speakers)
    return merged[local]


def diarize(wav: Path, speech: Sequence[Segment], params: DiarizeParams,
            progress: Progress = None) -> tuple[list[SpeechTurn], dict[str, np.ndarray]]:
    """Turns labelled SPEAKER_00, SPEAKER_01... in order of first speech, and per label the L2-normalised
    mean of its windows' raw embeddings (not mean-removed, so centroids of different files compare)."""
    with AudioStream(wav) as stream:
        end = stream.duration
        speech = [Segment(max(0.0, s.start), min(end, s.end)) for s in sorted(speech, key=lambda s: s.start)]
        speech = [s for s in speech if s.duration >= FRAME]
        if not speech:
            return [], {}
        per_segment = [segment_windows(s, params.window, params.step) for s in speech]
        windows = [w for ws in per_segment for w in ws]
        gain = _speech_gain(stream, speech, params.chunk)
        embeddings = embed_stream(stream, windows, gain, params.chunk, progress)
    starts = np.array([a for a, _ in windows])
    durations = np.array([b - a for a, b in windows])
    labels = cluster_chunks(embeddings, starts, durations, params)
    raw_turns = _frame_turns(speech, per_segment, labels)

    # Clusters outvoted on every frame have no turns and so no speaker.
    order: dict[int, str] = {}
    for _, _, c in raw_turns:
        order.setdefault(c, f"SPEAKER_{len(order):02d}")
    turns = [SpeechTurn(round(float(a), 3), round(float(b), 3), order[c]) for a, b, c in raw_turns]
    centroids = _centroids(embeddings, labels)
    return turns, {name: centroids[c] for c, name in order.items()}


def cache_inputs(params: DiarizeParams) -> object:
    """What decides a file's turns besides this module's code: the parameters, and for pyannote also its
    module's code and the pipeline's files."""
    if params.backend != "pyannote":
        return params.model_dump()
    from tasks.diarize_pyannote import model_digest

    return [params.model_dump(), code_version("tasks.diarize_pyannote"), model_digest(params.model)]


@stage_task("diarize")
def diarize_task(wav: Path, speech_path: Path, *, out: Path, params: DiarizeParams) -> None:
    if params.backend == "pyannote":
        from tasks.diarize_pyannote import diarize as backend  # imports torch and pyannote
    else:
        backend = diarize
    bar = ProgressBar(f"diarize {Path(wav).name}")
    turns, centroids = backend(Path(wav), read_segments(speech_path), params, bar)
    bar.close()
    write_turns(out, turns, centroids={k: v.tolist() for k, v in centroids.items()})
