"""End to end: the real library flow, through the CLI, on real clips and bad files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


from conftest import SAMPLE, ffmpeg
from tasks.formats import read_timeline_json

REPO = Path(__file__).resolve().parents[1]


def castline(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # A wide terminal, so help text is not wrapped mid-word.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "flows", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def cache_state(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mtime_ns for p in (ws / "cache").rglob("*") if p.is_file()}


def test_library_with_bad_files_processes_good_ones_and_exits_nonzero(bad_library, tmp_path):
    for name in ("barack_obama", "lin_manuel_miranda"):
        shutil.copytree(REPO / "data" / "gallery" / name, bad_library / "gallery" / name)
    ws = tmp_path / "ws"
    first = castline("run", str(bad_library), "--workspace", str(ws))
    assert first.returncode == 1, first.stdout + first.stderr
    out = first.stdout
    assert "2 video(s) succeeded, 2 failed" in out
    failed = {line.split(":")[0].removeprefix("FAILED ") for line in out.splitlines() if line.startswith("FAILED ")}
    assert failed == {"text.mp4", "truncated.mp4"}
    assert "moov atom not found" in out

    summary = json.loads((ws / "library" / "last_run.json").read_text())
    by_name = {v["video"]: v for v in summary["videos"]}
    assert by_name["video_only.mp4"]["skipped_stages"] == ["audio", "vad", "diarize"]
    assert "no audio stream" in (ws / "library" / "report.md").read_text()

    # The on-stage performer is a character on screen for several seconds, and the voice is linked to a face.
    ham = read_timeline_json(ws / "videos" / "hamilton.mp4" / "timeline.json")
    main = max(ham["characters"].values(), key=lambda c: c["screen_seconds"])
    assert main["screen_seconds"] >= 3.0
    assert any(link["character_id"] for link in ham["speaker_links"])
    assert (ws / "videos" / "hamilton.mp4" / "speech.rttm").read_text().startswith("SPEAKER hamilton 1 ")
    vo = read_timeline_json(ws / "videos" / "video_only.mp4" / "timeline.json")
    assert vo["characters"] and all(c["speech_seconds"] == 0 for c in vo["characters"].values())

    # The gallery names the performer, and Obama's dark, turned-away face in the audience (beyond the
    # plain threshold, but each other's clear nearest); the other audience faces and the cartoon stay unnamed.
    assert main["name"] == "lin_manuel_miranda"
    named = {c["name"]: label for label, c in ham["characters"].items() if c["name"]}
    assert set(named) == {"lin_manuel_miranda", "barack_obama"}
    assert len(ham["characters"]) > 2 and not any(c["name"] for c in vo["characters"].values())
    matches = json.loads((ws / "library" / "names.json").read_text())["matches"]
    assert {(m["name"], m["rule"]) for m in matches} == {("lin_manuel_miranda", "threshold"), ("barack_obama", "mutual")}
    report = (ws / "library" / "report.md").read_text()
    assert "## Names from the gallery" in report
    assert "barack_obama <small>(named from gallery, 0.6" in (ws / "library" / "report.html").read_text()
    assert any(line.startswith("| character_") and "| barack_obama |" in line and line.endswith("| mutual |")
               for line in report.splitlines())

    # A second run reuses every finished stage: no cached result is rewritten.
    before = cache_state(ws)
    second = castline("run", str(bad_library), "--workspace", str(ws))
    assert second.returncode == 1
    assert cache_state(ws) == before
    assert "reusing" in second.stdout + second.stderr


def test_cli_help_lists_defaults():
    r = castline("run", "--help")
    assert r.returncode == 0 and "LIBRARY/.castline" in r.stdout and "1.0" in r.stdout


def test_inspect_reports_plan_and_errors(media_dir):
    ok = castline("inspect", str(media_dir / "video_only.mp4"))
    assert ok.returncode == 0 and "audio stages will be skipped" in ok.stdout
    bad = castline("inspect", str(media_dir / "text.mp4"))
    assert bad.returncode == 1 and "text.mp4" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_missing_pyannote_model_fails_the_videos_with_audio_only(media_dir, tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    ffmpeg("-i", str(SAMPLE / "hamilton.mp4"), "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", str(lib / "a.mp4"))
    shutil.copy(media_dir / "video_only.mp4", lib / "video_only.mp4")
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "config.yaml").write_text("not: a pipeline\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"detect:\n  backend: haar\ndiarize:\n  backend: pyannote\n  model: {pipeline}\n")
    ws = tmp_path / "ws"
    # The first run finishes every stage before diarization (a.mp4 then fails on the broken pipeline); the second
    # finds the model gone, both in its check for finished videos and in a.mp4's own run.
    castline("run", str(lib), "--workspace", str(ws), "--config", str(config))
    shutil.rmtree(pipeline)
    second = castline("run", str(lib), "--workspace", str(ws), "--config", str(config))
    assert second.returncode == 1, second.stdout + second.stderr
    assert "1 video(s) succeeded, 1 failed" in second.stdout
    failed = [line for line in second.stdout.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].startswith("FAILED a.mp4: pyannote pipeline ")
    assert "is not available offline" in failed[0]
    summary = json.loads((ws / "library" / "last_run.json").read_text())
    assert summary["succeeded"] == ["video_only.mp4"] and "\n" not in summary["failed"][0]["error"]
