"""Hugging Face embedders through the real offline loading path (tiny random models saved to disk), track
pooling by quality, and contact sheets — on a real frame of the sample cartoon."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tasks.core.contact_sheet import character_sheet, crop_box
from tasks.video.embed.hf import ClipEmbedder, ModelUnavailable, ViTEmbedder, grid_cells
from tasks.video.embed.pooling import pool, pool_track, quality
from tasks.core.records import Box

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
pytestmark = pytest.mark.usefixtures("one_torch_thread")
FACE = (359.0, 153.0, 559.0, 353.0)  # the man's face at 5 s of megamind.avi (720×528)
CANDLE = (295.0, 400.0, 400.0, 528.0)
CLIP_MEAN = (0.25, 0.5, 0.75)  # deliberately not CLIP's, to show the saved processor is the one used
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8)


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> np.ndarray:
    png = tmp_path_factory.mktemp("frame") / "megamind_5s.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "5", "-i", str(SAMPLE / "megamind.avi"),
                    "-frames:v", "1", str(png)], check=True)
    return cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    text = dict(TINY, vocab_size=100, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = CLIPConfig(vision_config=dict(TINY, image_size=32), text_config=text, projection_dim=16)
    d = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(d)
    CLIPImageProcessor(image_mean=list(CLIP_MEAN), size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-vit")
    ViTModel(ViTConfig(**TINY, image_size=64), add_pooling_layer=False).save_pretrained(d)
    ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.4, 0.4, 0.4]).save_pretrained(d)
    return d


def unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-5))


def test_clip_gives_unit_projected_float32_rows(clip_dir, frame):
    emb = ClipEmbedder(str(clip_dir), margin=0.2)
    assert (emb.size, emb.dim, emb.metric) == (32, 16, "cosine")  # projection_dim, not the tower's width 32
    np.testing.assert_allclose(emb._mean, CLIP_MEAN)
    v = emb.embed(frame, [FACE, CANDLE, FACE])
    assert v.shape == (3, 16) and v.dtype == np.float32 and unit_rows(v)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)
    assert float(v[0] @ v[1]) < 0.999
    assert emb.embed(frame, []).shape == (0, 16)


def test_clip_other_size_interpolates_position_embeddings(clip_dir, frame):
    v = ClipEmbedder(str(clip_dir), size=48).embed(frame, [FACE])
    assert v.shape == (1, 16) and unit_rows(v)


def test_vit_cls_token_and_processor_fallback(vit_dir, frame, tmp_path):
    emb = ViTEmbedder(str(vit_dir))
    assert (emb.size, emb.dim) == (64, 32)
    np.testing.assert_allclose(emb._mean, 0.4)
    v = emb.embed(frame, [FACE, CANDLE])
    assert v.shape == (2, 32) and v.dtype == np.float32 and unit_rows(v)

    bare = tmp_path / "bare-vit"
    shutil.copytree(vit_dir, bare)
    (bare / "preprocessor_config.json").unlink()
    np.testing.assert_allclose(ViTEmbedder(str(bare))._mean, 0.5)  # ViT's standard mean


def test_grid_rows_are_scaled_concatenations_of_cells(vit_dir, frame):
    emb = ViTEmbedder(str(vit_dir), grid=(2, 2))
    v = emb.embed(frame, [FACE, CANDLE])
    assert v.shape == (2, 4 * 32) and emb.dim == 128 and unit_rows(v)
    cells = emb.embed_crops(grid_cells(crop_box(frame, CANDLE), 2, 2))
    np.testing.assert_allclose(v[1], cells.reshape(-1) / 2, atol=1e-6)
    tiny = grid_cells(np.zeros((3, 5, 3), np.uint8), 4, 4)  # smaller than the grid: enlarged, no empty cell
    assert len(tiny) == 16 and min(c.shape[0] * c.shape[1] for c in tiny) >= 1


def test_crop_box_margin_and_bounds(frame):
    assert crop_box(frame, FACE).shape == (200, 200, 3)
    assert crop_box(frame, FACE, margin=0.5).shape == (300, 300, 3)  # a quarter of the side on each side
    assert crop_box(frame, CANDLE, margin=1.0).shape == (528 - 336, 453 - 242, 3)  # clipped at the bottom
    assert crop_box(frame, (-50, -50, -10, -10)).shape == (1, 1, 3)
    assert crop_box(frame, (700.2, 520.5, 900, 900)).shape == (8, 20, 3)


def test_missing_model_is_a_clear_offline_error(no_network, tmp_path):
    for missing in ("castline-test/no-such-model", str(tmp_path / "nowhere")):
        for cls in (ClipEmbedder, ViTEmbedder):
            with pytest.raises(ModelUnavailable, match=r"is not available offline: put it in the Hugging Face "
                                                       r"cache or give a local path"):
                cls(missing)


def test_pooling_prefers_a_big_sharp_face(frame):
    sharp = crop_box(frame, FACE)
    blurry = cv2.GaussianBlur(cv2.resize(sharp, (40, 40), interpolation=cv2.INTER_AREA), (7, 7), 0)
    boxes = [Box(0, 0.0, 10, 10, 50, 50, 0.9), Box(1, 1.0, *FACE, 0.99)]
    assert quality(boxes[1], sharp) > 4 * quality(boxes[0], blurry)

    vectors = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # the blurry one longer: its length must not count
    pooled, exemplars = pool_track(vectors, boxes, [blurry, sharp])
    assert pooled.dtype == np.float32 and unit_rows(pooled)
    assert pooled[1] > 4 * pooled[0]
    assert exemplars.tolist() == [1, 0]

    frame_blurry = frame.copy()
    frame_blurry[10:50, 10:50] = blurry
    same, _ = pool_track(vectors, boxes, [frame_blurry, frame], k=1, images_are_frames=True)
    np.testing.assert_allclose(same, pooled, atol=1e-6)
    with pytest.raises(ValueError):
        pool_track(vectors, boxes[:1], [sharp])
    flat, _ = pool(vectors, np.zeros(2))  # no usable quality anywhere: a plain mean of the unit vectors
    np.testing.assert_allclose(flat, [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=1e-6)


def test_character_sheet_png(frame, tmp_path):
    crops = [crop_box(frame, FACE), crop_box(frame, CANDLE)] * 4
    out = character_sheet(crops, "character_003 · Beyoncé", tmp_path / "sheets" / "character_003.png",
                          cols=6, tile=50)
    with Image.open(out) as im:
        assert (im.format, im.size) == ("PNG", (6 * 50, 24 + 2 * 50))
    with Image.open(character_sheet(crops[:2], "two", tmp_path / "two.png", tile=64)) as im:
        assert im.size == (128, 24 + 64)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["character_003.png", "two.png"]
