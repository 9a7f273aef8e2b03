"""Long-form diarization benchmark: speed (real-time factor) and peak memory of castline's default diarizer
(segmentation-3.0 + CAM++, chunked) on 10 minutes, 1 hour and 2 hours of speech, next to pyannote.audio's
pipeline architecture (1 s segmentation step, WeSpeaker embeddings of every chunk and local speaker) on the
10 minutes.

One command:  python bench/diarization_benchmark.py  [--hours 2] [--short-minutes 10] [--threads N]
It builds (in a temp folder, never committed) a 16 kHz mono WAV by looping the montage episodes' audio
(ffmpeg from data/sample/montage_*.mp4) and pyannote.audio's sample.wav in a shuffled order with a gain
per loop (-6..+3 dB), plus the matching reference RTTM; runs each system in a fresh subprocess so that
its peak RSS (os.wait4 rusage of that child) is its own; prints a table and writes
bench/out/diarization_benchmark.json.

The pyannote peer: pyannote.audio 4's own model classes with random-init weights (speed does not depend
on the weights) — PyanNet segmentation run with pyannote.audio.Inference (sliding 10 s windows, 1 s
step, as its pipeline does) over the whole input, and WeSpeakerResNet34 embeddings of (chunk, local
speaker) pairs, which the pipeline computes for every chunk and each of its 3 local speakers. The
embeddings are timed on a sample of pairs and extrapolated to all of them (a full run takes ~20x longer
than the rest of the benchmark); the pipeline's clustering and reconstruction are not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {"PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "YOLO_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RATE = 16000
MONTAGE = ["montage_dev00", "montage_dev01", "montage_trn07", "montage_trn08"]


# --- input -----------------------------------------------------------------------------------------

def _clips(tmp: Path) -> list[tuple[str, Path, Path]]:
    import pyannote.audio

    clips = []
    for uri in MONTAGE:
        wav = tmp / f"{uri}.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(REPO / "data" / "sample" / f"{uri}.mp4"),
                        "-vn", "-ac", "1", "-ar", str(RATE), "-c:a", "pcm_s16le", str(wav)], check=True)
        clips.append((uri, wav, REPO / "data" / "ground_truth" / "montage" / f"{uri}.rttm"))
    folder = Path(pyannote.audio.__file__).parent / "sample"
    clips.append(("sample", folder / "sample.wav", folder / "sample.rttm"))
    return clips


def build_input(tmp: Path, seconds: float, seed: int = 0) -> tuple[Path, list[tuple[float, float, str]]]:
    """A `seconds`-long WAV of the clips looped (shuffled per loop, one gain per loop), written block by
    block, and its reference turns (start, end, speaker), speakers named as in the clips' RTTMs."""
    import numpy as np
    import soundfile as sf

    from tasks.core.formats import read_rttm

    clips = _clips(tmp)
    audio = {uri: sf.read(str(wav), dtype="float32")[0] for uri, wav, _ in clips}
    ref = {uri: next(iter(read_rttm(rttm).values())) for uri, _, rttm in clips}
    rng = random.Random(seed)
    path = tmp / f"long_{int(seconds)}s.wav"
    turns: list[tuple[float, float, str]] = []
    total = int(seconds * RATE)
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        while written < total:
            gain = 10 ** (rng.uniform(-6, 3) / 20)
            order = [uri for uri, _, _ in clips]
            rng.shuffle(order)
            for uri in order:
                x = np.clip(audio[uri] * gain, -1, 1)[:total - written]
                offset = written / RATE
                out.write(x)
                turns += [(offset + t.start, min(offset + t.end, offset + len(x) / RATE), t.speaker)
                          for t in ref[uri] if offset + t.start < offset + len(x) / RATE]
                written += len(x)
                if written >= total:
                    break
    return path, turns


def cut(path: Path, seconds: float, out: Path) -> Path:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        data = f.read(int(seconds * RATE), dtype="int16")
    sf.write(str(out), data, RATE, subtype="PCM_16")
    return out


# --- children --------------------------------------------------------------------------------------

def child_ours(wav: Path, result: Path, threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from tasks.core.config import DiarizeParams
    from tasks.video.diarize import diarize
    from tasks.video.diarize.voice_models import campplus, segmentation_model

    t0 = time.perf_counter()
    segmentation_model(), campplus()
    t1 = time.perf_counter()
    out = diarize(wav, DiarizeParams())
    t2 = time.perf_counter()
    json.dump({"load_s": t1 - t0, "diarize_s": t2 - t1, "compute_s": t2 - t1, "speakers": len(out.centroids),
               "threads": torch.get_num_threads(),
               "turns": [(t.start, t.end, t.speaker) for t in out.turns]}, result.open("w"))


def child_pyannote(wav: Path, result: Path, threads: int, sample_pairs: int) -> None:
    import numpy as np
    import soundfile as sf
    import torch
    from pyannote.audio import Inference
    from tasks.video.diarize.pyannote import segmentation_specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    seg = PyanNet()
    seg.specifications = segmentation_specifications()
    seg.build()
    seg.eval()
    emb = WeSpeakerResNet34().eval()
    inference = Inference(seg, window="sliding", duration=10.0, step=1.0, batch_size=32, skip_aggregation=True)
    samples, rate = sf.read(str(wav), dtype="float32")
    waveform = torch.from_numpy(samples)[None]
    t1 = time.perf_counter()
    segmentations = inference({"waveform": waveform, "sample_rate": rate})
    t2 = time.perf_counter()
    n_chunks, n_frames, n_local = segmentations.data.shape[0], segmentations.data.shape[1], 3
    # Embeddings of (chunk, local speaker) pairs, batched as the pipeline does (embedding_batch_size 32),
    # with a frame mask per pair as weights; timed on `sample_pairs` pairs.
    step = int(1.0 * rate)
    n = int(10.0 * rate)
    pairs = [(c, k) for c in range(n_chunks) for k in range(n_local)][:sample_pairs]
    batch = 32
    with torch.inference_mode():
        emb(torch.zeros(1, 1, n))  # first call allocates
        t3 = time.perf_counter()
        for i in range(0, len(pairs), batch):
            chunk = pairs[i:i + batch]
            w = torch.stack([torch.nn.functional.pad(waveform[:, c * step:c * step + n],
                                                     (0, max(0, n - waveform[:, c * step:c * step + n].shape[1])))
                             for c, _ in chunk])
            masks = torch.from_numpy(np.stack([(segmentations.data[c, :, 0] > 0) * 1.0 for c, _ in chunk])).float()
            emb(w, weights=masks)
        t4 = time.perf_counter()
    per_pair = (t4 - t3) / len(pairs)
    total_pairs = n_chunks * n_local
    json.dump({"load_s": t1 - t0, "segmentation_s": t2 - t1, "embedding_sampled_s": t4 - t3,
               "embedding_pairs_sampled": len(pairs), "embedding_pairs_total": total_pairs,
               "embedding_s_extrapolated": per_pair * total_pairs,
               "compute_s": (t2 - t1) + per_pair * total_pairs, "chunks": n_chunks, "frames": n_frames,
               "threads": torch.get_num_threads()}, result.open("w"))


def run_child(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a fresh `python this_file --child ...` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


# --- scoring ---------------------------------------------------------------------------------------

def der(ref: list[tuple[float, float, str]], hyp: list, until: float) -> tuple[float, int]:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    r, h = Annotation(), Annotation()
    for i, (a, b, s) in enumerate(ref):
        if a < until:
            r[Segment(a, min(b, until)), i] = s
    for i, (a, b, s) in enumerate(hyp):
        h[Segment(a, b), i] = s
    return abs(DiarizationErrorRate(collar=0.25, skip_overlap=False)(r, h)), len(r.labels())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--short-minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads in each child [default: torch's]")
    ap.add_argument("--peer-pairs", type=int, default=64, help="(chunk, speaker) pairs the pyannote peer embeds")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "diarization_benchmark.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, wav, result = args.child[:3]
        if kind == "ours":
            child_ours(Path(wav), Path(result), args.threads)
        else:
            child_pyannote(Path(wav), Path(result), args.threads, args.peer_pairs)
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="castline-diar-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        long_wav, ref = build_input(tmp, args.hours * 3600)
        short_wav = cut(long_wav, args.short_minutes * 60, tmp / "short.wav")
        print(f"built {args.hours:g} h input in {time.perf_counter() - t0:.0f} s "
              f"({long_wav.stat().st_size / 2**20:.0f} MiB)", flush=True)
        hour_wav = cut(long_wav, 3600, tmp / "hour.wav") if args.hours > 1 else None
        runs = [("castline", "ours", short_wav, args.short_minutes * 60)]
        if hour_wav:
            runs.append(("castline", "ours", hour_wav, 3600))
        runs.append(("castline", "ours", long_wav, args.hours * 3600))
        if not args.skip_peer:
            runs.append(("pyannote-arch (random init)", "pyannote", short_wav, args.short_minutes * 60))
        for name, kind, wav, seconds in runs:
            result = tmp / f"{kind}_{int(seconds)}.json"
            print(f"running {name} on {seconds / 60:.0f} min ...", flush=True)
            wall, rss = run_child([kind, str(wav), str(result)] + (["--threads", str(args.threads)] if args.threads else []))
            info = json.loads(result.read_text())
            row = {"system": name, "audio_s": seconds, "wall_s": wall, "compute_s": info["compute_s"],
                   "rtf": info["compute_s"] / seconds, "rtf_process": wall / seconds, "peak_rss_mib": rss / 2**20}
            if kind == "ours":
                turns = info.pop("turns")
                row["der"], row["ref_speakers"] = der(ref, turns, seconds)
                row["speakers"] = info["speakers"]
            row["detail"] = info
            rows.append(row)

    print()
    print(f"{'system':28s} {'audio':>7s} {'compute':>8s} {'RTF':>6s} {'RTF(proc)':>9s} {'peak RSS':>9s} "
          f"{'DER':>6s} {'spk':>7s}")
    for r in rows:
        spk = f"{r['speakers']}/{r['ref_speakers']}" if "speakers" in r else ""
        d = f"{r['der']:6.1%}" if "der" in r else ""
        print(f"{r['system']:28s} {r['audio_s'] / 60:5.0f} m {r['compute_s']:7.1f}s {r['rtf']:6.3f} "
              f"{r['rtf_process']:9.3f} {r['peak_rss_mib']:6.0f} MiB {d:>6s} {spk:>7s}")
    ours = [r for r in rows if r["system"] == "castline"]
    print(f"castline peak RSS, {args.hours:g} h / {args.short_minutes:g} min: "
          f"{ours[-1]['peak_rss_mib'] / ours[0]['peak_rss_mib']:.2f}x (target <= 1.2x)")
    hour = [r for r in ours if r["audio_s"] == 3600]
    if hour:
        print(f"castline RTF on 1 h: {hour[0]['rtf']:.4f} (target <= 0.03)")
    print("RTF: diarization seconds per audio second (models loaded, file read; pyannote: segmentation + "
          "extrapolated embeddings); RTF(proc): the whole child process incl. imports; "
          f"CPU: {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"hours": args.hours, "short_minutes": args.short_minutes,
                                    "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
