"""Score castline's diarizer against reference RTTMs: DER and JER per file, pooled over the montage episodes.

In: the montage episodes (data/sample/*.mp4 + data/ground_truth/montage/*.rttm) and pyannote.audio's
bundled sample.wav/.rttm. Out: a table on stdout (DER with a 0.25 s collar, overlap scored; JER; the share of
turn edges on whole seconds; RTF). Usage: python scripts/eval_diarization.py [--diarize.threshold 0.55] ...
The montage episodes are what the defaults were tuned on; sample.wav is a held-out check.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

for _k, _v in {"PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from pyannote.core import Annotation, Segment as PSegment  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate  # noqa: E402

from tasks.core.audio_stream import audio_duration  # noqa: E402
from tasks.core.config import DiarizeParams  # noqa: E402
from tasks.video.diarize import diarize  # noqa: E402
from tasks.core.formats import read_rttm  # noqa: E402

MONTAGE = ["montage_dev00", "montage_dev01", "montage_trn07", "montage_trn08"]


def pyannote_sample() -> tuple[Path, Path]:
    import pyannote.audio

    folder = Path(pyannote.audio.__file__).parent / "sample"
    return folder / "sample.wav", folder / "sample.rttm"


def extract_wav(video: Path, wav: Path) -> Path:
    """The same extraction the demux stage does: 16 kHz mono 16-bit PCM."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-vn", "-ac", "1",
                    "-ar", "16000", "-c:a", "pcm_s16le", str(wav)], check=True)
    return wav


def to_annotation(uri: str, turns) -> Annotation:
    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        ann[PSegment(t.start, t.end), i] = t.speaker
    return ann


def evaluate(files: dict[str, tuple[Path, Path]], params: DiarizeParams) -> None:
    pooled = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    print(f"{'file':15s} {'DER':>6s} {'JER':>6s} {'miss':>6s} {'fa':>6s} {'conf':>6s} {'spk':>7s} "
          f"{'whole-s':>7s} {'RTF':>6s}")
    audio_seconds = compute_seconds = 0.0
    for uri, (wav, rttm) in files.items():
        t0 = time.perf_counter()
        turns = diarize(wav, params).turns
        elapsed = time.perf_counter() - t0
        duration = audio_duration(wav)
        audio_seconds += duration
        compute_seconds += elapsed
        ref = to_annotation(uri, next(iter(read_rttm(rttm).values())))
        hyp = to_annotation(uri, turns)
        c = DiarizationErrorRate(collar=0.25, skip_overlap=False)(ref, hyp, detailed=True)
        if uri in MONTAGE:
            pooled(ref, hyp)
        edges = [x for t in turns for x in (t.start, t.end) if x > 0]
        whole = sum(abs(x - round(x)) < 1e-3 for x in edges) / len(edges) if edges else 0.0
        total = c["total"] or 1.0
        print(f"{uri:15s} {c['diarization error rate']:6.1%} {JaccardErrorRate(collar=0.25)(ref, hyp):6.1%} "
              f"{c['missed detection'] / total:6.1%} {c['false alarm'] / total:6.1%} {c['confusion'] / total:6.1%} "
              f"{len(hyp.labels()):>3d}/{len(ref.labels()):<3d} {whole:7.1%} {elapsed / duration:6.3f}")
    print(f"{'montage pooled':15s} {abs(pooled):6.1%} {'':>44s} {compute_seconds / audio_seconds:6.3f}")
    print("whole-s: share of turn edges on whole seconds; RTF: seconds of diarization per second of audio "
          "(the first file's includes loading the models)")


def _yes_no(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return text.lower() in ("true", "1", "yes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, field in DiarizeParams.model_fields.items():
        if name not in ("backend", "model"):
            types = [t for t in get_args(field.annotation) if t is not type(None)] or [field.annotation]  # X | None: X
            kind = {bool: _yes_no, int: int}.get(types[0], float)
            # argparse %-formats help strings; descriptions say "10 %"
            ap.add_argument(f"--diarize.{name}", dest=name, type=kind, default=None,
                            help=field.description.replace("%", "%%"))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the real-time factor depends on it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = DiarizeParams(**{k: v for k, v in vars(args).items() if k != "threads" and v is not None})
    print(f"diarize: {params.model_dump()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {uri: (extract_wav(REPO / "data" / "sample" / f"{uri}.mp4", Path(tmp) / f"{uri}.wav"),
                       REPO / "data" / "ground_truth" / "montage" / f"{uri}.rttm") for uri in MONTAGE}
        files["sample"] = pyannote_sample()
        evaluate(files, params)


if __name__ == "__main__":
    main()
