#!/usr/bin/env python
"""Screenshots of what a person sees in the Prefect UI after a castline run, taken in headless Chromium.

Starts a Prefect server of its own (scripts/prefect_server.sh, on --port, with a fresh database in the output
folder), runs castline on a small library made from the sample media — hamilton.mp4, a 10 s WAV cut from
montage_dev00 (an audio-only episode) and one bad file (text.mp4, not a video) — then photographs:

  library-run.png     the library run: its state (Failed, "1 of 3 videos failed"), its subflows, its logs
  subflows.png        the library run's subflow tab: one named subflow per video, the bad one Failed
  video-subflow.png   one video's subflow (`video · hamilton.mp4`) with its named stage tasks
  artifacts.png       the artifacts page: the library's tables, Markdown, progress, per-video image artifacts
  artifact-timeline.png  one per-video timeline image artifact opened
  artifact-summary.png   the run's summary: outcome, links to each video's artifacts, voice-to-face links
  report.png          the run's report.html (headless Chromium too)

and stops the server (unless --keep-server). Needs Debian's chromium and Playwright's Python package
(scripts/bootstrap.sh installs both); Playwright's own browser download is not used.

    .venv/bin/python scripts/ui_screenshots.py [--out castline-out/ui] [--port 4310] [--keep-server]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def api(url: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def make_library(folder: Path) -> Path:
    lib = folder / "ui-demo"
    lib.mkdir(parents=True)
    shutil.copy(SAMPLE / "hamilton.mp4", lib / "hamilton.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(SAMPLE / "montage_dev00.mp4"), "-vn", "-t",
                    "10", "-ac", "1", "-ar", "16000", str(lib / "dev00_sound.wav")], check=True)
    (lib / "text.mp4").write_text("this is not a video\n" * 50)
    return lib


def start_server(port: int, home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_PORT": str(port), "PREFECT_HOME": str(home)}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "prefect_server.sh")], env=env, capture_output=True,
                         text=True, timeout=180)
    if out.returncode != 0:
        sys.exit(f"Prefect server did not start: {out.stderr.strip()}")
    url = out.stdout.strip().split("=", 1)[1]
    return {**env, "PREFECT_API_URL": url, "PREFECT_UI_URL": url.removesuffix("/api")}


def stop_server(env: dict[str, str]) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "prefect_server.sh"), "stop"], env=env, capture_output=True)


def find_runs(url: str, library: str) -> tuple[dict, list[dict], list[dict]]:
    """The latest library run of `library`, its video subflows, its artifacts."""
    tag = f"library:{library}"
    parent = api(url, "/flow_runs/filter", {"flows": {"name": {"any_": ["castline-library"]}},
                                            "flow_runs": {"tags": {"all_": [tag]}}, "sort": "START_TIME_DESC",
                                            "limit": 1})[0]
    videos = api(url, "/flow_runs/filter", {"flows": {"name": {"any_": ["castline-video"]}},
                                            "flow_runs": {"tags": {"all_": [tag]}}, "sort": "NAME_ASC", "limit": 50})
    artifacts = api(url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [parent["id"]]}}, "limit": 100})
    return parent, videos, artifacts


def shoot(page, url: str, out: Path, wait_text: str | None, tab: str | None = None, settle: float = 2.5) -> None:
    page.goto(url, wait_until="load")
    if wait_text:
        page.get_by_text(wait_text).first.wait_for(timeout=60_000)
    if tab:  # a tab of the run page; its markup has changed between UI versions, so its text is the fallback
        try:
            page.get_by_role("tab", name=tab, exact=True).first.click(timeout=10_000)
        except Exception:  # noqa: BLE001  (playwright's TimeoutError)
            # exact: the run's header says "9 Task runs" too, and is a link elsewhere
            page.get_by_text(tab, exact=True).first.click(timeout=10_000)
    page.wait_for_timeout(int(settle * 1000))  # the UI fills its panels (graph, logs) after the page loads
    page.screenshot(path=str(out), full_page=True)
    print(f"  {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "castline-out" / "ui")
    parser.add_argument("--port", type=int, default=4310)
    parser.add_argument("--keep-server", action="store_true", help="leave the Prefect server running")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="castline-ui-"))
    lib = make_library(scratch)
    ws = scratch / "ws"
    env = start_server(args.port, args.out / "prefect-home")
    ui = env["PREFECT_UI_URL"]
    try:
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "flows", "run", str(lib), "--workspace", str(ws)], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=1200)
        (args.out / "castline-run.log").write_text(run.stdout + run.stderr)
        print(f"castline run: exit {run.returncode} in {time.perf_counter() - started:.0f} s "
              f"(log: {args.out / 'castline-run.log'})")
        parent, videos, artifacts = find_runs(env["PREFECT_API_URL"], lib.name)
        print(f"library run {parent['name']!r}: {parent['state_type']} ({parent['state']['message']})")
        video = next((v for v in videos if v["name"] == "video · hamilton.mp4"), videos[0])
        timeline = next((a for a in artifacts if a["type"] == "image"), None)
        summary = next((a for a in artifacts if (a["key"] or "").endswith("-summary")), None)

        from playwright.sync_api import sync_playwright

        sys.path.insert(0, str(ROOT / "tests"))
        from browser import launch  # the tests' headless Chromium: one way to find and start it

        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            shoot(page, f"{ui}/runs/flow-run/{parent['id']}", args.out / "library-run.png", parent["name"])
            shoot(page, f"{ui}/runs/flow-run/{parent['id']}", args.out / "subflows.png", parent["name"],
                  tab="Subflow Runs")
            shoot(page, f"{ui}/runs/flow-run/{video['id']}", args.out / "video-subflow.png", video["name"],
                  tab="Task Runs")
            shoot(page, f"{ui}/artifacts", args.out / "artifacts.png", "castline-")
            if timeline is not None:
                shoot(page, f"{ui}/artifacts/artifact/{timeline['id']}", args.out / "artifact-timeline.png",
                      timeline["key"])
            if summary is not None:
                shoot(page, f"{ui}/artifacts/artifact/{summary['id']}", args.out / "artifact-summary.png",
                      "its artifacts")
            report = ws / "library" / "report.html"
            if report.is_file():
                page.goto(report.as_uri(), wait_until="load")
                page.screenshot(path=str(args.out / "report.png"), full_page=True)
                print(f"  {args.out / 'report.png'}")
            browser.close()
    finally:
        if not args.keep_server:
            stop_server(env)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
