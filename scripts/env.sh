# Puts castline's virtualenv on PATH. The offline settings themselves live in tasks/core/offline.py,
# which the CLI and the tests apply first thing.
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin:$PATH"
