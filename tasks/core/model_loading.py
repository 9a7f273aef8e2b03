"""One lock for importing and loading models, shared by every backend of the process.

The library flow runs videos, and each video's audio and video branches, in threads. Two threads importing a
model library for the first time (facenet_pytorch and torchvision, ultralytics, transformers, pyannote.audio)
can meet in CPython's import-deadlock avoidance, which hands one of them a partially initialised module: a
clean-clone CI run failed two videos with "cannot import name 'MTCNN' from 'facenet_pytorch'" and "cannot
import name 'InterpolationMode' from partially initialized module 'torchvision.transforms'". Loaders take
this lock around their imports and model construction; it is re-entrant because one loader may call another.

The lock alone left one race open: pyannote.audio's pipelines import torchvision too, and the diarizer's
helpers import them lazily in many places. So a video imports every library its run will use, under the lock,
before its branches start (`import_model_libraries`); the imports after that find them in sys.modules.
"""
from __future__ import annotations

import importlib
import threading

from tasks.core.config import RunConfig

MODEL_LOADING = threading.RLock()


def model_libraries(cfg: RunConfig, video: bool = True, audio: bool = True) -> list[str]:
    """The model libraries the video stages and the audio stages of a run with `cfg` import, shared ones first."""
    libraries = ["torch", "torchvision"]
    if video and cfg.detect.backend in ("auto", "mtcnn", "mtcnn+dlib"):
        libraries.append("facenet_pytorch")
    if video and (cfg.detect.backend in ("auto", "yolo") or cfg.detect.yolo_kinds):
        libraries.append("ultralytics")
    if video and cfg.embed.backend != "dlib":
        libraries.append("transformers")
    if audio:
        libraries.append("pyannote.audio.pipelines")  # both diarize backends use its pipelines
    return libraries


def import_model_libraries(cfg: RunConfig, video: bool = True, audio: bool = True) -> None:
    """Import them one after the other in this thread, before any other thread of the run needs them."""
    with MODEL_LOADING:
        for name in model_libraries(cfg, video, audio):
            try:
                importlib.import_module(name)
            except ImportError:  # not installed: the stage that needs it says so in its own words
                pass
