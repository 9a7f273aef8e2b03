from pathlib import Path

from tasks.core.records import Character, SpeakerLink, SpeechTurn
from tasks.library.registry import Registry
from tasks.library.subtitles import (
    NamedLine,
    SubtitleFile,
    find_subtitles,
    name_from_subtitles,
    name_speakers,
    read_named_lines,
    reconcile,
)
from tasks.library.view import GlobalView, LibraryNames, LibraryView

ASS_HEADER = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""
ASS = ASS_HEADER + """Dialogue: 0,0:00:01.00,0:00:02.50,Default,Zoë,0,0,0,,{\\i1}Hello{\\i0}\\Nthere
Comment: 0,0:00:03.00,0:00:04.00,Default,Bob,0,0,0,,a comment is not a line
Dialogue: 0,0:00:05.00,0:00:06.00,Default,,0,0,0,,nobody named
Dialogue: 0,0:00:07.00,0:00:08.00,Default,Bob,0,0,0,,Hi
"""

VTT = """WEBVTT

NOTE made by hand

intro
00:01.000 --> 00:02.000 align:start
<v.loud Bob Smith>Hi <c.yellow>there</c></v>

00:00:03.000 --> 00:00:04.000
<v Ann>One

NOTE this comment is not part of the cue above

00:05.000 --> 00:06.000
no voice here
"""

SRT = """1
00:00:01,000 --> 00:00:02,000
JOHN: Hello.

2
00:00:03,000 --> 00:00:04,000
<i>Mary Jane:</i> Hi,
how are you?

3
00:00:05,000 --> 00:00:06,000
See you at 10:30 tomorrow.

4
00:00:07,000 --> 00:00:08,000
- JOHN: You?
- MARY: Me.

5
00:00:09,000 --> 00:00:10,000
DR. JONES (V.O.): Later.

6
00:00:12,000 --> 00:00:11,000
JOHN: backwards in time
"""


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ass_names_come_from_the_name_field(tmp_path):
    lines, warnings = read_named_lines(write(tmp_path, "a.ass", ASS))
    assert lines == [NamedLine(1.0, 2.5, "Zoë", "Hello there"), NamedLine(7.0, 8.0, "Bob", "Hi")]
    assert warnings == []


def test_webvtt_names_come_from_voice_tags(tmp_path):
    lines, warnings = read_named_lines(write(tmp_path, "a.vtt", VTT))
    assert lines == [NamedLine(1.0, 2.0, "Bob Smith", "Hi there"), NamedLine(3.0, 4.0, "Ann", "One")]
    assert warnings == []


def test_srt_names_come_from_prefixes(tmp_path):
    lines, warnings = read_named_lines(write(tmp_path, "a.srt", SRT))
    assert [(l.start, l.name, l.text) for l in lines] == [
        (1.0, "JOHN", "Hello."), (3.0, "Mary Jane", "Hi, how are you?"), (9.0, "DR. JONES", "Later.")]
    assert warnings == ["a.srt: 1 line(s) ending before they start, skipped",
                        "a.srt: 1 line(s) naming several speakers at once, skipped"]


def test_every_line_is_read_for_its_text_when_asked(tmp_path):
    # What `castline export` puts beside a turn: lines naming nobody, or several speakers, too (named "").
    lines, warnings = read_named_lines(write(tmp_path, "a.srt", SRT), unnamed=True)
    assert [(l.start, l.name, l.text) for l in lines] == [
        (1.0, "JOHN", "Hello."), (3.0, "Mary Jane", "Hi, how are you?"), (5.0, "", "See you at 10:30 tomorrow."),
        (7.0, "", "You? Me."), (9.0, "DR. JONES", "Later.")]
    assert warnings == ["a.srt: 1 line(s) ending before they start, skipped"]


def test_latin1_file_is_decoded_with_a_warning(tmp_path):
    text = "1\n00:00:01,000 --> 00:00:02,000\nRENÉ: Café crème, s'il vous plaît.\n"
    lines, warnings = read_named_lines(write(tmp_path, "fr.srt", text, "latin-1"))
    assert [(l.name, l.text) for l in lines] == [("RENÉ", "Café crème, s'il vous plaît.")]
    assert warnings == ["fr.srt: not UTF-8, decoded as cp1252"]


def test_broken_files_warn_and_never_raise(tmp_path):
    cases = {
        "timing.srt": "1\n00:00:xx,000 --> later\nJOHN: hi\n",
        "garbage.vtt": "\x00\x01 not subtitles at all",
        "empty.srt": "",
        "bad.ass": ASS.replace("0:00:07.00", "0:00:0x.00"),
    }
    for name, text in cases.items():
        lines, warnings = read_named_lines(write(tmp_path, name, text))
        assert lines == [] and len(warnings) == 1 and warnings[0].startswith(f"{name}: ")
        assert "\n" not in warnings[0]
    (tmp_path / "folder.srt").mkdir()
    for missing in (tmp_path / "missing.srt", tmp_path / "folder.srt"):
        lines, warnings = read_named_lines(missing)
        assert lines == [] and warnings[0].startswith(f"{missing.name}: cannot read")


def test_find_subtitles_beside_the_video(tmp_path):
    video = tmp_path / "episode.mp4"
    video.write_bytes(b"")
    for name in ("episode.en.ass", "episode.srt", "episode.pt-BR.forced.vtt", "episode.FR.SRT",
                 "episode.part2.srt", "other.srt", "episode.txt", "episode.en.srt.bak"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in find_subtitles(video)] == [
        "episode.srt", "episode.FR.SRT", "episode.en.ass", "episode.pt-BR.forced.vtt"]
    assert find_subtitles(tmp_path / "gone" / "x.mp4") == []


def beside(video: Path) -> list[SubtitleFile]:
    return [SubtitleFile.beside(p) for p in find_subtitles(video)]


def turns_of(speaker: str, *spans: tuple[float, float]) -> list[SpeechTurn]:
    return [SpeechTurn(a, b, speaker) for a, b in spans]


def test_two_speakers_named_and_a_conflict_reported():
    turns = (turns_of("speaker_001", (0, 10), (20, 30)) + turns_of("speaker_002", (10, 20), (30, 40))
             + turns_of("speaker_003", (50, 60)))
    lines = [
        NamedLine(1, 3, "JOHN", ""), NamedLine(21, 24, "John", ""), NamedLine(25, 27, "JOHN", ""),
        NamedLine(11, 13, "Mary", ""), NamedLine(31, 33, "Mary", ""),
        NamedLine(8, 11, "Mary", ""),  # 2 s with speaker_001, 1 s with speaker_002: a vote for speaker_001
        NamedLine(9, 11, "Nobody", ""),  # 1 s each: a tie goes to nobody
        NamedLine(45, 46, "Ghost", ""),  # overlaps no turn
        NamedLine(51, 52, "Ann", ""), NamedLine(53, 54, "Ann", ""),
        NamedLine(55, 56, "Eve", ""), NamedLine(57, 58, "Eve", ""),
    ]
    names, notes = name_speakers(lines, turns)
    assert names == {"speaker_001": "JOHN", "speaker_002": "Mary"}
    assert notes == ["conflict: speaker_003 is 'Ann' in 2 lines and 'Eve' in 2: left unnamed"]
    names, _ = name_speakers(lines, turns, min_lines=3)
    assert names == {"speaker_001": "JOHN"}


def test_one_name_on_two_speakers_is_a_conflict():
    turns = turns_of("speaker_001", (0, 10)) + turns_of("speaker_002", (10, 20))
    lines = [NamedLine(t, t + 1, "John", "") for t in (1, 3, 11, 13)]
    names, notes = name_speakers(lines, turns)
    assert names == {"speaker_001": "John", "speaker_002": "John"}
    assert notes == ["conflict: 'John' names several speakers (speaker_001, speaker_002): "
                     "one voice split in two, or subtitles out of sync"]


def link(speaker: str, character: str | None) -> SpeakerLink:
    return SpeakerLink(speaker, character, 1.0, 10.0, 5.0)


def test_reconcile_with_gallery_names():
    speaker_names = {"speaker_001": "JOHN", "speaker_002": "John", "speaker_003": "Ann", "speaker_004": "Bob",
                     "speaker_005": "Eve", "speaker_006": "Max", "speaker_007": "Max", "speaker_008": "Off"}
    links = [link("speaker_001", "character_001"), link("speaker_002", "character_002"),
             link("speaker_003", "character_003"), link("speaker_004", "character_004"),
             link("speaker_005", "character_004"), link("speaker_006", "character_005"),
             link("speaker_007", "character_006"), link("speaker_008", None), link("speaker_009", "character_007")]
    gallery = {"character_001": "John Smith", "character_002": "Mary"}
    names, notes = reconcile(speaker_names, links, gallery)
    assert names == {"character_001": "John Smith", "character_002": "Mary", "character_003": "Ann"}
    assert notes == [
        "agreement: speaker_001 'JOHN' (subtitles) is character_001 'John Smith' (gallery)",
        "conflict: speaker_002 is 'John' in the subtitles but is linked to character_002, 'Mary' in the "
        "gallery: the character keeps 'Mary'",
        "conflict: character_004 is linked to voices with different names (speaker_004 'Bob', speaker_005 'Eve'): "
        "left unnamed",
        "conflict: 'Max' fits several characters through their voices: character_005 left unnamed",
        "conflict: 'Max' fits several characters through their voices: character_006 left unnamed",
    ]
    names, notes = reconcile({"speaker_001": "Mary"}, [link("speaker_001", "character_009")], gallery)
    assert "character_009" not in names and "but character_002 is 'Mary' in the gallery" in notes[0]


def test_whole_step_from_files_beside_a_video(tmp_path):
    video = tmp_path / "episode.mkv"
    srt = "".join(f"{i}\n00:00:{s:02d},000 --> 00:00:{s + 1:02d},000\n{n}: line {i}\n\n"
                  for i, (s, n) in enumerate([(1, "JOHN"), (3, "JOHN"), (11, "MARY"), (13, "MARY")], 1))
    write(tmp_path, "episode.en.srt", srt)
    write(tmp_path, "episode.de.srt", "1\n00:00:01,000 --> 00:00:02,000\nJOHANN: hallo\n")
    write(tmp_path, "episode.fr.srt", "garbage")
    turns = turns_of("speaker_001", (0, 10)) + turns_of("speaker_002", (10, 20))
    links = [link("speaker_001", "character_001"), link("speaker_002", None)]
    naming = name_from_subtitles([(video, beside(video), turns, links)], {})
    assert naming.sources == [str(tmp_path / "episode.en.srt")]  # the file with the most named lines
    assert len(naming.notes) == 1
    assert naming.notes[0].startswith("episode.mkv: episode.fr.srt: not a readable subtitle file")
    assert naming.speaker_names == {"speaker_001": "JOHN", "speaker_002": "MARY"}
    assert naming.character_names == {"character_001": "JOHN"}
    view = LibraryView(Registry("character", "euclidean", []), Registry("speaker", "cosine", []),
                       LibraryNames(subtitles=naming))
    named = view.named(GlobalView([], [Character("character_001", (1,))], turns, links))
    assert named.characters[0].label == "JOHN"
    assert {t.speaker for t in named.turns} == {"JOHN", "MARY"} and [l.speaker for l in named.links] == ["JOHN", "MARY"]


def test_library_pools_votes_over_videos(tmp_path):
    """One JOHN line per episode is below MIN_LINES in each, enough over the library (ids span videos)."""
    videos = []
    for ep in ("s1e1", "s1e2"):
        write(tmp_path, f"{ep}.srt", "1\n00:00:01,000 --> 00:00:02,000\nJOHN: hi\n")
        video = tmp_path / f"{ep}.mp4"
        videos.append((video, beside(video), turns_of("speaker_001", (0, 5)), [link("speaker_001", "character_001")]))
    assert name_from_subtitles(videos[:1], {}).speaker_names == {}
    naming = name_from_subtitles(videos, {"character_001": "John"})
    assert naming.speaker_names == {"speaker_001": "JOHN"}
    assert naming.notes == ["agreement: speaker_001 'JOHN' (subtitles) is character_001 'John' (gallery)"]
