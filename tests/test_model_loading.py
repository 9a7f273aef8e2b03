"""Model loaders of different stages never import and build at the same time (tasks/core/model_loading.py):
two threads importing facenet_pytorch / torchvision at once once failed a clean-clone CI run with a partially
initialised module."""
from __future__ import annotations

import threading
import time

import pytest


def _slow(active: list[int], peak: list[int], result=None):
    def build(*args, **kwargs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        active[0] -= 1
        return result
    return build


@pytest.mark.parametrize("stage", ["mtcnn", "dlib-embedder"])
def test_two_threads_loading_models_take_turns(stage, monkeypatch):
    import facenet_pytorch

    from tasks.video.detect import MTCNNDetector
    from tasks.video.embed import DlibFaceEmbedder, dlib_resnet

    active, peak = [0], [0]
    if stage == "mtcnn":
        monkeypatch.setattr(facenet_pytorch, "MTCNN", _slow(active, peak, object()))
        loaders = [MTCNNDetector()._load, MTCNNDetector()._load]
    else:
        monkeypatch.setattr(dlib_resnet, "load", _slow(active, peak, object()))
        loaders = [DlibFaceEmbedder()._load, DlibFaceEmbedder()._load]
    # and a face model loading beside the diarizer's: one lock for the whole process
    from tasks.core.model_loading import MODEL_LOADING

    def diarizer_load():
        with MODEL_LOADING:
            _slow(active, peak)()

    threads = [threading.Thread(target=f) for f in (*loaders, diarizer_load)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1


def test_a_video_imports_its_model_libraries_before_its_branches_start(tmp_path, sample_dir):
    """The diarizer imports pyannote.audio's pipelines (and with them torchvision) outside the lock, beside the
    detector importing facenet_pytorch: a clean-clone CI run failed a video on exactly that. In a fresh
    interpreter, every library of the run is in sys.modules by the time the two branches start."""
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
import flows.video as video
from tasks.core.config import RunConfig
from tasks.core.model_loading import model_libraries
from tasks.core.workspace import Workspace

cfg = RunConfig()
def branches(video_branch, audio_branch, at_once):
    missing = [m for m in model_libraries(cfg) if m not in sys.modules]
    print("MISSING", missing)
video.both_branches = branches
video.process_video(Path({str(sample_dir / "montage_dev00.mp4")!r}), "montage_dev00.mp4",
                    Workspace.open({str(tmp_path / "ws")!r}), cfg)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "MISSING []" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
