"""Gallery: names for characters from photos of people the user knows.

In: a folder `<gallery>/<Name>/*.jpg|*.png` (the folder name is the name), the face detector and the
face embedder. Out: one mean 128-d embedding per name, and a one-to-one naming of registry characters
whose centroid lies within a distance threshold of a name (distance recorded). Backend: the detect and
embed stages' own models, so gallery and video faces are measured with the same ruler.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.video.detect import FaceDetector, read_rgb
from tasks.library.registry import Metric, distances

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
log = logging.getLogger("castline.gallery")


@dataclass(frozen=True)
class GalleryMatch:
    character_id: str
    name: str
    distance: float
    # "threshold": under the naming threshold; "mutual": in the looser band, and each is the other's
    # clear nearest (see name_characters).
    rule: str = "threshold"


def gallery_images(folder: Path) -> dict[str, list[Path]]:
    """Name -> photos; hidden folders and non-image files are ignored."""
    out: dict[str, list[Path]] = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if photos:
            out[person.name] = photos
    return out


def embed_gallery(folder: Path, detector: FaceDetector, embedder) -> dict[str, np.ndarray]:
    """Mean descriptor of the largest face of each photo, per name; photos without a face are skipped
    with a warning (a gallery photo of a crowd would otherwise name the wrong person)."""
    out: dict[str, np.ndarray] = {}
    for name, photos in gallery_images(folder).items():
        vectors = []
        for photo in photos:
            try:
                image = read_rgb(photo)
            except FileNotFoundError:
                log.warning("gallery: cannot read %s", photo)
                continue
            faces = detector.detect(image)
            if not faces:
                log.warning("gallery: no face found in %s", photo)
                continue
            largest = max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))
            vectors.append(embedder.embed(image, [largest[:4]])[0])
        if vectors:
            out[name] = np.mean(vectors, axis=0).astype(np.float32)
    return out


def name_characters(centroids: dict[str, np.ndarray], gallery: dict[str, np.ndarray], threshold: float,
                    metric: Metric = "euclidean", loose_threshold: float | None = None,
                    min_gap: float = 0.0) -> list[GalleryMatch]:
    """Closest pairs first, each name and each character used once; pairs at or over `threshold`
    stay unnamed, so a face that matches nobody keeps its `character_NNN` id.

    A face seen badly (dark, turned away, small) can lie beyond `threshold` from its own photo while
    still being far closer to it than to anything else. So a pair under `loose_threshold` is named too
    when it is unambiguous from both sides: the name is the character's nearest of all names, and the
    character the name's nearest of the still unnamed characters, each runner-up at least `min_gap`
    farther. A character nearest to a name already given is likely another view of that person, so it
    stays unnamed; with no runner-up on a side (a one-photo gallery, a one-face library) there is no
    evidence of either kind, and the pair stays unnamed too.
    """
    if not centroids or not gallery:
        return []
    cids, names = list(centroids), list(gallery)
    d = distances(np.stack([centroids[c] for c in cids]), np.stack([gallery[n] for n in names]), metric)
    matches, used_c, used_n = [], set(), set()
    for i, j in sorted(np.ndindex(d.shape), key=lambda ij: d[ij]):
        if d[i, j] >= threshold:
            break
        if cids[i] in used_c or names[j] in used_n:
            continue
        matches.append(GalleryMatch(cids[i], names[j], round(float(d[i, j]), 4)))
        used_c.add(cids[i])
        used_n.add(names[j])
    if loose_threshold is not None and loose_threshold > threshold:
        matches += _mutual_matches(d, cids, names, used_c, used_n, loose_threshold, min_gap)
    return matches


def _mutual_matches(d: np.ndarray, cids: list[str], names: list[str], used_c: set[str], used_n: set[str],
                    loose_threshold: float, min_gap: float) -> list[GalleryMatch]:
    """The loose band of name_characters, one clearest pair at a time (naming one can make the next clear)."""
    out: list[GalleryMatch] = []
    free_c = [i for i, c in enumerate(cids) if c not in used_c]
    free_n = [j for j, n in enumerate(names) if n not in used_n]
    while free_c and free_n and len(names) >= 2:
        found = None
        for i, j in sorted(((i, j) for i in free_c for j in free_n), key=lambda ij: d[ij]):
            if d[i, j] >= loose_threshold:
                break
            by_char = np.sort(d[i, :])
            by_name = np.sort(d[free_c, j])
            if len(by_name) >= 2 and by_char[0] == d[i, j] == by_name[0] \
                    and min(by_char[1], by_name[1]) - d[i, j] >= min_gap:
                found = i, j
                break
        if found is None:
            break
        i, j = found
        out.append(GalleryMatch(cids[i], names[j], round(float(d[i, j]), 4), rule="mutual"))
        free_c.remove(i)
        free_n.remove(j)
    return out
