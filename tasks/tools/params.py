"""The parameter models of the side tools (dataset, train-detector, project, export) and the audio-feature backends:
pydantic only, so `castline --help` shows their defaults and descriptions without importing the tools.

In: keyword arguments, or the CLI's options (flows/cli.py builds each option from its field here).
Out: validated parameters; the tools read them (tasks/tools/dataset.py, train_detector.py, projection.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Phi-3's hidden size; Llama-2/3-8B-class models use 4096.
DEFAULT_OUT_DIM = 3072
# The audio encoders `castline audio-features` can use: tasks/tools/audio_features.py BACKENDS.
AudioBackend = Literal["whisper", "ast"]


class DatasetLayout(BaseModel):
    """What every dataset castline writes shares: near-duplicate frames dropped, whole videos per split, the
    files beside the ultralytics layout."""
    model_config = ConfigDict(extra="forbid")

    dedup_hamming: int | None = Field(
        6, ge=0, le=64, description="frames whose 64-bit dHash is within this many bits of a kept frame of the same "
                                    "video are dropped (None keeps every frame)")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of videos held out for validation (at least one)")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share of videos held out for testing (when 3+ videos)")
    seed: int = Field(0, description="seed of the video-to-split assignment")
    coco: bool = Field(True, description="also write COCO JSON annotations per split")
    contact_sheet: int = Field(24, ge=0, description="images drawn with their boxes on contact_sheet.png (0: none)")


class DatasetParams(DatasetLayout):

    fps: float = Field(1.0, gt=0, description="frames sampled per second of video")
    max_side: int = Field(640, ge=64, description="sampled frames are downscaled so their long side is at most this")
    jpeg_quality: int = Field(92, ge=50, le=100, description="quality of the stored frames")
    teacher: Literal["mtcnn", "dlib-hog", "haar", "mtcnn+dlib"] = Field(
        "mtcnn", description="bootstrap face detector that labels frames (mtcnn+dlib: both, agreement raises the score)")
    min_face: int = Field(20, ge=8, description="smallest face side labelled, in pixels of the sampled frame")
    min_score: float = Field(0.9, ge=0, le=1, description="teacher boxes below this confidence are dropped")
    kinds: list[Literal["face", "head", "person"]] = Field(
        ["face"], description="classes labelled, in class-id order: face (the teacher), head and person "
                              "(tasks/video/detect/head_boxes.py, HOG people detector); face must be one")


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(None, description="local .pt to fine-tune (e.g. a face model); None trains model_yaml from scratch")
    model_yaml: str = Field("yolov8n.yaml", description="ultralytics architecture trained from random init when no checkpoint")
    epochs: int = Field(30, ge=1, description="training epochs")
    imgsz: int = Field(320, ge=32, le=1280, description="training and inference image size (multiple of 32)")
    batch: int = Field(16, ge=1, description="images per training batch")
    workers: int = Field(0, ge=0, description="data-loader processes (0: in the training process; right for 2 cores)")
    patience: int = Field(50, ge=0, description="epochs without mAP improvement before stopping early")
    cache: bool = Field(True, description="keep decoded training images in RAM")
    seed: int = Field(0, description="training seed")
    conf: float | None = Field(None, gt=0, lt=1, description="YOLO confidence kept when detecting; None: the threshold "
                               "with the best F1 against the teacher on the val split (never the split reported)")
    match_iou: float = Field(0.5, gt=0, le=1, description="IoU at which a YOLO box matches a teacher box")


class AdaptorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_dim: int = Field(..., ge=1, description="width of the vectors fed in (128 for dlib faces, 256 for GE2E voices)")
    out_dim: int = Field(DEFAULT_OUT_DIM, ge=1,
                         description="the language model's hidden size (3072 Phi-3, 4096 Llama-8B)")
    kind: Literal["linear", "mlp"] = Field("linear",
                                           description="linear: one Dense; mlp: Dense-GELU-Dense, hidden = out_dim")
    layernorm: bool = Field(True, description="LayerNorm(in_dim) before the projection")
    seed: int = Field(0, description="seed of the initial weights")


class ExportParams(BaseModel):
    """`castline export`: how much of each character and voice is exported (tasks/tools/character_export.py)."""
    model_config = ConfigDict(extra="forbid")

    max_faces: int = Field(50, ge=1, description="face crops per character at most, chosen to differ in time and "
                                                 "look (tasks/library/report_faces.py)")
    max_clips: int = Field(50, ge=1, description="audio clips per voice folder at most, the longest turns first, "
                                                 "from different videos in turn (tasks/library/report_clips.py)")
