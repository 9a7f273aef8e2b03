import numpy as np

from tasks.video.align import cooccurrence, link_voices, merge_intervals, same_face_voices, screen_pieces, video_links
from tasks.core.config import AlignParams
from tasks.core.records import Box, Character, Segment, SpeakerLink, SpeechTurn, Track
from tasks.library.timeline import build_timeline


def _track(tid, times, x=0):
    return Track(tid, tuple(Box(int(t), t, x, 0, x + 50, 50, 0.99) for t in times))


def link_speakers(turns, tracks, chars, interval, params):
    """One video on its own."""
    return link_voices([("v", cooccurrence(turns, tracks, chars, interval))], params)


def _scene():
    # A is alone on screen 0-4 s, B alone 5-9 s, both at 10-11 s.
    tracks = [_track(0, [0, 1, 2, 3, 4, 10, 11]), _track(1, [5, 6, 7, 8, 9, 10, 11], x=100)]
    chars = [Character("character_000", (0,)), Character("character_001", (1,), name="Bea")]
    return tracks, chars


def test_merge_intervals_with_gap():
    assert merge_intervals([(0, 1), (1.2, 2), (5, 6)], gap=0.5) == [Segment(0, 2), Segment(5, 6)]


def test_voices_link_to_the_face_on_screen_and_offscreen_stays_unlinked():
    tracks, chars = _scene()
    turns = [SpeechTurn(0.0, 4.0, "S0"), SpeechTurn(5.0, 9.0, "S1"), SpeechTurn(12.5, 20.0, "S2")]
    links = {l.speaker: l for l in link_speakers(turns, tracks, chars, 1.0, AlignParams())}
    assert links["S0"].character_id == "character_000" and links["S0"].score > 0.9
    assert links["S1"].character_id == "character_001"
    assert links["S2"].character_id is None  # nobody on screen: a voice-over, not a forced match


def test_a_voice_heard_over_a_crowd_links_by_the_time_its_face_is_on_screen():
    # Four faces on screen for all of S0's speech: each is seen with it all the time, though the weighted
    # share (a quarter each) is under min_score. A face on screen for 1 s of S1's 10 s is too little.
    tracks = [_track(k, [0, 1, 2, 3, 4], x=100 * k) for k in range(4)] + [_track(4, [10], x=500)]
    chars = [Character(f"character_00{k}", (k,)) for k in range(5)]
    turns = [SpeechTurn(0.0, 4.0, "S0"), SpeechTurn(9.5, 19.5, "S1")]
    links = {l.speaker: l for l in link_speakers(turns, tracks, chars, 1.0, AlignParams(min_score=0.3))}
    assert links["S0"].character_id is not None and links["S0"].score < 0.3
    assert links["S1"].character_id is None


def test_two_voices_never_share_one_face():
    tracks, chars = _scene()
    turns = [SpeechTurn(0.0, 4.0, "S0"), SpeechTurn(0.5, 4.0, "S1")]
    links = {l.speaker: l.character_id for l in link_speakers(turns, tracks, chars, 1.0, AlignParams())}
    assert links["S0"] == "character_000" and links["S1"] is None


def test_timeline_spans_cover_screen_time_and_speech():
    tracks, chars = _scene()
    turns = [SpeechTurn(5.0, 9.0, "S1"), SpeechTurn(13.0, 14.0, "S9")]
    links = link_speakers(turns, tracks, chars, 1.0, AlignParams())
    spans = build_timeline("v.mp4", tracks, chars, turns, links, 1.0)
    bea_screen = [(s.start, s.end) for s in spans if s.character == "Bea" and s.kind == "on_screen"]
    assert bea_screen == [(4.5, 11.5)]
    a_screen = [(s.start, s.end) for s in spans if s.character == "character_000" and s.kind == "on_screen"]
    assert a_screen == [(0.0, 4.5), (9.5, 11.5)]
    speaking = {(s.character, s.start) for s in spans if s.kind == "speaking"}
    assert speaking == {("Bea", 5.0), ("offscreen_S9", 13.0)}


def test_the_timeline_png_draws_each_character_in_its_report_colour(tmp_path):
    """Bea and the voice S9 (no face) speak: their bands are in their report.html colour; character_000 is only on
    screen: a pale bar of its colour."""
    from PIL import Image

    from tasks.core.formats import read_timeline_json
    from tasks.library.registry import Registry
    from tasks.library.report_cast import ON_SCREEN_OPACITY, build_cast
    from tasks.library.timeline import write_timeline
    from tasks.library.view import LibraryView

    tracks, chars = _scene()
    turns = [SpeechTurn(5.0, 9.0, "S1"), SpeechTurn(13.0, 14.0, "S9")]
    links = link_speakers(turns, tracks, chars, 1.0, AlignParams())
    view = LibraryView(Registry("character", "euclidean"), Registry("speaker", "cosine"))
    write_timeline(tmp_path, "v.mp4", tracks, chars, turns, links, 1.0, 15.0, view)
    cast = build_cast([read_timeline_json(tmp_path / "timeline.json")], view)
    with Image.open(tmp_path / "timeline.png") as png:
        pixels = np.asarray(png.convert("RGB")).reshape(-1, 3).astype(int)
    assert png.size[0] == 1000 and png.size[1] >= 160

    def drawn(rgb) -> bool:
        return bool((np.abs(pixels - rgb).max(axis=1) <= 2).any())

    full = {s.key: np.array([int(s.colour[i:i + 2], 16) for i in (1, 3, 5)]) for s in cast.sections}
    assert set(full) == {"character_000", "character_001", "offscreen_S9"}
    assert len({s.colour for s in cast.sections}) == 3
    assert drawn(full["character_001"]) and drawn(full["offscreen_S9"])
    assert not drawn(full["character_000"]) and drawn(255 - ON_SCREEN_OPACITY * (255 - full["character_000"]))


def test_the_timeline_png_is_copied_while_it_would_show_the_same(tmp_path, monkeypatch):
    """A run that adds an episode rewrites every video's timeline folder: an unchanged plot is not drawn again."""
    from tasks.library import timeline as module
    from tasks.library.registry import Registry
    from tasks.library.view import LibraryView

    tracks, chars = _scene()
    turns = [SpeechTurn(5.0, 9.0, "S1")]
    links = link_speakers(turns, tracks, chars, 1.0, AlignParams())
    view = LibraryView(Registry("character", "euclidean"), Registry("speaker", "cosine"))
    first, second, longer = (tmp_path / k for k in ("first", "second", "longer"))
    for folder in (first, second, longer):
        folder.mkdir()
    module.write_timeline(first, "v.mp4", tracks, chars, turns, links, 1.0, 15.0, view)
    plotted = []
    monkeypatch.setattr(module, "plot_timeline", lambda *a: plotted.append(a) or a[-1].write_bytes(b"png"))
    module.write_timeline(second, "v.mp4", tracks, chars, turns, links, 1.0, 15.0, view, previous=first)
    assert not plotted and (second / "timeline.png").read_bytes() == (first / "timeline.png").read_bytes()
    turns.append(SpeechTurn(10.0, 11.0, "S1"))  # Bea speaks once more: drawn again
    module.write_timeline(longer, "v.mp4", tracks, chars, turns, links, 1.0, 15.0, view, previous=second)
    assert len(plotted) == 1 and (longer / "timeline.png").read_bytes() == b"png"


def test_screen_pieces_hold_the_characters_visible_in_each_piece():
    spans = {"a": [Segment(0, 4), Segment(9, 12)], "b": [Segment(3, 10)], "c": [Segment(20, 21)]}
    pieces = screen_pieces(spans)
    assert [(p.start, p.end, v) for p, v in pieces] == [
        (0, 3, ("a",)), (3, 4, ("a", "b")), (4, 9, ("b",)), (9, 10, ("a", "b")), (10, 12, ("a",)), (20, 21, ("c",))]


def test_cooccurrence_weights_shared_screen_time_and_records_total_speech():
    tracks, chars = _scene()
    rows = {(r.speaker, r.character_id): r for r in cooccurrence([SpeechTurn(8.5, 11.5, "S1")], tracks, chars, 1.0)}
    assert rows[("S1", None)].weighted_seconds == 3.0  # the voice's total speech
    # B alone 8.5-9.5, then A and B together 9.5-11.5 (each counted half).
    assert rows[("S1", "character_001")].together_seconds == 3.0
    assert rows[("S1", "character_001")].weighted_seconds == 2.0
    assert rows[("S1", "character_000")].weighted_seconds == 1.0


def test_library_links_pool_the_evidence_of_every_video():
    tracks, chars = _scene()
    # In video 1 voice X is heard while A and B are both on screen: no face wins there alone.
    v1 = cooccurrence([SpeechTurn(10.0, 11.5, "X")], tracks, chars, 1.0)
    # In video 2 the same voice is heard over B alone.
    v2 = cooccurrence([SpeechTurn(5.0, 9.0, "X")], tracks, chars, 1.0)
    (link,) = link_voices([("v1", v1), ("v2", v2)], AlignParams())
    assert link.character_id == "character_001"
    assert link.speech_seconds == 5.5 and link.score == round((0.75 + 4.0) / 5.5, 4)


def test_video_links_keep_the_library_character_with_that_videos_figures():
    tracks, chars = _scene()
    v1 = cooccurrence([SpeechTurn(10.0, 11.5, "X")], tracks, chars, 1.0)
    v2 = cooccurrence([SpeechTurn(5.0, 9.0, "X")], tracks, chars, 1.0)
    library = {link.speaker: link for link in link_voices([("v1", v1), ("v2", v2)], AlignParams())}
    (here,) = video_links(v1, library)
    # Video 1 alone: 1.5 s of speech, with B on screen for all of it but shared with A (weighted 0.75).
    assert here.character_id == library["X"].character_id == "character_001"
    assert (here.speech_seconds, here.score, here.overlap_seconds) == (1.5, 0.5, 1.5)
    assert video_links(v1, {}) == [SpeakerLink("X", None, 0.0, 1.5, 0.0)]


def test_voices_of_different_videos_may_share_a_face_but_not_voices_of_one():
    tracks, chars = _scene()
    # The voice registry split one person into X (video 1) and Y (video 2): both are seen with A.
    x = cooccurrence([SpeechTurn(0.0, 4.0, "X")], tracks, chars, 1.0)
    y = cooccurrence([SpeechTurn(0.0, 3.0, "Y")], tracks, chars, 1.0)
    links = {l.speaker: l.character_id for l in link_voices([("v1", x), ("v2", y)], AlignParams())}
    assert links == {"X": "character_000", "Y": "character_000"}
    both = cooccurrence([SpeechTurn(0.0, 4.0, "X"), SpeechTurn(0.0, 3.0, "Y")], tracks, chars, 1.0)
    links = {l.speaker: l.character_id for l in link_voices([("v1", both)], AlignParams())}
    assert links == {"X": "character_000", "Y": None}


def _unit(angle_deg):
    a = np.radians(angle_deg)
    return np.array([np.cos(a), np.sin(a), 0.0])


def test_voices_the_same_face_vouches_for_merge_when_close_and_never_heard_together():
    # cosine distance 1 - cos(angle): 40 deg -> 0.23, 60 deg -> 0.5, 70 deg -> 0.66
    centroids = {"speaker_001": _unit(0), "speaker_002": _unit(60), "speaker_003": _unit(40),
                 "speaker_004": _unit(-20), "speaker_005": _unit(130)}
    links = [SpeakerLink("speaker_001", "character_000", 0.9, 10.0, 9.0),
             SpeakerLink("speaker_002", "character_000", 0.8, 5.0, 4.0),
             SpeakerLink("speaker_003", "character_000", 0.7, 4.0, 3.0),
             SpeakerLink("speaker_004", "character_001", 0.9, 6.0, 5.0),
             SpeakerLink("speaker_005", None, 0.0, 3.0, 0.0)]
    heard_in = {"speaker_001": {"a"}, "speaker_002": {"b"}, "speaker_003": {"a", "b"}, "speaker_004": {"c"},
                "speaker_005": {"d"}}
    # 003 is heard in a video with each of the others (other people); 001-002 at 0.5 are under 0.55; 004 is close to
    # 001 but linked to another face; 005 has no face at all.
    assert same_face_voices(links, centroids, heard_in, 0.55) == [("speaker_001", "speaker_002")]
    assert same_face_voices(links, centroids, heard_in, 0.45) == []
    # 002-003 (20 deg) is the closest pair heard apart: each voice takes part in one pair only.
    heard_in["speaker_003"] = {"e"}
    assert same_face_voices(links, centroids, heard_in, 0.55) == [("speaker_002", "speaker_003")]


def test_a_merged_registry_voice_keeps_one_id_in_every_video():
    from tasks.library.registry import Member, Registry

    reg = Registry("speaker", "cosine", [Member("a", "k", "S0", "speaker_000", 1.0, _unit(0).astype(np.float32)),
                                          Member("b", "k", "S0", "speaker_001", 1.0, _unit(60).astype(np.float32))])
    reg.merge("speaker_000", "speaker_001")
    assert reg.global_ids() == ["speaker_000"] and reg.mapping("b") == {"S0": "speaker_000"}


def test_published_tracks_are_scaled_from_sampled_to_source_pixels():
    from tasks.library.timeline import in_source_pixels

    (big,) = in_source_pixels([_track(0, [0], x=96)], (960, 540), (1280, 720))
    assert big.boxes[0].xyxy == (128.0, 0.0, 194.67, 66.67)
    assert in_source_pixels([_track(0, [0])], None, (1280, 720))[0].boxes[0].xyxy == (0, 0, 50, 50)  # no frames
