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
