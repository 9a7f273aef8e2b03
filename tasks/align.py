"""Align: which on-screen character each voice belongs to, within one video.

In: speaker turns (diarize), tracks and characters (cluster), the frame sampling interval.
Out: one SpeakerLink per voice — the character visible most, and most exclusively, while it speaks,
or None (off-screen) when no face is on screen for enough of its speech. Backend: co-occurrence scoring.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from tasks.config import AlignParams
from tasks.formats import read_characters, read_tracks, read_turns, write_links
from tasks.records import Character, Segment, SpeakerLink, SpeechTurn, Track
from tasks.stage import stage_task


def merge_intervals(intervals: Sequence[tuple[float, float]], gap: float = 0.0) -> list[Segment]:
    """Union of intervals; intervals closer than `gap` are joined."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [Segment(s, e) for s, e in out]


def box_intervals(track: Track, interval: float) -> list[tuple[float, float]]:
    """When a track is on screen: each sampled box stands for half an interval either side."""
    half = interval / 2
    return [(max(0.0, b.t - half), b.t + half) for b in track.boxes]


def visible_spans(tracks: Sequence[Track], characters: Sequence[Character], interval: float) -> dict[str, list[Segment]]:
    """character_id -> when it is on screen (the union of its tracks' box intervals)."""
    by_id = {t.track_id: t for t in tracks}
    return {c.character_id: merge_intervals([iv for tid in c.track_ids for iv in box_intervals(by_id[tid], interval)])
            for c in characters}


def _overlap(a: Segment, b: Segment) -> float:
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))


def link_speakers(turns: Sequence[SpeechTurn], tracks: Sequence[Track], characters: Sequence[Character],
                  interval: float, params: AlignParams) -> list[SpeakerLink]:
    """Score every (voice, character) pair by screen time during the voice's speech, each moment
    weighted 1/(characters on screen) so single-face shots count most; then assign greedily,
    one character per voice and one voice per character, best evidence first."""
    spans = visible_spans(tracks, characters, interval)
    speech: dict[str, float] = defaultdict(float)
    for t in turns:
        speech[t.speaker] += t.duration

    # Elementary pieces of time in which the set of visible characters is constant.
    cuts = sorted({0.0, *(x for ss in spans.values() for s in ss for x in (s.start, s.end))})
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        mid = (a + b) / 2
        visible = [cid for cid, ss in spans.items() if any(s.start <= mid < s.end for s in ss)]
        if visible:
            pieces.append((Segment(a, b), visible))

    score: dict[tuple[str, str], float] = defaultdict(float)
    raw: dict[tuple[str, str], float] = defaultdict(float)
    for turn in turns:
        seg = Segment(turn.start, turn.end)
        for piece, visible in pieces:
            ov = _overlap(seg, piece)
            if ov <= 0:
                continue
            for cid in visible:
                score[(turn.speaker, cid)] += ov / len(visible)
                raw[(turn.speaker, cid)] += ov

    # Equal shares are settled by the amount of evidence: a longer voice wins the face.
    ranked = sorted(((v / speech[spk], raw[(spk, cid)], spk, cid) for (spk, cid), v in score.items()
                     if speech[spk] > 0), key=lambda r: (-r[0], -r[1], r[2], r[3]))
    links: dict[str, SpeakerLink] = {}
    taken: set[str] = set()
    for share, _, spk, cid in ranked:
        if spk in links or cid in taken or share < params.min_score:
            continue
        links[spk] = SpeakerLink(spk, cid, round(share, 4), round(speech[spk], 3), round(raw[(spk, cid)], 3))
        taken.add(cid)
    for spk in sorted(speech):
        if spk not in links:
            links[spk] = SpeakerLink(spk, None, 0.0, round(speech[spk], 3), 0.0)
    return [links[s] for s in sorted(links)]


@stage_task("align")
def align_task(turns_path: Path | None, tracks_path: Path, characters_path: Path, *, out: Path,
               interval: float, params: AlignParams) -> None:
    turns = read_turns(turns_path) if turns_path is not None else []
    write_links(out, link_speakers(turns, read_tracks(tracks_path), read_characters(characters_path), interval, params))
