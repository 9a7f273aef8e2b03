"""Benchmark: what detecting every k-th frame (detect.stride) costs in boxes, and saves in detector calls.

In: a library folder (default data/sample). Each video's frames are sampled as `castline run` samples them, then
detected twice side by side in this process (one worker, the configured detector): every frame (the reference)
and with each stride. Out: a table per stride, with the share of frames the detector saw, its wall time, and the
boxes' recall and precision against the reference (same kind, IoU >= 0.5, per frame); JSON with --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MATCH_IOU = 0.5


def matched(reference, boxes) -> int:
    """Boxes of `reference` with a box of the same frame and kind at IoU >= MATCH_IOU (one-to-one, greedy)."""
    from tasks.core.records import iou

    by_frame: dict[tuple[int, str], list] = {}
    for b in boxes:
        by_frame.setdefault((b.frame, b.label), []).append(b)
    hits = 0
    for r in reference:
        pool = by_frame.get((r.frame, r.label), [])
        best = max(pool, key=lambda b: iou(r.xyxy, b.xyxy), default=None)
        if best is not None and iou(r.xyxy, best.xyxy) >= MATCH_IOU:
            pool.remove(best)
            hits += 1
    return hits


class CountingDetector:
    """The detector, counting the frames it is shown."""

    def __init__(self, detector):
        self.detector, self.name, self.calls = detector, detector.name, 0

    def detect(self, image):
        self.calls += 1
        return self.detector.detect(image)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, default=REPO / "data" / "sample")
    ap.add_argument("--strides", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from tasks.core.config import DemuxParams, DetectParams
    from tasks.video.demux import probe, sample_frames
    from tasks.video.detect import make_detector, read_rgb
    from tasks.video.detect import stride as stride_rule
    from tasks.video.detect.schedule import detect_video

    videos = sorted(p for p in args.library.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"))
    rows: dict[int, dict] = {k: {"frames": 0, "detected": 0, "seconds": 0.0, "ref": 0, "boxes": 0, "recall_hits": 0,
                                 "precision_hits": 0} for k in [1, *args.strides]}
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            store = Path(tmp) / video.stem
            store.mkdir()
            frames = sample_frames(probe(video), store, DemuxParams(fps=args.fps))
            reference = None
            for k in [1, *args.strides]:
                params = DetectParams(backend="mtcnn", stride=k)
                counting = CountingDetector(make_detector(params))
                counting.detector.detect(read_rgb(store / frames[0].file))  # loaded before the clock starts
                t0 = time.perf_counter()
                boxes = detect_video(store, frames, params, detector=counting)
                row = rows[k]
                row["seconds"] += time.perf_counter() - t0
                row["frames"] += len(frames)
                row["detected"] += counting.calls
                if reference is None:
                    reference = boxes
                row["ref"] += len(reference)
                row["boxes"] += len(boxes)
                row["recall_hits"] += matched(reference, boxes)
                row["precision_hits"] += matched(boxes, reference)
            print(f"{video.name}: {len(frames)} frames, {len(reference)} boxes", file=sys.stderr)
    print(f"\n{len(videos)} videos of {args.library} at {args.fps:g} fps, MTCNN, one process; pairing IoU >= "
          f"{stride_rule.MIN_IOU}, cut distance {stride_rule.CUT_DISTANCE}; match IoU >= {MATCH_IOU}")
    print(f"{'stride':>6} {'detected':>12} {'seconds':>8} {'speed-up':>8} {'recall':>7} {'precision':>9}")
    base = rows[1]["seconds"]
    for k, r in rows.items():
        r["recall"] = r["recall_hits"] / max(1, r["ref"])
        r["precision"] = r["precision_hits"] / max(1, r["boxes"])
        print(f"{k:>6} {r['detected']:>5}/{r['frames']:<6} {r['seconds']:>8.1f} {base / r['seconds']:>7.2f}x "
              f"{r['recall']:>7.1%} {r['precision']:>9.1%}")
    if args.out:
        args.out.write_text(json.dumps({"fps": args.fps, "library": str(args.library), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
