"""Image embedders from Hugging Face vision transformers, with the same `embed(image, boxes)` as DlibFaceEmbedder.

In: an RGB uint8 frame and detector boxes (x1, y1, x2, y2). Out: (n, dim) float32 rows of unit length, compared
by cosine. Backends: transformers CLIPModel (projected image embedding) and ViTModel (CLS token), offline only.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import cv2
import numpy as np
import torch

from tasks.core import device as castline_device
from tasks.core.contact_sheet import crop_box, letterbox
from tasks.core.errors import ModelUnavailable
from tasks.core.model_loading import MODEL_LOADING


def _offline(loader, model: str, **kwargs):
    # local_files_only: a folder is read as is, a hub id only from the cache; nothing is ever downloaded.
    try:
        return loader.from_pretrained(model, local_files_only=True, **kwargs)
    except OSError as e:
        raise ModelUnavailable.offline(model) from e


def grid_cells(crop: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """The crop cut into rows × cols near-equal cells, row by row (a crop smaller than the grid is enlarged
    first, so no cell is empty)."""
    h, w = crop.shape[:2]
    if h < rows or w < cols:
        crop = cv2.resize(np.ascontiguousarray(crop), (max(w, cols), max(h, rows)), interpolation=cv2.INTER_NEAREST)
        h, w = crop.shape[:2]
    ys, xs = np.linspace(0, h, rows + 1).round().astype(int), np.linspace(0, w, cols + 1).round().astype(int)
    return [crop[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] for r in range(rows) for c in range(cols)]


class _HFImageEmbedder(ABC):
    """Crop each box (with `margin`), letterbox it to a `size` square, normalise with the model's mean/std and
    embed in batches. With `grid=(rows, cols)` each crop is cut into cells embedded one by one; a box's row is
    then the concatenation of its unit cell vectors divided by sqrt(rows·cols) — still of unit length, and its
    cosine with another box's row is the mean of the cell-by-cell cosines, so the registry and the clustering
    treat it like any other vector (dim = rows·cols·model dim).

    dlib's descriptors are unnormalised and compared by Euclidean distance (0.6 = same person); these are
    unit vectors compared by cosine distance, so thresholds tuned for one backend mean nothing for the other.
    """

    metric = "cosine"
    family = ""

    def __init__(self, model: str, size: int | None = None, margin: float = 0.0,
                 grid: tuple[int, int] | None = None, batch_size: int = 32, device: str | None = None):
        self.model_id = str(model)
        self.margin = float(margin)
        self.grid = tuple(grid) if grid else (1, 1)
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be (rows, cols) of positive integers, got {grid}")
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device else castline_device.torch_device()
        with MODEL_LOADING:
            self._net = self._load_model().eval().to(self.device)
        native = self._image_size()
        self.size = int(size or native)
        # Position embeddings are learnt for the native size; any other size needs them interpolated.
        self._interpolate = self.size != native
        self._mean, self._std = self._mean_std()
        self.feature_dim = self._feature_dim()
        self.dim = self.grid[0] * self.grid[1] * self.feature_dim
        self.name = f"{self.family}:{self.model_id}"

    # -- per-family parts --
    @abstractmethod
    def _load_model(self) -> torch.nn.Module: ...

    @abstractmethod
    def _image_size(self) -> int: ...

    @abstractmethod
    def _feature_dim(self) -> int: ...

    @abstractmethod
    def _default_mean_std(self) -> tuple[Sequence[float], Sequence[float]]: ...

    @abstractmethod
    def _features(self, pixels: torch.Tensor) -> torch.Tensor: ...

    # -- shared --
    def _mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean/std of the image processor saved with the model; the family's standard values when the
        model folder has none (ViT checkpoints often ship without preprocessor_config.json)."""
        from transformers import AutoImageProcessor

        try:
            processor = AutoImageProcessor.from_pretrained(self.model_id, local_files_only=True)
            mean, std = processor.image_mean, processor.image_std
        except (OSError, ValueError, AttributeError):
            mean, std = self._default_mean_std()
        return np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def _square(self, crop: np.ndarray) -> np.ndarray:
        # Padding with the mean colour makes the padded pixels exactly 0 after normalisation: neutral input.
        return letterbox(crop, self.size, np.round(self._mean * 255).astype(np.uint8))

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """One unit row per crop (RGB uint8, any size); the grid does not apply here."""
        out = np.zeros((len(crops), self.feature_dim), np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack([self._square(c) for c in crops[start:start + self.batch_size]]).astype(np.float32)
            batch = (batch / 255.0 - self._mean) / self._std
            pixels = torch.from_numpy(batch.transpose(0, 3, 1, 2)).to(self.device)
            with torch.no_grad():
                features = self._features(pixels).float()
            out[start:start + len(batch)] = torch.nn.functional.normalize(features, dim=-1).cpu().numpy()
        return out

    def embed(self, image_rgb: np.ndarray, boxes_xyxy: Sequence[Sequence[float]]) -> np.ndarray:
        rows, cols = self.grid
        cells = [cell for box in boxes_xyxy
                 for cell in grid_cells(crop_box(image_rgb, box, self.margin), rows, cols)]
        vectors = self.embed_crops(cells)
        return (vectors.reshape(len(boxes_xyxy), self.dim) / np.sqrt(rows * cols)).astype(np.float32)


class ClipEmbedder(_HFImageEmbedder):
    """CLIP's image tower and projection (a full CLIP checkpoint, as every CLIP on the hub is); the size
    defaults to the checkpoint's (224 for ViT-B/16, 336 for ViT-L/14-336)."""

    family = "clip"

    def _load_model(self):
        from transformers import CLIPModel

        return _offline(CLIPModel, self.model_id)

    def _image_size(self) -> int:
        return int(self._net.config.vision_config.image_size)

    def _feature_dim(self) -> int:
        return int(self._net.config.projection_dim)

    def _default_mean_std(self):
        from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    def _features(self, pixels):
        out = self._net.get_image_features(pixel_values=pixels, interpolate_pos_encoding=self._interpolate)
        # transformers 4 returns the projected embedding itself; 5 returns a BaseModelOutputWithPooling whose
        # pooler_output holds that same projected embedding (checked on 5.24).
        return out if isinstance(out, torch.Tensor) else out.pooler_output


class ViTEmbedder(_HFImageEmbedder):
    """A plain ViT (supervised, DINO, face-trained…): the final CLS token, before any pooler or head."""

    family = "vit"

    def _load_model(self):
        from transformers import ViTModel

        # The pooler (a dense + tanh on CLS, trained only for the classification head) is not used.
        return _offline(ViTModel, self.model_id, add_pooling_layer=False)

    def _image_size(self) -> int:
        return int(self._net.config.image_size)

    def _feature_dim(self) -> int:
        return int(self._net.config.hidden_size)

    def _default_mean_std(self):
        from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

        return IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

    def _features(self, pixels):
        return self._net(pixel_values=pixels, interpolate_pos_encoding=self._interpolate).last_hidden_state[:, 0]
