"""Clustering: identical faces group, distant faces do not, and two faces on one frame never merge."""
from __future__ import annotations

import numpy as np

from tasks.core import formats
from tasks.video.cluster import cannot_link_pairs, cluster_labels, cluster_tracks, cluster_task
from tasks.core.config import ClusterParams
from tasks.core.records import Box, Track


def track(track_id: int, frames: list[int], x: float = 0.0) -> Track:
    return Track(track_id, tuple(Box(f, float(f), x, 0, x + 50, 50, 0.99) for f in frames))


def unit(i: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(128, dtype=np.float32)
    v[i] = scale
    return v


def test_identical_embeddings_group_and_distant_ones_do_not():
    tracks = [track(0, [0, 1]), track(1, [5, 6]), track(2, [3]), track(3, [8, 9])]
    emb = np.stack([unit(0), unit(1), unit(0), unit(1)])  # unit(0)-unit(1) distance: 1.41
    chars = cluster_tracks(tracks, emb, ClusterParams())
    assert [c.track_ids for c in chars] == [(0, 2), (1, 3)]
    assert [c.character_id for c in chars] == ["character_000", "character_001"]


def test_tracks_sharing_a_frame_never_merge():
    tracks = [track(0, [0, 1, 2]), track(1, [2, 3], x=200)]  # both on frame 2: two different people
    emb = np.stack([unit(0), unit(0)])
    assert cannot_link_pairs(tracks) == [(0, 1)]
    chars = cluster_tracks(tracks, emb, ClusterParams())
    assert sorted(c.track_ids for c in chars) == [(0,), (1,)]


def test_cannot_link_holds_through_average_linkage():
    # Two groups of six near-identical tracks; one track of each group shares a frame with one of the other.
    # Average linkage averages that one forbidden pair with 35 allowed ones, so it must still win alone.
    emb = np.stack([unit(0)] * 6 + [unit(0) + unit(1, 0.1)] * 6)
    assert len(set(cluster_labels(emb, threshold=0.6))) == 1
    labels = cluster_labels(emb, threshold=0.6, cannot_link=[(0, 11)])
    assert labels[0] != labels[11]
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1


def test_characters_are_numbered_by_first_appearance():
    tracks = [track(0, [7, 8]), track(1, [2]), track(2, [4]), track(3, [0])]
    emb = np.stack([unit(0), unit(1), unit(0), unit(2)])
    chars = cluster_tracks(tracks, emb, ClusterParams())
    # starts: track 3 at 0 s, track 1 at 2 s, tracks 0+2 at 4 s
    assert [c.track_ids for c in chars] == [(3,), (1,), (0, 2)]
    assert [c.character_id for c in chars] == ["character_000", "character_001", "character_002"]


def test_threshold_decides_between_near_and_far():
    tracks = [track(0, [0]), track(1, [1])]
    emb = np.stack([unit(0), unit(0) + unit(1, 0.5)])  # 0.5 apart
    assert len(cluster_tracks(tracks, emb, ClusterParams(threshold=0.6))) == 1
    assert len(cluster_tracks(tracks, emb, ClusterParams(threshold=0.4))) == 2


def test_empty_and_single():
    assert cluster_tracks([], np.zeros((0, 128), np.float32), ClusterParams()) == []
    chars = cluster_tracks([track(4, [1])], unit(0)[None], ClusterParams())
    assert [(c.character_id, c.track_ids) for c in chars] == [("character_000", (4,))]


def test_cluster_task_writes_characters(tmp_path):
    tracks = [track(0, [0, 1]), track(1, [1]), track(2, [5])]
    emb = np.stack([unit(0), unit(0), unit(0)])
    tracks_path = formats.write_tracks(tmp_path / "tracks.json", tracks, shots=[0])
    emb_path = formats.write_npy(tmp_path / "embeddings.npy", emb)
    out = tmp_path / "characters.json"
    cluster_task.fn(tracks_path, emb_path, out=out, params=ClusterParams())
    chars = formats.read_characters(out)
    # tracks 0 and 1 share frame 1; track 2 may join either, but only one of them
    assert sorted(t for c in chars for t in c.track_ids) == [0, 1, 2]
    assert len(chars) == 2
    assert all(not {0, 1} <= set(c.track_ids) for c in chars)
