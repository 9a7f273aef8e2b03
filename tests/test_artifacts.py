import re

from prefect.settings import PREFECT_UI_URL, temporary_settings

from conftest import published
from flows.artifacts import alignment_markdown, character_rows, library_key
from tasks.core.formats import write_timeline_json
from tasks.core.records import Character, SpeakerLink, TimelineSpan, VideoResult


def test_library_key_is_valid_and_stable(tmp_path):
    key = library_key(tmp_path / "My Show: Season 1", "characters")
    assert re.fullmatch(r"[a-z0-9-]+", key) and key == library_key(tmp_path / "My Show: Season 1", "characters")
    assert key != library_key(tmp_path / "other", "characters")


def test_rows_and_markdown_come_from_the_timelines(tmp_path):
    chars = [Character("character_001", (0,), name="Bea")]
    spans = [TimelineSpan("ep.mp4", "Bea", "on_screen", 0.0, 4.0), TimelineSpan("ep.mp4", "Bea", "speaking", 1.0, 2.5, "speaker_000")]
    links = [SpeakerLink("speaker_000", "character_001", 0.9, 1.5, 1.5), SpeakerLink("speaker_001", None, 0.0, 3.0, 0.0)]
    write_timeline_json(tmp_path / "t.json", "ep.mp4", spans, chars, links)
    results = [VideoResult("ep.mp4", True, outputs=published(tmp_path / "t.json")),
               VideoResult("bad.mp4", False, error="not a media file")]
    assert character_rows(results) == [{"Video": "ep.mp4", "Character": "character_001", "Name": "Bea",
                                        "On screen (s)": 4.0, "Speaking (s)": 1.5, "Voices": "speaker_000"}]
    with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:4200"}):
        md = alignment_markdown(results, tmp_path / "report.md", (1, 3),
                                {"ep.mp4": [("found", "4c08"), ("report", "9e1d")]})
    assert "1 published by this run, 3 unchanged since an earlier run" in md
    assert ("| ep.mp4 | [found](http://127.0.0.1:4200/artifacts/artifact/4c08) · "
            "[report](http://127.0.0.1:4200/artifacts/artifact/9e1d) |") in md
    assert "1 succeeded, 1 failed" in md and "bad.mp4`: not a media file" in md
    assert "| ep.mp4 | speaker_001 | off-screen | 0.00 |" in md
    # Markdown renders one blank line and two alike, but the raw text shown beside it should not gape.
    assert "\n\n\n" not in md
    assert "\n\n\n" not in alignment_markdown(results[:1], tmp_path / "report.md", (0, 4), {})
