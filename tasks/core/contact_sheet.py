"""Crops and contact sheets: cut a detector box out of a frame, square it, and lay exemplar crops out in a grid.

In: RGB uint8 frames and (x1, y1, x2, y2) boxes in their pixels, or crops already cut. Out: crops as arrays,
per-character contact sheets (a title band over a grid of crops), several of them stacked into one picture, and
a sheet as PNG (written atomically). Backend: OpenCV for resizing, Pillow for the sheet.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tasks.core.formats import write_image

TITLE_HEIGHT = 24
BACKGROUND = (32, 32, 32)


def crop_box(image: np.ndarray, box: Sequence[float], margin: float = 0.0) -> np.ndarray:
    """The box grown by `margin` × its width/height (half on each side, as DlibFaceEmbedder does), clipped to
    the image; never empty, so a box that lies outside the image still gives a 1×1 crop at its nearest edge."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * margin / 2, (y2 - y1) * margin / 2
    left = min(max(int(math.floor(x1 - dx)), 0), width - 1)
    top = min(max(int(math.floor(y1 - dy)), 0), height - 1)
    right = max(min(int(math.ceil(x2 + dx)), width), left + 1)
    bottom = max(min(int(math.ceil(y2 + dy)), height), top + 1)
    return image[top:bottom, left:right]


def letterbox(crop: np.ndarray, size: int, fill: Sequence[int]) -> np.ndarray:
    """Resize the long side to `size` and pad the short one with `fill`, centred: the face keeps its
    proportions (a centre crop, as CLIP's own processor does, would cut off chin or ears)."""
    h, w = crop.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # INTER_AREA averages when shrinking (no aliasing); INTER_CUBIC when enlarging small faces.
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(np.ascontiguousarray(crop), (new_w, new_h), interpolation=interp)
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def _font(size: int) -> ImageFont.FreeTypeFont:
    """Matplotlib's DejaVu Sans (installed with it, as tasks/core/offline.py relies on too): Pillow's built-in
    font has no accented letters, and gallery names have them."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def sheet_image(crops: Sequence[np.ndarray], title: str, cols: int = 6, tile: int = 112) -> Image.Image:
    """`min(cols, n)` columns × ceil(n / cols) rows of `tile`-pixel squares under a title band (one empty row
    when there are no crops, so a character without exemplars still gets a sheet)."""
    n_cols = max(1, min(cols, len(crops)))
    n_rows = max(1, math.ceil(len(crops) / n_cols))
    sheet = Image.new("RGB", (n_cols * tile, TITLE_HEIGHT + n_rows * tile), BACKGROUND)
    for i, crop in enumerate(crops):
        row, col = divmod(i, n_cols)
        sheet.paste(Image.fromarray(letterbox(crop, tile, BACKGROUND)), (col * tile, TITLE_HEIGHT + row * tile))
    ImageDraw.Draw(sheet).text((4, 4), title, fill=(255, 255, 255), font=_font(14))
    return sheet


def stacked(sheets: Sequence[Image.Image]) -> Image.Image:
    """Sheets one under the other, left-aligned on the sheets' background: several characters in one picture."""
    out = Image.new("RGB", (max(s.width for s in sheets), sum(s.height for s in sheets)), BACKGROUND)
    top = 0
    for s in sheets:
        out.paste(s, (0, top))
        top += s.height
    return out


def character_sheet(crops: Sequence[np.ndarray], title: str, out: str | Path, cols: int = 6, tile: int = 112) -> Path:
    """sheet_image as a PNG."""
    return write_image(out, sheet_image(crops, title, cols, tile), "PNG")
