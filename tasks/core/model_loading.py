"""One lock for importing and loading models, shared by every backend of the process.

The library flow runs videos, and each video's audio and video branches, in threads. Two threads importing a
model library for the first time (facenet_pytorch and torchvision, ultralytics, transformers, pyannote.audio)
can meet in CPython's import-deadlock avoidance, which hands one of them a partially initialised module: a
clean-clone CI run failed two videos with "cannot import name 'MTCNN' from 'facenet_pytorch'" and "cannot
import name 'InterpolationMode' from partially initialized module 'torchvision.transforms'". Loaders take
this lock around their imports and model construction; it is re-entrant because one loader may call another.
"""
from __future__ import annotations

import threading

MODEL_LOADING = threading.RLock()
