#!/usr/bin/env python
"""castline fault suite: malformed and hostile inputs through one real library run.

    python scripts/fault_suite.py [--keep] [--no-concurrency] [--no-huge] [--root DIR]

1. Builds ~40 inputs (truncated/corrupt/odd containers, odd audio layouts, rotation, VFR, 8K, odd file
   names, symlinks, a symlink loop, an unreadable file, a bad subtitle, a hostile gallery, ...) in a temp
   folder: `ROOT/library` (the library), `ROOT/src` (clean clips the inputs are cut from), `ROOT/ws`.
2. Runs `castline run ROOT/library --workspace ROOT/ws` once, checks every input against its expectation
   (processed, maybe with a note / skipped stages; or failed with a one-line reason, no traceback), then
   runs it again and checks that the re-run is clean (same outcome, no cached result rewritten).
3. Checks that nothing outside the workspace changed (file list + mtimes of the whole temp folder, the
   library included, taken with lstat so symlinks are not followed).
4. Concurrency: two `castline run` at once on one small library and one workspace; both must finish and
   the registries (WS/library/characters.parquet, speakers.parquet) stay readable, one row per
   (video, local id), every succeeded video present.

Prints a table and, last, one line `N passed, M failed` where N counts the rows (inputs plus the
run-level checks above) handled as expected and M those that were not. Exit status 1 when M > 0.

`build_library()` and `run_castline()` are importable (tests/test_faults.py uses them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
GALLERY_SRC = REPO / "data" / "gallery"
IS_ROOT = os.geteuid() == 0
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --- small helpers ---------------------------------------------------------------------------------

def ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True,
                   capture_output=True)


def cut(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def garble_packets(src: Path, dst: Path, stream_index: int, seed: int = 1) -> int:
    """Copy of src whose packets of one stream are overwritten with random bytes (container intact)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pos,size",
                          "-of", "json", str(src)], capture_output=True, text=True, check=True).stdout
    data = bytearray(src.read_bytes())
    rnd = random.Random(seed)
    n = 0
    for p in json.loads(out)["packets"]:
        if p["stream_index"] == stream_index and p.get("pos"):
            pos, size = int(p["pos"]), int(p["size"])
            data[pos:pos + size] = rnd.randbytes(size)
            n += 1
    dst.write_bytes(bytes(data))
    return n


def lie_about_duration(src: Path, dst: Path) -> None:
    """Patch the mp4 `mvhd` duration to 0xFFFFFFF0 ticks (~49.7 days at timescale 1000)."""
    data = bytearray(src.read_bytes())
    i = data.find(b"mvhd")
    assert i > 0 and data[i + 4] == 0, "expected a version-0 mvhd"
    dur_off = i + 4 + 4 + 4 + 4 + 4  # version/flags, creation, modification, timescale
    data[dur_off:dur_off + 4] = struct.pack(">I", 0xFFFFFFF0)
    dst.write_bytes(bytes(data))


# --- the cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    """One input (or one run-level check) and what castline should do with it.

    expect: "ok" (processed) | "fail" (failed, one-line reason matching `reason`) | "absent" (not listed
    as a video at all) | "ok_or_fail" (either, but a failure must still be one clean line) | "check"
    (custom `check` callable over the run's summary)."""

    name: str
    expect: str
    what: str
    reason: str = ""
    note: str = ""
    skipped: list[str] | None = None
    check: Callable[["RunOutcome"], tuple[bool, str]] | None = None
    actual: str = ""
    passed: bool | None = None


@dataclass
class RunOutcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    summary: dict
    max_rss_mb: float = 0.0
    by_name: dict = field(default_factory=dict)

    @property
    def crash(self) -> str:
        """The run's own exception (last `SomethingError: ...` line) when it wrote no summary, else ''."""
        if self.summary:
            return ""
        lines = [l.strip(" │") for l in (self.stdout + "\n" + self.stderr).splitlines()]
        errs = [l for l in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b.*:", l)]
        return errs[-1] if errs else f"exit {self.rc}, no last_run.json"

    @classmethod
    def read(cls, proc: subprocess.CompletedProcess, ws: Path, seconds: float) -> "RunOutcome":
        path = ws / "library" / "last_run.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        by_name: dict[str, list[dict]] = {}
        for v in summary.get("videos", []):
            by_name.setdefault(v["video"], []).append(v)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return cls(proc.returncode, proc.stdout, proc.stderr, seconds, summary, rss, by_name)


def build_sources(src: Path) -> dict[str, Path]:
    """Clean clips everything else is made from (outside the library)."""
    src.mkdir(parents=True, exist_ok=True)
    s = {k: src / f"{k}.mp4" for k in ("good", "faststart", "noaudio", "montage")}
    # 3 s of the Hamilton clip (a face and a voice), 320x180, AAC stereo 44.1 kHz, moov at the end.
    ff("-ss", 2, "-t", 3, "-i", SAMPLE / "hamilton.mp4", "-vf", "scale=320:180", "-c:v", "libx264",
       "-preset", "ultrafast", "-g", 10, "-c:a", "aac", s["good"])
    ff("-i", s["good"], "-c", "copy", "-movflags", "+faststart", s["faststart"])
    ff("-i", s["good"], "-c", "copy", "-an", s["noaudio"])
    ff("-ss", 8, "-t", 3, "-i", SAMPLE / "montage_dev00.mp4", "-vf", "scale=320:180", "-c:v", "libx264",
       "-preset", "ultrafast", "-c:a", "aac", s["montage"])
    return s


def build_library(root: Path, huge: bool = True) -> tuple[Path, list[Case]]:
    """Make ROOT/library full of bad inputs; returns the library and the expectation per input."""
    lib = root / "library"
    lib.mkdir(parents=True)
    s = build_sources(root / "src")
    good, noaudio = s["good"], s["noaudio"]
    cases: list[Case] = []

    def add(name: str, expect: str, what: str, **kw) -> None:
        cases.append(Case(name, expect, what, **kw))

    def copy(name: str, src: Path = good) -> Path:
        dst = lib / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        return dst

    audio_skipped = dict(skipped=["audio", "diarize"], note=r"no audio stream")

    copy("good.mp4")
    add("good.mp4", "ok", "processed (control)")

    cut(good, lib / "truncated_moov_end.mp4", 0.6)
    add("truncated_moov_end.mp4", "fail", "failed: moov atom not found", reason=r"moov atom not found")

    cut(s["faststart"], lib / "truncated_faststart.mp4", 0.6)
    add("truncated_faststart.mp4", "ok", "processed (moov first, decodes what is there)")

    data = bytearray(good.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = random.Random(7).randbytes(4096)
    (lib / "corrupt_middle.mp4").write_bytes(bytes(data))
    add("corrupt_middle.mp4", "ok", "processed (decoder conceals 4 KiB of garbage)")

    (lib / "text.mp4").write_text("this is not a video\n" * 50)
    add("text.mp4", "fail", "failed: not a readable media file", reason=r"not a readable media file")

    (lib / "empty.mp4").write_bytes(b"")
    add("empty.mp4", "fail", "failed: empty file (0 bytes)", reason=r"empty file")

    ff("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", 1, "-c:v", "libx264", lib / "one_frame.mp4")
    add("one_frame.mp4", "ok", "processed, one frame, audio skipped", **audio_skipped)

    copy("no_audio.mp4", noaudio)
    add("no_audio.mp4", "ok", "processed, audio stages skipped", **audio_skipped)

    ff("-i", good, "-vn", "-c:a", "copy", lib / "audio_only.mp4")
    add("audio_only.mp4", "fail", "failed: no video stream (audio only)", reason=r"no video stream")

    ff("-i", good, "-c:v", "copy", "-ac", 1, "-ar", 8000, "-c:a", "aac", lib / "audio_8k_mono.mp4")
    add("audio_8k_mono.mp4", "ok", "processed (resampled 8 kHz -> 16 kHz)")

    ff("-i", good, "-c:v", "copy", "-af", "pan=7.1|c0=c0|c1=c1|c2=c0|c3=c1|c4=c0|c5=c1|c6=c0|c7=c1",
       "-c:a", "aac", lib / "audio_8ch.mp4")
    add("audio_8ch.mp4", "ok", "processed (8 channels mixed down)")

    ff("-i", good, "-c:v", "copy", "-ac", 2, "-ar", 48000, "-c:a", "aac", lib / "audio_48k_stereo.mp4")
    add("audio_48k_stereo.mp4", "ok", "processed")

    ff("-i", good, "-vf", "select='if(lt(t,1.5),1,not(mod(n,6)))'", "-fps_mode", "vfr", "-c:v", "libx264",
       "-preset", "ultrafast", "-c:a", "copy", lib / "vfr.mp4")
    add("vfr.mp4", "ok", "processed, note 'variable frame rate'", note=r"variable frame rate")

    ff("-i", good, "-c", "copy", "-metadata:s:v:0", "rotate=90", lib / "rotated_90.mp4")
    add("rotated_90.mp4", "ok", "processed (display-matrix rotation 90, frames portrait)")

    ff("-f", "lavfi", "-i", "testsrc=size=16x16:rate=5", "-t", 2, "-c:v", "libx264", "-pix_fmt", "yuv420p",
       lib / "tiny_16x16.mp4")
    add("tiny_16x16.mp4", "ok", "processed (no faces), audio skipped", **audio_skipped)

    if huge:
        ff("-f", "lavfi", "-i", "testsrc2=size=7680x4320:rate=2", "-t", 1, "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", lib / "huge_8k.mp4")
        add("huge_8k.mp4", "ok", "processed (8K 7680x4320, frames downscaled by ffmpeg)", **audio_skipped)

    ff("-i", good, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
       "-c:a", "aac", "-shortest", lib / "silence.mp4")
    add("silence.mp4", "ok", "processed (no speech found)")

    ff("-f", "lavfi", "-i", "color=black:size=320x180:rate=10", "-i", good, "-map", "0:v", "-map", "1:a",
       "-t", 3, "-c:v", "libx264", "-c:a", "copy", "-shortest", lib / "black.mp4")
    add("black.mp4", "ok", "processed (no faces; voice kept off-screen)")

    for name in ("é.mp4", "日本語.mp4", "name with spaces.mp4", "-dash.mp4", "UPPER.MP4", "line\nbreak.mp4"):
        copy(name)
        add(name, "ok", "processed (odd file name), own output folder")

    (lib / "link_to_good.mp4").symlink_to(lib / "good.mp4")
    add("link_to_good.mp4", "ok", "processed (symlink to a file is followed)")

    (lib / "dangling.mp4").symlink_to(root / "does-not-exist.mp4")
    add("dangling.mp4", "fail", "failed: file not found", reason=r"not found|no such file")

    # A symlink loop of folders: loop/again -> loop. The walk must not follow it.
    copy("loop/clip.mp4", noaudio)
    (lib / "loop" / "again").symlink_to(lib / "loop", target_is_directory=True)
    add("loop/clip.mp4", "ok", "processed once", **audio_skipped)
    add("loop/again/clip.mp4", "absent", "not listed (symlinked folder not walked)")

    p = copy("unreadable.mp4")
    p.chmod(0)
    if IS_ROOT:  # root reads a mode-000 file anyway: the case degrades to "processed"
        add("unreadable.mp4", "ok", "processed (running as root: chmod 000 does not stop reading)")
    else:
        add("unreadable.mp4", "fail", "failed: permission denied", reason=r"permission denied")

    copy("with_subtitle.mp4")
    (lib / "with_subtitle.srt").write_bytes(
        b"1\n00:00:00,500 --> 00:00:02,000\nCaf\xe9 cr\xe8me \xff\xfe\x00broken\n\n\xef\xbb\xbf2\nno times\n")
    add("with_subtitle.mp4", "ok", "processed (latin-1/garbage .srt beside it ignored)")

    cover = root / "src" / "cover.jpg"
    ff("-f", "lavfi", "-i", "color=red:size=320x240", "-frames:v", 1, cover)
    ff("-sub_charenc", "latin1", "-i", lib / "with_subtitle.srt", "-i", good, "-map", "1", "-map", "0", "-c:v", "copy",
       "-c:a", "copy", "-c:s", "srt", "-attach", cover, "-metadata:s:t", "mimetype=image/jpeg",
       lib / "subs_cover.mkv")
    add("subs_cover.mkv", "ok", "processed (its garbled subtitle track read for names, none found; cover art ignored)")

    garble_packets(good, lib / "corrupt_audio.mp4", stream_index=1)
    add("corrupt_audio.mp4", "ok_or_fail",
        "processed with audio skipped, or failed with a one-line audio reason", reason=r"audio")

    lie_about_duration(good, lib / "duration_lie.mp4")
    add("duration_lie.mp4", "ok", "processed (mvhd claims 49.7 days; real 3 s)")

    ff("-i", good, "-c", "copy", "-f", "mpegts", root / "src" / "full.ts")
    cut(root / "src" / "full.ts", lib / "cut.ts", 0.5)
    add("cut.ts", "ok", "processed (MPEG-TS cut mid-packet)")

    ff("-f", "lavfi", "-i", "testsrc=size=321x241:rate=10", "-t", 2, "-c:v", "libx264", "-pix_fmt", "yuv444p",
       lib / "odd_321x241_yuv444.mp4")
    add("odd_321x241_yuv444.mp4", "ok", "processed (odd size, 4:4:4)", **audio_skipped)

    ff("-i", good, "-map", "0:a", "-map", "0:v", "-c", "copy", lib / "audio_first.mkv")
    add("audio_first.mkv", "ok", "processed (audio is stream 0)")

    shutil.copy(REPO / "data" / "faults" / "Megamind_bugy.avi", lib / "Megamind_bugy.avi")
    add("Megamind_bugy.avi", "ok", "processed (the team's corrupted AVI, no audio)", **audio_skipped)

    # Two paths that a name scheme joining folders with '__' would map to one video name.
    copy("sub/clip.mp4")
    copy("sub__clip.mp4", noaudio)
    add("sub__clip.mp4", "check", "both sub/clip.mp4 and sub__clip.mp4 processed under distinct names",
        check=_check_distinct_names)

    (lib / "folder.mp4").mkdir()
    copy("folder.mp4/inner.mp4", noaudio)
    add("folder.mp4/inner.mp4", "ok", "processed (a folder named *.mp4 is walked)", **audio_skipped)
    add("folder.mp4", "absent", "not listed (a folder, not a file)")

    copy(".hidden/secret.mp4")
    add(".hidden/secret.mp4", "absent", "not listed (hidden folder)")

    # Gallery with hostile names. '..' and '../evil' cannot be folder names; these are the nearest.
    gal = lib / "gallery"
    face = GALLERY_SRC / "lin_manuel_miranda"
    photo = next(p for p in sorted(face.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for person in ("with spaces", "日本 名前", "-rf", "...", "..evil", "$(touch pwned)", "a;b|c"):
        (gal / person).mkdir(parents=True)
        shutil.copy(photo, gal / person / "photo.jpg")
    (gal / "not_an_image").mkdir()
    (gal / "not_an_image" / "photo.jpg").write_text("not a jpeg")
    (gal / "empty_photo").mkdir()
    (gal / "empty_photo" / "photo.jpg").write_bytes(b"")
    (gal / "dangling").mkdir()
    (gal / "dangling" / "photo.jpg").symlink_to(root / "missing.jpg")
    (gal / "loose_file.jpg").write_bytes(photo.read_bytes())
    add("gallery", "check", "run completes; names.json names only non-hidden gallery folders; nothing in "
        "gallery written", check=_check_gallery)
    return lib, cases


# --- checks ----------------------------------------------------------------------------------------

def _one_line(reason: str | None) -> tuple[bool, str]:
    if not reason:
        return False, "no reason given"
    bad = [w for w in ("\n", "Traceback", 'File "') if w in reason]
    if bad:
        return False, f"reason not one clean line ({bad[0]!r} in it)"
    if len(reason) > 500:
        return False, f"reason {len(reason)} characters long"
    return True, ""


def _short(text: str, n: int = 110) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 3] + "..."


def _check_distinct_names(o: RunOutcome) -> tuple[bool, str]:
    if o.crash:
        return False, f"library run crashed: {_short(o.crash, 90)}"
    entries = o.by_name.get("sub__clip.mp4", []) + o.by_name.get("sub/clip.mp4", [])
    return len(entries) == 2 and len(o.by_name) == len(o.summary.get("videos", [])), \
        f"{len(entries)} result(s) for sub/clip.mp4 and sub__clip.mp4; " \
        f"{len(o.summary.get('videos', []))} results, {len(o.by_name)} distinct names"


def _check_gallery(o: RunOutcome) -> tuple[bool, str]:
    if o.crash:
        return False, f"library run crashed: {_short(o.crash, 90)}"
    lib = Path(o.summary.get("library", ""))
    names_path = Path(o.summary.get("workspace", "")) / "library" / "names.json"
    if not names_path.exists():
        return False, "no names.json"
    names = json.loads(names_path.read_text())
    allowed = {p.name for p in (lib / "gallery").iterdir() if p.is_dir() and not p.name.startswith(".")}
    used = {m["name"] for m in names.get("matches", [])}
    if names.get("gallery") != str(lib / "gallery"):
        return False, f"gallery {names.get('gallery')!r}"
    if used - allowed:
        return False, f"names from hidden/unknown folders: {sorted(used - allowed)}"
    if list(lib.rglob("pwned")) or Path("pwned").exists():
        return False, "a gallery name was executed"
    return True, f"matches: {sorted(used) or 'none'}"


def judge(case: Case, o: RunOutcome) -> None:
    if case.expect == "check":
        case.passed, case.actual = case.check(o)  # type: ignore[misc]
        return
    entries = o.by_name.get(case.name, [])
    if case.expect == "absent":
        case.passed = not entries
        case.actual = "not listed" if not entries else f"listed ({'ok' if entries[0]['ok'] else 'failed'})"
        return
    if not entries:
        case.passed = False
        case.actual = f"library run crashed: {_short(o.crash, 90)}" if o.crash else "missing from last_run.json"
        return
    r = entries[0]
    if r["ok"]:
        bits = []
        if r.get("skipped_stages"):
            bits.append("skipped " + ",".join(r["skipped_stages"]))
        bits += r.get("notes") or []
        case.actual = "processed" + (f" ({'; '.join(bits)})" if bits else "")
        problems = []
        if case.expect == "fail":
            problems.append("expected a failure")
        if case.skipped is not None and r.get("skipped_stages") != case.skipped:
            problems.append(f"skipped {r.get('skipped_stages')}")
        if case.note and not any(re.search(case.note, n) for n in r.get("notes") or []):
            problems.append(f"no note /{case.note}/")
        tl = Path((r.get("outputs") or {}).get("timeline_json", ""))
        if not tl.is_file():
            problems.append("no timeline.json")
        else:
            shown = json.loads(tl.read_text()).get("video")
            if shown != case.name:
                problems.append(f"its timeline folder {tl.parent.name!r} holds {shown!r}")
        case.passed = not problems
        if problems:
            case.actual += " BUT " + "; ".join(problems)
        return
    reason = r.get("error") or ""
    case.actual = "failed: " + _short(reason)
    ok_line, why = _one_line(reason)
    problems = [] if ok_line else [why]
    if case.expect == "ok":
        problems.append("expected processed")
    elif case.reason and not re.search(case.reason, reason, re.I):
        problems.append(f"reason does not match /{case.reason}/")
    if f"FAILED {case.name}: " not in o.stdout:
        problems.append("no FAILED line on stdout")
    case.passed = not problems
    if problems:
        case.actual += " BUT " + "; ".join(problems)


# --- running ---------------------------------------------------------------------------------------

def castline_cmd() -> list[str]:
    return [sys.executable, "-m", "flows"]


def run_castline(lib: Path, ws: Path, timeout: int = 1800) -> RunOutcome:
    env = {**os.environ, "COLUMNS": "200"}
    t0 = time.perf_counter()
    p = subprocess.run([*castline_cmd(), "run", str(lib), "--workspace", str(ws)], capture_output=True,
                       text=True, timeout=timeout, cwd=REPO, env=env)
    return RunOutcome.read(p, ws, time.perf_counter() - t0)


def entry_state(p: Path, loose: bool = False) -> tuple:
    """An entry's type, size, mode and mtime (lstat: links not followed). A `loose` folder is one a run
    may legitimately add to (TMPDIR): only its type and mode count, what is left inside it is listed apart."""
    st = p.lstat()
    if loose:
        return stat.S_IFMT(st.st_mode), st.st_mode
    return stat.S_IFMT(st.st_mode), st.st_size, st.st_mode, st.st_mtime_ns


def snapshot(root: Path, skip: set[Path], loose: frozenset[Path] = frozenset()) -> dict[str, tuple]:
    """Every entry under root, by path relative to root, with its entry_state; `skip` folders are left out."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for n in dirnames + filenames:
            out[str((here / n).relative_to(root))] = entry_state(here / n, here / n in loose)
    return out


def diff_snapshots(a: dict, b: dict) -> list[str]:
    changes = [f"+{k}" for k in b.keys() - a.keys()] + [f"-{k}" for k in a.keys() - b.keys()]
    changes += [f"~{k}" for k in a.keys() & b.keys() if a[k] != b[k]]
    return sorted(changes)


def cache_state(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mtime_ns for p in (ws / "cache").rglob("*") if p.is_file()}


def traceback_in(text: str) -> bool:
    return "Traceback (most recent call last)" in text


def registry_consistency(ws: Path, summary: dict) -> tuple[bool, str]:
    """Both registries readable; one row per (video, local id); every succeeded video with characters
    (voices) present in characters.parquet (speakers.parquet)."""
    import pyarrow.parquet as pq

    from tasks.core.formats import read_centroids, read_characters

    problems, counts = [], []
    for kind in ("characters", "speakers"):
        path = ws / "library" / f"{kind}.parquet"
        try:
            t = pq.read_table(path).to_pydict()
        except Exception as e:  # noqa: BLE001 - any read failure is the finding
            problems.append(f"{kind}.parquet unreadable: {type(e).__name__}: {e}")
            continue
        pairs = list(zip(t["video"], t["local_id"]))
        if len(pairs) != len(set(pairs)):
            problems.append(f"{kind}: duplicate (video, local id) rows")
        present = set(t["video"])
        expected = set()
        for v in summary.get("videos", []):
            if not v["ok"]:
                continue
            if kind == "characters" and read_characters(v["outputs"]["characters"]):
                expected.add(v["video"])
            if kind == "speakers" and v["outputs"].get("turns") and read_centroids(v["outputs"]["turns"]):
                expected.add(v["video"])
        if expected - present:
            problems.append(f"{kind}: missing {sorted(expected - present)}")
        known = {v["video"] for v in summary.get("videos", [])}
        if summary and present - known:
            problems.append(f"{kind}: unknown videos {sorted(present - known)}")
        counts.append(f"{kind} {len(pairs)} rows/{len(present)} videos")
    return not problems, "; ".join(problems or counts)


def concurrency_case(root: Path) -> Case:
    """Two `castline run` at once on one library and workspace."""
    case = Case("concurrent runs", "check", "both exit 0; registries readable, each video once")
    lib, ws = root / "conc_library", root / "conc_ws"
    lib.mkdir()
    src = root / "src"
    shutil.copy(src / "good.mp4", lib / "a_hamilton.mp4")
    shutil.copy(src / "montage.mp4", lib / "b_montage.mp4")
    shutil.copy(src / "noaudio.mp4", lib / "c_noaudio.mp4")
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [*castline_cmd(), "run", str(lib), "--workspace", str(ws)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=1800) for p in procs]
    rcs = [p.returncode for p in procs]
    secs = time.perf_counter() - t0
    problems = []
    if rcs != [0, 0]:
        tails = [(o[0] + o[1]).strip().splitlines()[-3:] for o in outs]
        problems.append(f"exit codes {rcs}: {tails}")
    for o in outs:
        crash = RunOutcome(0, o[0], o[1], 0, {}).crash if "video(s) succeeded" not in o[0] else ""
        if crash:
            problems.append(f"a run crashed: {crash}")
    summary = json.loads((ws / "library" / "last_run.json").read_text()) if (ws / "library" / "last_run.json").exists() else {}
    ok, detail = registry_consistency(ws, summary)
    if not ok:
        problems.append(detail)
    if sorted(summary.get("succeeded", [])) != ["a_hamilton.mp4", "b_montage.mp4", "c_noaudio.mp4"]:
        problems.append(f"succeeded {summary.get('succeeded')}")
    if list(ws.rglob("*.partial")):
        problems.append("*.partial left behind")
    case.passed = not problems
    case.actual = f"rc {rcs} in {secs:.0f} s; " + ("; ".join(problems) if problems else detail)
    return case


def unreadable_fifo_case(root: Path) -> Case:
    """A FIFO named *.mp4: listed by the library walk; hashing it must not block (checked in a subprocess
    with a 20 s limit instead of the library run, which it would hang)."""
    case = Case("fifo.mp4 (named pipe)", "check",
                "failed quickly: not a regular file (checked at unit level; would hang the run)")
    d = root / "fifo_library"
    d.mkdir()
    os.mkfifo(d / "fifo.mp4")
    code = ("import sys; from pathlib import Path; from flows.library import list_videos, process_video;"
            "from tasks.core.config import RunConfig; from tasks.core.workspace import Workspace;"
            "lib=Path(sys.argv[1]); ws=Workspace.open(lib.parent/'fifo_ws'); vs=list_videos(lib, ws.root);"
            "print('listed', [v.name for v in vs]);"
            "from tasks.video.demux import MediaError\n"
            "try:\n process_video(vs[0], 'fifo.mp4', ws, RunConfig())\n"
            "except MediaError as e:\n print('MediaError', e)\n")
    try:
        p = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, timeout=20, cwd=REPO)
        out = (p.stdout + p.stderr).strip().splitlines()
        case.passed = any(l.startswith("MediaError") and "regular file" in l for l in out)
        case.actual = _short(" | ".join(l for l in out if l.startswith(("listed", "MediaError")) or "Error" in l)[-300:]
                             or f"rc {p.returncode}")
    except subprocess.TimeoutExpired:
        case.passed, case.actual = False, "blocked > 20 s (open() of the FIFO while hashing never returns)"
    return case


def print_table(rows: list[Case]) -> None:
    w = max(len(_short(c.name, 40)) for c in rows)
    print(f"{'input':<{w}}  {'result':<4}  expected -> actual")
    for c in rows:
        print(f"{_short(c.name, 40):<{w}}  {'PASS' if c.passed else 'FAIL'}  {c.what} -> {c.actual}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, help="work folder (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--no-huge", action="store_true", help="leave out the 8K input")
    ap.add_argument("--no-concurrency", action="store_true", help="skip the two-runs-at-once check")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="NAME",
                    help="triage: drop these inputs (castline video names, e.g. black.mp4) before the run")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    root = (args.root or Path(tempfile.mkdtemp(prefix="castline-faults-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        lib, cases = build_library(root, huge=not args.no_huge)
        for name in args.exclude:
            (lib / name).unlink()
        cases = [c for c in cases if c.name not in args.exclude]
        ws = root / "ws"
        print(f"built {len(cases)} cases in {root} ({time.perf_counter() - t_start:.0f} s)", flush=True)
        before = snapshot(root, {ws})

        first = run_castline(lib, ws)
        print(f"first run: rc {first.rc} in {first.seconds:.0f} s, peak child RSS {first.max_rss_mb:.0f} MB",
              flush=True)
        if first.crash:
            print(f"first run wrote no summary; it crashed with: {first.crash}")
        for c in cases:
            judge(c, first)

        run_checks: list[Case] = []
        c = Case("first run", "check", "exit 1 (some inputs fail), no crash, one FAILED line per failure")
        problems = []
        if first.crash:
            problems.append(f"crashed: {first.crash}")
        if first.rc != 1:
            problems.append(f"exit {first.rc}")
        # Prefect logs each failed task's traceback on stderr: that is expected; the summary must not have one.
        if any(traceback_in(l) for l in first.stdout.splitlines() if l.startswith("FAILED ")):
            problems.append("traceback in a FAILED line")
        failed_lines = [l for l in first.stdout.splitlines() if l.startswith("FAILED ")]
        if len(failed_lines) != len(first.summary.get("failed", [])):
            problems.append(f"{len(failed_lines)} FAILED lines for {len(first.summary.get('failed', []))} failures")
        if list(ws.rglob("*.partial")):
            problems.append("*.partial left behind")
        if first.max_rss_mb > 6000:
            problems.append(f"peak RSS {first.max_rss_mb:.0f} MB")
        c.passed = not problems
        c.actual = f"exit {first.rc}, {len(first.summary.get('succeeded', []))} ok / " \
                   f"{len(first.summary.get('failed', []))} failed, {first.seconds:.0f} s, " \
                   f"peak RSS {first.max_rss_mb:.0f} MB" + (" BUT " + "; ".join(problems) if problems else "")
        run_checks.append(c)

        cached = cache_state(ws)
        second = run_castline(lib, ws)
        c = Case("re-run", "check", "same outcome, no cached result rewritten, no crash")
        problems = []
        if second.rc != first.rc:
            problems.append(f"exit {second.rc}")
        if second.summary.get("succeeded") != first.summary.get("succeeded"):
            problems.append("succeeded list differs")
        if [f["video"] for f in second.summary.get("failed", [])] != [f["video"] for f in first.summary.get("failed", [])]:
            problems.append("failed list differs")
        changed = diff_snapshots({k: (v,) for k, v in cached.items()}, {k: (v,) for k, v in cache_state(ws).items()})
        changed = [x for x in changed if not x.startswith("+")]  # new entries (newly failed stages) are fine
        if changed:
            problems.append(f"{len(changed)} cached results rewritten, e.g. {changed[:2]}")
        if second.crash:
            problems.append(f"crashed: {second.crash}")
        c.passed = not problems
        c.actual = f"exit {second.rc} in {second.seconds:.0f} s" + (" BUT " + "; ".join(problems) if problems else "")
        run_checks.append(c)

        after = snapshot(root, {ws})
        c = Case("no writes outside workspace", "check", "library + temp folder unchanged by both runs")
        changes = diff_snapshots(before, after)
        c.passed = not changes
        c.actual = "unchanged" if not changes else f"{len(changes)} changes: {changes[:5]}"
        run_checks.append(c)

        run_checks.append(unreadable_fifo_case(root))
        if not args.no_concurrency:
            run_checks.append(concurrency_case(root))

        rows = cases + run_checks
        print()
        print_table(rows)
        if IS_ROOT:
            print("note: running as root, so unreadable.mp4 (chmod 000) is readable and expected to be processed")
        n_ok = sum(1 for r in rows if r.passed)
        print(f"total {time.perf_counter() - t_start:.0f} s; work folder {root}{'' if args.keep else ' (removed)'}")
        print(f"{n_ok} passed, {len(rows) - n_ok} failed")
        return 1 if n_ok != len(rows) else 0
    finally:
        if not args.keep:
            for p in root.rglob("*"):  # chmod 000 files / dirs must not stop the clean-up
                try:
                    if not p.is_symlink():
                        p.chmod(0o755 if p.is_dir() else 0o644)
                except OSError:
                    pass
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
