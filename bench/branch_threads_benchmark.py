"""How a video's two branches should share torch's threads: MTCNN on frames beside the diarizer on audio.

flows/video.py runs a video's audio branch (diarize) in a thread beside its video branch (detect, embed).
torch's thread count is process-wide, so this measures, each in a fresh process on the same inputs: the two
one after the other with every core's thread, both at once with every thread each, and both at once with
the threads split between them (what flows/video.py does).

One command:  python bench/branch_threads_benchmark.py [--frames 60] [--audio-seconds 300]
Inputs (built in a temp folder): frames sampled at 1 frame/s from the sample clips, scaled to 960 px as
castline's demux does, and their audio looped to --audio-seconds at 16 kHz mono.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODES = {"one after the other": "sequential", "at once, all threads each": "shared", "at once, threads split": "split"}


def build_inputs(tmp: Path, n_frames: int, seconds: int) -> tuple[Path, Path]:
    clips = sorted((REPO / "data" / "sample").glob("montage_*.mp4"))
    frames = tmp / "frames"
    frames.mkdir()
    per_clip = -(-n_frames // len(clips))
    for i, clip in enumerate(clips):
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip), "-vf", "fps=1,scale=960:-2",
                        "-frames:v", str(per_clip), str(frames / f"{i}_%03d.jpg")], check=True)
    wav = tmp / "audio.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-stream_loop", "-1", "-i", str(clips[0]), "-t",
                    str(seconds), "-ac", "1", "-ar", "16000", str(wav)], check=True)
    return frames, wav


def child(mode: str, frames_dir: Path, wav: Path, n_frames: int) -> dict:
    import torch

    from tasks.core.config import DiarizeParams
    from tasks.video.detect import MTCNNDetector, read_rgb
    from tasks.video.diarize import voice_models
    from tasks.video.diarize.offline import diarize

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    detector = MTCNNDetector()
    detector._load()
    voice_models.segmentation_model(), voice_models.campplus()
    images = [read_rgb(p) for p in sorted(frames_dir.glob("*.jpg"))[:n_frames]]
    seconds: dict[str, float] = {}

    def video() -> None:
        t = time.perf_counter()
        for image in images:
            detector.detect(image)
        seconds["video"] = time.perf_counter() - t

    def audio() -> None:
        t = time.perf_counter()
        diarize(wav, DiarizeParams())
        seconds["audio"] = time.perf_counter() - t

    started = time.perf_counter()
    if mode == "sequential":
        video()
        audio()
    else:
        if mode == "split":
            torch.set_num_threads(max(1, cores // 2))
        other = threading.Thread(target=audio)
        other.start()
        video()
        other.join()
    return {**seconds, "total": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--audio-seconds", type=int, default=300)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, frames_dir, wav, out = args.child
        Path(out).write_text(json.dumps(child(mode, Path(frames_dir), Path(wav), args.frames)))
        return
    with tempfile.TemporaryDirectory(prefix="castline-branch-bench-") as tmp:
        frames_dir, wav = build_inputs(Path(tmp), args.frames, args.audio_seconds)
        rows = {}
        for label, mode in MODES.items():
            out = Path(tmp) / f"{mode}.json"
            subprocess.run([sys.executable, __file__, "--frames", str(args.frames), "--child", mode,
                            str(frames_dir), str(wav), str(out)], check=True, capture_output=True)
            rows[label] = json.loads(out.read_text())
    print(f"MTCNN on {args.frames} frames beside the diarizer on {args.audio_seconds} s, {os.cpu_count()} cores:")
    base = rows["one after the other"]["total"]
    for label, r in rows.items():
        print(f"{label:28s} detect {r['video']:6.1f} s  diarize {r['audio']:6.1f} s  both done {r['total']:6.1f} s "
              f"({r['total'] / base:.2f}x)")


if __name__ == "__main__":
    main()
