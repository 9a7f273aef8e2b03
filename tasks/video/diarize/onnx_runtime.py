"""The default diarizer's two networks run by ONNX Runtime on the CPU: the same weights, about 1.5x as fast.

In: a torch module (segmentation-3.0, CAM++'s trunk) and the model files it was loaded from. Out: a callable on
numpy arrays, backed by an onnxruntime session of the module exported once to ONNX and kept in the user's cache
(`$CASTLINE_CACHE` or `$XDG_CACHE_HOME/castline`, default ~/.cache/castline/onnx/), under a name made of the model
files' identity and the torch and onnx versions, so a new model or exporter exports again.
Backend: onnxruntime's CPU provider. Measured side by side on one 300 s chunk: 9 s against torch's 14 s
(diarization RTF on 1 h: README "Measured"); outputs agree with torch's to 3e-5 (tests/test_onnx_runtime.py).

torch stays in charge where ONNX would not help or cannot run: on a GPU (device cuda), when onnxruntime or onnx
is not installed, or when an export fails — each said once in the log, never an error.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tasks.core.formats import atomic_path
from tasks.core.model_loading import MODEL_LOADING
from tasks.core.workspace import model_identity, params_digest

log = logging.getLogger(__name__)
OPSET = 17


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "castline"
    return Path(os.environ.get("CASTLINE_CACHE") or default) / "onnx"


def available() -> bool:
    try:
        import onnx  # noqa: F401  (torch's exporter writes the file with it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_path(name: str, sources: Sequence[Path]) -> Path:
    import onnx
    import torch

    files = [entry for f in sources for entry in model_identity(f)]
    return cache_dir() / f"{name}-{params_digest(files, torch.__version__, onnx.__version__, OPSET)}.onnx"


def export(module, example, path: Path, dynamic_axes: dict) -> Path:
    """`module` traced on `example` into `path` (written atomically), unless it is there already. Threads of
    one process export once (the caller holds the model-loading lock); processes race to one atomic rename."""
    import torch

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=dynamic_axes, opset_version=OPSET)
    return path


def session(name: str, module, example, dynamic_axes: dict, sources: Sequence[Path]) -> Callable | None:
    """A function x -> y running `module` in onnxruntime; None (use torch) when onnxruntime cannot be had here.

    Each call uses as many threads as torch is given at that moment (the video flow halves them while a video's
    two branches run side by side): one session per thread count, made when first needed. Importing onnx and
    onnxruntime and exporting take the process's model-loading lock (tasks/core/model_loading.py)."""
    with MODEL_LOADING:
        return _session(name, module, example, dynamic_axes, sources)


def _session(name: str, module, example, dynamic_axes: dict, sources: Sequence[Path]) -> Callable | None:
    if not available():
        log.info("onnxruntime is not installed: the %s network runs in torch", name)
        return None
    import onnxruntime as ort
    import torch

    path = export_path(name, sources)
    try:
        export(module, example, path, dynamic_axes)
        sessions: dict[int, object] = {}

        def runner(threads: int):
            if threads not in sessions:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # The arena keeps the largest activations ever allocated: a 10 min file peaked at 2134 MiB with it,
                # 1718 MiB without (torch alone: 1560), in the same time.
                options.enable_cpu_mem_arena = False
                sessions[threads] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return sessions[threads]

        runner(torch.get_num_threads())
    except Exception as e:  # an exporter or runtime that cannot take this network: torch still can
        log.warning("the %s network runs in torch: ONNX export or load failed (%s: %s)", name, type(e).__name__,
                    " ".join(str(e).split())[:200])
        path.unlink(missing_ok=True)  # a damaged export (disk full, killed copy) is made again next time
        return None

    def run(x: np.ndarray) -> np.ndarray:
        return runner(torch.get_num_threads()).run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run
