"""Library view: the library's identities and names as every consumer reads them.

In: the workspace's two registries (tasks/library/registry.py) and library/names.json (what the identities step
decided: gallery names, subtitle names, each voice's link to a character), read once. Out: a video's records in
library terms (`video`: global character and speaker ids) and the same with every name source applied
(`named`): a character takes its gallery name, else the name its voices carry in the subtitles; a voice is filed
under its subtitle name (`voice_label`, and `voice_of` back). The timelines, character outputs, speaker table,
report.html, characters dataset, audio features and projection all name through one LibraryView, so no two of
them can name an identity differently.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from tasks.core.formats import read_characters, read_evidence, read_exclusive_turns, read_json, read_tracks, read_turns
from tasks.core.records import Character, Cooccurrence, SpeakerLink, SpeechTurn, Track, VideoOutputs
from tasks.core.workspace import Workspace
from tasks.library.gallery import GalleryMatch
from tasks.library.registry import Registry, load_registries
from tasks.library.subtitles import SubtitleNaming, name_key
from tasks.video.align import video_links

NAMES_JSON = "names.json"  # in WORKSPACE/library/


@dataclass(frozen=True)
class LibraryNames:
    """What the library step decided about identities (names.json): gallery names by character, the
    subtitle naming, and each global voice's link to a character."""

    gallery: dict[str, GalleryMatch] = field(default_factory=dict)
    subtitles: SubtitleNaming | None = None
    links: dict[str, SpeakerLink] = field(default_factory=dict)


def read_names(path: Path) -> LibraryNames:
    data = read_json(path)
    return LibraryNames({m["character_id"]: GalleryMatch(**m) for m in data.get("matches", [])},
                        SubtitleNaming(**data["subtitles"]) if data.get("subtitles") else None,
                        {d["speaker"]: SpeakerLink(**d) for d in data.get("voice_links", [])})


@dataclass(frozen=True)
class GlobalView:
    """One video's records in library terms: global character and speaker ids (names once `named`)."""

    tracks: list[Track]
    characters: list[Character]
    turns: list[SpeechTurn]
    links: list[SpeakerLink]


def global_turns(path: Path | None, voice_map: dict[str, str], exclusive: bool = False) -> list[SpeechTurn]:
    """A video's turns in library speaker ids; with `exclusive`, their one-speaker-at-a-time view."""
    if path is None:
        return []
    return [SpeechTurn(t.start, t.end, voice_map.get(t.speaker, t.speaker))
            for t in (read_exclusive_turns(path) if exclusive else read_turns(path))]


def global_evidence(outputs: VideoOutputs, char_map: dict[str, str], voice_map: dict[str, str]) -> list[Cooccurrence]:
    """A video's co-occurrence evidence in library ids."""
    return [replace(r, speaker=voice_map.get(r.speaker, r.speaker),
                    character_id=char_map.get(r.character_id, r.character_id) if r.character_id else None)
            for r in read_evidence(outputs.evidence)]


def voice_labels(naming: SubtitleNaming | None) -> dict[str, str]:
    """speaker -> what its speech is filed under: its subtitle name, "Name (speaker_003)" when two voices carry
    the same name (labels must stay unique); a voice without a name keeps its library id."""
    if naming is None:
        return {}
    shared = Counter(name_key(n) for n in naming.speaker_names.values())
    return {s: n if shared[name_key(n)] == 1 else f"{n} ({s})" for s, n in naming.speaker_names.items()}


@dataclass(frozen=True)
class LibraryView:
    """Both registries and the library's names, read once by each library step or tool that needs them."""

    characters: Registry
    speakers: Registry
    names: LibraryNames = field(default_factory=LibraryNames)

    @classmethod
    def load(cls, ws: Workspace, names_path: Path | None = None) -> "LibraryView":
        """The workspace's registries and names (library/names.json unless `names_path`); a workspace whose
        identities step never ran has no names."""
        path = names_path or ws.library_dir / NAMES_JSON
        characters, speakers = load_registries(ws)
        return cls(characters, speakers, read_names(path) if path.is_file() else LibraryNames())

    def character_name(self, character_id: str | None) -> str | None:
        """Its gallery name, else the subtitles' (which never rename a gallery-named character)."""
        if character_id in self.names.gallery:
            return self.names.gallery[character_id].name
        subtitles = self.names.subtitles
        return subtitles.character_names.get(character_id) if subtitles and character_id else None

    def speaker_name(self, speaker: str) -> str | None:
        """Its subtitle name (voices have no other name source)."""
        return self.names.subtitles.speaker_names.get(speaker) if self.names.subtitles else None

    @cached_property
    def _labels(self) -> dict[str, str]:
        return voice_labels(self.names.subtitles)

    def voice_label(self, speaker: str) -> str:
        """What a library voice's speech is filed under in the timelines: its subtitle label, else its id."""
        return self._labels.get(speaker, speaker)

    def voice_of(self, label: str) -> str:
        """The library voice whose speech a timeline files under `label` (voice_label's inverse)."""
        return next((s for s, named in self._labels.items() if named == label), label)

    @cached_property
    def _videos(self) -> dict[tuple, GlobalView]:
        return {}

    def video(self, name: str, outputs: VideoOutputs) -> GlobalView:
        """One video's records in library ids: local characters that joined the same library character are
        merged; each voice keeps the character of its library link, with this video's figures. Read once per
        view and video (a step that looks at a video several times, as the export does, reads its tracks once);
        callers must not change the lists they get."""
        key = (name, outputs.characters, outputs.tracks, outputs.turns, outputs.evidence)
        if key not in self._videos:
            self._videos[key] = self._read_video(name, outputs)
        return self._videos[key]

    def _read_video(self, name: str, outputs: VideoOutputs) -> GlobalView:
        char_map, voice_map = self.characters.mapping(name), self.speakers.mapping(name)
        merged: dict[str, list[int]] = {}
        for c in read_characters(outputs.characters):
            merged.setdefault(char_map.get(c.character_id, c.character_id), []).extend(c.track_ids)
        characters = [Character(gid, tuple(sorted(tids))) for gid, tids in sorted(merged.items())]
        return GlobalView(read_tracks(outputs.tracks), characters, global_turns(outputs.turns, voice_map),
                          video_links(global_evidence(outputs, char_map, voice_map), self.names.links))

    def named(self, view: GlobalView) -> GlobalView:
        """The records relabelled for writing: characters carry their names, and a named voice is filed under
        its label (speakers.rttm alone keeps library speaker ids)."""
        label = self.voice_label
        return GlobalView(view.tracks, [replace(c, name=self.character_name(c.character_id)) for c in view.characters],
                          [replace(t, speaker=label(t.speaker)) for t in view.turns],
                          [replace(link, speaker=label(link.speaker)) for link in view.links])
