"""Face embeddings, one per track.

In: the frame store (frames.json + JPEGs), the track stage's tracks and EmbedParams. Out: an (n_tracks, dim)
float32 .npy, row i = track i. Backends: dlib's ResNet face descriptor (128-d, weights from
face_recognition_models, the network run in torch by tasks/video/embed/dlib_resnet.py; the default), CLIP / ViT
from a local Hugging Face model (tasks/video/embed/hf.py, unit vectors).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tasks.core import formats
from tasks.core.config import EmbedParams
from tasks.video.detect import read_rgb
from tasks.core.contact_sheet import crop_box
from tasks.video.embed.pooling import pool, quality, witnesses
from tasks.core.records import Box, Frame, Track
from tasks.core.stage import Progress, ProgressBar, stage_task
from tasks.core.workspace import model_folder

DIM = 128
# dlib's compute_face_descriptor pads the landmarks' face box by a quarter before cutting its chip.
CHIP_PADDING = 0.25
# Chips per forward pass: large enough for oneDNN's throughput, small enough to bound the activations' memory.
BATCH = 64


class DlibFaceEmbedder:
    """dlib 128-d descriptors, compared by Euclidean distance (dlib's own rule: under 0.6 = same person).

    Each box is landmarked with the 5-point predictor and the descriptor is computed on the aligned face chip
    dlib cuts from those landmarks, so detector boxes of any style (MTCNN, HOG, Haar) give comparable vectors.
    dlib does the landmarks and chips; its ResNet runs in torch (tasks/video/embed/dlib_resnet.py), batched,
    since the dlib wheel's own forward has no BLAS and was most of the pipeline's time.
    """

    name = "dlib-resnet"

    def __init__(self, margin: float = 0.0, jitter: int = 0):
        self.margin = float(margin)
        self.jitter = int(jitter)
        self._models = None
        # dlib's model object jittered from its own fixed-seed generator: one seeded stream per embedder keeps
        # a fresh embedder's jittered descriptors repeatable as they were.
        self._rng = np.random.default_rng(0)

    def _load(self):
        if self._models is not None:  # every batch of chips asks: only the first load waits for the lock
            return self._models
        from tasks.core.model_loading import MODEL_LOADING

        with MODEL_LOADING:
            if self._models is None:
                import warnings

                import dlib

                from tasks.core import device
                from tasks.video.embed import dlib_resnet
                with warnings.catch_warnings():
                    # face_recognition_models still imports pkg_resources, which only warns about itself.
                    warnings.simplefilter("ignore")
                    import face_recognition_models as frm

                self._models = (dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
                                dlib_resnet.load(frm.face_recognition_model_location(), device.torch_device()))
        return self._models

    def _rect(self, box: Sequence[float], width: int, height: int):
        import dlib

        x1, y1, x2, y2 = (float(v) for v in box[:4])
        # The landmark model was trained on dlib HOG boxes, which are looser than MTCNN's; a margin lets
        # tight boxes include the whole jaw and brow line.
        dx, dy = (x2 - x1) * self.margin / 2, (y2 - y1) * self.margin / 2
        left, top = max(0, int(round(x1 - dx))), max(0, int(round(y1 - dy)))
        right, bottom = min(width - 1, int(round(x2 + dx)) - 1), min(height - 1, int(round(y2 + dy)) - 1)
        return dlib.rectangle(left, top, max(left, right), max(top, bottom))

    def chips(self, image_rgb: np.ndarray, boxes_xyxy: Sequence[Sequence[float]]) -> np.ndarray:
        """(n, 150, 150, 3) uint8: the aligned faces of the boxes, cut as dlib's compute_face_descriptor cuts them."""
        from tasks.video.embed.dlib_resnet import CHIP

        if len(boxes_xyxy) == 0:
            return np.zeros((0, CHIP, CHIP, 3), dtype=np.uint8)
        import dlib

        predictor, _ = self._load()
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        height, width = image.shape[:2]
        shapes = dlib.full_object_detections()
        for box in boxes_xyxy:
            shapes.append(predictor(image, self._rect(box, width, height)))
        return np.stack(dlib.get_face_chips(image, shapes, size=CHIP, padding=CHIP_PADDING))

    def describe(self, chips: np.ndarray) -> np.ndarray:
        """(n, 128) float32 descriptors of `chips`; with jitter > 1, each the mean over that many jittered copies."""
        if len(chips) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        import torch

        _, net = self._load()
        copies = max(1, self.jitter)
        if copies > 1:  # as dlib's own num_jitters > 1; 0 and 1 both mean the chip as it is
            chips = np.stack([_jitter(chip, self._rng) for chip in chips for _ in range(copies)])
        device = next(net.parameters()).device
        with torch.inference_mode():
            out = torch.cat([net(torch.from_numpy(chips[k:k + BATCH]).to(device))
                             for k in range(0, len(chips), BATCH)])
        return out.reshape(-1, copies, DIM).mean(dim=1).cpu().numpy()

    def embed(self, image_rgb: np.ndarray, boxes_xyxy: Sequence[Sequence[float]]) -> np.ndarray:
        return self.describe(self.chips(image_rgb, boxes_xyxy))


def _jitter(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """dlib::jitter_image (dlib/image_transforms/interpolation.h) drawing from `rng`: the chip re-cut up to 2 %
    off centre, 0.97-1 of its scale and up to 3 degrees turned, mirrored half the time."""
    import dlib

    side = chip.shape[0]
    inner = side - 6  # shrink_rect(get_rect(img), 3)
    tx, ty = (int(np.floor(rng.uniform(-0.02, 0.02) * inner + 0.5)) for _ in range(2))
    box = int(inner / rng.uniform(0.97, 0.99999))
    centre = side // 2
    left, top = centre + tx - box // 2, centre + ty - box // 2
    angle = rng.uniform(-3.0, 3.0) * np.pi / 180
    rect = dlib.rectangle(left, top, left + box - 1, top + box - 1)
    crop = dlib.extract_image_chip(chip, dlib.chip_details(rect, dlib.chip_dims(side, side), angle))
    return np.ascontiguousarray(crop[:, ::-1]) if rng.random() > 0.5 else crop


def _hf(family: str) -> Callable[[EmbedParams], object]:
    """clip/vit: torch and transformers are imported only when one is made."""
    def make(params: EmbedParams):
        from tasks.video.embed import hf

        cls = getattr(hf, family)
        return cls(params.model, size=params.size, margin=params.margin,
                   grid=tuple(params.grid) if params.grid else None)
    return make


# EmbedParams.backend names one of these; tests/test_backends.py keeps the config's Literal equal to the keys.
BACKENDS: dict[str, Callable[[EmbedParams], object]] = {
    "dlib": lambda p: DlibFaceEmbedder(margin=p.margin, jitter=p.jitter),
    "clip": _hf("ClipEmbedder"),
    "vit": _hf("ViTEmbedder"),
}


def make_embedder(params: EmbedParams):
    """The embedder EmbedParams names: an object with `name` and `embed(image_rgb, boxes_xyxy) -> (n, dim)`."""
    return BACKENDS[params.backend](params)


def model_files(params: EmbedParams) -> list[Path]:
    """The Hugging Face model folder clip/vit read (dlib's weights ship in a pip package); ModelUnavailable when
    it is neither on disk nor in the local cache."""
    return [model_folder(params.model)] if params.backend != "dlib" and params.model else []


# Frames whose chips go through dlib's network in one pass: one frame's few faces are too small a batch for
# oneDNN's throughput.
FRAMES_PER_BATCH = 32


def _vectors_by_frame(frames_dir: Path, order: Sequence[int], files: dict[int, str],
                      by_frame: dict[int, list[tuple[int, Box]]], embedder,
                      need_image: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(frame index, its boxes' vectors, the frame when `need_image`) for each frame of `order`, in order.

    An embedder that cuts its chips apart from describing them (dlib) describes FRAMES_PER_BATCH frames' chips
    at once, each frame dropped once its chips are cut; the others embed frame by frame."""
    def boxes(frame_index: int) -> list[tuple[float, ...]]:
        return [b.xyxy for _, b in by_frame[frame_index]]

    if need_image or not hasattr(embedder, "describe"):
        for frame_index in order:
            image = read_rgb(frames_dir / files[frame_index])
            yield frame_index, embedder.embed(image, boxes(frame_index)), image if need_image else None
        return
    for k in range(0, len(order), FRAMES_PER_BATCH):
        batch = order[k:k + FRAMES_PER_BATCH]
        chips = [embedder.chips(read_rgb(frames_dir / files[i]), boxes(i)) for i in batch]
        vectors = embedder.describe(np.concatenate(chips))
        for frame_index, frame_vectors in zip(batch, np.split(vectors, np.cumsum([len(c) for c in chips])[:-1])):
            yield frame_index, frame_vectors, None


def embed_tracks(frames_dir: Path, tracks: Sequence[Track], params: EmbedParams,
                 progress: Progress = None, embedder=None, frames: Sequence[Frame] | None = None) -> np.ndarray:
    """Row i = track i's vector, from `params.crops` of its boxes (tasks/video/embed/pooling.py witnesses). dlib:
    plain mean of their descriptors (not re-normalised, so dlib's 0.6 rule still holds). Cosine embedders
    (clip/vit): quality-weighted mean of unit vectors (tasks/video/embed/pooling.py).

    `frames` defaults to the store's frames.json; boxes name frames by index, the index names the JPEG.
    """
    frames_dir = Path(frames_dir)
    embedder = embedder or make_embedder(params)
    dim = getattr(embedder, "dim", DIM)
    cosine = getattr(embedder, "metric", "euclidean") == "cosine"
    if frames is None:
        frames = formats.read_frames(frames_dir / "frames.json")
    files = {f.index: f.file for f in frames}

    # Group by frame so each JPEG is decoded once, however many faces it holds.
    by_frame: dict[int, list[tuple[int, Box]]] = defaultdict(list)
    for row, track in enumerate(tracks):
        if track.label != "face":
            continue  # head and person tracks carry no face to describe; their rows stay zero
        for i in witnesses(track.boxes, params.crops):
            by_frame[track.boxes[i].frame].append((row, track.boxes[i]))
    order = sorted(by_frame)
    missing = [i for i in order if i not in files]
    if missing:
        raise KeyError(f"a track has a box on frame {missing[0]}, which is not in the frame index")

    vectors: list[list[np.ndarray]] = [[] for _ in tracks]
    qualities: list[list[float]] = [[] for _ in tracks]
    for n, (frame_index, frame_vectors, image) in enumerate(
            _vectors_by_frame(frames_dir, order, files, by_frame, embedder, need_image=cosine), 1):
        for (row, box), vec in zip(by_frame[frame_index], frame_vectors):
            vectors[row].append(vec)
            # Quality needs the frame, which is only decoded here: measure it now, pool once all boxes are in.
            qualities[row].append(quality(box, crop_box(image, box.xyxy)) if cosine else 1.0)
        if progress is not None:
            progress(n, len(order))
    out = np.zeros((len(tracks), dim), dtype=np.float32)
    for row, (vecs, qs) in enumerate(zip(vectors, qualities)):
        if vecs:
            out[row] = pool(np.stack(vecs), np.array(qs))[0] if cosine else np.mean(vecs, axis=0)
    return out


@stage_task("embed")
def embed_task(frames_index: Path, tracks_path: Path, *, out: Path, params: EmbedParams) -> None:
    frames_index = Path(frames_index)
    frames_dir = frames_index.parent
    bar = ProgressBar(f"embed {frames_dir.name}")
    try:
        matrix = embed_tracks(frames_dir, formats.read_tracks(tracks_path), params, progress=bar,
                              frames=formats.read_frames(frames_index))
    finally:
        bar.close()
    formats.write_npy(out, matrix)
