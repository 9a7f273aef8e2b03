"""Benchmark: can a YOLO trained on the teacher's labels replace it, faster, on unseen videos? (`--help` for flags)

In: the sample library (data/sample/*.mp4, *.avi). Out: bench/out/{dataset,workspace,result.json} and a side-by-side
table on the held-out videos' frames. Backends: MTCNN/dlib/Haar teacher, ultralytics YOLO, all on CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Before ultralytics is imported: it reads these once, and nothing may wait on the network.
for key, value in {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(REPO / ".castline-config" / "Ultralytics"),
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(key, value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, default=REPO / "data" / "sample")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--fps", type=float, default=2.0, help="frames sampled per second for the dataset")
    ap.add_argument("--max-side", type=int, default=640, help="long side of the dataset frames")
    ap.add_argument("--teacher", default="mtcnn", choices=["mtcnn", "dlib-hog", "haar"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--checkpoint", type=Path, default=None, help="local .pt to fine-tune instead of training from scratch")
    ap.add_argument("--model-yaml", default="yolov8n.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-dataset", action="store_true", help="train on OUT/dataset if it is already there")
    args = ap.parse_args()

    from tasks.tools.dataset import DatasetParams, build_dataset, check_dataset
    from tasks.core.formats import read_json, write_json
    from tasks.tools.train_detector import TrainParams, train_detector

    videos = sorted(p for p in args.library.iterdir() if p.suffix.lower() in (".mp4", ".avi"))
    dataset = args.out / "dataset"
    started = time.perf_counter()
    if not (args.reuse_dataset and dataset.exists()):
        build_dataset(videos, dataset, DatasetParams(fps=args.fps, max_side=args.max_side, teacher=args.teacher,
                                                     seed=args.seed),
                      progress=lambda done, total: print(f"labelled {done}/{total} videos", file=sys.stderr))
    check_dataset(dataset)
    summary = read_json(dataset / "dataset.json")
    dataset_seconds = time.perf_counter() - started
    entry = train_detector(dataset, args.out / "workspace",
                           TrainParams(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed,
                                       checkpoint=args.checkpoint, model_yaml=args.model_yaml))
    total_seconds = time.perf_counter() - started
    m, t = entry["metrics"], entry["train"]
    held = m["held_out_split"]
    rows = [
        ("library", f"{len(videos)} videos: " + ", ".join(f"{s}={summary['videos'][s]}" for s in ("train", "val", "test"))),
        ("labelled frames (kept / sampled)", f"{summary['frames_kept']} / {summary['frames_sampled']} "
                                             f"(train {summary['images']['train']}, val {summary['images']['val']}, "
                                             f"test {summary['images']['test']}); teacher boxes {sum(summary['boxes'].values())}"),
        ("training", f"{entry['base']} from {'checkpoint' if args.checkpoint else 'scratch'}, imgsz {entry['imgsz']}, "
                     f"{t['epochs_run']}/{t['epochs']} epochs in {t['seconds'] / 60:.1f} min "
                     f"(estimated {t['estimate_seconds'] / 60:.1f} min)"),
        (f"held-out frames ({held})", f"{m['held_out_frames']} frames, {m['teacher_boxes']} teacher boxes"),
        (f"{entry['teacher']} (teacher) ms/frame", f"{m['teacher_ms_per_frame']:.1f}"),
        ("fine-tuned YOLO ms/frame", f"{m['yolo_ms_per_frame']:.1f}"),
        ("speed ratio (teacher / YOLO)", f"{m['speedup']:.1f}x  (target >= 5x)"),
        ("YOLO recall vs teacher (IoU>=0.5)", f"{m['recall_vs_teacher']:.3f}  (target >= 0.9)"),
        ("YOLO precision vs teacher", f"{m['precision_vs_teacher']:.3f}"),
        ("YOLO mAP50 / mAP50-95 (teacher labels)", f"{m['map50']:.3f} / {m['map50_95']:.3f}"),
        ("wall time (dataset + training + eval)", f"{dataset_seconds / 60:.1f} + {(total_seconds - dataset_seconds) / 60:.1f} min"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    write_json(args.out / "result.json", {"entry": entry, "dataset": summary, "seconds": total_seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
