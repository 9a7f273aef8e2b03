"""Which sampled frames the detector must see, and the boxes of the frames it skips.

In: how many frames a video has, which of them begin a shot, and the boxes found on the frames detected so far.
Out: the keyframes (every `stride`-th frame, each shot's first, the last), and for each stretch between two
keyframes either boxes interpolated from its ends or the verdict that its frames must be detected too.

A stretch is interpolated only when nothing happens in it as far as its ends can tell: no shot cut, and every
box at one end pairs one-to-one with a box of the same kind at the other (IoU >= MIN_IOU). A face that
appears, leaves or moves fast breaks the pairing, and the stretch is detected frame by frame, so a skip never
loses a face that either end shows; what it can miss is a face seen only between the ends.
bench/detect_stride_benchmark.py measures that against detecting every frame.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from tasks.core.records import Box, iou

# Boxes 1-3 sampled frames apart (1-3 s at the default fps) of one still-framed face overlap by 0.5-0.9; a head
# turn or a walk across the frame falls below 0.3, and then the stretch is detected instead.
MIN_IOU = 0.3
# Histogram distance (tasks/video/track.py histogram_distances) that ends an interpolated stretch. Stricter than
# track.shot_threshold's 0.3: a missed cut here would carry boxes into another shot, a false one only costs the
# stretch's detections.
CUT_DISTANCE = 0.2


def keyframes(n: int, stride: int, shot_starts: Sequence[int]) -> list[int]:
    """Positions (0..n-1) detected first: every `stride`-th of each shot counted from its first, and the last."""
    if n == 0:
        return []
    starts = sorted({0, *(s for s in shot_starts if 0 <= s < n)})
    ends = starts[1:] + [n]
    keys = {n - 1}
    for start, end in zip(starts, ends):
        keys.update(range(start, end, max(1, stride)))
        keys.add(end - 1)  # the shot's last frame: a stretch never spans a cut
    return sorted(keys)


def pair_ends(first: Sequence[Box], last: Sequence[Box], min_iou: float = MIN_IOU) -> list[tuple[Box, Box]] | None:
    """Each box of `first` with its box of `last`, or None when they do not pair one-to-one by kind and overlap."""
    if len(first) != len(last):
        return None
    pairs, used = [], set()
    for box in first:
        candidates = [j for j, other in enumerate(last) if j not in used and other.label == box.label]
        best = max(candidates, key=lambda j: iou(box.xyxy, last[j].xyxy), default=None)
        if best is None or iou(box.xyxy, last[best].xyxy) < min_iou:
            return None
        used.add(best)
        pairs.append((box, last[best]))
    return pairs


def interpolate(pairs: Sequence[tuple[Box, Box]], frame: int, t: float) -> list[Box]:
    """The boxes of a skipped frame between two paired ends, linear in time, with the weaker end's score."""
    out = []
    for a, b in pairs:
        w = 0.0 if b.t == a.t else min(1.0, max(0.0, (t - a.t) / (b.t - a.t)))
        coords = {k: round(getattr(a, k) * (1 - w) + getattr(b, k) * w, 2) for k in ("x1", "y1", "x2", "y2")}
        out.append(replace(a, frame=frame, t=t, score=min(a.score, b.score), interpolated=True, **coords))
    return out
