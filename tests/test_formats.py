from pathlib import Path

import pytest

from tasks.core.formats import (
    TEMP_SUFFIX,
    atomic_dir,
    read_rttm,
    read_timeline_csv,
    sanitize_label,
    write_json,
    write_rttm,
    write_timeline_csv,
)
from tasks.core.records import SpeechTurn, TimelineSpan


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert not target.exists() and not list(tmp_path.iterdir())


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "store"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"


def test_rttm_round_trip_has_ten_fields_and_safe_labels(tmp_path):
    turns = [SpeechTurn(1.5, 3.25, "Lin-Manuel Miranda"), SpeechTurn(0.0, 1.0, "../evil/name")]
    write_rttm(tmp_path / "x.rttm", "my video", turns)
    lines = (tmp_path / "x.rttm").read_text().splitlines()
    assert all(len(line.split()) == 10 for line in lines)
    assert lines[0] == "SPEAKER my_video 1 0.000 1.000 <NA> <NA> evil_name <NA> <NA>"
    back = read_rttm(tmp_path / "x.rttm")["my_video"]
    assert back[1] == SpeechTurn(1.5, 3.25, "Lin-Manuel_Miranda")


@pytest.mark.parametrize("raw, clean", [("a b/c", "a_b_c"), ("..", "unnamed"), ("Zoë", "Zo")])
def test_sanitize_label(raw, clean):
    assert sanitize_label(raw) == clean


def test_timeline_csv_round_trip(tmp_path):
    spans = [TimelineSpan("v.mp4", "character_000", "on_screen", 0.0, 2.5, "0,1"),
             TimelineSpan("v.mp4", "offscreen_SPEAKER_01", "speaking", 1.0, 1.5, "SPEAKER_01")]
    write_timeline_csv(tmp_path / "t.csv", spans)
    assert read_timeline_csv(tmp_path / "t.csv") == spans


def test_webvtt_has_voice_tags_and_timestamps(tmp_path):
    from tasks.core.formats import write_webvtt
    write_webvtt(tmp_path / "s.vtt", [SpeechTurn(3661.5, 3662.25, "Lin-Manuel Miranda"), SpeechTurn(0, 0, "x")])
    assert (tmp_path / "s.vtt").read_text() == (
        "WEBVTT\n\n01:01:01.500 --> 01:01:02.250\n<v Lin-Manuel Miranda>Lin-Manuel Miranda\n\n")


def test_tables_are_written_by_formats_only():
    """One place per on-disk format: no product module writes a CSV or Parquet file itself."""
    import re

    root = Path(__file__).resolve().parents[1]
    writers = re.compile(r"csv\.writer\(|pq\.write_table\(|\.to_csv\(|\.to_parquet\(")
    offenders = [p.relative_to(root).as_posix() for folder in ("tasks", "flows") for p in (root / folder).rglob("*.py")
                 if p.name != "formats.py" and writers.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_an_old_run_summary_loads_into_typed_manifests_and_is_written_back_as_it_was(tmp_path):
    """last_run.json keeps each video's manifest as a flat object of strings ("" for a silent video's audio
    stages, the interval as text); a file of an older castline (no "wav") still loads."""
    import json

    from tasks.core.formats import read_run_summary

    stages = {k: f"/ws/cache/{k}/abc/0123.json" for k in ("video", "probe", "frames", "tracks", "embeddings",
                                                          "characters", "evidence")}
    published = {"timeline_json": "/ws/videos/a.mp4/timeline.json", "timeline_csv": "/ws/videos/a.mp4/timeline.csv",
                 "rttm": "/ws/videos/a.mp4/speech.rttm", "speakers_rttm": "/ws/videos/a.mp4/speakers.rttm",
                 "folder": "/ws/videos/a.mp4"}
    videos = [{"video": "a.mp4", "ok": True, "error": None, "skipped_stages": [], "notes": [],
               "outputs": {**stages, "turns": "/ws/cache/diarize/abc/1.json", "wav": "/ws/cache/audio/abc/2.wav",
                           "interval": "0.5", **published}, "seconds": 1.5, "stage_seconds": {"probe": 0.1}},
              {"video": "silent.mp4", "ok": True, "error": None, "skipped_stages": ["audio", "diarize"], "notes": [],
               "outputs": {**stages, "turns": "", "wav": "", "interval": "1.0", **published}, "seconds": 1.0,
               "stage_seconds": {}},
              {"video": "bad.mp4", "ok": False, "error": "not a media file", "skipped_stages": [], "notes": [],
               "outputs": {}, "seconds": 0.0, "stage_seconds": {}}]
    summary = {"library": "/lib", "workspace": "/ws", "finished_at": "2026-01-01T00:00:00+00:00", "seconds": 3.0,
               "succeeded": ["a.mp4", "silent.mp4"], "failed": [{"video": "bad.mp4", "error": "not a media file"}],
               "videos": videos, "report": "/ws/library/report.md",
               "detector": {"backend": "mtcnn", "weights": None, "why": "default"}}
    old = tmp_path / "last_run.json"
    old.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    loaded = read_run_summary(old)
    a, silent, bad = (v.outputs for v in loaded.videos)
    assert a.interval == 0.5 and a.turns == Path("/ws/cache/diarize/abc/1.json")
    assert a.timeline.folder == Path("/ws/videos/a.mp4") and silent.turns is None and silent.wav is None
    assert bad is None
    assert write_json(tmp_path / "again.json", loaded).read_bytes() == old.read_bytes()

    del summary["videos"][0]["outputs"]["wav"]  # written before castline recorded the WAV
    old.write_text(json.dumps(summary))
    assert read_run_summary(old).videos[0].outputs.wav is None
