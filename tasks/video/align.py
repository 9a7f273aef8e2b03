"""Align: which on-screen character each voice belongs to, with the evidence, across the whole library.

Two steps. Per video (cached): `cooccurrence` measures, for every (voice, character) pair of that video,
how long the character is on screen while the voice speaks — each moment weighted 1/(characters on
screen), so single-face shots count most. At library level (every run): the videos' evidence, relabelled
with global speaker and character ids, is summed and `link_voices` gives each global voice the character
it is seen with most, or None (off-screen: narrator, voice-over, someone never shown) when no face is on
screen for enough of its speech. Backend: co-occurrence scoring, one-to-one within a video.
"""
from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tasks.core.config import AlignParams
from tasks.core.formats import read_characters, read_frames, read_tracks, read_turns, write_evidence
from tasks.core.records import Character, Cooccurrence, Segment, SpeakerLink, SpeechTurn, Track
from tasks.core.stage import stage_task


def merge_intervals(intervals: Sequence[tuple[float, float]], gap: float = 0.0) -> list[Segment]:
    """Union of intervals; intervals closer than `gap` are joined."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [Segment(s, e) for s, e in out]


def sampling_interval(frames_index: Path, fps: float) -> float:
    """Seconds each sampled frame stands for: the median gap (keyframes are irregular), else 1/fps."""
    times = [f.t for f in read_frames(frames_index)]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(gaps) if gaps else 1.0 / fps


def box_intervals(track: Track, interval: float) -> list[tuple[float, float]]:
    """When a track is on screen: each sampled box stands for half an interval either side."""
    half = interval / 2
    return [(max(0.0, b.t - half), b.t + half) for b in track.boxes]


def visible_spans(tracks: Sequence[Track], characters: Sequence[Character], interval: float) -> dict[str, list[Segment]]:
    """character_id -> when it is on screen (the union of its tracks' box intervals)."""
    by_id = {t.track_id: t for t in tracks}
    from tasks.video.body_link import linked_tracks  # head and person tracks keep a character on screen

    linked = linked_tracks(tracks, characters)
    return {c.character_id: merge_intervals([iv for tid in (*c.track_ids, *linked.get(c.character_id, ()))
                                             for iv in box_intervals(by_id[tid], interval)])
            for c in characters}


def screen_pieces(spans: dict[str, list[Segment]]) -> list[tuple[Segment, tuple[str, ...]]]:
    """Time cut into pieces in which the set of visible characters is constant (non-empty pieces only),
    by one sweep over the span borders, so an hour of video costs O(n log n), not O(n²)."""
    events: dict[float, list[tuple[int, str]]] = defaultdict(list)
    for cid, segments in spans.items():
        for s in segments:
            events[s.start].append((1, cid))
            events[s.end].append((-1, cid))
    pieces, visible, times = [], set(), sorted(events)
    for a, b in zip(times, times[1:] + [None]):
        for delta, cid in events[a]:
            if delta > 0:
                visible.add(cid)
            else:
                visible.discard(cid)
        if b is not None and visible:
            pieces.append((Segment(a, b), tuple(sorted(visible))))
    return pieces


def cooccurrence(turns: Sequence[SpeechTurn], tracks: Sequence[Track], characters: Sequence[Character],
                 interval: float) -> list[Cooccurrence]:
    """One row per (voice, character) seen together, plus one row with character None per voice giving
    its total speech; seconds rounded to the millisecond so cached evidence is stable."""
    pieces = screen_pieces(visible_spans(tracks, characters, interval))
    starts = [p.start for p, _ in pieces]
    speech: dict[str, float] = defaultdict(float)
    weighted: dict[tuple[str, str], float] = defaultdict(float)
    together: dict[tuple[str, str], float] = defaultdict(float)
    for turn in turns:
        speech[turn.speaker] += turn.duration
        # Pieces do not overlap and are sorted: only those from the one before the turn's start on can touch it
        # (indexed, not sliced: a slice would copy the rest of the pieces for every turn).
        for k in range(max(0, bisect.bisect_right(starts, turn.start) - 1), len(pieces)):
            piece, visible = pieces[k]
            if piece.start >= turn.end:
                break
            ov = min(turn.end, piece.end) - max(turn.start, piece.start)
            if ov <= 0:
                continue
            for cid in visible:
                weighted[(turn.speaker, cid)] += ov / len(visible)
                together[(turn.speaker, cid)] += ov
    rows = [Cooccurrence(spk, None, round(secs, 3), round(secs, 3)) for spk, secs in sorted(speech.items())]
    rows += [Cooccurrence(spk, cid, round(weighted[(spk, cid)], 3), round(together[(spk, cid)], 3))
             for spk, cid in sorted(weighted)]
    return rows


def _pooled(rows: Iterable[Cooccurrence]) -> tuple[dict[str, float], dict[tuple[str, str], float],
                                                   dict[tuple[str, str], float]]:
    """Evidence rows summed: speech per voice, weighted and together seconds per (voice, character)."""
    speech: dict[str, float] = defaultdict(float)
    weighted: dict[tuple[str, str], float] = defaultdict(float)
    together: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        if r.character_id is None:
            speech[r.speaker] += r.weighted_seconds
        else:
            weighted[(r.speaker, r.character_id)] += r.weighted_seconds
            together[(r.speaker, r.character_id)] += r.together_seconds
    return speech, weighted, together


def link_voices(evidence: Iterable[tuple[str, Sequence[Cooccurrence]]], params: AlignParams) -> list[SpeakerLink]:
    """One link per voice from the evidence of every video, `(video, rows)`, in library ids.

    A voice's score for a character is the weighted on-screen time summed over all videos, divided by
    its speech over all videos. Best evidence first, each voice takes its best character left, if that
    character is on screen for at least `min_score` of the voice's speech (the unweighted share: a voice
    heard over a two-shot is seen with both faces, and only the ranking should prefer the single shots).
    Two voices heard in one video never share a face; voices that are never heard in the same video may
    (the voice registry may have split one person across files). Equal shares are settled by the amount
    of evidence: a longer voice wins the face."""
    evidence = list(evidence)
    heard_in: dict[str, set[str]] = defaultdict(set)
    for video, rows in evidence:
        for r in rows:
            if r.character_id is None:
                heard_in[r.speaker].add(video)
    speech, weighted, together = _pooled(r for _, rows in evidence for r in rows)
    ranked = sorted(((w / speech[spk], together[(spk, cid)], spk, cid) for (spk, cid), w in weighted.items()
                     if speech[spk] > 0), key=lambda r: (-r[0], -r[1], r[2], r[3]))
    links: dict[str, SpeakerLink] = {}
    owners: dict[str, list[str]] = defaultdict(list)
    for share, secs, spk, cid in ranked:
        if spk in links or secs / speech[spk] < params.min_score:
            continue
        if any(heard_in[spk] & heard_in[other] for other in owners[cid]):
            continue
        links[spk] = SpeakerLink(spk, cid, round(share, 4), round(speech[spk], 3), round(secs, 3))
        owners[cid].append(spk)
    for spk in speech:
        links.setdefault(spk, SpeakerLink(spk, None, 0.0, round(speech[spk], 3), 0.0))
    return [links[s] for s in sorted(links)]


def same_face_voices(links: Sequence[SpeakerLink], centroids: dict[str, np.ndarray], heard_in: dict[str, set[str]],
                     threshold: float) -> list[tuple[str, str]]:
    """Pairs of library voices that are one person: linked to the same character, never heard in one video,
    and closer than `threshold` (cosine) — looser than the registry's own voice threshold, because the face
    is a second, independent witness. Returns (kept id, merged id) pairs, the kept one the lower id, closest
    pairs first; a voice takes part in at most one pair (the caller merges, links again and asks again)."""
    by_face: dict[str, list[str]] = defaultdict(list)
    for link in links:
        if link.character_id is not None and link.speaker in centroids:
            by_face[link.character_id].append(link.speaker)
    candidates = []
    for voices in by_face.values():
        ordered = sorted(voices)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                if heard_in.get(a, set()) & heard_in.get(b, set()):
                    continue
                u, v = centroids[a], centroids[b]
                distance = 1.0 - float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-12)
                if distance < threshold:
                    candidates.append((distance, a, b))
    merged: set[str] = set()
    pairs = []
    for _, a, b in sorted(candidates):
        if a not in merged and b not in merged:
            pairs.append((a, b))
            merged.update((a, b))
    return pairs


def video_links(rows: Sequence[Cooccurrence], library: dict[str, SpeakerLink]) -> list[SpeakerLink]:
    """The voices of one video, each with the character the library linked it to, and this video's
    figures: its speech here and the share of it with that face on screen here (a per-video table that
    showed the library totals would disagree with the same video's character table)."""
    speech, weighted, together = _pooled(rows)
    links = []
    for spk in sorted(speech):
        cid = library[spk].character_id if spk in library else None
        share = weighted[(spk, cid)] / speech[spk] if cid and speech[spk] > 0 else 0.0
        links.append(SpeakerLink(spk, cid, round(share, 4), round(speech[spk], 3),
                                 round(together[(spk, cid)], 3) if cid else 0.0))
    return links


@stage_task("align")
def align_task(turns_path: Path | None, tracks_path: Path, characters_path: Path, *, out: Path,
               interval: float) -> None:
    turns = read_turns(turns_path) if turns_path is not None else []
    write_evidence(out, cooccurrence(turns, read_tracks(tracks_path), read_characters(characters_path), interval))
