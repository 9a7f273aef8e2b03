"""The diarizer's networks in onnxruntime: the same numbers as torch on real speech, one export per model."""
import numpy as np
import pytest
import soundfile as sf
import torch

from tasks.video.diarize import onnx_runtime
from tasks.video.diarize import voice_models as V


@pytest.fixture
def speech(sample_wav):
    samples, rate = sf.read(sample_wav("montage_dev00.mp4"), dtype="float32")
    assert rate == V.SAMPLE_RATE
    return samples


def test_segmentation_and_trunk_in_onnxruntime_match_torch_on_real_speech(speech):
    V.clear_cache()
    model = V.segmentation_model()
    windows = np.stack([speech[:160000], speech[80000:240000]])[:, None]
    with torch.inference_mode():
        reference = model(torch.from_numpy(windows)).numpy()
    got = V.segmentation_forward()(windows)
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() < 1e-3
    # the powerset class every frame takes is the same
    assert (got.argmax(-1) == reference.argmax(-1)).mean() > 0.999

    cam = V.campplus()
    assert cam._trunk_onnx is not None  # onnxruntime is a dependency: the CPU path must take it
    fbank = V.fbank(speech[:123456])[None]
    fbank = fbank - fbank.mean(dim=1, keepdim=True)
    with torch.inference_mode():
        expected = cam._trunk(fbank).numpy()
    features = cam.trunk(fbank).numpy()
    assert features.shape == expected.shape  # any length: the frame axis is dynamic
    assert np.abs(features - expected).max() < 1e-3


def test_a_model_is_exported_once_and_again_when_its_files_change(tmp_path, monkeypatch):
    monkeypatch.setenv("CASTLINE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"v1")
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 5), torch.nn.ReLU()).eval()
    axes = {"x": {0: "batch", 2: "time"}, "y": {0: "batch", 2: "time2"}}
    run = onnx_runtime.session("toy", net, torch.zeros(1, 1, 50), axes, [weights])
    x = np.random.default_rng(0).standard_normal((3, 1, 80)).astype(np.float32)
    with torch.inference_mode():
        assert np.allclose(run(x), net(torch.from_numpy(x)).numpy(), atol=1e-5)
    (first,) = (tmp_path / "cache" / "onnx").glob("toy-*.onnx")
    stamp = first.stat().st_mtime_ns

    onnx_runtime.session("toy", net, torch.zeros(1, 1, 50), axes, [weights])
    assert first.stat().st_mtime_ns == stamp  # reused, not exported again
    weights.write_bytes(b"v2 (new weights)")
    onnx_runtime.session("toy", net, torch.zeros(1, 1, 50), axes, [weights])
    assert len(list((tmp_path / "cache" / "onnx").glob("toy-*.onnx"))) == 2


def test_without_onnxruntime_the_networks_run_in_torch(monkeypatch, speech):
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    V.clear_cache()
    try:
        assert V.campplus()._trunk_onnx is None
        windows = speech[None, None, :160000].copy()
        with torch.inference_mode():
            expected = V.segmentation_model()(torch.from_numpy(windows)).numpy()
        assert np.array_equal(V.segmentation_forward()(windows), expected)
    finally:
        V.clear_cache()


def test_a_damaged_export_falls_back_to_torch_and_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CASTLINE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"v1")
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 5)).eval()
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    path = onnx_runtime.export_path("toy", [weights])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")  # a truncated copy left by a full disk
    assert onnx_runtime.session("toy", net, torch.zeros(1, 1, 50), axes, [weights]) is None
    assert not path.exists()
    assert onnx_runtime.session("toy", net, torch.zeros(1, 1, 50), axes, [weights]) is not None
