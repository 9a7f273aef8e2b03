"""Prefect's API for one `castline` command that runs flows (run, recluster, dataset, train-detector): a temporary
server started first thing, so it boots while castline loads.

Without PREFECT_API_URL, Prefect's ephemeral mode starts a temporary API server (uvicorn serving
prefect.server.api.server:create_app, UI off) — but only when the first flow starts: the client first imports
prefect.server.api.server (its FastAPI app, database models, docket: about 3 s here) just to launch it, then
waits for it to boot. A warm re-run, with nothing to compute, spent 13 of its 19 s there (py-spy). castline
starts the same server command itself before importing Prefect and points PREFECT_API_URL at it, so the boot
overlaps castline's own imports and the client never imports the server.

Nothing is started when the run already has an API or the user turned ephemeral mode off: PREFECT_API_URL set
(scripts/prefect_server.sh) or in the active Prefect profile, or ephemeral mode off there (Prefect then says
why it has no API). The
server dies with the castline process, a kill -9 included (Linux's parent-death signal).

Its output goes to a log file, not the run's terminal: stopping it cancels the server's background services
mid-query, and sqlalchemy then logs "Exception during reset" tracebacks after a run that succeeded. The log's
last lines are shown when the server fails (it exits early, does not answer, or dies during the run). The file
is unlinked as soon as both ends hold it open, so no run, a killed one included, leaves it behind.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

TEMPORARY_API = "CASTLINE_TEMPORARY_API"  # the API URL, when castline started its server (it has no UI to link)
_OFF = ("0", "false", "no", "off")

_server: subprocess.Popen | None = None
_log: BinaryIO | None = None  # the server's stdout and stderr, read through a handle of our own
LOG_LINES = 20  # shown when the server fails
_answered = False  # wait_ready heard it: a later exit happened during the run


def _active_profile() -> dict:
    """The settings of Prefect's active profile, read as Prefect reads them (its packaged profiles, then the
    user's file; PREFECT_PROFILE or the file's `active` choose) without importing Prefect."""
    import importlib.util
    import tomllib

    spec = importlib.util.find_spec("prefect")
    files = [Path(spec.submodule_search_locations[0]) / "settings" / "profiles.toml"] if spec else []
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    files.append(Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser())
    active, profiles = "ephemeral", {}
    for path in files:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        active = data.get("active", active)
        for name, values in data.get("profiles", {}).items():
            profiles.setdefault(name, {}).update(values)
    return profiles.get(os.environ.get("PREFECT_PROFILE") or active, {})


def wanted() -> bool:
    settings = {**_active_profile(), **os.environ}
    ephemeral = str(settings.get("PREFECT_SERVER_EPHEMERAL_ENABLED",
                                 settings.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")))
    return not settings.get("PREFECT_API_URL") and ephemeral.lower() not in _OFF


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start() -> str | None:
    """Launch the server (not waiting for it) and set PREFECT_API_URL for this process and its children;
    returns the API URL, or None where Prefect's own settings apply. Call before Prefect is imported: it
    reads PREFECT_API_URL once, at import."""
    global _server, _log
    if _server is not None:
        return os.environ[TEMPORARY_API]
    if not wanted() or "prefect" in sys.modules:
        return None
    port = _free_port()
    fd, log = tempfile.mkstemp(prefix="castline-prefect-api-", suffix=".log")
    # The command and variables of Prefect's SubprocessASGIServer._run_uvicorn_command (prefect 3.9).
    with os.fdopen(fd, "w") as out:
        _server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", sysconfig.get_paths()["purelib"], "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                 "PREFECT__SERVER_FINAL": "1"},
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    _log = open(log, "rb")
    os.unlink(log)
    url = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_API] = url
    # Registered before Prefect is imported, so it runs after Prefect's own exit hooks have sent their logs.
    atexit.register(stop)
    return url


def wait_ready(timeout: float | None = None) -> None:
    """Block until the started server answers /health (no-op when none was started). Raises RuntimeError
    when it exits or does not answer in time (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, as Prefect's)."""
    if _server is None:
        return
    if timeout is None:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20"))
    url, deadline = os.environ[TEMPORARY_API] + "/health", time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    global _answered
                    _answered = True
                    return
        except (urllib.error.URLError, OSError):
            pass
        if _server.poll() is not None:
            raise RuntimeError(f"the temporary Prefect API server exited with status {_server.returncode} before "
                               "answering; point PREFECT_API_URL at a running server (scripts/prefect_server.sh)"
                               + _log_tail())
        if time.monotonic() > deadline:
            raise RuntimeError(f"the temporary Prefect API server did not answer within {timeout:.0f} s "
                               "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)" + _log_tail())
        time.sleep(0.1)


def _log_tail() -> str:
    """The server log's last lines, indented under the message that quotes them; "" when it wrote nothing."""
    if _log is None:
        return ""
    _log.seek(0)
    lines = _log.read().decode(errors="replace").splitlines()[-LOG_LINES:]
    return "".join(f"\n  | {line}" for line in lines)


def stop() -> None:
    global _server, _log, _answered
    if _server is None:
        return
    if _answered and _server.poll() is not None:  # it died during the run: what it said is the reason
        print(f"the temporary Prefect API server exited with status {_server.returncode} during the run"
              + _log_tail(), file=sys.stderr)
    _server.terminate()
    try:
        _server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _server.kill()
        _server.wait()
    _server, _answered = None, False
    if _log is not None:
        _log.close()
        _log = None
