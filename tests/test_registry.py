import multiprocessing

import numpy as np
import pytest

from tasks.library.registry import Registry, load_registry, open_registry, save_registry


def vec(*xs):
    return np.array(xs, np.float32)


def test_second_video_joins_known_identities_and_adds_new_ones():
    reg = Registry("character", "euclidean")
    first = reg.assign("ep1", "k1", ["a", "b"], np.stack([vec(0, 0), vec(5, 0)]), [10, 5], set(), 1.0)
    assert first == {"a": "character_000", "b": "character_001"}
    second = reg.assign("ep2", "k2", ["x", "y"], np.stack([vec(0.2, 0), vec(0, 9)]), [3, 3], set(), 1.0)
    assert second == {"x": "character_000", "y": "character_002"}


def test_cannot_link_keeps_co_visible_faces_apart():
    reg = Registry("character", "euclidean")
    reg.assign("ep1", "k1", ["a"], np.stack([vec(0, 0)]), [10], set(), 1.0)
    got = reg.assign("ep2", "k2", ["x", "y"], np.stack([vec(0.1, 0), vec(0.2, 0)]), [5, 4],
                     {frozenset(("x", "y"))}, 1.0)
    assert got["x"] == "character_000" and got["y"] != "character_000"


def test_unchanged_video_keeps_its_ids_and_changed_one_is_reassigned():
    reg = Registry("speaker", "cosine")
    reg.assign("ep1", "k1", ["S0"], np.stack([vec(1, 0)]), [3], set(), 0.2)
    reg.assign("ep2", "k2", ["S0"], np.stack([vec(0, 1)]), [3], set(), 0.2)
    before = list(reg.members)
    assert reg.assign("ep1", "k1", ["S0"], np.stack([vec(0, 1)]), [3], set(), 0.2) == {"S0": "speaker_000"}
    assert reg.members == before  # same key: nothing recomputed, even with other vectors passed
    assert reg.assign("ep1", "k1-new", ["S0"], np.stack([vec(0, 1)]), [3], set(), 0.2) == {"S0": "speaker_001"}


def test_recluster_merges_with_a_looser_threshold_and_keeps_ids():
    reg = Registry("character", "euclidean")
    reg.assign("ep1", "k1", ["a"], np.stack([vec(0, 0)]), [10], set(), 0.5)
    reg.assign("ep2", "k2", ["x"], np.stack([vec(0.8, 0)]), [2], set(), 0.5)
    assert reg.global_ids() == ["character_000", "character_001"]
    reg.recluster(1.0, separate_within_video=True)
    assert reg.global_ids() == ["character_000"]


def test_other_embedder_dimension_is_refused():
    reg = Registry("character", "euclidean")
    reg.assign("ep1", "k1", ["a"], np.stack([vec(0, 0)]), [1], set(), 0.5)
    with pytest.raises(ValueError, match="separate --workspace"):
        reg.assign("ep2", "k2", ["a"], np.zeros((1, 3), np.float32), [1], set(), 0.5)


def test_parquet_round_trip(tmp_path):
    reg = Registry("character", "euclidean")
    reg.assign("ep1", "k1", ["a", "b"], np.stack([vec(0, 0), vec(5, 0)]), [1, 2], set(), 1.0)
    save_registry(tmp_path / "r.parquet", reg)
    back = load_registry(tmp_path / "r.parquet", "character", "euclidean")
    assert back.members == reg.members and np.array_equal(back.members[1].embedding, reg.members[1].embedding)


def _add_video(path, i):
    with open_registry(path, "character", "euclidean") as reg:
        reg.assign(f"ep{i}", "k", ["a"], np.stack([vec(10.0 * i, 0)]), [1], set(), 1.0)


def test_concurrent_writers_keep_every_video(tmp_path):
    path = tmp_path / "characters.parquet"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_video, args=(path, i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert load_registry(path, "character", "euclidean").videos() == sorted(f"ep{i}" for i in range(8))


def test_a_video_without_faces_or_voices_gives_empty_groups():
    from tasks.library.identities import assign, character_groups, speaker_groups
    faces = character_groups([], np.zeros((0, 128), np.float32), [])
    voices = speaker_groups([], {})
    assert faces.embeddings.shape == (0, 128) and voices.embeddings.shape == (0, 0)
    reg = Registry("character", "euclidean")
    assert assign(reg, "black.mp4", "k", faces, 0.5) == {} and reg.members == []
