"""Score castline's diarizer against reference RTTMs: DER and JER per file, pooled over the montage episodes.

In: the montage episodes (data/sample/*.mp4 + data/ground_truth/montage/*.rttm) and pyannote.audio's
bundled sample.wav/.rttm. Out: a table on stdout (DER with a 0.25 s collar, overlap scored; JER; the share of
turn edges on whole seconds; RTF). Usage: python scripts/eval_diarization.py [--diarize.threshold 0.55] ...
The montage episodes are what the defaults were tuned on; sample.wav is a held-out check.

--shifts 0,0.3,1.1,... (or 0:2.2:0.2, from 0 to 2.2 s in 0.2 s steps): score each file again with that many
seconds of silence put before it (its reference moved by as much), and print each shift's DERs and their mean
and worst. The diarizer's 10 s windows and 2 s parts lie on a grid from the file's start, so one alignment of a
30 s file can be lucky or unlucky: a new recording is any alignment, and a setting should be judged on the mean
over many (measured 2026-12-07: the defaults' pooled 28.6 % at shift 0 was 32.4 % on average over 0, 0.2 … 2.2 s,
and 41.2 % at the worst).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
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


def shifted(wav: Path, seconds: float, folder: Path) -> Path:
    """`wav` with `seconds` of silence before it (the same file at shift 0)."""
    import numpy as np
    import soundfile as sf

    if seconds <= 0:
        return wav
    audio, rate = sf.read(str(wav), dtype="int16")
    out = folder / f"{wav.stem}+{seconds:g}s.wav"
    sf.write(str(out), np.concatenate([np.zeros(int(round(seconds * rate)), np.int16), audio]), rate, subtype="PCM_16")
    return out


def score(files: dict[str, tuple[Path, Path]], params: DiarizeParams, shift: float, folder: Path) -> dict:
    """Per file: DER (with its parts), JER, speakers, whole-second edges and RTF; and the montage pooled DER."""
    pooled = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    rows, audio_seconds, compute_seconds = {}, 0.0, 0.0
    for uri, (wav, rttm) in files.items():
        wav = shifted(wav, shift, folder)
        t0 = time.perf_counter()
        turns = diarize(wav, params).turns
        elapsed = time.perf_counter() - t0
        audio_seconds += audio_duration(wav)
        compute_seconds += elapsed
        ref = to_annotation(uri, [replace(t, start=t.start + shift, end=t.end + shift)
                                  for t in next(iter(read_rttm(rttm).values()))])
        hyp = to_annotation(uri, turns)
        c = DiarizationErrorRate(collar=0.25, skip_overlap=False)(ref, hyp, detailed=True)
        if uri in MONTAGE:
            pooled(ref, hyp)
        edges = [x for t in turns for x in (t.start, t.end) if x > 0]
        total = c["total"] or 1.0
        rows[uri] = {"der": c["diarization error rate"], "jer": JaccardErrorRate(collar=0.25)(ref, hyp),
                     "miss": c["missed detection"] / total, "fa": c["false alarm"] / total,
                     "conf": c["confusion"] / total, "speakers": f"{len(hyp.labels()):>3d}/{len(ref.labels()):<3d}",
                     "whole": sum(abs(x - round(x)) < 1e-3 for x in edges) / len(edges) if edges else 0.0,
                     "rtf": elapsed / audio_duration(wav)}
    return {"files": rows, "pooled": abs(pooled), "rtf": compute_seconds / audio_seconds}


def print_detail(result: dict) -> None:
    print(f"{'file':15s} {'DER':>6s} {'JER':>6s} {'miss':>6s} {'fa':>6s} {'conf':>6s} {'spk':>7s} "
          f"{'whole-s':>7s} {'RTF':>6s}")
    for uri, r in result["files"].items():
        print(f"{uri:15s} {r['der']:6.1%} {r['jer']:6.1%} {r['miss']:6.1%} {r['fa']:6.1%} {r['conf']:6.1%} "
              f"{r['speakers']} {r['whole']:7.1%} {r['rtf']:6.3f}")
    print(f"{'montage pooled':15s} {result['pooled']:6.1%} {'':>44s} {result['rtf']:6.3f}")
    print("whole-s: share of turn edges on whole seconds; RTF: seconds of diarization per second of audio "
          "(the first file's includes loading the models)")


def print_shifts(results: dict[float, dict]) -> None:
    uris = list(next(iter(results.values()))["files"])
    print(f"{'shift':>7s} " + " ".join(f"{u.removeprefix('montage_'):>7s}" for u in uris) + f" {'pooled':>7s}")
    for shift, result in results.items():
        print(f"{shift:6.3f}s " + " ".join(f"{result['files'][u]['der']:7.1%}" for u in uris)
              + f" {result['pooled']:7.1%}")
    for name, pick in (("mean", lambda xs: sum(xs) / len(xs)), ("worst", max)):
        print(f"{name:>7s} " + " ".join(f"{pick([r['files'][u]['der'] for r in results.values()]):7.1%}" for u in uris)
              + f" {pick([r['pooled'] for r in results.values()]):7.1%}")
    print("DER with that many seconds of silence before each file; pooled: the montage episodes only")


def _seconds(text: str) -> list[float]:
    """`0,0.3,1.1` as listed, or `0:2.2:0.2` from the first to the second (included) in steps of the third."""
    try:
        if ":" in text:
            first, last, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise argparse.ArgumentTypeError("the step of first:last:step must be above 0")
            # Rounded to the millisecond, so 0.2-second steps do not read 0.6000000000000001 s.
            shifts = [round(first + i * step, 3) for i in range(int(round((last - first) / step, 6)) + 1)]
        else:
            shifts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds separated by commas, or first:last:step, not {text!r}") \
            from None
    if not shifts:
        raise argparse.ArgumentTypeError(f"no shift from {text!r}: first:last:step needs last at or above first")
    if any(x < 0 for x in shifts):
        raise argparse.ArgumentTypeError("shifts are seconds of silence: none below 0")
    return shifts


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
    ap.add_argument("--shifts", type=_seconds, default=[0.0],
                    help="seconds of silence put before every file, each scored on its own: comma-separated, or "
                         "first:last:step (0:2.2:0.2 is the 12 shifts the calibration table uses) [0]")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = DiarizeParams(**{k: v for k, v in vars(args).items() if k not in ("threads", "shifts") and v is not None})
    print(f"diarize: {params.model_dump()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {uri: (extract_wav(REPO / "data" / "sample" / f"{uri}.mp4", Path(tmp) / f"{uri}.wav"),
                       REPO / "data" / "ground_truth" / "montage" / f"{uri}.rttm") for uri in MONTAGE}
        files["sample"] = pyannote_sample()
        results = {shift: score(files, params, shift, Path(tmp)) for shift in args.shifts}
    if len(results) == 1:
        print_detail(next(iter(results.values())))
    else:
        print_shifts(results)


if __name__ == "__main__":
    main()
