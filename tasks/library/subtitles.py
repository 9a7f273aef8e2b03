"""Subtitles: names for voices from the subtitle files that sit beside a video, or inside it.
In: `<stem>[.<lang>].srt|ass|ssa|vtt`, the video's own text tracks (extracted by tasks/library/subtitle_streams.py),
speaker turns (library speaker ids), speaker links, gallery names.
Out: speaker -> name, character -> name, one-line warnings and conflicts (applied by tasks/library/view.py). Backend:
pysubs2 parses every format.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pysubs2

from tasks.core.records import SpeakerLink, SpeechTurn

# Defaults of the naming rule: a speaker takes a name carried by at least MIN_SHARE of its named lines
# and by at least MIN_LINES of them (one stray line is never enough).
MIN_SHARE = 0.6
MIN_LINES = 2
# Overlaps closer than this (seconds) are a tie: the line then goes to nobody rather than to a guess.
TIE_SECONDS = 1e-3
# A "subtitle" bigger than this is a misnamed file, not worth reading into memory.
MAX_SUBTITLE_BYTES = 20_000_000

# `<stem>.en.srt`, `<stem>.pt-BR.forced.vtt`: one or two language-like tags. Tags must look like language
# codes or flags so that `episode.part2.srt` (the subtitles of `episode.part2.mp4`) is not taken for
# `episode.mp4`'s.
_TAG = r"(?:[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?|(?i:forced|default))"
# "JOHN: hi", "- Mary Jane: hi", "DR. JONES (V.O.): hi": up to three capitalised words (any script),
# an optional SDH parenthetical, a colon. Digits are not allowed, so "10:30" and "Part 2:" are not names.
_WORD = r"[^\W\d_][\w'’.\-]*"
_PREFIX = re.compile(rf"^\s*-?\s*(?P<name>{_WORD}(?: {_WORD}){{0,2}})\s*(?:\([^)]*\))?\s*:(?P<rest>.*)$")
# WebVTT voice span `<v Name>` or `<v.class Name>`.
_VOICE = re.compile(r"\s*<v(?:\.[\w.\-]+)?\s+(?P<name>[^>]+)>")
_TAG_MARKUP = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class NamedLine:
    """One subtitle line whose speaker the file names; times in seconds, name as written."""

    start: float
    end: float
    name: str
    text: str


@dataclass(frozen=True)
class SubtitleFile:
    """A subtitle file the naming step reads: one beside the video, or a text track extracted from inside it."""

    path: Path
    label: str  # what names.json lists: the file's path, or the video's path and the stream
    name: str  # what a warning after the video's name calls it: `episode.en.srt`, `subtitle stream 2 (ass)`

    @classmethod
    def beside(cls, path: Path) -> "SubtitleFile":
        return cls(path, str(path), path.name)


@dataclass(frozen=True)
class SubtitleNaming:
    """What the subtitles of one video, or of the library, say: for the timeline step and the report."""

    sources: list[str]  # the subtitle files used (SubtitleFile.label), at most one per video
    speaker_names: dict[str, str]
    character_names: dict[str, str]
    notes: list[str]


def name_key(name: str) -> str:
    """"JOHN", "John" and " john " are one name."""
    return " ".join(name.casefold().split())


def find_subtitles(video: Path) -> list[Path]:
    """Subtitle files beside `video` with its stem, the untagged one first, then by name."""
    pattern = re.compile(rf"{re.escape(video.stem)}(?:\.{_TAG}){{0,2}}\.(?i:srt|ass|ssa|vtt)")
    try:
        found = [p for p in video.parent.iterdir() if p.is_file() and pattern.fullmatch(p.name)]
    except OSError:  # a folder we cannot list has no subtitles we can use
        return []
    return sorted(found, key=lambda p: (p.stem != video.stem, p.name))


def _decode(data: bytes, label: str) -> tuple[str, list[str]]:
    """UTF-16 when it says so (BOM), else UTF-8; older files are usually CP1252, whose letters are
    Latin-1's, and Latin-1 itself decodes any byte, so the last fallback never fails."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), [f"{label}: not UTF-8, decoded as cp1252"]
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return data.decode("latin-1"), [f"{label}: not UTF-8, decoded as latin-1"]


def _line_names(text: str, voice_tags: bool) -> tuple[list[str], str]:
    """Names found at the start of the lines of one event, and its text without them or any markup."""
    names, rest = [], []
    for line in text.split("\n"):
        voice = _VOICE.match(line) if voice_tags else None
        if voice:
            names.append(voice.group("name").strip())
            line = line[voice.end():]
        else:
            prefix = _PREFIX.match(_TAG_MARKUP.sub("", line))
            if prefix and all(w[0].isupper() for w in prefix.group("name").split()):
                names.append(prefix.group("name"))
                line = prefix.group("rest")
        rest.append(_TAG_MARKUP.sub("", line).strip())
    return names, " ".join(r for r in rest if r)


def read_named_lines(path: Path, unnamed: bool = False, label: str | None = None) -> tuple[list[NamedLine], list[str]]:
    """The lines of a subtitle file that name their speaker (ASS `Name` field, WebVTT `<v Name>`, a
    `NAME:` prefix), plus one-line warnings that call the file `label` (its name by default). Bad input never
    raises: the file, or the line, is skipped. With `unnamed`, every line for its text (name "" where it names
    nobody, or several speakers at once)."""
    path = Path(path)
    label = label or path.name
    try:
        if path.stat().st_size > MAX_SUBTITLE_BYTES:
            return [], [f"{label}: {path.stat().st_size} bytes is too large for a subtitle file, skipped"]
        text, warnings = _decode(path.read_bytes(), label)
    except OSError as e:
        return [], [f"{label}: cannot read ({e.strerror or e}), skipped"]
    try:
        # Unknown tags are kept so that WebVTT voice spans survive parsing (pysubs2 strips them by default).
        subs = pysubs2.SSAFile.from_string(text, keep_unknown_html_tags=True)
    except Exception as e:  # pysubs2 raises many types on malformed input; any of them means "unreadable"
        return [], warnings + [f"{label}: not a readable subtitle file ({type(e).__name__}: {e}), skipped"]

    lines, bad_times, several = [], 0, 0
    for event in subs.get_text_events():
        if event.start < 0 or event.end <= event.start:
            bad_times += 1
            continue
        body = event.plaintext
        if subs.format == "vtt":
            # pysubs2 reads WebVTT like SRT: a NOTE or cue id after a blank line joins the previous cue.
            body = body.split("\n\n")[0]
        names, spoken = _line_names(body, voice_tags=subs.format == "vtt")
        if event.name.strip():
            names = [event.name.strip()]
        if len({name_key(n) for n in names}) > 1:
            several += 1  # "- JOHN: hi / - MARY: hey" in one cue: the time cannot be split between them
            names = []
            if not unnamed:
                continue
        if names or unnamed:
            lines.append(NamedLine(event.start / 1000, event.end / 1000, names[0] if names else "", spoken))
    if bad_times:
        warnings.append(f"{label}: {bad_times} line(s) ending before they start, skipped")
    if several and not unnamed:  # kept for their text then, so not "skipped"
        warnings.append(f"{label}: {several} line(s) naming several speakers at once, skipped")
    return lines, warnings


def line_speaker(line: NamedLine, turns: Sequence[SpeechTurn], starts: Sequence[float], longest: float) -> str | None:
    """The speaker whose turns overlap the line most; a tie or no overlap gives nobody.
    `turns` sorted by start, `starts` their starts, `longest` the longest turn (bounds the search)."""
    overlap: dict[str, float] = defaultdict(float)
    for t in turns[bisect_left(starts, line.start - longest):]:
        if t.start >= line.end:
            break
        o = min(t.end, line.end) - max(t.start, line.start)
        if o > 0:
            overlap[t.speaker] += o
    ranked = sorted(overlap.values(), reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[0] - ranked[1] < TIE_SECONDS):
        return None
    return max(overlap, key=overlap.__getitem__)


def name_speakers(lines: Sequence[NamedLine], turns: Sequence[SpeechTurn], min_share: float = MIN_SHARE,
                  min_lines: int = MIN_LINES) -> tuple[dict[str, str], list[str]]:
    """speaker -> name, and conflict notes, for one video; see `name_speakers_across`."""
    return name_speakers_across([(lines, turns)], min_share, min_lines)


def name_speakers_across(videos: Iterable[tuple[Sequence[NamedLine], Sequence[SpeechTurn]]],
                         min_share: float = MIN_SHARE, min_lines: int = MIN_LINES) -> tuple[dict[str, str], list[str]]:
    """speaker -> name, and conflict notes; votes are pooled over videos, as library speaker ids span them.
    Each named line votes for the speaker it overlaps most in its video. A speaker takes the name of at
    least `min_lines` of its lines and `min_share` of its named lines. Conflicts: a speaker whose second
    name also has `min_lines` lines and a share of at least 1 - `min_share` (named anyway if the first name
    passes the rule), and one name given to several speakers (each keeps it: diarization often splits one
    voice in two)."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    spelled: dict[str, Counter[str]] = defaultdict(Counter)  # name key -> spellings, for display
    for lines, turns in videos:
        ordered = sorted(turns, key=lambda t: t.start)
        starts = [t.start for t in ordered]
        longest = max((t.duration for t in ordered), default=0.0)
        for line in lines:
            speaker = line_speaker(line, ordered, starts, longest)
            if speaker is not None:
                votes[speaker][name_key(line.name)] += 1
                spelled[name_key(line.name)][line.name] += 1

    def shown(key: str) -> str:
        return spelled[key].most_common(1)[0][0]

    names, notes = {}, []
    for speaker in sorted(votes):
        total = sum(votes[speaker].values())
        ranked = votes[speaker].most_common()
        (top, n_top), (second, n_second) = ranked[0], (ranked[1] if len(ranked) > 1 else ("", 0))
        named = n_top >= min_lines and n_top / total >= min_share and n_top > n_second
        if named:
            names[speaker] = shown(top)
        if n_second >= min_lines and n_second / total >= 1 - min_share:
            outcome = f"named {shown(top)!r}" if named else "left unnamed"
            notes.append(f"conflict: {speaker} is {shown(top)!r} in {n_top} lines and {shown(second)!r} "
                         f"in {n_second}: {outcome}")
    by_name: dict[str, list[str]] = defaultdict(list)
    for speaker, name in names.items():
        by_name[name_key(name)].append(speaker)
    for key, speakers in sorted(by_name.items()):
        if len(speakers) > 1:
            notes.append(f"conflict: {shown(key)!r} names several speakers ({', '.join(speakers)}): "
                         f"one voice split in two, or subtitles out of sync")
    return names, notes


def same_person(a: str, b: str) -> bool:
    """"John" and "John Smith" agree (every word of one is in the other); "John" and "Mary" do not."""
    wa, wb = set(re.findall(r"\w+", a.casefold())), set(re.findall(r"\w+", b.casefold()))
    return bool(wa and wb) and (wa <= wb or wb <= wa)


def reconcile(speaker_names: dict[str, str], links: Iterable[SpeakerLink],
              gallery_names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """character -> name, and notes ("agreement: …", "conflict: …"). A gallery name always stays; a character
    without one takes the subtitle name of its linked voices, unless they disagree, or the name is already a
    gallery name or is proposed for another character too (character labels must stay unique)."""
    names, notes = dict(gallery_names), []
    proposed: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))  # cid -> name -> speakers
    # Links of several videos repeat the same voice-to-face pairs; each pair counts once.
    for speaker, cid in sorted({(link.speaker, link.character_id) for link in links if link.character_id}):
        name = speaker_names.get(speaker)
        if name is None:
            continue
        gallery = gallery_names.get(cid)
        if gallery is None:
            proposed[cid][name].append(speaker)
        elif same_person(gallery, name):
            notes.append(f"agreement: {speaker} {name!r} (subtitles) is {cid} {gallery!r} (gallery)")
        else:
            notes.append(f"conflict: {speaker} is {name!r} in the subtitles but is linked to "
                         f"{cid}, {gallery!r} in the gallery: the character keeps {gallery!r}")
    wanted: dict[str, str] = {}
    for cid, by_name in sorted(proposed.items()):
        if len({name_key(n) for n in by_name}) > 1:
            voices = ", ".join(f"{s} {n!r}" for n, ss in by_name.items() for s in ss)
            notes.append(f"conflict: {cid} is linked to voices with different names ({voices}): left unnamed")
        else:
            wanted[cid] = next(iter(by_name))
    claims = Counter(name_key(n) for n in wanted.values())
    for cid, name in sorted(wanted.items()):
        owner = next((c for c, g in gallery_names.items() if same_person(g, name)), None)
        if owner is not None:
            notes.append(f"conflict: {cid} would be {name!r} from the subtitles, but {owner} is "
                         f"{gallery_names[owner]!r} in the gallery: left unnamed")
        elif claims[name_key(name)] > 1:
            notes.append(f"conflict: {name!r} fits several characters through their voices: {cid} left unnamed")
        else:
            names[cid] = name
    return names, notes


def video_lines(files: Sequence[SubtitleFile]) -> tuple[SubtitleFile | None, list[NamedLine], list[str]]:
    """The named lines of a video's subtitles, and warnings. Of several files (languages), the one with the
    most named lines is used (the first of a tie): they repeat the same lines, so pooling them would count each
    more than once."""
    best: tuple[SubtitleFile | None, list[NamedLine]] = (None, [])
    warnings: list[str] = []
    for file in files:
        lines, problems = read_named_lines(file.path, label=file.name)
        warnings += problems
        if len(lines) > len(best[1]):
            best = (file, lines)
    return best[0], best[1], warnings


def name_from_subtitles(videos: Sequence[tuple[Path, Sequence[SubtitleFile], Sequence[SpeechTurn],
                                               Sequence[SpeakerLink]]],
                        gallery_names: dict[str, str], min_share: float = MIN_SHARE,
                        min_lines: int = MIN_LINES) -> SubtitleNaming:
    """The whole step over (video path, its subtitle files, its turns and links in library ids) for one or every
    video."""
    sources, pooled, notes = [], [], []
    for video, files, turns, _ in videos:
        source, lines, warnings = video_lines(files)
        notes += [f"{video.name}: {w}" for w in warnings]
        if source is not None:
            sources.append(source.label)
        pooled.append((lines, turns))
    speaker_names, conflicts = name_speakers_across(pooled, min_share, min_lines)
    character_names, agreements = reconcile(speaker_names, [link for *_, ls in videos for link in ls],
                                            gallery_names)
    return SubtitleNaming(sources, speaker_names, character_names, notes + conflicts + agreements)
