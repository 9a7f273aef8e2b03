"""Identities: the library-level step that gives each video's characters and voices global ids and names.

In: per video, the cached stage results (tracks, track embeddings, local characters, speaker turns with
centroids, voice/face co-occurrence). Out: the character and speaker registries updated
(tasks/library/registry.py), each voice linked to a character from the evidence of the whole library
(tasks/video/align.py), gallery and subtitle names, all in names.json — what tasks/library/view.py's
LibraryView reads to give every later step a video's records in library ids and names.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tasks.video.align import link_voices, same_face_voices
from tasks.core.config import RunConfig
from tasks.video.detect import make_detector
from tasks.video.embed import make_embedder
from tasks.core.formats import read_centroids, read_characters, read_json, read_npy, read_tracks, read_turns, write_json
from tasks.library.gallery import GalleryMatch, embed_gallery, gallery_images, name_characters
from tasks.core.records import Character, SpeakerLink, SpeechTurn, Track, VideoOutputs
from tasks.core.stage import always_task
from tasks.library.subtitle_streams import subtitle_files
from tasks.library.subtitles import name_from_subtitles
from tasks.library.registry import Registry, face_space, open_registry, registry_paths, voice_space
from tasks.library.view import NAMES_JSON, LibraryNames, LibraryView, global_evidence
from tasks.core.workspace import Workspace, code_fingerprint, file_digest, params_digest


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


def library_links(videos: Mapping[str, VideoOutputs], registries: tuple[Registry, Registry],
                  cfg: RunConfig) -> list[SpeakerLink]:
    """Every video's co-occurrence evidence in library ids, pooled into one link per global voice."""
    characters, speakers = registries
    return link_voices([(name, global_evidence(v, characters.mapping(name), speakers.mapping(name)))
                        for name, v in videos.items()], cfg.align)


def linked_voices(videos: Mapping[str, VideoOutputs], registries: tuple[Registry, Registry],
                  cfg: RunConfig) -> list[SpeakerLink]:
    """Voices linked to characters; library voices that the same face vouches for are merged in the speaker
    registry first (tasks/video/align.py's same_face_voices), then linked again."""
    speakers = registries[1]
    links = library_links(videos, registries, cfg)
    while True:
        heard_in: dict[str, set[str]] = {}
        for m in speakers.members:
            heard_in.setdefault(m.global_id, set()).add(m.video)
        pairs = same_face_voices(links, speakers.centroids(), heard_in, cfg.library.voice_face_threshold)
        if not pairs:
            return links
        for kept, merged in pairs:
            speakers.merge(kept, merged)
        links = library_links(videos, registries, cfg)


def gallery_embeddings(gallery: Path, cache_dir: Path, cfg: RunConfig) -> dict[str, np.ndarray]:
    """Gallery vectors, cached under a key of the photos' content, the model parameters and the code that
    detects and describes the faces (a new embedder gives new vectors, as the embed stage's key says)."""
    photos = gallery_images(gallery)
    embed = cfg.embed
    if embed.backend == "dlib":
        embed = embed.model_copy(update={"jitter": max(embed.jitter, cfg.library.gallery_jitter)})
    key = params_digest({n: [file_digest(p) for p in ps] for n, ps in photos.items()},
                        cfg.detect.model_dump(), embed.model_dump(),
                        code_fingerprint("tasks.video.detect"), code_fingerprint("tasks.video.embed"))
    cached = cache_dir / f"{key}.json"
    if cached.exists():
        return {n: np.asarray(v, np.float32) for n, v in read_json(cached).items()}
    vectors = embed_gallery(gallery, make_detector(cfg.detect), make_embedder(embed))
    write_json(cached, {n: v.tolist() for n, v in vectors.items()})
    return vectors


def update_identities(ws: Workspace, videos: Mapping[str, VideoOutputs], cfg: RunConfig,
                      gallery: Path | None) -> LibraryNames:
    """Assign every video's characters and voices to library identities (in name order, so the result
    does not depend on which video finished first), link voices to characters, then name characters
    from the gallery and voices (and their characters) from subtitles."""
    videos = dict(sorted(videos.items()))
    chars_path, voices_path = registry_paths(ws)
    with open_registry(chars_path, "character", "euclidean", face_space(cfg.embed)) as creg, \
            open_registry(voices_path, "speaker", "cosine", voice_space(cfg.diarize)) as sreg:
        for name, v in videos.items():
            groups = character_groups(read_tracks(v.tracks), read_npy(v.embeddings), read_characters(v.characters))
            assign(creg, name, str(v.characters), groups, cfg.library.face_threshold)
            if v.turns is not None:
                groups = speaker_groups(read_turns(v.turns), read_centroids(v.turns))
                assign(sreg, name, str(v.turns), groups, cfg.library.voice_threshold)
        links = linked_voices(videos, (creg, sreg), cfg)
        centroids = creg.centroids()
    matches: list[GalleryMatch] = []
    if gallery is not None:
        vectors = gallery_embeddings(gallery, ws.root / "cache" / "gallery", cfg)
        matches = name_characters(centroids, vectors, cfg.library.gallery_threshold,
                                  loose_threshold=cfg.library.gallery_loose_threshold,
                                  min_gap=cfg.library.gallery_min_gap)
    names = LibraryNames({m.character_id: m for m in matches}, None, {link.speaker: link for link in links})
    # Subtitles are read library-wide: a voice keeps one name in every episode.
    view = LibraryView(creg, sreg, names)
    found, notes = [], []
    for name, v in videos.items():
        files, problems = subtitle_files(v, ws)
        records = view.video(name, v)
        found.append((v.video, files, records.turns, records.links))
        notes += problems
    subtitles = name_from_subtitles(found, {m.character_id: m.name for m in matches},
                                    cfg.library.subtitle_min_share, cfg.library.subtitle_min_lines)
    subtitles = replace(subtitles, notes=notes + subtitles.notes)
    write_json(ws.library_dir / NAMES_JSON, {"gallery": str(gallery) if gallery else None, "matches": matches,
                                             "subtitles": subtitles, "voice_links": links})
    return replace(names, subtitles=subtitles)


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


# --- Prefect tasks -------------------------------------------------------------------------------

@always_task("identities")
def identities_task(workspace: str, videos: dict[str, VideoOutputs], config: RunConfig,
                    gallery: str | None) -> Path:
    """Runs every time (it is cheap, and unchanged videos keep their ids); returns names.json."""
    ws = Workspace.open(workspace)
    update_identities(ws, videos, config, Path(gallery) if gallery else None)
    return ws.library_dir / NAMES_JSON
