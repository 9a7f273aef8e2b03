"""The temporary Prefect API server castline starts for a run (flows/temporary_server.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from flows import temporary_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prefect_env(tmp_path, monkeypatch):
    """No API URL, profile or ephemeral setting from the caller's shell; profiles read from tmp_path."""
    for key in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_SERVER_EPHEMERAL_ENABLED",
                "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    return tmp_path / "profiles.toml"


def test_started_only_where_prefect_would_run_its_own_ephemeral_server(prefect_env, monkeypatch):
    assert temporary_server.wanted()  # Prefect's packaged default profile: ephemeral
    prefect_env.write_text('active = "local"\n')  # Prefect's packaged "local" profile names an API URL
    assert not temporary_server.wanted()
    prefect_env.write_text('active = "mine"\n[profiles.mine]\nPREFECT_SERVER_EPHEMERAL_ENABLED = "false"\n')
    assert not temporary_server.wanted()
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert temporary_server.wanted()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert not temporary_server.wanted()


def _child(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, **env})


def test_server_answers_and_dies_with_a_killed_castline(prefect_env):
    """A run killed with SIGKILL leaves no server behind (Prefect's own ephemeral server outlives its parent)."""
    child = _child("import json, sys, time\n"
                   "from flows import temporary_server as t\n"
                   "url = t.start(); t.wait_ready(120)\n"
                   "print(json.dumps([url, t._server.pid]), flush=True); time.sleep(600)\n")
    try:
        url, server_pid = json.loads(child.stdout.readline())
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            assert response.status == 200
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(server_pid):
            time.sleep(0.2)
        assert not _alive(server_pid)
    finally:
        child.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_server_that_cannot_start_is_one_clear_error(prefect_env, monkeypatch):
    monkeypatch.setattr(temporary_server, "_server", subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    monkeypatch.setenv(temporary_server.TEMPORARY_API, "http://127.0.0.1:9/api")
    with pytest.raises(RuntimeError, match="exited with status 3"):
        temporary_server.wait_ready(30)


@pytest.fixture
def failing_python(tmp_path):
    """A stand-in for the interpreter that launches the server: it says why it cannot serve and exits 3."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ERROR: [Errno 98] address already in use' >&2\nexit 3\n")
    fake.chmod(0o755)
    return fake


def test_the_server_output_stays_off_the_terminal_and_names_a_failed_start(prefect_env, tmp_path, failing_python):
    """The server's own output (shutdown tracebacks included) goes to a log the run quotes only when the server
    fails; the log file leaves nothing behind."""
    logs = tmp_path / "logs"
    logs.mkdir()
    child = _child("import sys\n"
                   f"sys.executable = {str(failing_python)!r}\n"
                   "from flows import temporary_server as t\n"
                   "t.start()\n"
                   "try:\n"
                   "    t.wait_ready(30)\n"
                   "except RuntimeError as e:\n"
                   "    print(e)\n", TMPDIR=str(logs))
    out, err = child.communicate(timeout=60)
    assert out.splitlines() == ["the temporary Prefect API server exited with status 3 before answering; point "
                                "PREFECT_API_URL at a running server (scripts/prefect_server.sh)",
                                "  | ERROR: [Errno 98] address already in use"]
    assert err == ""  # neither the server's words nor a second report at exit
    assert list(logs.iterdir()) == []


def _tiny_dataset(root):
    import numpy as np
    from PIL import Image

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "images" / split / "a.png")
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [face]\n")
    return root


@pytest.mark.parametrize("command", ["dataset", "characters dataset", "train-detector", "recluster"])
def test_tool_commands_that_run_flows_start_the_temporary_server_first(prefect_env, tmp_path, sample_dir, command,
                                                                        failing_python):
    """`castline dataset`, `train-detector` and `recluster` run Prefect flows too: they boot the same early server
    as `castline run` (so Prefect's slower ephemeral start never runs) and a server that cannot start is the same
    one clear error, before anything is written."""
    args = {"dataset": ["dataset", str(sample_dir), "--out", str(tmp_path / "ds")],
            "characters dataset": ["dataset", str(sample_dir), "--out", str(tmp_path / "ds"), "--classes", "characters",
                                   "--workspace", str(tmp_path / "ws")],
            "train-detector": ["train-detector", str(_tiny_dataset(tmp_path / "tiny")), "--workspace",
                               str(tmp_path / "ws")],
            "recluster": ["recluster", str(sample_dir), "--workspace", str(tmp_path / "ws")]}[command]
    child = _child("import sys\n"
                   f"sys.executable = {str(failing_python)!r}\n"
                   "from flows.cli import main\n"
                   f"sys.argv = ['castline'] + {args!r}\n"
                   "main()\n")
    try:
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 1, err
    assert err.splitlines()[:2] == ["castline: the temporary Prefect API server exited with status 3 before answering; "
                                    "point PREFECT_API_URL at a running server (scripts/prefect_server.sh)",
                                    "castline:   | ERROR: [Errno 98] address already in use"]
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ws").exists()
