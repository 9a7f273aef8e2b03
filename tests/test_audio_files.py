"""An audio file in a library is an episode without pictures: its voices join the speaker registry, its timeline
and report are written, and the video stages are skipped and said to be."""
from __future__ import annotations

import re
import shutil

from conftest import SAMPLE, ffmpeg
from cli import castline
from test_flow import cache_state
from tasks.core.formats import read_json, read_run_summary, read_timeline_json
from tasks.library.run import list_videos
from tasks.video.pipeline import VIDEO_STAGES


def test_list_videos_finds_audio_files_except_for_datasets(tmp_path):
    for name in ("a.mp4", "b.WAV", "c.opus", "d.txt", "e.flac"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_videos(tmp_path, tmp_path / ".castline")] == ["a.mp4", "b.WAV", "c.opus", "e.flac"]
    assert [p.name for p in list_videos(tmp_path, tmp_path / ".castline", audio=False)] == ["a.mp4"]


def test_a_wav_cut_from_an_episode_is_processed_for_its_voices(tmp_path):
    lib, ws = tmp_path / "library", tmp_path / "ws"
    lib.mkdir()
    shutil.copy(SAMPLE / "montage_dev01.mp4", lib / "montage_dev01.mp4")
    # The first 12 s of dev00's sound: the same two people as dev01, here heard only.
    ffmpeg("-i", str(SAMPLE / "montage_dev00.mp4"), "-vn", "-t", "12", "-ac", "1", "-ar", "16000", str(lib / "dev00.wav"))
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^  dev00\.wav +audio file, no pictures; 1 voice", r.stdout, re.M), r.stdout
    # Its voice is linked to a face of dev01: the line names that character, not "off-screen".
    assert re.search(r"^  dev00\.wav .*→ character_\d+ \(another episode\)$", r.stdout, re.M), r.stdout

    summary = read_run_summary(ws / "library" / "last_run.json")
    wav = next(v for v in summary.videos if v.video == "dev00.wav")
    assert wav.ok and wav.audio_only and wav.skipped_stages == list(VIDEO_STAGES)
    assert wav.notes == ["audio file: video stages skipped (voices only)"]
    assert not set(VIDEO_STAGES) & set(wav.stage_seconds) and {"audio", "diarize", "align"} <= set(wav.stage_seconds)

    folder = ws / "videos" / "dev00.wav"
    timeline = read_timeline_json(folder / "timeline.json")
    assert timeline.characters and all(c.offscreen and c.screen_seconds == 0 for c in timeline.characters.values())
    assert sum(c.speech_seconds for c in timeline.characters.values()) > 6
    assert (folder / "speech.vtt").read_text().startswith("WEBVTT")
    assert read_json(folder / "tracks.json")["frame_size"] is None
    # No face, no face sheet (and no error); the episode with pictures has one.
    assert not (folder / "faces.jpg").exists() and (ws / "videos" / "montage_dev01.mp4" / "faces.jpg").is_file()

    # Its voices are the library's: at least one is the voice of a face seen in dev01.
    import pyarrow.parquet as pq

    voices = pq.read_table(ws / "library" / "speakers_table.parquet").to_pylist()
    shared = [v for v in voices if v["n_files"] == 2]
    assert shared and all(v["character"] for v in shared), voices
    assert "skipped stages: frames, detect, track, embed, cluster" in (ws / "library" / "report.md").read_text()
    page = (ws / "library" / "report.html").read_text()
    section = page.split("<section class='video' id='v-dev00-wav'>")[1].split("</section>")[0]
    assert "audio file: video stages skipped (voices only)" in section and "<svg class='timeline'" in section
    # In report.html the voice heard in the audio file stands in the section of the character it belongs to.
    character = shared[0]["character"]
    block = page.split(f"<section class='character' id='c-{character}'")[1].split("</section>")[0]
    assert "href='#v-dev00-wav'>dev00.wav</a>" in block

    # A second run reuses it whole.
    before = cache_state(ws)
    again = castline("run", str(lib), "--workspace", str(ws))
    assert again.returncode == 0 and "dev00.wav: reused" in again.stderr
    assert cache_state(ws) == before
