"""Two library runs at once against a Prefect server backed by PostgreSQL (SQLite locks under
concurrent writers): both finish and both show as completed flow runs in the server (slow); and
scripts/postgres.sh's one line of output, with PostgreSQL's commands stood in for (fast)."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.temporary_server import _free_port

REPO = Path(__file__).resolve().parents[1]


def _export(stdout: str) -> tuple[str, str]:
    """The one `export KEY=value` line a script prints for `eval`; anything else there would break that eval."""
    assert stdout.count("\n") == 1 and stdout.startswith("export "), f"not one export line: {stdout!r}"
    key, value = stdout.strip().removeprefix("export ").split("=", 1)
    return key, value


def _completed_library_runs(database_url: str, libraries: list[str]) -> int:
    """Completed castline-library flow runs of these libraries, read from PostgreSQL itself (other runs may share
    the database: earlier sessions, another checkout's tests)."""
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE f.name = 'castline-library' "
                "AND r.state_type = 'COMPLETED' AND r.parameters->>'library' = ANY($1::text[])", libraries)
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.slow
def test_two_runs_at_once_on_a_postgres_backed_server(tmp_path, sample_dir):
    db = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh")], capture_output=True, text=True, timeout=600)
    assert db.returncode == 0, db.stderr
    # Its own port: prefect_server.sh reuses whatever server already answers on its port, and a SQLite-backed
    # one left there (tests/test_serve.py starts them on fixed ports) would make this test moot.
    home, port = tmp_path / "prefect", _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_PORT": str(port)}
    env.update([_export(db.stdout)])
    server = subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh")], env=env,
                            capture_output=True, text=True, timeout=180)
    assert server.returncode == 0, server.stderr
    env.update([_export(server.stdout)])
    try:
        runs, libraries = [], []
        for name in ("megamind.avi", "montage_dev01.mp4"):
            lib = tmp_path / Path(name).stem
            lib.mkdir()
            shutil.copy(sample_dir / name, lib / name)
            libraries.append(str(lib))
            runs.append(subprocess.Popen([sys.executable, "-m", "flows", "run", str(lib)], cwd=REPO, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=600)[0] for p in runs]
        assert [p.returncode for p in runs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
        listed = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "ls", "--state", "COMPLETED"],
                                env={**env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120).stdout
        assert listed.count("castline-library") >= 2, listed
        log = home / f"server-{port}.log"
        assert log.exists(), "the runs went to a server this test did not start"
        assert _completed_library_runs(env["PREFECT_API_DATABASE_CONNECTION_URL"], libraries) == 2
        assert not (home / "prefect.db").exists(), log.read_text()[-3000:]
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh"), "stop"], env=env, timeout=60)


def test_postgres_script_prints_only_the_export_line_whatever_its_commands_say(tmp_path):
    """Stand-ins for PostgreSQL's commands that talk on stdout, as pg_ctlcluster does after an unclean shutdown
    ("Removed stale pid file."): `eval "$(scripts/postgres.sh)"` must still get exactly one export line."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fakes = {
        "pg_ctlcluster": 'case "$3" in status) exit 3;; start) echo "Removed stale pid file.";; esac',
        "psql": 'case "$*" in *"SHOW port"*) echo 5433;; *"SELECT 1"*) echo "";; *) echo "CREATE ROLE";; esac',
        "createdb": 'echo "created"',
        "su": 'shift; [ "$1" = -c ] && exec bash -c "$2"',  # su postgres -c CMD
        "sudo": 'exec "$@"',
        "ls": '[ "$1" = /etc/postgresql ] && { echo 15; exit; }; exec /bin/ls "$@"',
    }
    for name, body in fakes.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    r = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh")], env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert _export(r.stdout) == ("PREFECT_API_DATABASE_CONNECTION_URL",
                                 "postgresql+asyncpg://castline:castline@127.0.0.1:5433/prefect")
    assert "Removed stale pid file." in r.stderr and "CREATE ROLE" in r.stderr
