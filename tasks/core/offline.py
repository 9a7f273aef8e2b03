"""Offline environment: nothing castline runs may wait on the network or send telemetry.

In: the process environment. Out: the variables that keep ultralytics, pyannote, Prefect and Hugging Face
offline (set only where the user has not set them), a patient start for Prefect's ephemeral server, and a local font where ultralytics looks for Arial.ttf
(it downloads one otherwise). Called first by the CLI and by the tests.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / ".castline-config"  # the repository root's

SETTINGS = {
    "YOLO_OFFLINE": "1",
    "YOLO_CONFIG_DIR": str(CONFIG_DIR),
    "PYANNOTE_METRICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Prefect's ephemeral API server (no PREFECT_API_URL) must start within this many seconds. Its 20 s default
    # is not enough on a loaded 2-core machine: runs died with "Timed out while attempting to connect to
    # ephemeral Prefect API server" while another run and a test suite shared the cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def configure() -> None:
    for key, value in SETTINGS.items():
        os.environ.setdefault(key, value)
    # ultralytics keeps its settings and fonts in YOLO_CONFIG_DIR/Ultralytics.
    font = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib

        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
