"""Library size benchmark: what adding one episode costs a library of N videos, for several N.

One command:  python bench/library_size_benchmark.py [--copies 5 50]
For each COPIES it builds (in a temp folder) a library of that many folders, each holding hard links to the
sample clips of data/sample/ (6 clips: 30 and 300 videos by default) and its gallery, and runs castline on it
once, untimed: the copies share their stage results by content, so this costs only each video's flow. Then it
adds one new episode (hamilton.mp4 remuxed with another title tag: new content, the same pictures and sound)
and times that run (`python -m flows run LIB --workspace WS`, as bench/pipeline_benchmark.py runs castline).
The episode's own flow time comes from the run summary; the rest is what the library's size costs: finding
every other video finished, and the library steps (identities, timelines, character sheets, speaker table,
reports, artifacts). A tool run over a growing series pays that rest on every run that adds an episode.
Results: a table on stdout and bench/out/library_size.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline_benchmark import REPO, git_state, library, measure

SAMPLE = REPO / "data" / "sample"
NEW_EPISODE = "new/episode.mp4"


def build(root: Path, copies: int) -> Path:
    clips = sorted(p for p in SAMPLE.iterdir() if p.is_file())
    for i in range(copies):
        library(root / f"s{i:03d}", *clips)
    shutil.copytree(SAMPLE / "gallery", root / "gallery", symlinks=False)
    return root


def add_episode(root: Path) -> Path:
    out = root / NEW_EPISODE
    out.parent.mkdir(exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(SAMPLE / "hamilton.mp4"), "-c", "copy",
                    "-metadata", "title=castline library size benchmark", str(out)], check=True)
    return out


def one_size(tmp: Path, copies: int, logs: Path) -> dict:
    lib, ws = build(tmp / f"lib{copies}", copies), tmp / f"ws{copies}"
    cmd = [sys.executable, "-m", "flows", "run", str(lib), "--workspace", str(ws)]
    print(f"library of {copies * 6} videos: first run (untimed) ...", flush=True)
    first = measure(cmd, logs / f"first{copies}.log")
    add_episode(lib)
    print(f"  {first['wall_s']:.0f} s; adding one episode ...", flush=True)
    add = measure(cmd, logs / f"add{copies}.log")
    summary = json.loads((ws / "library" / "last_run.json").read_text())
    episode = next(v["seconds"] for v in summary["videos"] if v["video"] == NEW_EPISODE)
    row = {"videos": len(summary["videos"]), "run_s": add["wall_s"], "episode_s": episode,
           "rest_s": add["wall_s"] - episode, "peak_rss_gb": add["peak_rss_gb"]}
    print(f"  {row['run_s']:.1f} s, of which the episode {episode:.1f} s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, nargs="+", default=[5, 50], help="copies of the 6 sample clips per library")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "library_size.json")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logs = args.out.parent / "library_size_logs"
    logs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="castline-libsize-") as tmp:
        rows = [one_size(Path(tmp), c, logs) for c in args.copies]
    print(f"\n{'videos':>7} {'run s':>7} {'episode s':>10} {'rest s':>7} {'rest / 100 videos':>18}")
    for r in rows:
        print(f"{r['videos']:>7} {r['run_s']:>7.1f} {r['episode_s']:>10.1f} {r['rest_s']:>7.1f} "
              f"{100 * r['rest_s'] / r['videos']:>18.2f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"rest grows {(b['rest_s'] - a['rest_s']) / (b['videos'] - a['videos']) * 100:.2f} s per 100 videos "
              f"({a['videos']} -> {b['videos']})")
    args.out.write_text(json.dumps({"git": git_state(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
