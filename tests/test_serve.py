"""Scheduled runs against a real Prefect server: `castline serve` registers the flows and the cron
schedule fires the library flow, which processes the library."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def prefect_server(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_PORT": "4291"}
    started = subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    env["PREFECT_API_URL"] = started.stdout.strip().split("=", 1)[1]
    yield env
    subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh"), "stop"], env=env, timeout=30)


@pytest.mark.slow
def test_serve_registers_flows_and_runs_on_schedule(prefect_server, tmp_path, sample_dir):
    library, ws = tmp_path / "library", tmp_path / "ws"
    library.mkdir()
    shutil.copy(sample_dir / "megamind.avi", library / "megamind.avi")
    serve = subprocess.Popen([sys.executable, "-m", "flows", "serve", str(library), "--cron", "* * * * *",
                              "--workspace", str(ws)], cwd=REPO, env=prefect_server,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (ws / "library" / "last_run.json").exists():
            time.sleep(1)
        assert (ws / "library" / "last_run.json").exists(), "no scheduled run finished within 4 minutes"
        assert json.loads((ws / "library" / "last_run.json").read_text())["succeeded"] == ["megamind.avi"]
        listed = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env={**prefect_server, "COLUMNS": "250"},
                                capture_output=True, text=True, timeout=60).stdout
        for name in ("castline-library-library", "castline-dataset", "castline-train-detector"):
            assert name in listed
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)


def test_serve_without_a_server_explains_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    r = subprocess.run([sys.executable, "-m", "flows", "serve", str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "scripts/prefect_server.sh" in r.stderr


def test_server_on_another_port_points_its_ui_at_that_port(tmp_path):
    """A PREFECT_API_URL left in the shell by a server on 4200 must not send this server's UI there."""
    import urllib.request

    script = ["bash", str(REPO / "scripts" / "prefect_server.sh")]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_PORT": "4293",
           "PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    started = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == "export PREFECT_API_URL=http://127.0.0.1:4293/api"
        with urllib.request.urlopen("http://127.0.0.1:4293/ui-settings", timeout=10) as r:
            assert json.load(r)["api_url"] == "http://127.0.0.1:4293/api"
    finally:
        subprocess.run([*script, "stop"], env=env, timeout=30)


@pytest.fixture
def answering_port(tmp_path):
    """Something that answers /api/health on a free port, as a Prefect server would."""
    from flows.temporary_server import _free_port

    root = tmp_path / "www"
    (root / "api").mkdir(parents=True)
    (root / "api" / "health").write_text("true")
    port = _free_port()
    fake = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            break
        except OSError:
            assert time.time() < deadline, "the stand-in server did not answer"
            time.sleep(0.1)
    yield port, fake
    fake.kill()
    fake.wait()


def test_a_server_started_with_another_database_is_not_reused(tmp_path, answering_port):
    """`eval "$(scripts/postgres.sh)"` then prefect_server.sh, while the SQLite server of `make demo` still holds the
    port: the runs would go to SQLite without a word. The script refuses, naming both databases (no password)."""
    port, fake = answering_port
    home = tmp_path / "prefect"
    home.mkdir()
    (home / f"server-{port}.pid").write_text(f"{fake.pid}\n")
    (home / f"server-{port}.database").write_text(f"sqlite+aiosqlite:///{home}/prefect.db\n")
    script = ["bash", str(REPO / "scripts" / "prefect_server.sh")]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_PORT": str(port),
           "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://castline:s3cret@127.0.0.1:5432/castline"}
    refused = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "sqlite+aiosqlite" in refused.stderr and "postgresql+asyncpg://castline:***@127.0.0.1:5432/castline" in refused.stderr
    assert "s3cret" not in refused.stderr and "prefect_server.sh stop" in refused.stderr

    del env["PREFECT_API_DATABASE_CONNECTION_URL"]  # the same database as the server's: reused
    reused = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert (reused.returncode, reused.stdout, reused.stderr) == (0, f"export PREFECT_API_URL=http://127.0.0.1:{port}/api\n", "")


def test_a_server_this_home_did_not_start_is_reused_with_a_note(tmp_path, answering_port):
    port, _ = answering_port
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_PORT": str(port)}
    reused = subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert reused.returncode == 0 and reused.stdout == f"export PREFECT_API_URL=http://127.0.0.1:{port}/api\n"
    assert "its database is not known here" in reused.stderr
