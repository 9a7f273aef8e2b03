"""Identities: the library-level step that gives each video's characters and voices global ids and names.

In: per video, the cached stage results (tracks, track embeddings, local characters, speaker turns with
centroids, voice/face co-occurrence). Out: the character and speaker registries updated
(tasks/library/registry.py), each voice linked to a character from the evidence of the whole library
(tasks/video/align.py), gallery and subtitle names, all in names.json; and each video's records relabelled
with global ids — what the timeline is written from.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.video.align import link_voices, video_links
from tasks.core.config import RunConfig
from tasks.video.detect import make_detector
from tasks.video.embed import make_embedder
from tasks.core.formats import (
    read_centroids,
    read_exclusive_turns,
    read_characters,
    read_evidence,
    read_json,
    read_npy,
    read_tracks,
    read_turns,
    write_json,
)
from tasks.library.gallery import GalleryMatch, embed_gallery, gallery_images, name_characters
from tasks.core.records import Character, Cooccurrence, SpeakerLink, SpeechTurn, Track, VideoOutputs
from tasks.core.stage import always_task
from tasks.library.subtitles import SubtitleNaming, name_from_subtitles
from tasks.library.registry import Registry, face_space, open_registry, registry_paths, voice_space
from tasks.core.workspace import Workspace, file_digest, params_digest

NAMES_JSON = "names.json"


@dataclass(frozen=True)
class VideoStages:
    """Where one processed video's stage results are (the per-video flow's outputs)."""

    name: str
    video: Path
    probe: Path
    frames: Path
    tracks: Path
    embeddings: Path
    characters: Path
    evidence: Path
    turns: Path | None
    wav: Path | None
    interval: float

    @classmethod
    def from_outputs(cls, name: str, outputs: VideoOutputs) -> "VideoStages":
        return cls(name, outputs.video, outputs.probe, outputs.frames, outputs.tracks, outputs.embeddings,
                   outputs.characters, outputs.evidence, outputs.turns, outputs.wav, outputs.interval)


@dataclass(frozen=True)
class LocalGroups:
    """A video's local characters or speakers as the registry sees them."""

    ids: list[str]
    embeddings: np.ndarray
    weights: list[float]
    cannot_link: set[frozenset[str]]


def character_groups(tracks: Sequence[Track], embeddings: np.ndarray, characters: Sequence[Character]) -> LocalGroups:
    """Centroid of each local character's track embeddings, weighted by boxes; two characters seen on the
    same frame cannot be one person, so they may not join the same library character."""
    row = {t.track_id: i for i, t in enumerate(tracks)}
    boxes = {t.track_id: len(t.boxes) for t in tracks}
    frames = {c.character_id: {f for tid in c.track_ids for f in tracks[row[tid]].frames} for c in characters}
    ids, vecs, weights = [], [], []
    for c in characters:
        w = np.array([boxes[t] for t in c.track_ids], float)
        vecs.append((embeddings[[row[t] for t in c.track_ids]] * w[:, None]).sum(0) / w.sum())
        ids.append(c.character_id)
        weights.append(float(w.sum()))
    cannot = {frozenset((a, b)) for i, a in enumerate(ids) for b in ids[i + 1:] if frames[a] & frames[b]}
    return LocalGroups(ids, _matrix(vecs, embeddings.shape[1] if embeddings.ndim == 2 else 0), weights, cannot)


def speaker_groups(turns: Sequence[SpeechTurn], centroids: dict[str, np.ndarray]) -> LocalGroups:
    """Each local voice with its centroid, weighted by speech time. Voices of one file are not
    cannot-linked: diarization over-splits more often than it merges, and the library may reunite them."""
    speech: dict[str, float] = {}
    for t in turns:
        speech[t.speaker] = speech.get(t.speaker, 0.0) + t.duration
    ids = sorted(centroids)
    dim = len(next(iter(centroids.values()))) if centroids else 0
    return LocalGroups(ids, _matrix([centroids[s] for s in ids], dim), [speech.get(s, 0.0) for s in ids], set())


def _matrix(rows: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """Rows stacked as float32; a video with no face or no voice gives a (0, dim) matrix, not an error."""
    return np.array(rows, np.float32).reshape(len(rows), dim)


def assign(reg: Registry, video: str, key: str, groups: LocalGroups, threshold: float) -> dict[str, str]:
    if not groups.ids:
        return {}
    return reg.assign(video, key, groups.ids, groups.embeddings, groups.weights, groups.cannot_link, threshold)


@dataclass(frozen=True)
class LibraryNames:
    """What the library step decided about identities (names.json): gallery names by character, the
    subtitle naming, and each global voice's link to a character."""

    gallery: dict[str, GalleryMatch]
    subtitles: SubtitleNaming | None
    links: dict[str, SpeakerLink]


@dataclass(frozen=True)
class GlobalView:
    """One video's records in library terms: global character/speaker ids, gallery names applied."""

    tracks: list[Track]
    characters: list[Character]
    turns: list[SpeechTurn]
    links: list[SpeakerLink]


def relabel(stages: VideoStages, char_map: dict[str, str], voice_map: dict[str, str],
            names: dict[str, GalleryMatch], links: dict[str, SpeakerLink]) -> GlobalView:
    """Local characters that joined the same library character are merged; each voice keeps the character of
    its library link, with this video's figures."""
    merged: dict[str, list[int]] = {}
    for c in read_characters(stages.characters):
        merged.setdefault(char_map.get(c.character_id, c.character_id), []).extend(c.track_ids)
    characters = [Character(gid, tuple(sorted(tids)), name=names[gid].name if gid in names else None)
                  for gid, tids in sorted(merged.items())]
    return GlobalView(read_tracks(stages.tracks), characters, global_turns(stages.turns, voice_map),
                      video_links(global_evidence(stages, char_map, voice_map), links))


def global_turns(path: Path | None, voice_map: dict[str, str], exclusive: bool = False) -> list[SpeechTurn]:
    """A video's turns in library speaker ids; with `exclusive`, their one-speaker-at-a-time view."""
    if path is None:
        return []
    return [SpeechTurn(t.start, t.end, voice_map.get(t.speaker, t.speaker))
            for t in (read_exclusive_turns(path) if exclusive else read_turns(path))]


def global_evidence(stages: VideoStages, char_map: dict[str, str], voice_map: dict[str, str]) -> list[Cooccurrence]:
    """A video's co-occurrence evidence in library ids."""
    return [replace(r, speaker=voice_map.get(r.speaker, r.speaker),
                    character_id=char_map.get(r.character_id, r.character_id) if r.character_id else None)
            for r in read_evidence(stages.evidence)]


def library_links(videos: Sequence[VideoStages], registries: tuple[Registry, Registry],
                  cfg: RunConfig) -> list[SpeakerLink]:
    """Every video's co-occurrence evidence in library ids, pooled into one link per global voice."""
    characters, speakers = registries
    return link_voices([(v.name, global_evidence(v, characters.mapping(v.name), speakers.mapping(v.name)))
                        for v in videos], cfg.align)


def gallery_embeddings(gallery: Path, cache_dir: Path, cfg: RunConfig) -> dict[str, np.ndarray]:
    """Gallery vectors, cached under a key of the photos' content and the model parameters."""
    photos = gallery_images(gallery)
    embed = cfg.embed
    if embed.backend == "dlib":
        embed = embed.model_copy(update={"jitter": max(embed.jitter, cfg.library.gallery_jitter)})
    key = params_digest({n: [file_digest(p) for p in ps] for n, ps in photos.items()},
                        cfg.detect.model_dump(), embed.model_dump(exclude={"workers"}))
    cached = cache_dir / f"{key}.json"
    if cached.exists():
        return {n: np.asarray(v, np.float32) for n, v in read_json(cached).items()}
    vectors = embed_gallery(gallery, make_detector(cfg.detect), make_embedder(embed))
    write_json(cached, {n: v.tolist() for n, v in vectors.items()})
    return vectors


def update_identities(ws: Workspace, videos: Sequence[VideoStages], cfg: RunConfig,
                      gallery: Path | None) -> LibraryNames:
    """Assign every video's characters and voices to library identities (in name order, so the result
    does not depend on which video finished first), link voices to characters, then name characters
    from the gallery and voices (and their characters) from subtitles."""
    videos = sorted(videos, key=lambda v: v.name)
    chars_path, voices_path = registry_paths(ws)
    with open_registry(chars_path, "character", "euclidean", face_space(cfg.embed)) as creg, \
            open_registry(voices_path, "speaker", "cosine", voice_space(cfg.diarize)) as sreg:
        for v in videos:
            groups = character_groups(read_tracks(v.tracks), read_npy(v.embeddings), read_characters(v.characters))
            assign(creg, v.name, str(v.characters), groups, cfg.library.face_threshold)
            if v.turns is not None:
                groups = speaker_groups(read_turns(v.turns), read_centroids(v.turns))
                assign(sreg, v.name, str(v.turns), groups, cfg.library.voice_threshold)
        centroids = creg.centroids()
    matches: list[GalleryMatch] = []
    if gallery is not None:
        vectors = gallery_embeddings(gallery, ws.root / "cache" / "gallery", cfg)
        matches = name_characters(centroids, vectors, cfg.library.gallery_threshold,
                                  loose_threshold=cfg.library.gallery_loose_threshold,
                                  min_gap=cfg.library.gallery_min_gap)
    links = library_links(videos, (creg, sreg), cfg)
    names = LibraryNames({m.character_id: m for m in matches}, None, {link.speaker: link for link in links})
    # Subtitles are read library-wide: a voice keeps one name in every episode.
    views = [(v.video, global_view(v, (creg, sreg), names)) for v in videos]
    subtitles = name_from_subtitles([(path, view.turns, view.links) for path, view in views],
                                    {m.character_id: m.name for m in matches},
                                    cfg.library.subtitle_min_share, cfg.library.subtitle_min_lines)
    write_json(ws.library_dir / NAMES_JSON, {"gallery": str(gallery) if gallery else None, "matches": matches,
                                             "subtitles": subtitles, "voice_links": links})
    return replace(names, subtitles=subtitles)


def read_names(path: Path) -> LibraryNames:
    data = read_json(path)
    return LibraryNames({m["character_id"]: GalleryMatch(**m) for m in data["matches"]},
                        SubtitleNaming(**data["subtitles"]) if data.get("subtitles") else None,
                        {d["speaker"]: SpeakerLink(**d) for d in data["voice_links"]})


def recluster_library(ws: Workspace, cfg: RunConfig) -> dict[str, tuple[int, int]]:
    """Rebuild both registries from every stored member with the current thresholds; returns
    {kind: (identities before, identities after)}. Faces of one video seen together stay apart."""
    chars_path, voices_path = registry_paths(ws)
    counts = {}
    for path, kind, metric, space, threshold, separate in (
            (chars_path, "character", "euclidean", face_space(cfg.embed), cfg.library.face_threshold, True),
            (voices_path, "speaker", "cosine", voice_space(cfg.diarize), cfg.library.voice_threshold, False)):
        with open_registry(path, kind, metric, space) as reg:
            before = len(reg.global_ids())
            reg.recluster(threshold, separate_within_video=separate)
            counts[kind] = (before, len(reg.global_ids()))
    return counts


def global_view(stages: VideoStages, registries: tuple[Registry, Registry], names: LibraryNames) -> GlobalView:
    """One video's records in library terms; `registries` is (characters, speakers), read once by the caller."""
    characters, speakers = registries
    return relabel(stages, characters.mapping(stages.name), speakers.mapping(stages.name), names.gallery,
                   names.links)


# --- Prefect tasks -------------------------------------------------------------------------------

@always_task("identities")
def identities_task(workspace: str, videos: list[tuple[str, VideoOutputs]], config: RunConfig,
                    gallery: str | None) -> Path:
    """Runs every time (it is cheap, and unchanged videos keep their ids); returns names.json."""
    ws = Workspace.open(workspace)
    update_identities(ws, [VideoStages.from_outputs(n, o) for n, o in videos], config,
                      Path(gallery) if gallery else None)
    return ws.library_dir / NAMES_JSON
