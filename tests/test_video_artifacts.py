import re

from conftest import published
from flows.video_artifacts import found_markdown, image_data_url, video_key
from tasks.core.formats import write_timeline_json
from tasks.core.records import Character, SpeakerLink, TimelineSpan, VideoResult


def test_video_keys_are_valid_and_distinct_per_video(tmp_path):
    keys = {video_key(tmp_path / "lib", v, "found") for v in ("é.mp4", "日本語.mp4", "a.mp4", "season 1/a.mp4")}
    assert len(keys) == 4 and all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys)


def test_found_table_has_readable_headers_names_and_voices(tmp_path):
    chars = [Character("character_001", (0,), name="Bea"), Character("character_002", (1,))]
    spans = [TimelineSpan("ep.mp4", "Bea", "on_screen", 0.0, 4.0),
             TimelineSpan("ep.mp4", "character_002", "on_screen", 1.0, 2.0),
             TimelineSpan("ep.mp4", "Bea", "speaking", 1.0, 2.5, "speaker_000")]
    links = [SpeakerLink("speaker_000", "character_001", 0.9, 1.5, 1.4), SpeakerLink("speaker_001", None, 0.0, 3.0, 0.0)]
    write_timeline_json(tmp_path / "t.json", "ep.mp4", spans, chars, links)
    r = VideoResult("ep.mp4", True, outputs=published(tmp_path / "t.json"))
    md = found_markdown(r, tmp_path / "report.html")
    assert "| Character | Name | On screen (s) | Speaking (s) | Voices |" in md
    assert "| character_001 | Bea | 4.0 | 1.5 | speaker_000 |" in md
    assert "| character_002 | *unnamed* | 1.0 | 0.0 | — |" in md
    assert "| speaker_000 | Bea | 1.5 | 1.4 | 0.90 |" in md and "| speaker_001 | *off-screen* |" in md
    assert f"({(tmp_path / 'report.html').as_uri()})" in md


def test_an_audio_files_found_table_says_it_has_no_pictures_and_lists_its_voice(tmp_path):
    spans = [TimelineSpan("ep.wav", "offscreen_speaker_000", "speaking", 1.0, 2.5, "speaker_000")]
    links = [SpeakerLink("speaker_000", "character_001", 0.0, 1.5, 0.0)]  # her face was seen in another episode
    write_timeline_json(tmp_path / "t.json", "ep.wav", spans, [], links)
    r = VideoResult("ep.wav", True, skipped_stages=["frames", "detect", "track", "embed", "cluster"],
                    outputs=published(tmp_path / "t.json"))
    md = found_markdown(r, tmp_path / "report.html")
    assert "| — | *audio file: no pictures* | | | |" in md and "offscreen_speaker_000 |" not in md
    assert "| speaker_000 | character_001 | 1.5 | 0.0 | 0.00 |" in md


def test_timeline_png_is_embedded_as_a_data_url(tmp_path):
    png = tmp_path / "timeline.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    assert image_data_url(png).startswith("data:image/png;base64,iVBORw0KGgo")
    assert image_data_url(tmp_path / "missing.png") is None
