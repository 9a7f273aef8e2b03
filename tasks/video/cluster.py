"""Group face tracks into characters within one video.

In: the tracks JSON, the (n_tracks, 128) embeddings .npy and ClusterParams. Out: a characters JSON.
Backend: average-linkage agglomerative clustering (SciPy) on dlib Euclidean distances, with cannot-link pairs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tasks.core import formats
from tasks.core.config import ClusterParams
from tasks.core.records import Character, Track
from tasks.core.stage import stage_task


def cannot_link_pairs(tracks: Sequence[Track]) -> list[tuple[int, int]]:
    """Row pairs (i < j) of tracks seen on a common sampled frame: one face cannot be in two places at once."""
    by_frame: dict[int, list[int]] = {}
    for row, track in enumerate(tracks):
        for frame in set(track.frames):
            by_frame.setdefault(frame, []).append(row)
    pairs = set()
    for rows in by_frame.values():
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                pairs.add((min(rows[a], rows[b]), max(rows[a], rows[b])))
    return sorted(pairs)


def average_linkage(dist: np.ndarray, threshold: float, cannot_link: Sequence[tuple[int, int]] = (),
                    max_clusters: int | None = None) -> np.ndarray:
    """Flat cluster label per row of a square distance matrix: average linkage cut at `threshold`
    (and, when given, at most `max_clusters` clusters).

    A cannot-link pair gets a distance so large that any cluster holding both sides averages above
    `threshold` even when every other pair of the two clusters is at distance 0 (the average over |A|·|B|
    pairs is at least big / n², and big > threshold · n²), so average linkage never joins them.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(dist)
    if n < 2:
        return np.zeros(n, dtype=int)
    dist = np.array(dist, dtype=np.float64)
    np.fill_diagonal(dist, 0.0)
    big = (threshold + 1.0) * n * n + 1.0
    for i, j in cannot_link:
        dist[i, j] = dist[j, i] = big
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(tree, t=threshold, criterion="distance")
    if max_clusters is not None and labels.max() > max_clusters:
        labels = fcluster(tree, t=max_clusters, criterion="maxclust")
    return labels - 1


def cluster_labels(embeddings: np.ndarray, threshold: float,
                   cannot_link: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """Flat cluster label per row: average linkage on Euclidean distances, cut at `threshold`."""
    from scipy.spatial.distance import pdist, squareform

    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x), dtype=int)
    return average_linkage(squareform(pdist(x, metric="euclidean")), threshold, cannot_link)


def cluster_tracks(tracks: Sequence[Track], embeddings: np.ndarray, params: ClusterParams) -> list[Character]:
    embeddings = np.asarray(embeddings)
    if embeddings.shape[0] != len(tracks):
        raise ValueError(f"{len(tracks)} tracks but {embeddings.shape[0]} embedding rows")
    # Only faces carry identity: head and person tracks join characters later (tasks/video/body_link.py).
    faces = [i for i, t in enumerate(tracks) if t.label == "face"]
    tracks, embeddings = [tracks[i] for i in faces], embeddings[faces]
    labels = cluster_labels(embeddings, params.threshold, cannot_link_pairs(tracks))
    members: dict[int, list[Track]] = {}
    for track, label in zip(tracks, labels):
        members.setdefault(int(label), []).append(track)
    # Numbered by first appearance so ids read in story order and do not depend on SciPy's label order.
    groups = sorted(members.values(), key=lambda ts: (min(t.start for t in ts), min(t.track_id for t in ts)))
    return [Character(character_id=f"character_{k:03d}", track_ids=tuple(sorted(t.track_id for t in ts)))
            for k, ts in enumerate(groups)]


@stage_task("cluster")
def cluster_task(tracks_path: Path, embeddings_path: Path, *, out: Path, params: ClusterParams) -> None:
    tracks = formats.read_tracks(tracks_path)
    embeddings = formats.read_npy(embeddings_path)
    formats.write_characters(out, cluster_tracks(tracks, embeddings, params))
