"""Head and person tracks joined to the characters whose faces they hold, and screen time by box kind.

In: one video's tracks (all kinds) and its characters (face tracks only: identity comes from faces). Out: for each
character the head/person tracks linked to it, and its on-screen spans split by the kind of box that shows it.

A person track links to the character whose face boxes lie in its upper part (tasks/video/detect/head_boxes.face_in_person) on
the most of their common frames; a head track to the character whose face centres lie inside it, else to the
character of the person track it tops. Tracks never cross a shot cut (tasks/video/track.py), so a link holds within
one shot: the character stays on screen while their face is hidden there (turned away, back of the head).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

from tasks.video.detect.head_boxes import face_in_person
from tasks.core.records import Box, Character, Segment, Track

# Screen time goes to the first of these kinds that shows the character at that moment.
KIND_ORDER = ("face", "head", "person")


def _inside(inner: Box, outer: Box) -> bool:
    cx, cy = (inner.x1 + inner.x2) / 2, (inner.y1 + inner.y2) / 2
    return outer.x1 <= cx <= outer.x2 and outer.y1 <= cy <= outer.y2


def _vote(track: Track, boxes_on: dict[int, list[tuple[Box, str]]], holds) -> str | None:
    votes: Counter[str] = Counter()
    for b in track.boxes:
        for other, cid in boxes_on.get(b.frame, []):
            if holds(other, b):
                votes[cid] += 1
    if not votes:
        return None
    # Most frames first; ties to the smaller id, so the same input always links the same way.
    return min(votes, key=lambda cid: (-votes[cid], cid))


def linked_tracks(tracks: Sequence[Track], characters: Sequence[Character]) -> dict[str, list[int]]:
    """character_id -> its head and person track ids (characters without any are left out)."""
    by_id = {t.track_id: t for t in tracks}
    faces_on: dict[int, list[tuple[Box, str]]] = defaultdict(list)
    for c in characters:
        for tid in c.track_ids:
            track = by_id.get(tid)
            if track is not None and track.label == "face":
                for b in track.boxes:
                    faces_on[b.frame].append((b, c.character_id))
    link: dict[int, str] = {}
    for t in tracks:
        if t.label == "person":
            cid = _vote(t, faces_on, face_in_person)
            if cid is not None:
                link[t.track_id] = cid
    persons_on: dict[int, list[tuple[Box, str]]] = defaultdict(list)
    for tid, cid in link.items():
        for b in by_id[tid].boxes:
            persons_on[b.frame].append((b, cid))
    for t in tracks:
        if t.label == "head":
            cid = _vote(t, faces_on, _inside) or _vote(t, persons_on, lambda person, head: _inside(head, person))
            if cid is not None:
                link[t.track_id] = cid
    out: dict[str, list[int]] = defaultdict(list)
    for tid, cid in sorted(link.items()):
        out[cid].append(tid)
    return dict(out)


def subtract(segments: Sequence[Segment], covered: Sequence[Segment]) -> list[Segment]:
    """The parts of `segments` outside every `covered` segment (both sorted, each disjoint)."""
    out = []
    for s in segments:
        start = s.start
        for c in covered:
            if c.end <= start or c.start >= s.end:
                continue
            if c.start > start:
                out.append(Segment(start, c.start))
            start = max(start, c.end)
        if start < s.end:
            out.append(Segment(start, s.end))
    return out
