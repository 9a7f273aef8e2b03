"""Benchmark: dlib's own face descriptor against its ResNet in torch (tasks/video/embed/dlib_resnet.py).

In: a sample video (default montage_dev00) and its ground-truth face boxes. Its frames are sampled as `castline
run` samples them and each face is landmarked and cut into its 150x150 chip once, by DlibFaceEmbedder; then the
same chips go through dlib's compute_face_descriptor (batched, as dlib batches) and through the torch network,
side by side in this process, each after one warm-up pass. Out: ms per face of each, their ratio, and the
largest difference between the two descriptors of a face (per component and as a distance).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def chips_of(video: Path, truth: Path, embedder) -> np.ndarray:
    """The chips of every ground-truth face on the sampled frames (the truth is at 10 fps, frames at 1 fps)."""
    from tasks.core import formats
    from tasks.core.config import DemuxParams
    from tasks.video.demux import FRAMES_INDEX, probe, sample_frames
    from tasks.video.detect import read_rgb

    truth_frames = json.loads(truth.read_text())["frames"]
    with tempfile.TemporaryDirectory() as tmp:
        sample_frames(probe(video), Path(tmp), DemuxParams())
        chips = []
        for frame in formats.read_frames(Path(tmp) / FRAMES_INDEX):
            if 10 * frame.index + 5 >= len(truth_frames):
                break
            boxes = [v["face_box"] for v in truth_frames[10 * frame.index + 5]["visible"] if v.get("face_box")]
            chips.append(embedder.chips(read_rgb(Path(tmp) / frame.file), boxes))
    return np.concatenate(chips)


def timed(describe, chips: np.ndarray) -> tuple[np.ndarray, float]:
    """(descriptors, ms per face) of `describe` over `chips`, after a warm-up on a few."""
    describe(chips[:4])
    t0 = time.perf_counter()
    out = describe(chips)
    return out, 1000 * (time.perf_counter() - t0) / len(chips)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=REPO / "data" / "sample" / "montage_dev00.mp4")
    ap.add_argument("--truth", type=Path, default=REPO / "data" / "ground_truth" / "montage" / "montage_dev00.json")
    args = ap.parse_args()

    import dlib
    import torch

    from tasks.core import offline
    from tasks.core.config import EmbedParams
    from tasks.video.embed import BATCH, DlibFaceEmbedder

    offline.configure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models' pkg_resources warning
        import face_recognition_models as frm

    embedder = DlibFaceEmbedder(margin=EmbedParams().margin)
    chips = chips_of(args.video, args.truth, embedder)
    reference = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def dlib_describe(batch: np.ndarray) -> np.ndarray:
        return np.array([np.asarray(v) for v in reference.compute_face_descriptor(list(batch))], dtype=np.float32)

    def torch_describe(size: int):
        return lambda batch: np.concatenate([embedder.describe(batch[k:k + size])
                                             for k in range(0, len(batch), size)])

    theirs, dlib_ms = timed(dlib_describe, chips)
    ours, torch_ms = timed(torch_describe(BATCH), chips)
    _, frame_ms = timed(torch_describe(2), chips)  # about one frame's faces a pass
    print(f"{len(chips)} faces of {args.video.name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{next(embedder._load()[1].parameters()).device}")
    print(f"dlib compute_face_descriptor   {dlib_ms:7.1f} ms/face")
    print(f"torch, batches of {BATCH:<3}         {torch_ms:7.1f} ms/face   {dlib_ms / torch_ms:5.1f}x faster")
    print(f"torch, batches of 2            {frame_ms:7.1f} ms/face   {dlib_ms / frame_ms:5.1f}x faster")
    print(f"max |torch - dlib| {np.abs(ours - theirs).max():.2e}, "
          f"max distance {np.linalg.norm(ours - theirs, axis=1).max():.2e} (same person: < 0.6)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
