"""Headless Chromium for the tests and scripts/ui_screenshots.py: open a page from disk, say what did not load,
take a PNG.

Debian's `chromium` (scripts/bootstrap.sh installs it) driven by Playwright's Python API; Playwright's own
browser download is never used (executable_path points at the installed one).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no headless Chromium on PATH: scripts/bootstrap.sh installs Debian's chromium")


def launch(playwright):
    """The installed Chromium, headless; no sandbox (root in a container has none) and no GPU."""
    return playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])


@dataclass
class Loaded:
    failed: list[str]  # requests that failed (a missing file is one)
    broken_images: list[str]  # <img> that did not decode
    audio: list[tuple[str, float | str]]  # (src, duration in s, or the error)
    console_errors: list[str]
    title: str


_AUDIO = """() => Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
  const src = a.currentSrc || a.src;
  if (a.readyState >= 1) return done([src, a.duration]);
  a.addEventListener('loadedmetadata', () => done([src, a.duration]));
  a.addEventListener('error', () => done([src, 'error ' + (a.error && a.error.code)]));
  a.load();
})))"""


def load(path: Path, screenshot: Path | None = None, width: int = 1400) -> Loaded:
    """Open a file in headless Chromium, wait for it, its images and its audio metadata; optionally a
    full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            failed: list[str] = []
            errors: list[str] = []
            page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(path.resolve().as_uri(), wait_until="load")
            broken = page.evaluate("() => [...document.images].filter(i => !i.complete || !i.naturalWidth)"
                                   ".map(i => i.getAttribute('src'))")
            audio = [tuple(x) for x in page.evaluate(_AUDIO)]
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            return Loaded(failed, broken, audio, errors, page.title())
        finally:
            browser.close()
