"""The default diarizer: pyannote's segmentation-3.0 and CAM++ voices (tasks/video/diarize/voice_models.py), composed with
pyannote.audio's own clustering and reconstruction, streamed over long files.

In: a 16 kHz mono WAV (tasks/core/audio_stream.py) and DiarizeParams. Out: a Diarization — frame-level turns that
may overlap (two voices at once), the same turns one speaker at a time, and one CAM++ centroid per speaker.
Backend: segmentation-3.0 on 10 s windows every `segmentation_step` seconds finds who speaks in each window
(up to 3 local speakers, 2 at once); each local speaker's speech in a window is cut into `piece`-second parts,
and each part gets its own CAM++ embedding, pooled from one trunk pass over the audio. The parts are clustered
(pyannote's AgglomerativeClustering: average linkage on cosine distance, `threshold`, `min_cluster_size`), and
pyannote's reconstruction turns the clustered windows and the frame-level speaker count into turns, and
each speaker change that falls on a part border is then moved to where the voice changes (refine_changes).

Why parts and not whole local speakers (pyannote's way): on the montage episodes segmentation-3.0 often keeps
two voices of one window as one local speaker (two male voices of one meeting), and its embedding is then a
blend that clustering cannot split; 2 s parts are pure far more often (dev00: 33 % DER as one embedding per local
speaker, 9 % with parts).

Long-form: the file is read `chunk` seconds at a time; each chunk is diarized on its own (the models, one chunk
of audio and its embeddings in memory), then the chunks' speakers are clustered across the file by average
linkage on the mean of their parts' unit vectors — which makes 1 - m_a·m_b the mean cosine distance between the
parts of two speakers, the same quantity `threshold` cuts within a chunk — never joining two speakers of one
chunk (the first stage kept them apart).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.core.audio_stream import AudioStream
from tasks.video.cluster import average_linkage
from tasks.core.config import DiarizeParams
from tasks.core.records import Diarization, SpeechTurn
from tasks.core.stage import Progress
from tasks.video.diarize.voice_models import (
    EMBEDDING_DIM, SAMPLE_RATE, TRUNK_HOP, campplus, fbank, segmentation_forward, segmentation_model,
)

WINDOW = 10.0  # segmentation-3.0's window (s)
BATCH = 32  # segmentation windows per forward pass
# CAM++'s trunk runs on 10 s spans of the chunk (its context layers average over their whole input, and
# that is the length it was trained near); each span is mean-normalised on its own.
TRUNK_SPAN = 10.0
TRUNK_CHANNELS = 512  # CAM++'s frame features before its statistics pooling
# Seconds of speech each frame's embedding describes when a speaker change is placed (refine_changes): long
# enough for CAM++ to tell two voices apart, short enough that it mostly holds one of them.
CHANGE_WINDOW = 1.0


@dataclass
class ChunkSpeakers:
    """One chunk's result, in its own speaker indices: turns as (start, end, index), and per index the sum and
    count of its parts' unit embeddings (so chunks can be compared as their parts would be)."""
    turns: list[tuple[float, float, int]] = field(default_factory=list)
    exclusive: list[tuple[float, float, int]] = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_DIM)))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))


def segment(samples: np.ndarray, offset: float, step: float):
    """segmentation-3.0 over windows of WINDOW s every `step` s (the last one zero-padded, as pyannote's
    Inference does): a pyannote SlidingWindowFeature of hard local-speaker activity, (windows, frames, 3).

    Each frame takes its most probable class, as pyannote does. Measured: counting a frame as speech from a
    lower speech probability (0.4, 0.3) trades missed speech for as much false alarm on the montage episodes."""
    import torch
    from pyannote.audio.utils.powerset import Powerset
    from pyannote.core import SlidingWindow, SlidingWindowFeature

    model = segmentation_model()
    forward = segmentation_forward()
    width, hop = int(WINDOW * SAMPLE_RATE), int(round(step * SAMPLE_RATE))
    n = 1 + max(0, math.ceil((len(samples) - width) / hop))
    padded = np.zeros((n - 1) * hop + width, dtype=np.float32)
    padded[:len(samples)] = samples
    views = np.lib.stride_tricks.sliding_window_view(padded, width)[::hop][:n]
    spec = model.specifications
    powerset = Powerset(len(spec.classes), spec.powerset_max_classes)
    out = []
    with torch.inference_mode():
        for i in range(0, n, BATCH):
            scores = torch.from_numpy(forward(np.array(views[i:i + BATCH])[:, None]))
            out.append(powerset.to_multilabel(scores).numpy())
    return SlidingWindowFeature(np.concatenate(out), SlidingWindow(start=offset, duration=WINDOW, step=step))


def split_parts(binary, piece: float):
    """(windows, frames, S) -> (windows, frames, S * P): each local speaker's activity cut at P = WINDOW / piece
    equal parts of the window, each part its own column (a virtual local speaker)."""
    from pyannote.core import SlidingWindowFeature

    c, f, s = binary.data.shape
    parts = max(1, int(round(WINDOW / piece)))
    edges = np.linspace(0, f, parts + 1).astype(int)
    out = np.zeros((c, f, s * parts), dtype=binary.data.dtype)
    for k in range(s):
        for p in range(parts):
            out[:, edges[p]:edges[p + 1], k * parts + p] = binary.data[:, edges[p]:edges[p + 1], k]
    return SlidingWindowFeature(out, binary.sliding_window)


def trunk_features(samples: np.ndarray, needed: np.ndarray | None = None):
    """CAM++ frame features of the whole chunk, (channels, frames at 50 per second), span by span; spans
    whose entry of `needed` is False (no one speaks in them) are left at zero instead of computed."""
    import torch

    model = campplus()
    span = int(TRUNK_SPAN * SAMPLE_RATE)
    pieces = []
    with torch.inference_mode():
        for i, a in enumerate(range(0, max(len(samples), 1), span)):
            piece = samples[a:a + span]
            want = -(-len(piece) // TRUNK_HOP)  # trunk frames this span stands for
            if len(piece) < 400 or (needed is not None and not needed[i]):  # under one fbank window, or silent
                pieces.append(torch.zeros((TRUNK_CHANNELS, want)))
                continue
            feats = fbank(piece)
            feats = feats - feats.mean(dim=0, keepdim=True)
            trunk = model.trunk(feats[None])[0].cpu()
            # fbank drops the tail shorter than a hop: pad by repeating the last frame to cover the span.
            if trunk.shape[1] < want:
                trunk = torch.cat([trunk, trunk[:, -1:].expand(-1, want - trunk.shape[1])], dim=1)
            pieces.append(trunk[:, :want])
    return torch.cat(pieces, dim=1)


def speech_spans(count, n_samples: int, offset: float) -> np.ndarray:
    """Per TRUNK_SPAN of the chunk, whether the frame-level speaker count says someone speaks in it."""
    n = max(1, -(-n_samples // int(TRUNK_SPAN * SAMPLE_RATE)))
    needed = np.zeros(n, dtype=bool)
    frames = count.sliding_window
    for i in np.flatnonzero(count.data[:, 0] > 0):
        t = frames[i].middle - offset
        needed[min(n - 1, max(0, int(t // TRUNK_SPAN)))] = True
    return needed


def embed_parts(features, parts, offset: float, frames, min_clean: float) -> np.ndarray:
    """One CAM++ embedding per active column of `parts`, pooled from the chunk's trunk `features` over the
    column's frames — without frames where another speaker talks too, unless fewer than `min_clean` seconds
    are left; NaN rows for inactive columns. Shape (windows, columns, 192)."""
    import torch

    model = campplus()
    data = parts.data
    n_windows, n_frames, n_cols = data.shape
    out = np.full((n_windows, n_cols, EMBEDDING_DIM), np.nan, dtype=np.float32)
    overlapped = (data.sum(axis=2) >= 2)
    rate = SAMPLE_RATE / TRUNK_HOP
    frame_step = frames.step
    centres = frames.start + frames.duration / 2 + frame_step * np.arange(n_frames)
    with torch.inference_mode():
        for c in range(n_windows):
            active = np.flatnonzero(data[c].any(axis=0))
            if not len(active):
                continue
            index = np.clip(((parts.sliding_window[c].start - offset + centres) * rate).astype(int),
                            0, features.shape[1] - 1)
            lo, hi = int(index.min()), int(index.max()) + 1
            weights = np.zeros((len(active), hi - lo), dtype=np.float32)
            for row, col in enumerate(active):
                mask = data[c, :, col] > 0
                clean = mask & ~overlapped[c]
                use = clean if clean.sum() * frame_step >= min_clean else mask
                np.add.at(weights[row], index[use] - lo, 1.0)
            vectors = model.pool(features[:, lo:hi].to(model.device), torch.from_numpy(weights).to(model.device))
            out[c, active] = vectors.cpu().numpy()
    return out


def _clustering(params: DiarizeParams, min_clean_frames: int):
    """pyannote's AgglomerativeClustering, whose parts found clusters only with `min_clean` seconds of speech
    no one else speaks over (pyannote's own rule is 20 % of a window: more than a part can hold)."""
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering

    class PartClustering(AgglomerativeClustering):
        def filter_embeddings(self, embeddings, segmentations=None, min_active_ratio=0.2):
            data = segmentations.data
            single = data.sum(axis=2, keepdims=True) == 1
            clean = (data * single).sum(axis=1)
            valid = ~np.any(np.isnan(embeddings), axis=2)
            chunk_idx, speaker_idx = np.where((clean >= min_clean_frames) & valid)
            return embeddings[chunk_idx, speaker_idx], chunk_idx, speaker_idx

    clustering = PartClustering(metric="cosine")
    clustering.instantiate({"method": "average", "threshold": params.threshold,
                            "min_cluster_size": params.min_cluster_size})
    return clustering


def touching_changes(turns: list[tuple[float, float, int]], tolerance: float) -> list[tuple[int, int]]:
    """Index pairs (i, j) of turns where speaker i stops and another speaker j starts at the same moment (within
    `tolerance`), with neither of them speaking across it: the changes placed by a part's label, not by a pause
    or an overlap segmentation heard."""
    pairs = []
    for i, (_, end, k) in enumerate(turns):
        for j, (start, end_j, m) in enumerate(turns):
            if m == k or abs(start - end) > tolerance:
                continue
            # Another turn of either speaker running through the change means overlap, which stays as heard.
            through = any(a < end - tolerance and b > end + tolerance for a, b, s in turns if s in (k, m))
            if not through:
                pairs.append((i, j))
    return pairs


def refine_changes(turns: list[tuple[float, float, int]], features, offset: float, centroids: np.ndarray,
                   reach: float) -> list[tuple[float, float, int]]:
    """Speaker changes moved to where the voice changes.

    When segmentation keeps two voices of a window as one local speaker, the change between them falls on a part
    border (a part has one label), up to a part away from the true one: measured on dev00, changes came
    0.2-0.6 s early. Around each such change (`reach` s either side, inside both turns) every trunk frame gets
    the CAM++ embedding of the CHANGE_WINDOW s around it, scored by how much closer it lies to the first
    speaker's centroid than to the second's; the change moves to the cut that maximises the score before it
    minus the score after it (one change point, so a noisy frame cannot split a turn).

    Measured (scripts/eval_diarization.py): pooled montage DER 30.3 -> 28.6 %, dev00 8.6 -> 6.1 %, dev01 29.6 ->
    25.5 %, trn07/trn08 unchanged (their changes are pauses and overlaps), sample.wav 3.1 % both; a 0.6 s or
    1.5 s window gave 28.7 / 29.1 %. A Viterbi relabelling of every one-speaker frame by the same embeddings
    did no better (28.5 %) and made sample.wav worse (4.5 %)."""
    import torch

    pairs = touching_changes(turns, tolerance=1.5 / (SAMPLE_RATE / TRUNK_HOP))
    if not pairs or not len(centroids):
        return turns
    model = campplus()
    rate = SAMPLE_RATE / TRUNK_HOP
    half = max(1, int(round(CHANGE_WINDOW * rate / 2)))
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    rows = [list(t) for t in turns]
    for i, j in sorted(pairs, key=lambda p: rows[p[0]][1]):
        first, second = rows[i], rows[j]
        change = first[1]
        lo = int(round((max(first[0], change - reach) - offset) * rate))
        hi = int(round((min(second[1], change + reach) - offset) * rate))
        lo, hi = max(lo, 0), min(hi, features.shape[1])
        if hi - lo < 2 * half:
            continue
        first_frame, last_frame = max(0, lo - half), min(features.shape[1], hi + half)
        weights = np.zeros((hi - lo, last_frame - first_frame), dtype=np.float32)
        for row, c in enumerate(range(lo - first_frame, hi - first_frame)):
            weights[row, max(0, c - half):c + half] = 1.0
        with torch.inference_mode():
            vectors = model.pool(features[:, first_frame:last_frame].to(model.device),
                                 torch.from_numpy(weights).to(model.device))
        vectors = vectors.cpu().numpy()
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        score = vectors @ unit[first[2]] - vectors @ unit[second[2]]
        gain = np.concatenate([[0.0], np.cumsum(score)])
        cut = int(np.argmax(2 * gain - gain[-1]))
        moved = offset + (lo + cut) / rate
        first[1] = second[0] = round(moved, 3)
    return sorted((a, b, k) for a, b, k in rows if b > a)


def _annotation_turns(discrete, min_duration_off: float) -> list[tuple[float, float, int]]:
    from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin

    annotation = SpeakerDiarizationMixin.to_annotation(discrete, min_duration_on=0.0, min_duration_off=min_duration_off)
    return sorted((float(s.start), float(s.end), int(k)) for s, _, k in annotation.itertracks(yield_label=True))


def diarize_chunk(samples: np.ndarray, offset: float, params: DiarizeParams) -> ChunkSpeakers:
    """One chunk of audio starting at `offset` s: its speakers' turns (absolute times) and part embeddings."""
    import contextlib
    import io

    from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
    from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Mixin

    frames = segmentation_model().receptive_field
    binary = segment(samples, offset, params.segmentation_step)
    count = Mixin.speaker_count(binary, frames, warm_up=(0.0, 0.0))
    if np.nanmax(count.data) == 0:
        return ChunkSpeakers()
    parts = split_parts(binary, params.piece)
    features = trunk_features(samples, speech_spans(count, len(samples), offset))
    embeddings = embed_parts(features, parts, offset, frames, params.min_clean)
    clustering = _clustering(params, int(math.ceil(params.min_clean / frames.step)))
    # pyannote prints a hint when it cannot reach the requested number of clusters.
    with contextlib.redirect_stdout(io.StringIO()):
        hard, _, _ = clustering(embeddings=embeddings.copy(), segmentations=parts, max_clusters=params.max_speakers)
    hard = np.asarray(hard, dtype=int)
    hard[np.isnan(embeddings).any(axis=2) | (parts.data.sum(axis=1) == 0)] = -2
    n_clusters = int(hard.max()) + 1
    if n_clusters <= 0:
        return ChunkSpeakers()
    # No frame has more voices than the chunk has speakers: pyannote's to_diarization pads the speakers up to the
    # largest count, which gave a 3 s clip whose one voice the segmentation heard as two a phantom speaker 1.
    count.data = np.minimum(count.data, min(n_clusters, params.max_speakers or n_clusters))
    # pyannote's own reconstruction (a method that only calls the mixin's static to_diarization), run once
    # with the frame-level speaker count and once with at most one speaker per frame, as its pipeline does.
    turns = _annotation_turns(SpeakerDiarization.reconstruct(Mixin, parts, hard, count), params.min_duration_off)
    count.data = np.minimum(count.data, 1)
    exclusive = _annotation_turns(SpeakerDiarization.reconstruct(Mixin, parts, hard, count), params.min_duration_off)

    unit = np.nan_to_num(embeddings) / np.maximum(np.linalg.norm(np.nan_to_num(embeddings), axis=2, keepdims=True), 1e-9)
    sums = np.zeros((n_clusters, EMBEDDING_DIM))
    counts = np.zeros(n_clusters)
    keep = hard >= 0
    np.add.at(sums, hard[keep], unit[keep])
    np.add.at(counts, hard[keep], 1)
    if params.refine_changes:
        turns = refine_changes(turns, features, offset, sums, params.piece)
        exclusive = refine_changes(exclusive, features, offset, sums, params.piece)
    return ChunkSpeakers(turns, exclusive, sums, counts)


def link_chunks(chunks: list[ChunkSpeakers], params: DiarizeParams) -> list[np.ndarray]:
    """Per chunk, the file-level speaker of each of its speakers (average linkage of the chunks' speakers on
    the mean cosine distance between their parts, no two speakers of one chunk joined)."""
    owner = [i for i, ch in enumerate(chunks) for _ in range(len(ch.counts))]
    if not owner:
        return [np.zeros(0, dtype=int) for _ in chunks]
    means = np.concatenate([ch.sums / np.maximum(ch.counts, 1)[:, None] for ch in chunks])
    if len(chunks) == 1:
        labels = np.arange(len(owner))
    else:
        distances = np.clip(1.0 - means @ means.T, 0.0, 2.0)
        same_chunk = [(i, j) for i in range(len(owner)) for j in range(i + 1, len(owner)) if owner[i] == owner[j]]
        threshold = params.threshold if params.global_threshold is None else params.global_threshold
        labels = average_linkage(distances, threshold, cannot_link=same_chunk, max_clusters=params.max_speakers)
    out, start = [], 0
    for ch in chunks:
        out.append(np.asarray(labels[start:start + len(ch.counts)], dtype=int))
        start += len(ch.counts)
    return out


def _joined(turns: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Turns of one speaker that touch across a chunk border become one."""
    out: list[list] = []
    last: dict[int, list] = {}
    for a, b, k in sorted(turns):
        prev = last.get(k)
        if prev is not None and a <= prev[1] + 1e-6:
            prev[1] = max(prev[1], b)
            continue
        last[k] = [a, b, k]
        out.append(last[k])
    return sorted((a, b, k) for a, b, k in out)


def chunk_spans(total: int, step: int) -> list[tuple[int, int]]:
    """Sample spans of `step` covering `total`; a tail shorter than one segmentation window joins the chunk
    before it (alone it would be a zero-padded window whose few parts found speakers of their own)."""
    spans, start, tail = [], 0, int(WINDOW * SAMPLE_RATE)
    while start < total:
        end = total if total - (start + step) < tail else start + step
        spans.append((start, end))
        start = end
    return spans


def diarize(wav: Path, params: DiarizeParams, progress: Progress = None) -> Diarization:
    """The whole file, `params.chunk` seconds at a time; speakers named SPEAKER_00, SPEAKER_01... in order of
    first speech, centroids the L2-normalised mean of their parts' unit embeddings."""
    chunks: list[ChunkSpeakers] = []
    with AudioStream(wav) as stream:
        total = stream.frames
        for start, end in chunk_spans(total, int(params.chunk * SAMPLE_RATE)):
            chunks.append(diarize_chunk(stream.read(start, end - start), start / SAMPLE_RATE, params))
            if progress is not None:
                progress(round(end / SAMPLE_RATE), round(total / SAMPLE_RATE))
    labels = link_chunks(chunks, params)
    turns = _joined([(a, b, int(lab[k])) for ch, lab in zip(chunks, labels) for a, b, k in ch.turns])
    exclusive = _joined([(a, b, int(lab[k])) for ch, lab in zip(chunks, labels) for a, b, k in ch.exclusive])
    order: dict[int, str] = {}
    for _, _, k in turns:
        order.setdefault(k, f"SPEAKER_{len(order):02d}")
    sums: dict[int, np.ndarray] = {}
    for ch, lab in zip(chunks, labels):
        for k, g in enumerate(lab):
            sums[int(g)] = sums.get(int(g), 0) + ch.sums[k]
    centroids = {name: (sums[g] / max(np.linalg.norm(sums[g]), 1e-9)).astype(np.float32) for g, name in order.items()}

    def records(rows):
        return [SpeechTurn(round(a, 3), round(b, 3), order[k]) for a, b, k in rows if k in order and b > a]

    return Diarization(records(turns), records(exclusive), centroids)
