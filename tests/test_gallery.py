"""Gallery naming: closest pairs under the threshold, and clear mutual nearest pairs in the looser band."""
import numpy as np
import pytest

from tasks.library.gallery import name_characters


def vec(*xs):
    return np.array(xs, dtype=np.float32)


def names(centroids, gallery, threshold=0.5, loose=None, gap=0.0):
    return {m.character_id: (m.name, m.rule)
            for m in name_characters(centroids, gallery, threshold, loose_threshold=loose, min_gap=gap)}


def test_gallery_names_closest_pairs_once_and_leaves_strangers_unnamed():
    centroids = {"character_000": vec(0, 0), "character_001": vec(0.3, 0), "character_002": vec(9, 9)}
    gallery = {"Ann": vec(0.1, 0), "Bob": vec(0.35, 0)}
    assert names(centroids, gallery) == {"character_000": ("Ann", "threshold"), "character_001": ("Bob", "threshold")}


# The Hamilton case in miniature: Ann is named plainly; Bob's only face is far from his photo but much
# nearer to it than any other face is, and much nearer to it than to Ann's photo.
HAMILTON = {"ann": vec(0, 0), "bob_far": vec(10, 0.65), "stranger": vec(10, -0.75), "ann_profile": vec(0.7, 0)}
PHOTOS = {"Ann": vec(0, 0.05), "Bob": vec(10, 0)}


def test_a_clear_mutual_nearest_pair_is_named_in_the_loose_band():
    got = names(HAMILTON, PHOTOS, loose=0.7, gap=0.04)
    assert got == {"ann": ("Ann", "threshold"), "bob_far": ("Bob", "mutual")}


def test_the_loose_band_is_off_unless_asked_for():
    assert names(HAMILTON, PHOTOS) == {"ann": ("Ann", "threshold")}


def test_a_runner_up_within_the_gap_leaves_the_pair_unnamed():
    close = {**HAMILTON, "stranger": vec(10, -0.68)}  # 0.68 vs Bob's 0.65: too close to tell
    assert names(close, PHOTOS, loose=0.7, gap=0.04) == {"ann": ("Ann", "threshold")}


def test_a_face_nearest_to_a_name_already_given_stays_unnamed():
    # Another view of Ann lies a little nearer to Ann's photo (0.62) than to Bob's (0.63), and Bob has no
    # other candidate: it is likely Ann, and must not take Bob's name.
    centroids = {"ann": vec(0, 0), "ann_profile": vec(0, 0.62), "other": vec(20, 0)}
    photos = {"Ann": vec(0, 0), "Bob": vec(0, 1.25)}
    assert names(centroids, photos, loose=0.7, gap=0.0) == {"ann": ("Ann", "threshold")}


def test_a_one_photo_gallery_gives_no_loose_names():
    # With one name there is no runner-up name, so nothing shows the match is unambiguous.
    got = names({"bob_far": vec(10, 0.65), "other": vec(20, 0)}, {"Bob": vec(10, 0)}, loose=0.7, gap=0.04)
    assert got == {}


def test_gallery_vectors_are_recomputed_when_the_face_code_changes(tmp_path, monkeypatch):
    from tasks.core.config import RunConfig
    from tasks.library import identities

    gallery = tmp_path / "gallery" / "someone"
    gallery.mkdir(parents=True)
    (gallery / "a.jpg").write_bytes(b"photo bytes")
    calls = []
    monkeypatch.setattr(identities, "embed_gallery",
                        lambda *a: calls.append(1) or {"someone": np.ones(128, np.float32)})
    monkeypatch.setattr(identities, "make_detector", lambda p: None)
    monkeypatch.setattr(identities, "make_embedder", lambda p: None)
    cache = tmp_path / "cache"
    cache.mkdir()
    identities.gallery_embeddings(tmp_path / "gallery", cache, RunConfig())
    identities.gallery_embeddings(tmp_path / "gallery", cache, RunConfig())
    assert len(calls) == 1  # the same photos, parameters and code: read from the cache
    monkeypatch.setattr(identities, "code_fingerprint", lambda module: f"edited {module}")
    identities.gallery_embeddings(tmp_path / "gallery", cache, RunConfig())
    assert len(calls) == 2


def test_the_gallery_folder_is_the_configured_one_else_the_librarys(tmp_path):
    from tasks.core.config import RunConfig
    from tasks.library.run import gallery_folder

    lib = tmp_path / "library"
    lib.mkdir()
    assert gallery_folder(lib, RunConfig()) is None
    (tmp_path / "photos").mkdir()
    (lib / "gallery").symlink_to(tmp_path / "photos")
    assert gallery_folder(lib, RunConfig()) == str(lib / "gallery")
    assert gallery_folder(lib, RunConfig(library={"gallery": str(tmp_path / "photos")})) == str(tmp_path / "photos")
    with pytest.raises(ValueError, match="gallery folder not found: .*missing"):
        gallery_folder(lib, RunConfig(library={"gallery": str(tmp_path / "missing")}))
    (tmp_path / "photos").rmdir()  # the link now leads nowhere (a copied library, an unmounted drive)
    with pytest.raises(ValueError, match="links to .*photos, which is not a folder"):
        gallery_folder(lib, RunConfig())


def test_a_run_with_a_broken_gallery_link_stops_before_any_video_work(tmp_path, sample_dir):
    import logging

    from cli import castline
    from prefect.states import State

    from flows.library import _run_library
    from tasks.core.config import RunConfig
    from tasks.core.workspace import Workspace

    lib, ws = tmp_path / "library", tmp_path / "ws"
    lib.mkdir()
    (lib / "megamind.avi").symlink_to(sample_dir / "megamind.avi")
    (lib / "gallery").symlink_to(tmp_path / "nowhere")
    r = castline("run", str(lib), "--workspace", str(ws))
    assert r.returncode == 2 and "which is not a folder" in r.stderr, r.stderr
    assert not (ws / "cache").exists()
    # A scheduled run (castline serve) has no CLI in front of it: the flow itself stops, as a failed run.
    state = _run_library(lib, Workspace.open(ws), RunConfig(), logging.getLogger("test"), 0.0)
    assert isinstance(state, State) and state.is_failed() and "which is not a folder" in state.message
    assert not (ws / "cache").exists()
