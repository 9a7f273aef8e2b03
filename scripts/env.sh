# Environment every castline command runs with: nothing may wait on the network or send telemetry.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export YOLO_OFFLINE=1
export YOLO_CONFIG_DIR="$root/.castline-config/Ultralytics"
export PYANNOTE_METRICS_ENABLED=false
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export PATH="$root/.venv/bin:$PATH"
