"""The `device` setting: every torch model castline loads goes where the run says, and a GPU asked for on a
machine without one is one line, before any video starts."""
import subprocess
import sys

import pytest
import torch

from tasks.core import device
from tasks.core.config import load_config


@pytest.fixture(autouse=True)
def _restore_device():
    yield
    device.use("auto")


def test_settings_resolve_to_torch_devices(monkeypatch):
    device.use("cpu")
    assert device.torch_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.torch_device() == torch.device("cpu"), "cpu means cpu even where a GPU is"
    device.use("auto")
    assert device.name() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.name() == "cpu"
    device.use("cuda")
    with pytest.raises(device.DeviceUnavailable, match="no CUDA device") as e:
        device.torch_device()
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        device.use("tpu")


def test_config_takes_the_setting_and_no_stage_key_depends_on_it():
    from tasks.video.pipeline import StageKeys

    cpu, cuda = load_config(None, {"device": "cpu"}), load_config(None, {"device": "cuda"})
    assert (cpu.device, cuda.device) == ("cpu", "cuda")
    with pytest.raises(ValueError):
        load_config(None, {"device": "gpu"})
    a, b = StageKeys("v", cpu), StageKeys("v", cuda)
    for stage in ("frames", "detect", "track", "embed", "cluster", "diarize"):
        assert a[stage].key == b[stage].key, stage


def test_models_load_on_the_device_set():
    from tasks.video.diarize import voice_models
    from tasks.video.detect import MTCNNDetector
    from tasks.video.embed import DlibFaceEmbedder

    device.use("cpu")
    assert next(voice_models.segmentation_model().parameters()).device.type == "cpu"
    assert voice_models.campplus().device.type == "cpu"
    assert MTCNNDetector()._load().device.type == "cpu"
    assert next(DlibFaceEmbedder()._load()[1].parameters()).device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU the check asks for")
def test_cuda_on_a_cpu_machine_is_one_line_before_any_video(tmp_path):
    run = subprocess.run([sys.executable, "-m", "flows", "run", str(tmp_path), "--device", "cuda",
                          "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0], lines
