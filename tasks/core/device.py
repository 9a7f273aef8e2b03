"""Which torch device castline's models run on: one setting per process (config `device`, `--device`).

`auto` takes the first CUDA device when torch sees one, else the CPU; `cuda` insists on a GPU and says so in one
line when there is none. The setting is process-wide, as torch's own thread count is: the per-video flow sets it
in the process that runs the video (a Dask worker included), and every model loader asks `torch_device()` when it
loads. It is not part of any cache key: a result computed on the GPU is the one the CPU would give, to float
rounding, so a re-run on the other device reuses it.
"""
from __future__ import annotations

from typing import Literal, get_args

from tasks.core.errors import ModelUnavailable

Setting = Literal["auto", "cpu", "cuda"]  # the config field's type (tasks/core/config.py RunConfig.device)
SETTINGS: tuple[str, ...] = get_args(Setting)

_setting: str = "auto"


class DeviceUnavailable(ModelUnavailable):
    """`cuda` was asked for on a machine whose torch sees no GPU: the models cannot load where they were told to,
    so every place that reports a missing model in one line reports this too."""


def use(setting: str) -> None:
    """Make `setting` the device of the models this process loads from now on."""
    global _setting
    if setting not in SETTINGS:
        raise ValueError(f"device must be one of {', '.join(SETTINGS)}, got {setting!r}")
    _setting = setting


def torch_device():
    """The torch.device of the current setting."""
    import torch

    if _setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _setting == "cuda":
        raise DeviceUnavailable("device cuda: torch sees no CUDA device on this machine (use --device auto or cpu)")
    return torch.device("cpu")


def name() -> str:
    """The current device as ultralytics and facenet-pytorch take it: "cpu" or "cuda"."""
    return torch_device().type
