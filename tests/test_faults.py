"""Fault suite: malformed and hostile inputs.

Fast (unit level, no flow): probe / sample_frames / extract_audio on odd layouts built with ffmpeg.
Slow (`-m slow`): scripts/fault_suite.py's ~40 inputs through one real library run, and two runs at once
on one workspace.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tasks.core.config import DemuxParams
from tasks.video.demux import MediaError, NoVideoStreamError, extract_audio, probe, require_video, sample_frames
from tasks.core.formats import read_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def _load_suite():
    """scripts/fault_suite.py as a module (registered first: its dataclasses need sys.modules)."""
    if "fault_suite" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fault_suite", REPO / "scripts" / "fault_suite.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fault_suite"] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules["fault_suite"]


def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> Path:
    """Small odd-layout files cut from one 2 s, 320x180 clip of the Hamilton sample."""
    suite = _load_suite()
    d = tmp_path_factory.mktemp("odd")
    good = d / "good.mp4"
    ff("-ss", 2, "-t", 2, "-i", SAMPLE / "hamilton.mp4", "-vf", "scale=320:180", "-c:v", "libx264",
       "-preset", "ultrafast", "-c:a", "aac", good)
    ff("-i", good, "-c:v", "copy", "-af", "pan=7.1|c0=c0|c1=c1|c2=c0|c3=c1|c4=c0|c5=c1|c6=c0|c7=c1",
       "-c:a", "aac", d / "ch8.mp4")
    ff("-i", good, "-c:v", "copy", "-ac", 1, "-ar", 8000, "-c:a", "aac", d / "mono8k.mp4")
    ff("-i", good, "-vf", "select='if(lt(t,1),1,not(mod(n,6)))'", "-fps_mode", "vfr", "-c:v", "libx264",
       "-preset", "ultrafast", "-an", d / "vfr.mp4")
    ff("-i", good, "-c", "copy", "-metadata:s:v:0", "rotate=90", d / "rot90.mp4")
    ff("-i", good, "-vn", "-c:a", "copy", d / "audio_only.mp4")
    ff("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", 1, d / "cover.jpg")
    ff("-i", good, "-c", "copy", "-attach", d / "cover.jpg", "-metadata:s:t", "mimetype=image/jpeg", d / "cover.mkv")
    suite.lie_about_duration(good, d / "duration_lie.mp4")
    suite.garble_packets(good, d / "bad_audio.mp4", stream_index=1)
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d


def _wav(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path)) as w:
        return w.getnchannels(), w.getframerate(), w.getnframes()


@pytest.mark.parametrize("name,channels,rate", [("ch8.mp4", 8, 44100), ("mono8k.mp4", 1, 8000)])
def test_odd_audio_layouts_extract_to_16k_mono(odd, tmp_path, name, channels, rate):
    info = probe(odd / name)
    assert (info.audio.channels, info.audio.sample_rate) == (channels, rate)
    extract_audio(info, tmp_path / "a.wav", 16000)
    ch, sr, n = _wav(tmp_path / "a.wav")
    assert (ch, sr) == (1, 16000) and abs(n / sr - 2.0) < 0.2


def test_vfr_is_flagged_and_sampled_by_presentation_time(odd, tmp_path):
    info = probe(odd / "vfr.mp4")
    assert info.vfr
    frames = sample_frames(info, tmp_path, DemuxParams(fps=2))
    times = [f.t for f in frames]
    assert times == sorted(times) and len(times) >= 3 and times[-1] < 2.0


def test_rotated_video_is_sampled_portrait(odd, tmp_path):
    info = probe(odd / "rot90.mp4")
    assert info.video.rotation in (90, 270) and info.display_size == (180, 320)
    frames = sample_frames(info, tmp_path, DemuxParams())
    import cv2
    h, w = cv2.imread(str(tmp_path / frames[0].file)).shape[:2]
    assert (w, h) == (180, 320)


def test_audio_only_mp4_has_no_video(odd):
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        require_video(probe(odd / "audio_only.mp4"))


def test_cover_art_attachment_is_not_the_video(odd, tmp_path):
    info = probe(odd / "cover.mkv")
    assert info.video.codec == "h264" and "cover_art" in [s.kind for s in info.streams]
    frames = sample_frames(info, tmp_path, DemuxParams())
    assert len(frames) == 2 and read_frames(tmp_path / "frames.json")[0].t < 0.5


def test_duration_lie_samples_only_real_frames(odd, tmp_path):
    info = probe(odd / "duration_lie.mp4")
    assert info.duration > 1e6  # the header lie is what ffprobe reports
    frames = sample_frames(info, tmp_path, DemuxParams())
    assert 1 <= len(frames) <= 3


def test_truncated_mp4_fails_with_one_line(odd):
    with pytest.raises(MediaError) as e:
        probe(odd / "truncated.mp4")
    assert "moov atom not found" in str(e.value) and "\n" not in str(e.value)


def test_undecodable_audio_fails_with_one_line(odd, tmp_path):
    info = probe(odd / "bad_audio.mp4")
    with pytest.raises(MediaError) as e:
        extract_audio(info, tmp_path / "a.wav", 16000)
    msg = str(e.value)
    assert "audio" in msg and "\n" not in msg and len(msg) < 500
    assert not list(tmp_path.iterdir())  # no half-written wav left behind


def test_unreadable_file(tmp_path):
    """chmod 000: a clean MediaError for a normal user; as root the file stays readable (documented)."""
    src = tmp_path / "x.mp4"
    ff("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", 1, src)
    src.chmod(0)
    try:
        if os.geteuid() == 0:
            assert probe(src).video is not None  # root ignores the mode bits
        else:
            with pytest.raises(MediaError, match="permission denied"):
                probe(src)
    finally:
        src.chmod(0o644)


def test_non_ascii_names_get_distinct_output_folders(tmp_path):
    from tasks.core.workspace import Workspace

    ws = Workspace.open(tmp_path)
    assert ws.video_dir("é.mp4") != ws.video_dir("日本語.mp4")


def test_nested_and_flat_names_do_not_collide(tmp_path):
    from flows.library import video_name

    assert video_name(tmp_path, tmp_path / "sub" / "clip.mp4") != video_name(tmp_path, tmp_path / "sub__clip.mp4")


def test_fifo_named_like_a_video_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo.mp4")
    code = ("import sys; from pathlib import Path; from flows.video import process_video;"
            "from tasks.core.config import RunConfig; from tasks.video.demux import MediaError; from tasks.core.workspace import Workspace\n"
            "try: process_video(Path(sys.argv[1]), 'fifo.mp4', Workspace.open(sys.argv[2]), RunConfig())\n"
            "except MediaError as e: print(e)")
    try:
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fifo.mp4"), str(tmp_path / "ws")],
                           timeout=60, capture_output=True, text=True, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("a FIFO named like a video blocked the video's processing")
    assert r.stdout.strip() == "not a regular file: fifo.mp4", r.stderr


# --- slow: the whole suite through the real flow -----------------------------------------------------

@pytest.mark.slow
def test_fault_library_single_run(tmp_path):
    """Every built input is processed / failed / not listed as expected by one `castline run`."""
    suite = _load_suite()
    lib, cases = suite.build_library(tmp_path, huge=True)
    before = suite.snapshot(tmp_path, {tmp_path / "ws"})
    outcome = suite.run_castline(lib, tmp_path / "ws")
    assert not outcome.crash, f"the library run crashed: {outcome.crash}"
    assert outcome.rc == 1
    for c in cases:
        suite.judge(c, outcome)
    bad = [f"{c.name!r}: expected {c.what}; got {c.actual}" for c in cases if not c.passed]
    assert not bad, "\n".join(bad)
    assert suite.diff_snapshots(before, suite.snapshot(tmp_path, {tmp_path / "ws"})) == []


@pytest.mark.slow
def test_two_concurrent_runs_keep_registries_consistent(tmp_path):
    suite = _load_suite()
    suite.build_sources(tmp_path / "src")
    case = suite.concurrency_case(tmp_path)
    assert case.passed, case.actual


def test_frames_smaller_than_the_smallest_face_give_no_boxes(tmp_path):
    import cv2
    import numpy as np

    from tasks.core.config import DetectParams
    from tasks.video.detect import detect_faces
    from tasks.core.formats import write_frames
    from tasks.core.records import Frame

    cv2.imwrite(str(tmp_path / "000000.jpg"), np.full((16, 16, 3), 128, np.uint8))
    write_frames(tmp_path / "frames.json", [Frame(0, 0.0, "000000.jpg")])
    assert detect_faces(tmp_path, [Frame(0, 0.0, "000000.jpg")], DetectParams(backend="mtcnn")) == []


def test_nested_videos_get_their_own_output_folders(tmp_path):
    from tasks.core.workspace import Workspace
    ws = Workspace.open(tmp_path)
    assert len({ws.video_dir("loop/clip.mp4"), ws.video_dir("sub/clip.mp4"), ws.video_dir("clip.mp4")}) == 3
    assert ws.video_dir("hamilton.mp4").name == "hamilton.mp4"
