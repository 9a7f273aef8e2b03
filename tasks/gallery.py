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

from tasks.detect import FaceDetector, read_rgb
from tasks.registry import Metric, distances

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
log = logging.getLogger("castline.gallery")


@dataclass(frozen=True)
class GalleryMatch:
    character_id: str
    name: str
    distance: float


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
                    metric: Metric = "euclidean") -> list[GalleryMatch]:
    """Closest pairs first, each name and each character used once; pairs at or over `threshold`
    stay unnamed, so a face that matches nobody keeps its `character_NNN` id."""
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
    return matches
