"""End-to-end pipeline benchmark: castline on an hour of 720p video, measured against its targets.

Speed (RTF, per stage) next to the ffmpeg decode floor, warm re-runs, peak memory vs duration, the cost of
adding an episode to a library, and a peer stack of standard models on the same frames and audio.

One command:  python bench/pipeline_benchmark.py  [--hours 1] [--short-minutes 10] [--peer-minutes 5]
              [--library-n 4] [--episode-seconds 60] [--add-pairs 3] [--profile]
It builds (in a temp folder, never committed) 1280x720 25 fps H.264 + AAC stereo videos: each sample clip of
data/sample/ is scaled, padded and encoded once, then the clips are looped in a shuffled order per loop
with ffmpeg's concat demuxer and `-c copy` (fast) into the 1-hour file, the 10-minute file and the peer's
prefix (the first --peer-minutes of the same stream), and --library-n + 1 short episodes (other shuffles).
Every measured system runs in a fresh subprocess; its peak RSS is the largest single process of its tree
(os.wait4 rusage, which covers the reaped ffmpeg and Prefect-server children) and, next to it, the whole
tree's RSS summed (psutil, sampled every 0.5 s); the memory targets are judged on the larger of the two.

- decode floor: tasks/video/demux.py's own frame reader (`iter_frames`: select 1 frame/s, scale to max_side 960,
  raw RGB pipe) over the whole file, then its audio extraction to 16 kHz mono WAV; no JPEG, no model.
- castline: `python -m flows run LIB --workspace WS` (the `castline run` CLI, offline defaults) on a
  library folder holding only the file: cold (fresh workspace), then warm (same workspace). Each run starts
  its own temporary Prefect API (flows/temporary_server.py) unless PREFECT_API_URL is set. Stage times are castline's own (the run summary's
  `stage_seconds`), by branch: a video's audio branch runs beside its video branch, so their sum over the
  video's time is the branch overlap; the process tree's CPU time over its wall time is how many cores were
  busy on average (wait4's rusage, children included).
- library: N episodes cold, then one new episode added and the library re-run, against a library of only
  that episode (fresh workspace); the median ratio of --add-pairs such pairs, alternated, each from the same
  starting state.
- peer: on the prefix, frames decoded the same way (1 frame/s, max_side 960); ultralytics YOLO11n
  (`yolo11n.yaml`, random init) at imgsz 640 on every frame; CLIP ViT-B/32's image tower (transformers,
  random init, CLIPImageProcessor's 224 px preprocessing, batches of 32) on castline's own face boxes of
  those frames (from the cold 1-hour run's detect stage, since random YOLO boxes mean nothing); the audio
  extracted as castline does, then pyannote.audio's architecture as bench/diarization_benchmark.py runs
  it (its `child_pyannote`: segmentation over the input, embeddings timed on a sample of pairs and
  extrapolated). Peer RTF = those compute seconds (imports and model building excluded) / prefix seconds,
  which favours the peer: castline's RTF is its whole process, Prefect and imports included. Speed does
  not depend on weights, except YOLO's box count after NMS (reported). The peer's torch threads are
  all the cores, as castline gives a library's only video (flows/library.py): the same CPU budget.
- --profile: one more cold castline run on the 10-minute file under py-spy (all threads: castline's
  stages run in Prefect worker threads, which pyinstrument does not sample), written to
  bench/out/profile_<short-minutes>min.txt (collapsed stacks) and summarised as the top functions by own
  time and by total time (functions of tasks/).

Prints the targets next to the measured values and writes bench/out/pipeline_benchmark.json (each run's
output in bench/out/pipeline_logs/).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.core.offline import configure  # noqa: E402

configure()

SAMPLES = ["montage_dev00.mp4", "montage_dev01.mp4", "montage_trn07.mp4", "montage_trn08.mp4",
           "hamilton.mp4", "megamind.avi"]
WIDTH, HEIGHT, FPS = 1280, 720, 25
CLIP_BATCH = 32
GB = 1e9
# The speed issue's acceptance (#16) and the voices issue's end-to-end RTF (#17).
TARGETS = {"rtf": 0.17, "floor_ratio": 4.0, "warm_share": 0.03, "rss_gb": 3.0, "rss_growth": 1.3, "peer_speedup": 12.0,
           "add_ratio": 1.1}


# --- input -----------------------------------------------------------------------------------------

def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return float(out)


def encode_clips(tmp: Path) -> list[tuple[Path, float]]:
    """Each sample clip as 1280x720 25 fps H.264 + AAC 48 kHz stereo (same parameters, so the concat
    demuxer can join them without re-encoding), cut to a whole number of frames, audio padded to match."""
    vf = (f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=decrease,"
          f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={FPS}")
    clips = []
    for name in SAMPLES:
        src = REPO / "data" / "sample" / name
        seconds = int(duration(src) * FPS) / FPS
        out = tmp / f"{src.stem}_720p.mp4"
        ffmpeg("-i", str(src), "-vf", vf, "-af", "aresample=48000,apad", "-t", f"{seconds:.2f}",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "250", "-pix_fmt", "yuv420p",
               "-c:a", "aac", "-ac", "2", "-b:a", "128k", str(out))
        clips.append((out, seconds))
    return clips


def concat(clips: list[tuple[Path, float]], seconds: float, out: Path, seed: int) -> Path:
    """`seconds` of the clips looped, shuffled per loop, stream-copied (no re-encode)."""
    rng = random.Random(seed)
    order: list[Path] = []
    while sum(d for _, d in clips) * (len(order) // len(clips)) < seconds + 60:
        loop = [p for p, _ in clips]
        rng.shuffle(loop)
        order += loop
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in order))
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-t", f"{seconds:.3f}", "-c", "copy", str(out))
    return out


def episodes(clips: list[tuple[Path, float]], n: int, seconds: float, tmp: Path) -> list[Path]:
    """`n` episodes of other shuffles, each with different content (else castline would reuse one's cache)."""
    from tasks.core.workspace import file_digest

    found: dict[str, Path] = {}
    for seed in range(100, 100 + 20 * n):
        path = concat(clips, seconds, tmp / f"episode{len(found):02d}.mp4", seed)
        found.setdefault(file_digest(path), path)
        if len(found) == n:
            return list(found.values())
    raise SystemExit(f"could not make {n} different {seconds:g} s episodes from the sample clips")


def build_inputs(tmp: Path, args: argparse.Namespace) -> dict:
    clips = encode_clips(tmp)
    files = {"long": concat(clips, args.hours * 3600, tmp / "long.mp4", seed=0),
             "short": concat(clips, args.short_minutes * 60, tmp / "short.mp4", seed=0),
             "prefix": concat(clips, args.peer_minutes * 60, tmp / "prefix.mp4", seed=0)}
    return {"files": files, "episodes": episodes(clips, args.library_n + 1, args.episode_seconds, tmp)}


def library(folder: Path, *videos: Path) -> Path:
    """A library folder holding (hard links to) exactly these videos."""
    folder.mkdir(parents=True, exist_ok=True)
    for v in videos:
        if not (folder / v.name).exists():
            os.link(v, folder / v.name)
    return folder


# --- children --------------------------------------------------------------------------------------

def child_decode(video: Path, result: Path) -> None:
    """The decode floor: castline's frame sampling and audio extraction, nothing else."""
    from tasks.core.config import DemuxParams
    from tasks.video.demux import extract_audio, iter_frames, probe

    params = DemuxParams()
    info = probe(video)
    t0 = time.perf_counter()
    frames = sum(1 for _ in iter_frames(info, params))
    t1 = time.perf_counter()
    extract_audio(info, result.with_suffix(".wav"), params.sample_rate)
    t2 = time.perf_counter()
    result.with_suffix(".wav").unlink()
    result.write_text(json.dumps({"frames": frames, "frames_s": t1 - t0, "audio_s": t2 - t1,
                                  "compute_s": t2 - t0}))


def clip_tower():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, patch_size=32, image_size=224, projection_dim=512)
    return CLIPImageProcessor(), CLIPVisionModelWithProjection(config).eval()


def face_crops(boxes_json: Path) -> dict[int, list[tuple[int, int, int, int]]]:
    """castline's face boxes per frame index, as integer pixel rectangles."""
    crops = defaultdict(list)
    for b in json.loads(boxes_json.read_text())["boxes"]:
        crops[b["frame"]].append((int(b["x1"]), int(b["y1"]), int(b["x2"]), int(b["y2"])))
    return crops


def child_peer(video: Path, boxes_json: Path, result: Path, pairs: int) -> None:
    import numpy as np
    import torch
    from ultralytics import YOLO

    from bench.diarization_benchmark import child_pyannote
    from tasks.core.config import DemuxParams
    from tasks.video.demux import extract_audio, iter_frames, probe

    threads = os.cpu_count() or 1  # what castline gives a lone video (flows/library.py)
    torch.manual_seed(0)
    params = DemuxParams()
    info = probe(video)
    yolo = YOLO("yolo11n.yaml")
    yolo.predict(np.zeros((HEIGHT, WIDTH, 3), np.uint8), imgsz=640, verbose=False)  # builds the predictor
    torch.set_num_threads(threads)  # after ultralytics' predictor, which sets cpu_count - 1
    processor, clip = clip_tower()
    boxes = face_crops(boxes_json)
    spent = Counter()
    counts = Counter()
    batch: list = []

    def embed_batch() -> None:
        t = time.perf_counter()
        with torch.inference_mode():
            clip(pixel_values=processor(images=batch, return_tensors="pt")["pixel_values"])
        spent["clip_s"] += time.perf_counter() - t
        batch.clear()

    t = time.perf_counter()
    for i, (_, rgb) in enumerate(iter_frames(info, params)):
        spent["decode_frames_s"] += time.perf_counter() - t
        t = time.perf_counter()
        counts["yolo_boxes"] += len(yolo.predict(np.ascontiguousarray(rgb[..., ::-1]), imgsz=640, verbose=False)[0])
        spent["yolo_s"] += time.perf_counter() - t
        counts["frames"] += 1
        for x1, y1, x2, y2 in boxes.get(i, []):
            crop = rgb[max(0, y1):y2, max(0, x1):x2]
            if crop.size:
                batch.append(crop)
                counts["crops"] += 1
        if len(batch) >= CLIP_BATCH:
            embed_batch()
        t = time.perf_counter()
    if batch:
        embed_batch()
    wav = result.with_suffix(".wav")
    t = time.perf_counter()
    extract_audio(info, wav, params.sample_rate)
    spent["decode_audio_s"] = time.perf_counter() - t
    child_pyannote(wav, result.with_suffix(".pyannote.json"), 0, pairs)
    pyannote = json.loads(result.with_suffix(".pyannote.json").read_text())
    spent["pyannote_s"] = pyannote["compute_s"]
    result.write_text(json.dumps({**spent, **counts, "compute_s": sum(spent.values()), "threads": threads,
                                  "pyannote": pyannote}))


# --- measuring -------------------------------------------------------------------------------------

def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def measure(cmd: list[str], log: Path) -> dict:
    """Run `cmd` (output to `log`); wall seconds, its start time, and peak RSS: largest process of the
    tree (wait4) and the tree's sum (sampled)."""
    peak = [0]
    done = threading.Event()
    started = time.time()
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
    wall = time.perf_counter() - t0
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited with {code}; see {log}")
    # wait4's CPU times cover the process and every child it reaped (ffmpeg).
    return {"wall_s": wall, "started": started, "peak_rss_gb": usage.ru_maxrss * 1024 / GB,
            "tree_rss_gb": peak[0] / GB, "cpu_s": usage.ru_utime + usage.ru_stime}


def run_child(kind: str, *args: Path | str, log: Path, flags: tuple[str, ...] = ()) -> dict:
    """A fresh `python this_file [FLAGS] --child KIND ...`; its measurements plus the JSON it wrote (last arg)."""
    m = measure([sys.executable, str(Path(__file__).resolve()), *flags, "--child", kind, *map(str, args)], log)
    return {**m, "detail": json.loads(Path(args[-1]).read_text())}


BRANCHES = {"video": ["frames", "detect", "track", "embed", "cluster"], "audio": ["audio", "diarize"],
            "both": ["probe", "align"]}


def stage_table(ws: Path, wall: float) -> dict:
    """Seconds per stage, summed over the run's videos, as castline recorded them (WORKSPACE/library/last_run.json),
    grouped by branch. The two branches of a video run at the same time (flows/video.py), so stage times
    add up to more than the video's own time: `overlap` is their sum over it (1 = one after the other).
    A library runs two videos at a time (`parallel`), so there the video flows' sum can exceed the wall time."""
    videos = json.loads((ws / "library" / "last_run.json").read_text())["videos"]
    stages: Counter = Counter()
    for video in videos:
        stages.update(video["stage_seconds"])
    flow = sum(video["seconds"] for video in videos)
    branches = {b: sum(stages.get(k, 0.0) for k in names) for b, names in BRANCHES.items()}
    return {"stages": dict(stages), "branches": branches, "videos": len(videos), "video_flow_s": flow,
            "outside_video_s": wall - flow, "overlap": sum(branches.values()) / max(flow, 1e-9)}


def castline(lib: Path, ws: Path, log: Path, seconds: float) -> dict:
    m = measure([sys.executable, "-m", "flows", "run", str(lib), "--workspace", str(ws)], log)
    return {**m, "video_s": seconds, "rtf": m["wall_s"] / seconds, "stages": stage_table(ws, m["wall_s"])}


# --- profile ---------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def hot_spots(raw: Path, rate: int, top: int = 12) -> dict:
    """Top functions of py-spy's collapsed stacks by own time (leaf) and by total time (in the stack),
    the latter for functions of tasks/ (tasks/core/stage.py's wrappers left out); seconds of thread time."""
    own, total = Counter(), Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack.strip():  # a thread without Python frames
            continue
        frames = [_FRAME.sub(r"\1 (\2)", f) for f in stack.split(";")]
        own[frames[-1]] += int(n)
        for f in set(frames):
            total[f] += int(n)
    sampled = sum(own.values())

    def rows(counter: Counter, keep=lambda f: True) -> list[dict]:
        return [{"function": f, "s": n / rate, "share": n / sampled}
                for f, n in counter.most_common() if keep(f)][:top]

    stages = re.compile(r"\(tasks/(?!core/stage\.py)")
    return {"sampled_s": sampled / rate, "own": rows(own),
            "total_tasks": rows(total, lambda f: bool(stages.search(f)))}


def profile(lib: Path, ws: Path, out: Path, log: Path, rate: int = 20) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    measure([spy, "record", "--format", "raw", "--rate", str(rate), "--output", str(out), "--",
             sys.executable, "-m", "flows", "run", str(lib), "--workspace", str(ws)], log)
    return hot_spots(out, rate)


# --- report ----------------------------------------------------------------------------------------

def peak_gb(run: dict) -> float:
    return max(run["peak_rss_gb"], run["tree_rss_gb"])


def verdicts(r: dict) -> list[tuple[str, str, str, bool]]:
    cold, warm, short, floor = r["cold"], r["warm"], r["cold_short"], r["decode_floor"]
    hours = cold["video_s"] / 3600
    growth = peak_gb(cold) / peak_gb(short)
    return [
        (f"end-to-end RTF, {hours:.3g} h cold", f"<= {TARGETS['rtf']}", f"{cold['rtf']:.3f} "
         f"({cold['wall_s'] / 60 / hours:.1f} min per hour)", cold["rtf"] <= TARGETS["rtf"]),
        ("end-to-end / decode floor", f"<= {TARGETS['floor_ratio']:g}x", f"{r['floor_ratio']:.2f}x "
         f"(floor RTF {floor['rtf']:.3f})", r["floor_ratio"] <= TARGETS["floor_ratio"]),
        ("warm re-run / cold", f"<= {TARGETS['warm_share']:.0%}", f"{warm['wall_s'] / cold['wall_s']:.1%} "
         f"({warm['wall_s']:.1f} s)", warm["wall_s"] / cold["wall_s"] <= TARGETS["warm_share"]),
        (f"peak RSS, {hours:.3g} h cold", f"<= {TARGETS['rss_gb']:g} GB", f"{peak_gb(cold):.2f} GB",
         peak_gb(cold) <= TARGETS["rss_gb"]),
        (f"peak RSS, {hours:.3g} h / {short['video_s'] / 60:.3g} min", f"<= {TARGETS['rss_growth']:g}x",
         f"{growth:.2f}x ({peak_gb(short):.2f} -> {peak_gb(cold):.2f} GB)", growth <= TARGETS["rss_growth"]),
        ("speed vs the peer stack", f">= {TARGETS['peer_speedup']:g}x", f"{r['peer']['rtf'] / cold['rtf']:.2f}x",
         r["peer"]["rtf"] / cold["rtf"] >= TARGETS["peer_speedup"]),
        ("adding an episode / that episode alone", f"<= {TARGETS['add_ratio']:g}x", f"{r['library']['add_ratio']:.2f}x",
         r["library"]["add_ratio"] <= TARGETS["add_ratio"]),
    ]


def print_report(r: dict) -> None:
    print("\n== targets")
    rows = verdicts(r)
    w = max(len(k) for k, *_ in rows)
    for what, target, measured, ok in rows:
        print(f"{what:{w}s}  {target:>9s}  {measured:40s} {'PASS' if ok else 'FAIL'}")

    print("\n== runs (fresh process each; RSS: largest process / whole tree)")
    print(f"{'run':34s} {'video':>8s} {'wall':>9s} {'RTF':>7s} {'RSS proc':>9s} {'RSS tree':>9s}")
    for name, run in r["runs"].items():
        print(f"{name:34s} {run['video_s'] / 60:6.1f} m {run['wall_s']:8.1f}s {run['wall_s'] / run['video_s']:7.3f} "
              f"{run['peak_rss_gb']:6.2f} GB {run['tree_rss_gb']:6.2f} GB")

    cold = r["cold"]
    t = cold["stages"]
    print(f"\n== castline stages, {cold['video_s'] / 3600:.3g} h cold (castline's own stage times; the audio branch "
          "runs beside the video branch)")
    for branch, names in BRANCHES.items():
        for name in names:
            sec = t["stages"].get(name, 0.0)
            print(f"{branch:6s} {name:10s} {sec:8.1f} s  RTF {sec / cold['video_s']:.4f}")
        print(f"{branch:6s} {'(branch)':10s} {t['branches'][branch]:8.1f} s")
    print(f"video flow {t['video_flow_s']:8.1f} s; stage time / video flow time {t['overlap']:.2f} (branch overlap)")
    print(f"outside the video flow (imports, Prefect, hashing, library steps) {t['outside_video_s']:.1f} s")
    print(f"CPU time {cold['cpu_s']:.0f} s over {cold['wall_s']:.0f} s wall: {cold['cpu_s'] / cold['wall_s']:.2f} of "
          f"{os.cpu_count()} cores busy on average")

    lib = r["library"]
    print(f"\n== library: adding one {lib['episode_s']:g} s episode to {lib['n']}")
    print(f"library of {lib['n']}, cold{'':23s} {lib['cold_n']['wall_s']:8.1f} s")
    for i, p in enumerate(lib["pairs"], 1):
        print(f"pair {i}: re-run with it added {p['add_s']:6.1f} s, that episode alone cold {p['one_s']:6.1f} s,"
              f" {p['ratio']:.2f}x")
    print(f"added / alone, median of {len(lib['pairs'])} pairs{'':4s} {lib['add_ratio']:8.2f}x")

    p = r["peer"]
    d = p["detail"]
    print(f"\n== peer stack on the first {p['video_s'] / 60:.3g} min ({d['frames']} frames, {d['crops']} face crops "
          f"from castline's detector, YOLO kept {d['yolo_boxes']} boxes; torch threads {d['threads']}, "
          "as castline's per video)")
    for key in ("decode_frames_s", "yolo_s", "clip_s", "decode_audio_s", "pyannote_s"):
        print(f"{key[:-2]:20s} {d[key]:8.1f} s  RTF {d[key] / p['video_s']:.4f}")
    print(f"{'peer total':20s} {d['compute_s']:8.1f} s  RTF {p['rtf']:.4f} "
          f"(-> {p['rtf'] * cold['video_s'] / 60:.0f} min for {cold['video_s'] / 3600:.3g} h)")
    print(f"castline end-to-end vs peer: castline is {p['rtf'] / cold['rtf']:.2f}x the peer's speed")

    if "profile" in r:
        prof = r["profile"]
        print(f"\n== py-spy, {r['cold_short']['video_s'] / 60:.3g} min cold ({prof['sampled_s']:.0f} s of thread time)")
        for title, key in (("own time", "own"), ("total time, functions of tasks/", "total_tasks")):
            print(f"-- {title}")
            for row in prof[key]:
                print(f"{row['s']:8.1f} s {row['share']:6.1%}  {row['function']}")


def git_state() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain", "--", "tasks", "flows")}


def run_all(tmp: Path, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    inputs = build_inputs(tmp, args)
    files, episodes = inputs["files"], inputs["episodes"]
    seconds = {k: duration(p) for k, p in files.items()}
    print(f"built inputs in {time.perf_counter() - t0:.0f} s: " + ", ".join(
        f"{k} {seconds[k] / 60:.1f} min {p.stat().st_size / 2**20:.0f} MiB" for k, p in files.items()), flush=True)
    logs = args.out.parent / "pipeline_logs"
    logs.mkdir(parents=True, exist_ok=True)
    r: dict = {"inputs": {k: {"seconds": seconds[k], "bytes": p.stat().st_size} for k, p in files.items()},
               "runs": {}}

    def step(name: str, fn, *a, **kw) -> dict:
        print(f"running {name} ...", flush=True)
        r["runs"][name] = fn(*a, **kw)
        print(f"  {r['runs'][name]['wall_s']:.1f} s", flush=True)
        return r["runs"][name]

    long_lib = library(tmp / "lib_long", files["long"])
    floor = step("decode floor (frames + audio)", run_child, "decode", files["long"], tmp / "decode.json",
                 log=logs / "decode.log")
    floor.update(video_s=seconds["long"], rtf=floor["detail"]["compute_s"] / seconds["long"])
    r["decode_floor"] = floor
    r["cold"] = step("castline cold", castline, long_lib, tmp / "ws_long", logs / "cold.log", seconds["long"])
    r["warm"] = step("castline warm", castline, long_lib, tmp / "ws_long", logs / "warm.log", seconds["long"])
    r["floor_ratio"] = r["cold"]["wall_s"] / floor["detail"]["compute_s"]
    r["cold_short"] = step("castline cold, short", castline, library(tmp / "lib_short", files["short"]),
                           tmp / "ws_short", logs / "cold_short.log", seconds["short"])

    ep_s = duration(episodes[-1])
    lib_n = library(tmp / "lib_n", *episodes[:-1])
    lib_r = {"n": args.library_n, "episode_s": args.episode_seconds,
             "cold_n": step(f"library of {args.library_n}, cold", castline, lib_n, tmp / "ws_n", logs / "lib_n.log",
                            args.library_n * args.episode_seconds)}
    library(lib_n, episodes[-1])
    lib_1 = library(tmp / "lib_1", episodes[-1])
    # Both runs take ~25-30 s and one of them swings by +-2 s from run to run, more than the 10 % the target
    # allows: the ratio is the median of --add-pairs pairs, each pair back to back, the added run first in
    # even pairs and second in odd ones, each from the same starting state (the library of N's workspace
    # restored from a copy, the lone episode's workspace empty).
    shutil.copytree(tmp / "ws_n", tmp / "ws_n_cold", symlinks=True)
    pairs = []
    for i in range(args.add_pairs):
        for which in (("add", "one") if i % 2 == 0 else ("one", "add")):
            if which == "add":
                shutil.rmtree(tmp / "ws_n")
                shutil.copytree(tmp / "ws_n_cold", tmp / "ws_n", symlinks=True)
                add = step(f"library + 1 episode ({i + 1})", castline, lib_n, tmp / "ws_n", logs / f"lib_add{i}.log", ep_s)
            else:
                shutil.rmtree(tmp / "ws_1", ignore_errors=True)
                one = step(f"library of the 1 added episode ({i + 1})", castline, lib_1, tmp / "ws_1",
                           logs / f"lib_1_{i}.log", ep_s)
        pairs.append({"add_s": add["wall_s"], "one_s": one["wall_s"], "ratio": add["wall_s"] / one["wall_s"]})
    lib_r["pairs"] = pairs
    lib_r["add_ratio"] = statistics.median(p["ratio"] for p in pairs)
    r["library"] = lib_r

    boxes = next((tmp / "ws_long" / "cache" / "detect").glob("*/*.json"))
    peer = step("peer stack (prefix)", run_child, "peer", files["prefix"], boxes, tmp / "peer.json",
                log=logs / "peer.log", flags=("--peer-pairs", str(args.peer_pairs)))
    peer.update(video_s=seconds["prefix"], rtf=peer["detail"]["compute_s"] / seconds["prefix"])
    r["peer"] = peer
    if args.profile:
        print("profiling castline cold, short (py-spy) ...", flush=True)
        r["profile"] = profile(library(tmp / "lib_short", files["short"]), tmp / "ws_profile",
                               args.out.parent / f"profile_{args.short_minutes:g}min.txt", logs / "profile.log")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0, help="long input")
    ap.add_argument("--short-minutes", type=float, default=10.0, help="short input (memory vs duration)")
    ap.add_argument("--peer-minutes", type=float, default=5.0, help="prefix the peer stack runs on")
    ap.add_argument("--library-n", type=int, default=4, help="episodes in the library one is added to")
    ap.add_argument("--episode-seconds", type=float, default=60.0)
    ap.add_argument("--add-pairs", type=int, default=3, help="pairs (episode added, episode alone) whose median ratio is judged")
    ap.add_argument("--peer-pairs", type=int, default=64, help="(chunk, speaker) pairs pyannote's embedding times")
    ap.add_argument("--profile", action="store_true", help="also profile castline on the short input (py-spy)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "pipeline_benchmark.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *paths = args.child
        if kind == "decode":
            child_decode(*map(Path, paths))
        else:
            child_peer(Path(paths[0]), Path(paths[1]), Path(paths[2]), args.peer_pairs)
        return

    with tempfile.TemporaryDirectory(prefix="castline-pipeline-bench-") as tmp:
        results = run_all(Path(tmp), args)
    results.update(args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "child"},
                   targets=TARGETS, cpu_count=os.cpu_count(), git=git_state(),
                   prefect=os.environ.get("PREFECT_API_URL") or "temporary API per run",
                   verdicts=[{"what": w, "target": t, "measured": m, "pass": ok} for w, t, m, ok in verdicts(results)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print_report(results)
    print(f"CPU: {os.cpu_count()} cores; Prefect: {results['prefect']}; castline at {results['git']['commit'][:10]}"
          + (" (tasks/flows modified)" if results["git"]["dirty"] else ""))
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
