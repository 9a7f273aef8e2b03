"""End to end: the real library flow, through the CLI, on real clips and bad files."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path


from cli import castline
from conftest import SAMPLE, ffmpeg
from tasks.core.formats import read_timeline_json

REPO = Path(__file__).resolve().parents[1]




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
    assert by_name["video_only.mp4"]["skipped_stages"] == ["audio", "diarize"]
    assert "no audio stream" in (ws / "library" / "report.md").read_text()

    # The on-stage performer is a character on screen for several seconds, and the voice is linked to a face.
    ham = read_timeline_json(ws / "videos" / "hamilton.mp4" / "timeline.json")
    main = max(ham.characters.values(), key=lambda c: c.screen_seconds)
    assert main.screen_seconds >= 3.0
    assert any(link.character_id for link in ham.speaker_links)
    assert (ws / "videos" / "hamilton.mp4" / "speech.rttm").read_text().startswith("SPEAKER hamilton 1 ")
    vo = read_timeline_json(ws / "videos" / "video_only.mp4" / "timeline.json")
    assert vo.characters and all(c.speech_seconds == 0 for c in vo.characters.values())

    # The gallery names the performer, and Obama's dark, turned-away face in the audience (beyond the
    # plain threshold, but each other's clear nearest); the other audience faces and the cartoon stay unnamed.
    assert main.name == "lin_manuel_miranda"
    named = {c.name: label for label, c in ham.characters.items() if c.name}
    assert set(named) == {"lin_manuel_miranda", "barack_obama"}
    assert len(ham.characters) > 2 and not any(c.name for c in vo.characters.values())
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
    assert "hamilton.mp4: reused" in second.stderr and "reusing" not in second.stdout + second.stderr
    # ... and the library steps too, since nothing they read changed; a gallery change makes them run again.
    assert "library steps reused" in second.stderr
    shutil.rmtree(bad_library / "gallery" / "barack_obama")
    third = castline("run", str(bad_library), "--workspace", str(ws))
    assert "library steps reused" not in third.stderr
    matches = json.loads((ws / "library" / "names.json").read_text())["matches"]
    assert {m["name"] for m in matches} == {"lin_manuel_miranda"}


def test_cli_help_lists_defaults():
    r = castline("run", "--help")
    assert r.returncode == 0 and "LIBRARY/.castline" in r.stdout and "1.0" in r.stdout


def test_inspect_reports_plan_and_errors(media_dir, tmp_path):
    ok = castline("inspect", str(media_dir / "video_only.mp4"))
    assert ok.returncode == 0 and "audio stages will be skipped" in ok.stdout
    (tmp_path / "a.srt").write_text("1\n00:00:00,500 --> 00:00:01,000\nANN: hi\n")
    ffmpeg("-i", str(media_dir / "video_only.mp4"), "-i", str(tmp_path / "a.srt"), "-map", "0", "-map", "1",
           "-c", "copy", str(tmp_path / "episode.mkv"))
    (tmp_path / "episode.en.vtt").write_text("WEBVTT\n")
    plan = json.loads(castline("inspect", str(tmp_path / "episode.mkv")).stdout)["plan"]
    assert plan[-2:] == ["read for names: episode.en.vtt (beside it)", "read for names: subtitle stream 1 (subrip)"]
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


def test_library_run_with_failed_videos_is_failed_in_prefect(media_dir, tmp_path):
    """The UI shows the partial failure on the library run, and no wrapper task ends Completed over a Failed subflow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags

    from flows.library import library_flow
    from tasks.core.config import RunConfig

    lib = tmp_path / "library"
    lib.mkdir()
    for name in ("text.mp4", "empty.mp4"):
        shutil.copy(media_dir / name, lib / name)
    state = library_flow(str(lib), str(tmp_path / "ws"), RunConfig(), return_state=True)
    assert state.is_failed() and state.message == "2 of 2 videos failed"
    failed = state.result(raise_on_failure=False)["failed"]
    assert {f["video"] for f in failed} == {"text.mp4", "empty.mp4"}
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    wrappers = [r.state for r in runs if r.name.startswith("process-video")]
    assert all(s.is_failed() for s in wrappers)
    assert sorted(s.message for s in wrappers) == sorted(f["error"] for f in failed)
    # Runs named after what they are, tagged with the library.
    assert sorted(r.name for r in runs if r.name.startswith("process-video")) == [
        "process-video · empty.mp4", "process-video · text.mp4"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        tagged = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["library:library"])))
    assert re.fullmatch(r"library library · \d{4}-\d\d-\d\d \d\d:\d\d", run.name), run.name
    assert {"video · text.mp4", "video · empty.mp4"} <= {r.name for r in tagged}


def test_a_text_file_named_mp4_fails_in_one_line_without_traceback(tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "fake.mp4").write_text("not a video\n")
    r = castline("run", str(lib), "--workspace", str(tmp_path / "ws"))
    assert r.returncode == 1
    assert [line for line in r.stdout.splitlines() if "fake.mp4" in line] == [
        "FAILED fake.mp4: not a readable media file (moov atom not found; Invalid data found when processing input): fake.mp4"]
    assert "Traceback" not in r.stderr and "NoneType: None" not in r.stderr
    debug = castline("--debug", "run", str(lib), "--workspace", str(tmp_path / "ws"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MediaError" in debug.stderr


def test_bad_options_config_and_empty_library_say_so_in_one_line(tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    typo = tmp_path / "config.yaml"
    typo.write_text("demux:\n  fpz: 2\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("demux:\n  fps: 2\n bad: [\n")
    for args, code, line in (
            (["--fps", "-1"], 2, "castline: --fps must be > 0.0, not -1.0"),
            (["--parallel", "0"], 2, "castline: --parallel must be >= 1, not 0"),
            (["--config", str(typo)], 2, f"castline: {typo}: line 2: demux.fpz: unknown key"),
            (["--config", str(broken)], 2, f"castline: {broken}: line 3: expected <block end>, but found '<block mapping start>'"),
            ([], 1, f"castline: warning: no video found in {lib} (looked for .avi .flv .m4v .mkv .mov .mp4 .mpeg .mpg "
                    f".ts .webm .wmv and audio files .flac .m4a .mp3 .ogg .opus .wav)")):
        r = castline("run", str(lib), *args)
        assert (r.returncode, r.stderr.splitlines()) == (code, [line]), args
    debug = castline("--debug", "run", str(lib), "--fps", "-1")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "greater_than" in debug.stderr


def test_boxes_are_published_in_source_pixels_of_a_video_larger_than_the_sampling_limit(tmp_path):
    """montage_dev00's first 4 s upscaled to 1280x720 (sampled at 960x540): tracks.json's faces lie on the
    ground-truth faces scaled 2x, and `castline eval` scores them on its 640x360 annotation."""
    from tasks.tools.evaluate import evaluate_workspace, match_box, truth_frame

    lib, ws, gt = tmp_path / "library", tmp_path / "ws", tmp_path / "truth"
    lib.mkdir()
    gt.mkdir()
    ffmpeg("-i", str(SAMPLE / "montage_dev00.mp4"), "-t", "4", "-vf", "scale=1280:720",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(lib / "big.mp4"))
    shutil.copy(REPO / "data" / "ground_truth" / "montage" / "montage_dev00.json", gt / "big.json")
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]

    published = json.loads((ws / "videos" / "big.mp4" / "tracks.json").read_text())
    assert published["coordinates"] == "source pixels" and published["frame_size"] == [1280, 720]
    truth = json.loads((gt / "big.json").read_text())
    boxes = [b for t in published["tracks"] for b in t["boxes"]]
    assert len(boxes) >= 4
    for b in boxes:
        in_truth_pixels = [b[k] / 2 for k in ("x1", "y1", "x2", "y2")]
        assert match_box(in_truth_pixels, truth["frames"][truth_frame(truth, b["t"])]["visible"]), b
    faces = evaluate_workspace(ws, gt, write=False)["faces"]["episodes"]["big"]
    assert faces["boxes"] == len(boxes) and faces["unmatched_boxes"] == 0
