"""report.html's cast: who the page has a section for, what each section gathers, and its colour.

In: every processed video's Timeline (tasks/core/records.py) and the LibraryView (names, each voice's link).
Out: a Cast — one Section per library character (every video it is seen or heard in) and one per voice the
library never linked to a face, in page order, each with the colour it has everywhere on the page and in the
videos' timeline.png — and, for each timeline label of each video, the section it belongs to. Pure: reads no
file.

A voice linked to a character library-wide but heard without that face in one video (an audio file, a scene
off camera) is filed `offscreen_<voice>` in that video's timeline; here it stays in its character's section.
"""
from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Sequence

from tasks.core.records import Timeline, TimelineCharacter
from tasks.library.view import LibraryView

# Distinct on white and on each other; characters beyond it get golden-angle hues.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173", "#3182bd", "#637939", "#d6616b", "#6b6ecf")
CHARACTER, VOICE = "character", "voice"
ON_SCREEN_OPACITY = 0.35  # of a section's colour while on screen; speaking is drawn in full colour


def _hls(hue: float, lightness: float, saturation: float) -> str:
    r, g, b = colorsys.hls_to_rgb(hue % 360 / 360, lightness, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def colour(key: str, kind: str) -> str:
    """A section's colour, from its key alone: the same in report.html and in every video's timeline.png
    (tasks/library/plots.py), and from run to run, whatever else the library holds. character_000 gets the
    palette's first colour, character_001 its second, and so on, those beyond it golden-angle hues; a voice never
    linked to a face a greyish hue, so it never takes a character's colour. Hex: SVG and matplotlib both read it."""
    number = re.search(r"\d+$", key)  # library ids are numbered; a voice named by the subtitles may not be
    n = int(number.group()) if number else int.from_bytes(hashlib.blake2b(key.encode(), digest_size=2).digest())
    if kind == VOICE:
        return _hls(n * 137.508, 0.50, 0.22)
    return PALETTE[n] if n < len(PALETTE) else _hls(n * 137.508, 0.42, 0.60)


def slug(text: str) -> str:
    """An id- and file-name-safe form of a label or video name, readable and unique enough within one page."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


@dataclass
class Appearance:
    """A section's spans in one video and the voices (as the timeline labels them) heard there."""

    on_screen: list[tuple[float, float]] = field(default_factory=list)
    speaking: list[tuple[float, float]] = field(default_factory=list)
    voices: list[str] = field(default_factory=list)

    def add(self, entry: TimelineCharacter) -> None:
        self.on_screen = sorted(self.on_screen + list(entry.on_screen))
        self.speaking = sorted(self.speaking + list(entry.speaking))
        self.voices += [v for v in entry.speakers if v not in self.voices]


@dataclass(frozen=True)
class Section:
    """One library character (key: its library id) or one voice never linked to a face (key: its offscreen_
    label)."""

    key: str
    label: str  # as the timelines name it: its name, else the key
    kind: str  # CHARACTER | VOICE
    appearances: dict[str, Appearance]  # by video
    speakers: list[str] = field(default_factory=list)  # a character's linked voices, as the timelines label them
    name_source: str | None = None  # where a character's name came from
    colour: str = "#999"

    @property
    def anchor(self) -> str:
        # Videos' anchors start with v-: a voice's must not (its key could be a video's slug).
        return f"{'c' if self.kind == CHARACTER else 's'}-{slug(self.key)}"

    @property
    def screen_seconds(self) -> float:
        return sum(b - a for ap in self.appearances.values() for a, b in ap.on_screen)

    @property
    def speech_seconds(self) -> float:
        return sum(b - a for ap in self.appearances.values() for a, b in ap.speaking)


@dataclass(frozen=True)
class Cast:
    sections: list[Section]  # page order: characters by screen time, then voices by speech
    key_of: dict[tuple[str, str], str]  # (video, timeline label) -> section key

    def get(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def section(self, video: str, label: str) -> Section:
        """The section a video's timeline label belongs to."""
        return self.get(self.key_of[(video, label)])

    def of_kind(self, kind: str) -> list[Section]:
        return [s for s in self.sections if s.kind == kind]


def name_source(view: LibraryView, character_id: str) -> str | None:
    """Where a character's name came from: the gallery (with the distance to the photo, and whether it was
    named only as the photo's clear nearest: worth a look), else the subtitles; None when unnamed."""
    match = view.names.gallery.get(character_id)
    if match is not None:
        nearest = ", its clear nearest" if match.rule == "mutual" else ""
        return f"gallery, {match.distance:.2f} from the photo{nearest}"
    subtitles = view.names.subtitles
    return "subtitles" if subtitles and character_id in subtitles.character_names else None


def section_key(entry: TimelineCharacter, view: LibraryView) -> tuple[str, str]:
    """(key, kind) of the section a timeline entry belongs to: an off-screen voice joins the character the
    library linked it to, if any."""
    if not entry.offscreen:
        return entry.character_id, CHARACTER
    voice = view.voice_of(entry.speakers[0]) if entry.speakers else None
    link = view.names.links.get(voice) if voice else None
    return (link.character_id, CHARACTER) if link and link.character_id else (entry.character_id, VOICE)


def build_cast(timelines: Sequence[Timeline], view: LibraryView) -> Cast:
    """Every video's timeline entries gathered into sections (section_key), each character labelled and its
    voices named as the timelines do (through `view`), then ordered and coloured for the page."""
    appearances: dict[str, dict[str, Appearance]] = {}
    kinds: dict[str, str] = {}
    key_of: dict[tuple[str, str], str] = {}
    for t in timelines:
        for label, entry in t.characters.items():
            key, kind = section_key(entry, view)
            kinds[key] = kind
            key_of[(t.video, label)] = key
            appearances.setdefault(key, {}).setdefault(t.video, Appearance()).add(entry)
    sections = []
    for key, kind in kinds.items():
        if kind == CHARACTER:
            voices = sorted(view.voice_label(s) for s, link in view.names.links.items() if link.character_id == key)
            sections.append(Section(key, view.character_name(key) or key, kind, appearances[key], voices,
                                    name_source(view, key)))
        else:
            sections.append(Section(key, key, kind, appearances[key]))
    ordered = sorted((s for s in sections if s.kind == CHARACTER), key=lambda s: (-s.screen_seconds, s.key)) + \
        sorted((s for s in sections if s.kind == VOICE), key=lambda s: (-s.speech_seconds, s.key))
    return Cast([replace(s, colour=colour(s.key, s.kind)) for s in ordered], key_of)


def timeline_colours(timeline: Timeline, view: LibraryView) -> dict[str, str]:
    """Each label of one video's timeline -> the colour of the section it belongs to on the page."""
    return {label: colour(*section_key(entry, view)) for label, entry in timeline.characters.items()}
