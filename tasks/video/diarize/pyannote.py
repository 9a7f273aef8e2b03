"""Speaker diarization with a pyannote.audio 4 pipeline: the `pyannote` backend of tasks/video/diarize/__init__.py.

In: an audio file (read as 16 kHz mono by tasks/core/audio_stream.py) and DiarizeParams, whose `model` is a local
pipeline folder (or its config.yaml) or a Hugging Face id already in the local cache. Out: what the offline
backend gives — SpeechTurns labelled SPEAKER_00, SPEAKER_01... in order of first speech, and one L2-normalised
voice centroid per label (pyannote's per-speaker embedding: 256-d for WeSpeaker ResNet34).
Backend: pyannote.audio's SpeakerDiarization (segmentation, speaker embedding, clustering), loaded with
`Pipeline.from_pretrained` from disk only.

pyannote finds speech itself; its turns may overlap (two voices at once), and its DiarizeOutput's exclusive
view gives them one speaker at a time. The file is handed to pyannote as one preloaded waveform
(its fast path): 230 MB of memory per hour of audio.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from tasks.core import device
from tasks.core.audio_stream import AudioStream
from tasks.core.config import DiarizeParams
from tasks.core.errors import ModelUnavailable
from tasks.core.records import Diarization, SpeechTurn
from tasks.core.stage import Progress
from tasks.core.workspace import local_model

# The library flow diarizes videos in threads; a pyannote pipeline is not documented as safe to share
# between threads, so loading and calls take turns (each call already uses every core through torch).
_LOCK = threading.Lock()


def pipeline_unavailable(model: str, why: str) -> ModelUnavailable:
    from huggingface_hub import constants

    return ModelUnavailable(
        f"pyannote pipeline {model!r} is not available offline ({why}). Set diarize.model to a folder holding the "
        f"pipeline's config.yaml and the checkpoints it names, or to a Hugging Face id already in the local cache "
        f"({constants.HF_HUB_CACHE}; fill it while online with `hf download {model}`, after accepting the model's "
        f"conditions on huggingface.co for gated models). castline never downloads models.")


def resolve(model: str) -> Path:
    """The pipeline's folder or its config.yaml, on disk or in the local Hugging Face cache; else why not, in
    pyannote's terms."""
    return local_model(model, lambda why: pipeline_unavailable(model, why))


def segmentation_specifications():
    """The task of pyannote/segmentation-3.0 — 10 s chunks, 3 local speakers, powerset of at most 2 at a
    time — for building that segmentation model from scratch (to train one, or to time the architecture)."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0,
                          min_duration=10.0, warm_up=(0.0, 0.0), classes=["speaker#1", "speaker#2", "speaker#3"],
                          powerset_max_classes=2, permutation_invariant=True)


@functools.lru_cache(maxsize=1)
def load_pipeline(model: str):
    """The SpeakerDiarization pipeline `model` names, on the GPU when there is one.

    A snapshot is loaded as a local folder, so its `$model/...` checkpoints are read from it; a config that
    names other Hugging Face ids (pyannote 3.x pipelines name their segmentation and embedding models so)
    reads them from the cache only, under HF_HUB_OFFLINE (tasks/core/offline.py)."""
    from tasks.core.model_loading import MODEL_LOADING

    source = resolve(model)
    try:
        with MODEL_LOADING:
            from pyannote.audio import Pipeline
            from pyannote.audio.pipelines import SpeakerDiarization

            pipeline = Pipeline.from_pretrained(source)
    except FileNotFoundError as e:  # a config.yaml, checkpoint or cached id the config names is missing
        raise pipeline_unavailable(model, " ".join(str(e).split())) from None
    if not isinstance(pipeline, SpeakerDiarization):
        raise ValueError(f"pyannote pipeline {model!r} is a {type(pipeline).__name__}, not a SpeakerDiarization")
    # A `legacy` pipeline returns the Annotation alone; castline also needs its speaker embeddings.
    pipeline.legacy = False
    return pipeline.to(device.torch_device())


def speaker_records(diarization, exclusive, embeddings: np.ndarray) -> Diarization:
    """pyannote's result (its DiarizeOutput's two Annotations and one embedding row per `diarization.labels()`)
    as castline's record: turns sorted by start, labels renamed SPEAKER_00... in order of first speech, each
    label's embedding L2-normalised.

    pyannote pads with zero rows the speakers its frame-level speaker count found beyond the clusters; such a
    centroid stays zero: at cosine distance 1 from every voice, it joins no library speaker."""
    rows = {label: i for i, label in enumerate(diarization.labels())}

    def tracks(annotation):
        return sorted((float(seg.start), float(seg.end), rows[label])
                      for seg, _, label in annotation.itertracks(yield_label=True) if label in rows)

    order: dict[int, str] = {}
    for _, _, row in tracks(diarization):
        order.setdefault(row, f"SPEAKER_{len(order):02d}")
    vectors = np.nan_to_num(np.asarray(embeddings, np.float64))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)

    def records(annotation):
        return [SpeechTurn(round(a, 3), round(b, 3), order[row]) for a, b, row in tracks(annotation) if row in order]

    return Diarization(records(diarization), records(exclusive), {name: unit[row] for row, name in order.items()})


def _hook(progress: Progress):
    """pyannote's step hook as castline's progress(done, total): one bar for segmentation, then one for
    the speaker embeddings (the steps that report counts)."""
    if progress is None:
        return None

    def hook(step, artefact=None, completed=None, total=None, **_):
        if completed is not None and total:
            progress(min(completed, total), total)

    return hook


def diarize(wav: Path, params: DiarizeParams, progress: Progress = None) -> Diarization:
    """tasks/video/diarize/__init__.py's `diarize` contract with the pipeline `params.model`."""
    import torch

    with AudioStream(wav) as stream:
        samples, rate = stream.read(0, stream.frames), stream.rate
    if not len(samples):
        return Diarization([], [], {})
    audio = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": Path(wav).stem}
    with _LOCK:
        output = load_pipeline(params.model)(audio, max_speakers=params.max_speakers, hook=_hook(progress))
    return speaker_records(output.speaker_diarization, output.exclusive_speaker_diarization, output.speaker_embeddings)
