"""End to end: subtitles beside the videos or inside them (ASS Name fields, WebVTT voice tags) name voices and
faces."""
from __future__ import annotations

import json
import shutil

import pytest
from cli import castline
from conftest import ffmpeg

from tasks.core.formats import read_rttm, read_timeline_json

GT = "data/ground_truth/montage"


def _ts(t: float, sep: str) -> str:
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:05.2f}" if sep == "ass" else f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def write_ass(path, turns):
    events = "\n".join(f"Dialogue: 0,{_ts(t['start'], 'ass')},{_ts(t['end'], 'ass')},Default,{t['identity'].title()},0,0,0,,line"
                       for t in turns)
    path.write_text("[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\n"
                    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
                    "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
                    "Alignment, MarginL, MarginR, MarginV, Encoding\n"
                    "Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,"
                    "10,10,10,1\n\n[Events]\n"
                    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n" + events + "\n")


def write_vtt(path, turns):
    cues = "\n\n".join(f"{_ts(t['start'], 'vtt')} --> {_ts(t['end'], 'vtt')}\n<v {t['identity'].title()}>line"
                       for t in turns)
    path.write_text("WEBVTT\n\n" + cues + "\n")


def test_subtitles_name_speakers_and_characters(tmp_path, sample_dir, whisper_dir):
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    lib = tmp_path / "library"
    lib.mkdir()
    # dev00's subtitles are a file beside it, dev01's a track inside its Matroska file (as an anime release carries
    # them), which beats the file beside it that names fewer lines.
    files = {"montage_dev00": "montage_dev00.mp4", "montage_dev01": "montage_dev01.mkv"}
    for stem, writer, ext in (("montage_dev00", write_ass, ".ass"), ("montage_dev01", write_vtt, ".vtt")):
        turns = json.loads((repo / GT / f"{stem}.json").read_text())["turns"]
        subtitles = (lib if stem == "montage_dev00" else tmp_path) / f"{stem}{ext}"
        writer(subtitles, [t for t in turns if t["end"] - t["start"] > 1.0])
        if stem == "montage_dev01":
            ffmpeg("-i", str(sample_dir / f"{stem}.mp4"), "-i", str(subtitles), "-map", "0", "-map", "1", "-c", "copy",
                   str(lib / files[stem]))
        else:
            shutil.copy(sample_dir / f"{stem}.mp4", lib / files[stem])
    (lib / "montage_dev01.en.srt").write_bytes("1\n00:00:01,000 --> 00:00:02,000\nRENÉ: é\n".encode("latin-1"))

    ws = tmp_path / "ws"
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 0, r.stdout + r.stderr
    names = json.loads((ws / "library" / "names.json").read_text())["subtitles"]
    assert sorted(set(names["speaker_names"].values())) == ["Barack_Obama", "Rose_Leslie"]
    assert names["sources"] == [str(lib / "montage_dev00.ass"),
                                f"{lib / 'montage_dev01.mkv'} subtitle stream 2 (webvtt)"]
    page = (ws / "library" / "report.html").read_text()
    tables = {}
    for stem in ("montage_dev00", "montage_dev01"):
        timeline = read_timeline_json(ws / "videos" / files[stem] / "timeline.json")
        named = {label for label, c in timeline.characters.items() if c.name}
        assert named == {"Barack_Obama", "Rose_Leslie"}, timeline.characters.keys()
        vtt = (ws / "videos" / files[stem] / "speech.vtt").read_text()
        assert "<v Barack_Obama>" in vtt and "<v Rose_Leslie>" in vtt
        # The voice table gives this episode's speech, as its character table does, not the library's.
        links = timeline.speaker_links
        heard = sum(t.duration for t in read_rttm(ws / "videos" / files[stem] / "speakers.rttm")[stem])
        assert sum(link.speech_seconds for link in links) == pytest.approx(heard, abs=0.01)
        by_id = {c.character_id: c for c in timeline.characters.values()}
        for cid in {link.character_id for link in links if link.character_id}:
            assert sum(link.speech_seconds for link in links if link.character_id == cid) == \
                pytest.approx(by_id[cid].speech_seconds, abs=0.01)
        # report.html's tables of this video give this video's figures (dev00 and dev01 differ).
        anchor = "v-" + files[stem].replace(".", "-")
        section = page.split(f"<section class='video' id='{anchor}'>")[1].split("</section>")[0]
        voices = section.split("<table class='voices'>")[1].split("</table>")[0]
        assert all(f"<td class='num'>{link.speech_seconds:.1f} s</td></tr>" in voices for link in links)
        chars = section.split("<table class='characters'>")[1].split("</table>")[0]
        assert all(f">{label}</a></td><td class='num'>{c.screen_seconds:.1f} s</td><td class='num'>"
                   f"{c.speech_seconds:.1f} s</td>" in chars for label, c in timeline.characters.items())
        tables[stem] = (chars, voices)
    assert tables["montage_dev00"] != tables["montage_dev01"]
    # speakers.rttm keeps library speaker ids, so files stay comparable across runs.
    assert "speaker_" in (ws / "videos" / "montage_dev00.mp4" / "speakers.rttm").read_text()
    # Library-level character outputs: a contact sheet per character, appearances, track embeddings.
    sheets = sorted(p.name for p in (ws / "library" / "characters").glob("*.png"))
    assert {"Barack_Obama.png", "Rose_Leslie.png"} <= set(sheets)
    import pyarrow.parquet as pq
    tracks = pq.read_table(ws / "library" / "track_embeddings.parquet").to_pydict()
    assert set(tracks["video"]) == set(files.values())
    assert {len(e) for e in tracks["embedding"]} == {128}
    appearances = (ws / "library" / "appearances.csv").read_text().splitlines()
    assert appearances[0] == "character,video,start,end,track" and len(appearances) == len(tracks["video"]) + 1
    # The speaker table: the named voices, each heard in both episodes and linked to its named face.
    voices = pq.read_table(ws / "library" / "speakers_table.parquet").to_pylist()
    named = {v["name"]: v for v in voices if v["name"]}
    assert set(named) == {"Barack_Obama", "Rose_Leslie"}
    assert all(v["character_name"] == n and v["n_files"] == 2 and len(v["centroid"]) == 192 for n, v in named.items())
    # The static HTML report opens from disk: every picture and clip it shows exists beside it.
    import re
    images = re.findall(r"<img src='([^']+)'", page)
    clips = re.findall(r"<audio controls preload='metadata' src='([^']+)'", page)
    assert len(images) >= 4 and all((ws / "library" / src).is_file() for src in images)
    assert len(clips) >= 2 and all((ws / "library" / src).is_file() for src in clips)
    assert "Barack_Obama <small>(named from subtitles)</small>" in page
    # ... and keeps working when the report and its files are moved: headless Chromium finds every image and
    # clip of the copy, with the workspace gone (below, once the tools that read it are done).
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(ws / "library" / "report.html", moved)
    shutil.copytree(ws / "library" / "report_files", moved / "report_files")

    # The tools name voices as the timelines do: audio features and the LLM projection carry the subtitle names.
    from tasks.tools.audio_features import SPEAKERS_PARQUET, export_audio_features, make_extractor
    from tasks.tools.projection import export_library

    export_audio_features(ws, make_extractor("whisper", whisper_dir), tmp_path / "llm")
    by_voice = {v["speaker"]: v["name"] for v in voices}
    features = pq.read_table(tmp_path / "llm" / SPEAKERS_PARQUET).to_pylist()
    assert {f["name"] for f in features} >= {"Barack_Obama", "Rose_Leslie"}
    assert all(f["name"] == by_voice[f["speaker"]] for f in features)
    export_library(ws, tmp_path / "llm", None, None)
    projected = pq.read_table(tmp_path / "llm" / "speakers_projected.parquet").to_pylist()
    assert {p["global_id"]: p["name"] for p in projected} == by_voice
    characters = pq.read_table(tmp_path / "llm" / "characters_projected.parquet").to_pylist()
    assert {"Barack_Obama", "Rose_Leslie"} <= {c["name"] for c in characters}

    from browser import load

    shutil.rmtree(ws)
    loaded = load(moved / "report.html", screenshot=tmp_path / "report.png")
    assert loaded.failed == [] and loaded.broken_images == [] and loaded.console_errors == []
    assert len(loaded.audio) == len(clips) and all(not isinstance(d, str) and d > 0.3 for _, d in loaded.audio)
    assert (tmp_path / "report.png").stat().st_size > 50_000
