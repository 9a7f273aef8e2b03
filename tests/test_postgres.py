"""Two library runs at once against a Prefect server backed by PostgreSQL (SQLite locks under
concurrent writers): both finish and both show as completed flow runs in the server."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _export(line: str) -> tuple[str, str]:
    key, value = line.strip().removeprefix("export ").split("=", 1)
    return key, value


@pytest.mark.slow
def test_two_runs_at_once_on_a_postgres_backed_server(tmp_path, sample_dir):
    db = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh")], capture_output=True, text=True, timeout=600)
    assert db.returncode == 0, db.stderr
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_PORT": "4293"}
    env.update([_export(db.stdout)])
    server = subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh")], env=env,
                            capture_output=True, text=True, timeout=180)
    assert server.returncode == 0, server.stderr
    env.update([_export(server.stdout)])
    try:
        runs = []
        for name in ("megamind.avi", "montage_dev01.mp4"):
            lib = tmp_path / Path(name).stem
            lib.mkdir()
            shutil.copy(sample_dir / name, lib / name)
            runs.append(subprocess.Popen([sys.executable, "-m", "flows", "run", str(lib)], cwd=REPO, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=600)[0] for p in runs]
        assert [p.returncode for p in runs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
        listed = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "ls", "--state", "COMPLETED"],
                                env={**env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=120).stdout
        assert listed.count("castline-library") >= 2, listed
        assert not (tmp_path / "prefect" / "prefect.db").exists()  # the server used PostgreSQL, not SQLite
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "prefect_server.sh"), "stop"], env=env, timeout=60)
