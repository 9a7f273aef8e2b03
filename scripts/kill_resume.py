#!/usr/bin/env python
"""castline kill/resume check: SIGKILL a library run at random moments, resume it, compare with a clean run.

    python scripts/kill_resume.py [--kills 10] [--seed 0] [--library DIR] [--chain K] [--control]
                                  [--json PATH] [--code worktree|REV]
                                  [--root DIR] [--keep]

1. Runs `python -m flows run LIB --workspace ROOT/ws/clean` uninterrupted once and times it (T). LIB is
   --library, else a copy of data/sample/{hamilton.mp4, megamind.avi, montage_dev00.mp4} in ROOT/library.
2. For each of N kills: a fresh workspace; the run starts in its own session (so `os.killpg` reaches
   Prefect's temporary API server too) and the whole group gets SIGKILL at a moment drawn uniformly from
   (0.05 T, 0.95 T) by a seeded RNG. Right after the kill the workspace is scanned: which stage results
   existed (cache/<stage>/…), which library outputs, how many `*.partial` files. The run is then resumed
   (run again to completion) and every file of the workspace is compared with the clean run's (rules
   below), no `*.partial` may remain, and nothing outside the workspace may have changed.
   A run that ends before its kill moment (the machine got faster) is not a kill: it is retried in a
   fresh workspace at the same fraction of its own duration (twice at most; else the check fails).
   With --chain K, one more workspace is killed up to K times in a row (each run resuming the previous
   one, each moment drawn the same way; a run that ends first ends the chain) before it is run to
   completion and compared the same way: one more check. With --control, a second uninterrupted run is
   compared the same way (one more check: the comparison rules leave out enough, and the runs are
   deterministic).
3. Prints one row per kill (moment, stage reached, results per stage, equal yes/no, differing files) and
   last `N passed, M failed`; exit status 1 when M > 0 (2 when the clean run itself fails). --json PATH
   writes everything (each kill's stage results and partial files, each difference) as JSON.

Comparison (every file under the workspace, cache included; missing or extra files are differences):
  - byte-identical passes at once;
  - otherwise, after the run-specific parts in RUN_SPECIFIC are left out: JSON and Parquet equal with
    floats within rel 1e-6, .npy within rel 1e-6, text equal; anything else must be byte-identical.
  RUN_SPECIFIC lists exactly what differs between two uninterrupted runs (measured on the default
  library): the workspace's own path, the summaries' times and durations, the summary file's name.

Isolation, so that only a kill can make a resume differ:
  - the code runs from a snapshot of tasks/ and flows/ taken at the start (`--code worktree`, default) or
    from a git revision (`--code HEAD`): edits to the checkout during the check change nothing;
  - PREFECT_HOME, TMPDIR and the working directory of the runs are folders of ROOT; PREFECT_API_URL is
    unset, so each run starts its own temporary Prefect server inside the killed process group.

`main(argv)` is what tests/test_resume.py runs (with --kills 1).
"""
from __future__ import annotations

import argparse
import compileall
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_suite import diff_snapshots, entry_state, snapshot  # noqa: E402  (scripts/ is not a package)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
DEFAULT_VIDEOS = ("hamilton.mp4", "megamind.avi", "montage_dev00.mp4")

# Per-video stages in pipeline order (flows/video.py), then the library steps (flows/library.py) with the
# file each one leaves: the furthest one present names the "stage reached" at a kill.
STAGES = ("probe", "frames", "detect", "track", "embed", "cluster", "audio", "diarize", "align")
LIBRARY_STEPS = (
    ("identities", "library/names.json"),
    ("timelines", "videos"),
    ("character outputs", "library/track_embeddings.parquet"),
    ("library timeline", "library/timeline.csv"),
    ("report", "library/report.html"),
    ("summary", "library/last_run.json"),
)

# What differs between two uninterrupted runs of the same library, and nothing else: left out of the
# comparison. (Measured: two clean runs differ only in these.)
WS_PLACEHOLDER = "<WORKSPACE>"
SUMMARY_FILES = ("library/last_run.json", "runs/*.json")
SUMMARY_RUN_FIELDS = ("finished_at", "seconds", "videos[].seconds", "videos[].stage_seconds")
REPORT_RUN_LINES = ("- wall time: ",)
# report.html's header rows of the run itself (tasks/library/html_report.py writes one per line)
HTML_RUN_LINES = ("<dt>finished</dt>", "<dt>wall time</dt>")
RUN_LINES = {"library/report.md": REPORT_RUN_LINES, "library/report.html": HTML_RUN_LINES}
RUN_SPECIFIC = {
    "every file": f"the workspace's absolute path (in JSON strings, Parquet string columns such as "
                  f"registries' video_key, report.md): replaced by {WS_PLACEHOLDER}",
    "library/last_run.json, runs/*.json": "fields " + ", ".join(SUMMARY_RUN_FIELDS),
    "runs/<UTC time>.json": "the file name (the newest summary is compared; older ones are a killed "
                            "run's that had finished its work)",
    "library/report.md": "the line starting " + repr(REPORT_RUN_LINES[0]),
    "library/report.html": "the header lines starting " + " and ".join(map(repr, HTML_RUN_LINES)),
    "*.key (library/finished.key, videos/*/faces.key, videos/*/timeline.key, videos/*/folder.key)": "the contents: hashes of what a reuse check read, the "
                                                       "workspace's own paths and registry bytes among them; "
                                                       "each key must still be there",
    "library/published.json": "the values: digests of Prefect artifacts that name the workspace's paths, and "
                              "the ids the server gave them; the same artifact keys must be there",
}
PUBLISHED_LEDGER = "library/published.json"
REL_TOL = 1e-6
ABS_TOL = 1e-9  # for values that are 0 in one run


# --- processes ----------------------------------------------------------------------------------------

@dataclass
class Env:
    root: Path
    library: Path
    code: Path
    env: dict
    cwd: Path
    tmp: Path
    logs: Path
    prefect_home: Path


def make_env(root: Path, library: Path, code: Path) -> Env:
    cwd, tmp, logs, prefect_home = (root / n for n in ("cwd", "tmp", "logs", "prefect"))
    for d in (cwd, tmp, logs, prefect_home):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=os.pathsep.join([str(code)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               PREFECT_HOME=str(prefect_home), TMPDIR=str(tmp), COLUMNS="200")
    return Env(root, library, code, env, cwd, tmp, logs, prefect_home)


def start_run(e: Env, ws: Path, log_name: str) -> subprocess.Popen:
    """`python -m flows run LIB --workspace WS` in its own session: SIGKILL to its group reaches the CLI and
    Prefect's temporary server alike."""
    log = open(e.logs / f"{log_name}.log", "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "flows", "run", str(e.library), "--workspace", str(ws)],
                                cwd=e.cwd, env=e.env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def run_to_end(e: Env, ws: Path, log_name: str, timeout: float) -> tuple[int, float]:
    t0 = time.monotonic()
    p = start_run(e, ws, log_name)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        rc = -9
    return rc, time.monotonic() - t0


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def kill_group(p: subprocess.Popen) -> list[int]:
    """SIGKILL the whole group, reap the leader, wait until no member is left; returns survivors."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    deadline = time.monotonic() + 10
    while (left := group_members(p.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# --- workspace state ----------------------------------------------------------------------------------

def stage_counts(ws: Path) -> dict[str, int]:
    """Finished results per stage: entries cache/<stage>/<video>/<key>[.ext] (files, or the frames stage's
    folders), which appear only by rename; in-progress `.…partial` entries are not counted."""
    counts = {}
    for s in STAGES:
        d = ws / "cache" / s
        counts[s] = sum(1 for p in d.glob("*/*") if not p.name.startswith(".") and not p.name.endswith(".partial")) \
            if d.is_dir() else 0
    return counts


def library_steps_present(ws: Path) -> list[str]:
    present = []
    for name, rel in LIBRARY_STEPS:
        p = ws / rel
        if p.is_file() or (p.is_dir() and any(c for c in p.iterdir() if not c.name.endswith(".partial"))):
            present.append(name)
    return present


def partials(ws: Path) -> list[str]:
    return sorted(str(p.relative_to(ws)) for p in ws.rglob("*.partial"))


@dataclass
class KillState:
    """The workspace right after a SIGKILL (nothing writes any more), or after a run that ended first."""
    planned_s: float
    moment_s: float | None  # when the group got SIGKILL; None: the run ended (after ended_s) before it
    stage_counts: dict
    library_steps: list
    partials: list
    survivors: list
    ended_s: float | None = None
    exit_code: int | None = None

    @property
    def reached(self) -> str:
        """The furthest step with a finished result: a library step, else a per-video stage, else startup."""
        if self.library_steps:
            return self.library_steps[-1]
        done = [s for s in STAGES if self.stage_counts.get(s)]
        return done[-1] if done else "startup"

    @property
    def per_stage(self) -> str:
        """Finished results per stage in STAGES order, one digit each (9 = 9 or more)."""
        return "".join(str(min(9, self.stage_counts.get(s, 0))) for s in STAGES)


def kill_at(e: Env, ws: Path, moment: float, log_name: str) -> KillState:
    t0 = time.monotonic()
    p = start_run(e, ws, log_name)
    while (left := moment - (time.monotonic() - t0)) > 0 and p.poll() is None:
        time.sleep(min(0.02, left))
    if p.poll() is not None:
        return KillState(round(moment, 2), None, stage_counts(ws), library_steps_present(ws), partials(ws), [],
                         round(time.monotonic() - t0, 2), p.returncode)
    os.killpg(p.pid, signal.SIGKILL)
    at = time.monotonic() - t0
    survivors = kill_group(p)
    return KillState(round(moment, 2), round(at, 2), stage_counts(ws), library_steps_present(ws), partials(ws),
                     survivors)


# --- writes outside the workspace ---------------------------------------------------------------------

def snapshot_roots(roots: list[Path], skip: set[Path], loose: set[Path]) -> dict[str, tuple]:
    """fault_suite's snapshot of each root, the roots themselves included, keyed by absolute path."""
    out: dict[str, tuple] = {}
    for root in (r for r in roots if r.exists()):
        out[str(root)] = entry_state(root, root in loose)
        out.update({str(root / rel): v for rel, v in snapshot(root, skip, frozenset(loose)).items()})
    return out


def outside(e: Env, ws: Path) -> dict[str, tuple]:
    """Everything a run could touch besides its workspace: the library, the check's folder (other
    workspaces, the code snapshot, the runs' working directory and TMPDIR). Left out: this workspace,
    Prefect's home (its own database) and the logs (the runs' stdout); the mtime of the workspace's parent
    folder (the run creates the workspace there) and of TMPDIR do not count, what is left in them does."""
    return snapshot_roots([e.root, e.library], skip={ws, e.prefect_home, e.logs}, loose={e.tmp, ws.parent})


# --- comparison ---------------------------------------------------------------------------------------

def _is_summary(rel: str) -> bool:
    return rel == "library/last_run.json" or (rel.startswith("runs/") and rel.endswith(".json"))


def workspace_files(ws: Path) -> dict[str, Path]:
    """Relative name -> path of every file; the newest runs/<time>.json is filed as runs/<newest>.json."""
    files = {str(p.relative_to(ws)): p for p in sorted(ws.rglob("*")) if p.is_file() and not p.name.endswith(".partial")}
    runs = sorted(k for k in files if k.startswith("runs/"))
    if runs:
        files["runs/<newest>.json"] = files.pop(runs[-1])
        for k in runs[:-1]:
            files.pop(k)  # older summaries: a killed run that had finished its work; not compared
    return files


def normalise(obj, ws: str):
    if isinstance(obj, str):
        return obj.replace(ws, WS_PLACEHOLDER)
    if isinstance(obj, dict):
        return {normalise(k, ws): normalise(v, ws) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [normalise(v, ws) for v in obj]
    return obj


def drop_run_fields(summary: dict) -> dict:
    summary = dict(summary)
    for f in SUMMARY_RUN_FIELDS:
        if f.startswith("videos[]."):
            key = f.split(".", 1)[1]
            summary["videos"] = [{k: v for k, v in video.items() if k != key} for video in summary.get("videos", [])]
        else:
            summary.pop(f, None)
    return summary


def first_difference(a, b, where: str = "") -> str | None:
    """Where two JSON-like values differ (floats within REL_TOL), or None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if a == b else f"{where or '/'}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return None if a == b else f"{where or '/'}: {a} != {b}"
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return None
        return f"{where or '/'}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where or '/'}: keys {sorted(a.keys() ^ b.keys())} in one only"
        for k in a:
            if d := first_difference(a[k], b[k], f"{where}/{k}"):
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where or '/'}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            if d := first_difference(x, y, f"{where}[{i}]"):
                return d
        return None
    return None if a == b else f"{where or '/'}: {_short(a)} != {_short(b)}"


def _short(x, n: int = 60) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 1] + "…"


def _read_parquet(path: Path, ws: str):
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return {"schema": t.schema.to_string(show_schema_metadata=True), "rows": normalise(t.to_pylist(), ws)}


def compare_file(rel: str, a: Path, a_ws: str, b: Path, b_ws: str) -> str | None:
    """None when equal under the rules above, else a short reason."""
    da, db = a.read_bytes(), b.read_bytes()
    if da == db:
        return None
    suffix = a.suffix
    if suffix == ".key":
        return None
    try:
        if rel == PUBLISHED_LEDGER:
            ka, kb = json.loads(da).keys(), json.loads(db).keys()
            return None if ka == kb else f"keys {sorted(ka ^ kb)} in one only"
        if suffix == ".json":
            ja, jb = normalise(json.loads(da), a_ws), normalise(json.loads(db), b_ws)
            if _is_summary(rel) or rel == "runs/<newest>.json":
                ja, jb = drop_run_fields(ja), drop_run_fields(jb)
            return first_difference(ja, jb)
        if suffix == ".parquet":
            return first_difference(_read_parquet(a, a_ws), _read_parquet(b, b_ws))
        if suffix == ".npy":
            import numpy as np

            xa, xb = np.load(io.BytesIO(da), allow_pickle=False), np.load(io.BytesIO(db), allow_pickle=False)
            if xa.shape != xb.shape or xa.dtype != xb.dtype:
                return f"shape/dtype {xa.shape} {xa.dtype} != {xb.shape} {xb.dtype}"
            if np.allclose(xa, xb, rtol=REL_TOL, atol=ABS_TOL, equal_nan=True):
                return None
            return f"max |diff| {float(np.max(np.abs(xa.astype(float) - xb.astype(float)))):.3g}"
        ta, tb = da.decode("utf-8"), db.decode("utf-8")
    except UnicodeDecodeError:
        return f"bytes differ ({len(da)} vs {len(db)} bytes)"
    except Exception as ex:  # noqa: BLE001 - an unreadable output is the finding
        return f"unreadable: {type(ex).__name__}: {ex}"
    run_lines = RUN_LINES.get(rel, ())
    la = [l for l in ta.replace(a_ws, WS_PLACEHOLDER).splitlines() if not (run_lines and l.startswith(run_lines))]
    lb = [l for l in tb.replace(b_ws, WS_PLACEHOLDER).splitlines() if not (run_lines and l.startswith(run_lines))]
    if la == lb and ta.endswith("\n") == tb.endswith("\n"):
        return None
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}: {_short(x)} != {_short(y)}"
    return f"{len(la)} vs {len(lb)} lines"


def compare_workspaces(clean: Path, other: Path) -> dict[str, str]:
    """Relative path -> why it differs, over every file of both workspaces."""
    fa, fb = workspace_files(clean), workspace_files(other)
    diffs = {rel: "missing after resume" for rel in fa.keys() - fb.keys()}
    diffs.update({rel: "extra after resume" for rel in fb.keys() - fa.keys()})
    for rel in sorted(fa.keys() & fb.keys()):
        if reason := compare_file(rel, fa[rel], str(clean), fb[rel], str(other)):
            diffs[rel] = reason
    return dict(sorted(diffs.items()))


# --- one check ----------------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    kills: list = field(default_factory=list)  # KillState dicts
    resume_rc: int | None = None
    resume_s: float | None = None
    differing: dict = field(default_factory=dict)
    partials_left: list = field(default_factory=list)
    outside_writes: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    passed: bool = False


RETRIES = 2


def check(e: Env, clean: Path, ws: Path, moments: list[float], T: float, timeout: float, chain: bool = False) -> Row:
    """Kill a run in `ws` at each moment (a chain: each run resumes the previous one), resume, compare.

    A fresh run that ends before its kill moment (the machine was faster than during the clean run) is
    retried in a fresh workspace at the same fraction of that run's own duration, at most RETRIES times.
    In a chain, a run that ends first just ends the chain: the workspace is complete, and compared."""
    row = Row(ws.name)
    for i, m in enumerate(moments):
        for attempt in range(RETRIES + 1):
            before = outside(e, ws)
            k = kill_at(e, ws, m, f"{ws.name}-killed{i + 1}" + (f"-retry{attempt}" if attempt else ""))
            changed = diff_snapshots(before, outside(e, ws))
            row.outside_writes += [f"killed run {i + 1}: {c}" for c in changed]
            if k.moment_s is not None or chain or attempt == RETRIES:
                break
            m2 = m / T * k.ended_s
            row.notes.append(f"the run ended (exit {k.exit_code}) at {k.ended_s:.1f} s, before its kill at "
                             f"{m:.1f} s: retried at {m2:.1f} s")
            shutil.rmtree(ws)
            m = m2
        row.kills.append(asdict(k) | {"reached": k.reached, "per_stage": k.per_stage})
        if k.survivors:
            row.problems.append(f"processes survived the SIGKILL of the group: {k.survivors}")
        if k.moment_s is None:
            if chain:
                row.notes.append(f"run {i + 1} of the chain ended (exit {k.exit_code}) at {k.ended_s:.1f} s, "
                                 f"before its kill at {m:.1f} s: the chain ends there")
            else:
                row.problems.append(f"not killed: the run ended (exit {k.exit_code}) at {k.ended_s:.1f} s, "
                                    f"before its kill at {m:.1f} s")
            break
    before = outside(e, ws)
    row.resume_rc, secs = run_to_end(e, ws, f"{ws.name}-resume", timeout)
    row.resume_s = round(secs, 1)
    row.outside_writes += [f"resumed run: {c}" for c in diff_snapshots(before, outside(e, ws))]
    if row.resume_rc != 0:
        row.problems.append(f"resume exited {row.resume_rc} (log: {e.logs / (ws.name + '-resume.log')})")
    row.partials_left = partials(ws)
    if row.partials_left:
        row.problems.append(f"{len(row.partials_left)} *.partial left: {row.partials_left[:3]}")
    if row.outside_writes:
        row.problems.append(f"{len(row.outside_writes)} change(s) outside the workspace: {row.outside_writes[:3]}")
    row.differing = compare_workspaces(clean, ws)
    row.passed = not row.problems and not row.differing
    return row


# --- code snapshot ------------------------------------------------------------------------------------

def freeze_code(dest: Path, code: str) -> str:
    """Copy tasks/ and flows/ (the working tree, or a git revision) to `dest`; returns a description."""
    dest.mkdir(parents=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if code == "worktree":
        for pkg in ("tasks", "flows"):
            shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        dirty = subprocess.run(["git", "status", "--short", "--", "tasks", "flows"], cwd=REPO, capture_output=True,
                               text=True).stdout.split("\n")
        dirty = [l.strip() for l in dirty if l.strip()]
        what = f"working tree at {head}" + (f" + uncommitted {', '.join(dirty)}" if dirty else " (clean)")
    else:
        blob = subprocess.run(["git", "archive", "--format=tar", code, "tasks", "flows"], cwd=REPO,
                              capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(dest, filter="data")
        rev = subprocess.run(["git", "rev-parse", "--short", code], cwd=REPO, capture_output=True, text=True).stdout.strip()
        what = f"git {code} ({rev})"
    compileall.compile_dir(dest, quiet=1)  # so the runs write no bytecode beside it
    return what


# --- table --------------------------------------------------------------------------------------------

def fmt_rows(r: Row) -> list[str]:
    """One line per kill (a chain has several; its verdict is on the last)."""
    diff = "; ".join(f"{k} ({v})" for k, v in list(r.differing.items())[:4])
    if len(r.differing) > 4:
        diff += f"; … {len(r.differing)} files"
    last = " | ".join(x for x in (diff, "; ".join(r.problems), "; ".join(r.notes)) if x) or "-"
    lines = []
    if not r.kills:  # the control: a second uninterrupted run
        return [f"{r.name:<9} {'-':>8}  {'(no kill)':<17} {'':>10}  {'':>8}  rc {r.resume_rc} {r.resume_s:4.0f}s "
                f"{'yes' if not r.differing else 'NO':<5} {'PASS' if r.passed else 'FAIL'}  {last}"]
    for i, k in enumerate(r.kills):
        name = r.name if len(r.kills) == 1 else f"{r.name}.{i + 1}"
        moment = f"{k['moment_s']:.1f}" if k["moment_s"] is not None else f"end {k['ended_s']:.1f}"
        verdict = ("rc %s %4.0fs %-5s %-4s  %s" % (r.resume_rc, r.resume_s, "yes" if not r.differing else "NO",
                                                    "PASS" if r.passed else "FAIL", last)
                   if i == len(r.kills) - 1 else "")
        lines.append(f"{name:<9} {moment:>8}  {k['reached']:<17} {k['per_stage']:>10}  {len(k['partials']):>8}  "
                     f"{verdict}".rstrip())
    return lines


HEADER = (f"{'check':<9} {'moment s':>8}  {'stage reached':<17} {'results':>10}  {'partials':>8}  "
          f"{'resume':<10} {'equal':<5} {'ok':<4}  differing files / problems / notes")
LEGEND = ("stage reached: the furthest step with a finished result at the kill; results: finished results per "
          "stage (" + " ".join(STAGES) + "); partials: *.partial files at the kill")


# --- main ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10, help="independent kill + resume cycles (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    ap.add_argument("--library", type=Path, help="library folder (default: a copy of 3 sample clips)")
    ap.add_argument("--chain", type=int, default=0, metavar="K",
                    help="also kill one workspace K times in a row before resuming it (one more check)")
    ap.add_argument("--control", action="store_true",
                    help="also compare a second uninterrupted run with the first (checks the comparison rules)")
    ap.add_argument("--json", type=Path, help="write a JSON summary here")
    ap.add_argument("--code", default="worktree", help="'worktree' (a snapshot of tasks/, flows/; default) or "
                                                      "a git revision")
    ap.add_argument("--root", type=Path, help="work folder (default: a new temp folder, removed when all pass)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    if args.kills < 0 or args.chain < 0:
        ap.error("--kills and --chain must be >= 0")

    t_start = time.monotonic()
    root = (args.root or Path(tempfile.mkdtemp(prefix="castline-kill-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    ok = False
    try:
        if args.library:
            library = args.library.resolve()
        else:
            library = root / "library"
            library.mkdir()
            for name in DEFAULT_VIDEOS:
                shutil.copy2(SAMPLE / name, library / name)
        code_desc = freeze_code(root / "code", args.code)
        e = make_env(root, library, root / "code")
        wsdir = root / "ws"
        wsdir.mkdir()
        print(f"castline kill/resume: library {library}, code {code_desc}, "
              f"seed {args.seed}, work folder {root}", flush=True)

        # Warm-up on an empty library: Prefect creates its database in the fresh PREFECT_HOME, so T measures
        # castline's own run.
        (root / "empty").mkdir()
        e_warm = Env(**{**e.__dict__, "library": root / "empty"})
        run_to_end(e_warm, wsdir / "warmup", "warmup", 600)

        clean = wsdir / "clean"
        rc, T = run_to_end(e, clean, "clean", 3600)
        if rc != 0:
            print(f"the uninterrupted run exited {rc}; see {e.logs / 'clean.log'}")
            return 2
        total = sum(stage_counts(clean).values())
        print(f"uninterrupted run: {T:.1f} s, {total} stage results; kills drawn from "
              f"({0.05 * T:.1f} s, {0.95 * T:.1f} s)", flush=True)
        rng = random.Random(args.seed)
        moments = [rng.uniform(0.05 * T, 0.95 * T) for _ in range(args.kills)]
        chain_moments = [rng.uniform(0.05 * T, 0.95 * T) for _ in range(args.chain)]
        timeout = max(600.0, 10 * T)

        print(HEADER, flush=True)
        for i, m in enumerate(moments):
            rows.append(check(e, clean, wsdir / f"kill{i + 1:02d}", [m], T, timeout))
            print("\n".join(fmt_rows(rows[-1])), flush=True)
        if args.control:
            rows.append(check(e, clean, wsdir / "control", [], T, timeout))
            print("\n".join(fmt_rows(rows[-1])), flush=True)
        if args.chain:
            rows.append(check(e, clean, wsdir / "chain", chain_moments, T, timeout, chain=True))
            print("\n".join(fmt_rows(rows[-1])), flush=True)

        n_ok = sum(r.passed for r in rows)
        n_fail = len(rows) - n_ok
        ok = n_fail == 0
        secs = time.monotonic() - t_start
        print()
        print(LEGEND)
        print(HEADER)
        for r in rows:
            print("\n".join(fmt_rows(r)))
        for r in rows:
            if r.differing:
                print(f"{r.name}: {len(r.differing)} differing file(s):")
                for k, v in r.differing.items():
                    print(f"  {k}: {v}")
        print("left out of the comparison (differs between two uninterrupted runs):")
        for k, v in RUN_SPECIFIC.items():
            print(f"  {k}: {v}")
        kept = args.keep or args.root or not ok
        print(f"total {secs:.0f} s (uninterrupted run {T:.1f} s); work folder {root}"
              f"{'' if kept else ' (removed)'}")
        print(f"{n_ok} passed, {n_fail} failed")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "command": [Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]),
                "library": str(library), "code": code_desc, "seed": args.seed,
                "uninterrupted_seconds": round(T, 2), "stage_results": total, "total_seconds": round(secs, 1),
                "run_specific_left_out": RUN_SPECIFIC, "rel_tol": REL_TOL, "work_folder": str(root),
                "rows": [asdict(r) for r in rows], "passed": n_ok, "failed": n_fail,
            }, indent=1) + "\n")
        return 0 if ok else 1
    finally:
        if not (args.keep or args.root or not ok):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
