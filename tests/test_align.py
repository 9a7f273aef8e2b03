from tasks.align import link_speakers, merge_intervals
from tasks.config import AlignParams
from tasks.records import Box, Character, Segment, SpeechTurn, Track
from tasks.timeline import build_timeline


def _track(tid, times, x=0):
    return Track(tid, tuple(Box(int(t), t, x, 0, x + 50, 50, 0.99) for t in times))


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


def test_timeline_plot_is_a_png_with_a_row_per_character(tmp_path):
    from tasks.plots import plot_timeline
    tracks, chars = _scene()
    spans = build_timeline("v.mp4", tracks, chars, [SpeechTurn(5.0, 9.0, "S1")],
                           link_speakers([SpeechTurn(5.0, 9.0, "S1")], tracks, chars, 1.0, AlignParams()), 1.0)
    out = plot_timeline(spans, 12.0, "v.mp4", tmp_path / "t.png")
    import matplotlib.image
    image = matplotlib.image.imread(out)
    assert image.shape[1] == 1000 and image.shape[0] >= 160
