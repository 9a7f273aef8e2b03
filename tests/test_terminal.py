"""What a person sees in the terminal during `castline run` (issue 14): a run captured under a pseudo-terminal
of 120 columns and replayed in a terminal emulator (pyte) has whole log lines and no leftover bar fragments;
piped output is plain lines; each bad input is said in exactly one line."""
from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import SAMPLE, ffmpeg

REPO = Path(__file__).resolve().parents[1]
COLUMNS, ROWS = 120, 40
TIMESTAMP = r"\d\d:\d\d:\d\d\.\d{3} \| "
# What a bar leaves behind: its glyphs, tqdm's counters and rates.
BAR_FRAGMENTS = re.compile(r"[━█▏▎▍▌▋▊▉╸╺]|\d+/\d+ \[|it/s|s/s\]|\d+%\|")


def run_in_pty(*args: str, timeout: float = 600) -> tuple[int, bytes]:
    """`python -m flows ARGS` under a pseudo-terminal of COLUMNS x ROWS; its exit status and every byte it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=REPO, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, bytes(out)


def replay(raw: bytes) -> list[str]:
    """The lines a 120-column terminal shows after `raw`, scrolled-off history included."""
    import pyte

    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=100_000)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)

    def text(line) -> str:
        return "".join(line[x].data for x in range(COLUMNS)).rstrip()

    lines = [text(line) for line in screen.history.top] + [text(screen.buffer[y]) for y in range(ROWS)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def problems(lines: list[str]) -> list[str]:
    """Split log lines and bar fragments in a replayed screen."""
    found = []
    for n, line in enumerate(lines):
        if BAR_FRAGMENTS.search(line):
            found.append(f"line {n}: bar fragment: {line!r}")
        if re.search(".+" + TIMESTAMP, line):  # a log line that starts mid-row: the cursor was left elsewhere
            found.append(f"line {n}: a log line starts mid-row: {line!r}")
        if re.match(r"^(\d?:\d\d\.\d{3}|\d?\.\d{3} \||\d{1,2}:\d\d\.\d{3} \|)", line) and not re.match(TIMESTAMP, line):
            found.append(f"line {n}: a log line's timestamp was split: {line!r}")
    return found


@pytest.fixture(scope="module")
def small_library(tmp_path_factory) -> Path:
    """Two short clips (faces and a voice; faces and no audio) and a text file named .mp4."""
    lib = tmp_path_factory.mktemp("terminal") / "library"
    lib.mkdir()
    ffmpeg("-i", str(SAMPLE / "hamilton.mp4"), "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
           str(lib / "hamilton.mp4"))
    ffmpeg("-i", str(SAMPLE / "megamind.avi"), "-t", "3", "-an", "-c:v", "libx264", "-preset", "ultrafast",
           str(lib / "megamind.mp4"))
    (lib / "fake.mp4").write_text("not a video\n")
    return lib


def test_replayed_run_has_whole_log_lines_and_no_bar_fragments(small_library):
    ws = small_library.parent / "ws"
    rc, raw = run_in_pty("run", str(small_library), "--workspace", str(ws))
    lines = replay(raw)
    shown = "\n".join(lines)
    assert rc == 1, shown
    assert problems(lines) == [], shown
    assert "Finished in state Completed" not in shown
    # Each bad input in exactly one line; what was found per video; where the report is.
    assert [l for l in lines if "fake.mp4" in l] == [
        "FAILED fake.mp4: not a readable media file (moov atom not found; Invalid data found when processing "
        "input): fake.mp4"], shown
    assert any(re.match(r"  hamilton\.mp4 +\d+ characters? \(.*\); 1 voice → ", l) for l in lines), shown
    assert any(re.match(r"  megamind\.mp4 +\d+ characters? \(.*\); no audio", l) for l in lines), shown
    assert f"report: {ws / 'library' / 'report.html'}" in lines, shown
    assert "FutureWarning" not in shown

    # A warm re-run: one "reused" line per video, nothing per stage.
    rc, raw = run_in_pty("run", str(small_library), "--workspace", str(ws))
    lines = replay(raw)
    shown = "\n".join(lines)
    assert rc == 1 and problems(lines) == [], shown
    for video in ("hamilton.mp4", "megamind.mp4"):
        assert len([l for l in lines if f"{video}: reused" in l]) == 1, shown
    assert "reusing" not in shown and "Finished in state" not in shown

    # -v brings back Prefect's per-task lines.
    rc, raw = run_in_pty("run", str(small_library), "--workspace", str(ws), "-v")
    lines = replay(raw)
    assert problems(lines) == [] and "Finished in state Failed" in "\n".join(lines)


def test_piped_output_is_plain_lines(small_library):
    ws = small_library.parent / "ws"  # the terminal test's, when it ran first: a warm run is quicker
    r = subprocess.run([sys.executable, "-m", "flows", "run", str(small_library), "--workspace", str(ws)],
                       capture_output=True, text=True, cwd=REPO, timeout=600,
                       env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"})
    assert r.returncode == 1
    both = r.stdout + r.stderr
    assert "\x1b" not in both and "\r" not in both, both
    assert not BAR_FRAGMENTS.search(both), both
    for line in r.stderr.splitlines():  # Prefect's log lines, whole
        assert re.match(TIMESTAMP, line) or not line.strip() or not re.search(TIMESTAMP, line), line


def _fault_suite():
    sys.path.insert(0, str(REPO / "scripts"))
    import fault_suite

    return fault_suite


def test_each_bad_input_of_the_fault_suite_is_one_line(tmp_path):
    """The fault suite's inputs that must fail, in one library: each one line in the whole output
    (stdout and stderr), no traceback."""
    suite = _fault_suite()
    src = suite.build_sources(tmp_path / "src")
    lib = tmp_path / "library"
    lib.mkdir()
    suite.cut(src["good"], lib / "truncated_moov_end.mp4", 0.6)
    (lib / "text.mp4").write_text("this is not a video\n" * 50)
    (lib / "empty.mp4").write_bytes(b"")
    suite.ff("-i", src["good"], "-vn", "-c:a", "copy", lib / "audio_only.mp4")
    (lib / "dangling.mp4").symlink_to(tmp_path / "does-not-exist.mp4")
    bad = ["truncated_moov_end.mp4", "text.mp4", "empty.mp4", "audio_only.mp4", "dangling.mp4"]
    r = subprocess.run([sys.executable, "-m", "flows", "run", str(lib), "--workspace", str(tmp_path / "ws")],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 1
    both = (r.stdout + r.stderr).splitlines()
    for name in bad:
        said = [l for l in both if name in l]
        assert len(said) == 1 and said[0].startswith(f"FAILED {name}: "), "\n".join(both)
    assert "Traceback" not in r.stdout + r.stderr  # (--debug brings them back: tests/test_flow.py)


def test_terminal_filter_keeps_what_matters():
    from flows.display import TerminalFilter

    def record(name: str, msg: str, *args, **extra) -> logging.LogRecord:
        r = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
        r.__dict__.update(extra)
        return r

    quiet, loud = TerminalFilter(verbose=False), TerminalFilter(verbose=True)
    routine = [record("prefect.task_runs", "Finished in state Completed()"),
               record("prefect.flow_runs", "%s: reusing %s", "detect", "boxes.json"),
               record("prefect.task_runs", "Beginning subflow run 'video · a.mp4' for flow 'castline-video'"),
               record("prefect.flow_runs", "%s: FAILED: %s", "a.mp4", "empty file"),
               record("prefect.flow_runs", "View at http://x/runs/flow-run/1", flow_run_name="video · a.mp4")]
    assert not any(quiet.filter(r) for r in routine) and all(loud.filter(r) for r in routine)
    kept = [record("prefect.flow_runs", "%s: reused (every stage finished in an earlier run)", "a.mp4"),
            record("prefect.flow_runs", "View at http://x/runs/flow-run/1", flow_run_name="library s · 2026-12-01 08:03"),
            record("prefect.task_runs", "Finished in state Crashed('boom')"),
            record("castline.gallery", "gallery: no face found in x.jpg")]
    assert all(quiet.filter(r) for r in kept)


def test_torch_jit_load_warning_is_silenced():
    import warnings

    from flows.logs import quiet_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_warnings()
        warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", FutureWarning)
        warnings.warn("something else", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else"]
