"""Artifacts: what a person reads about a library run in the Prefect UI.

In: the run's per-video results and their timeline files. Out: a table artifact (characters, names,
screen and speech time per video) and a Markdown artifact (outcome, links to each video's own artifacts,
voice-to-face links, report path), under keys derived from the library, so the UI keeps their history (as it
does the progress artifact over the videos' stages, flows/progress.py, and each video's own,
flows/video_artifacts.py).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping, Sequence

from tasks.core.formats import read_timeline_json
from tasks.core.records import VideoResult


def library_key(library: str | Path, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    lib = Path(library)
    slug = re.sub(r"[^a-z0-9]+", "-", lib.name.lower()).strip("-")[:40] or "library"
    digest = hashlib.blake2b(str(lib.resolve()).encode(), digest_size=3).hexdigest()
    return f"castline-{slug}-{digest}-{kind}"


def character_rows(results: Sequence[VideoResult]) -> list[dict]:
    rows = []
    for r in results:
        if not r.ok:
            continue
        timeline = read_timeline_json(r.outputs.timeline.timeline_json)
        for label, c in sorted(timeline.characters.items()):
            rows.append({"Video": r.video, "Character": c.character_id, "Name": c.name or "(unnamed)",
                         "On screen (s)": round(c.screen_seconds, 1), "Speaking (s)": round(c.speech_seconds, 1),
                         "Voices": ", ".join(c.speakers)})
    return rows


def artifact_page(artifact_id: str) -> str:
    """The UI page of one artifact version. Relative when no UI address is known: the link is read inside the UI."""
    from prefect.settings import PREFECT_UI_URL

    return f"{(PREFECT_UI_URL.value() or '').rstrip('/')}/artifacts/artifact/{artifact_id}"


def alignment_markdown(results: Sequence[VideoResult], report: Path, per_video: tuple[int, int],
                       video_links: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """`per_video`: the videos' own artifacts this run published, and those left as an earlier run published them;
    `video_links`: per video, each artifact's (kind, id of the version current after this run), linked so that a
    run that published none of them still leads to them in one click."""
    lines = [f"**{sum(r.ok for r in results)} succeeded, {sum(not r.ok for r in results)} failed** — "
             f"full report: `{report}`", "",
             f"Each video's own artifacts (found table, timeline, faces, report link): {per_video[0]} published "
             f"by this run, {per_video[1]} unchanged since an earlier run (the Artifacts page shows every key's "
             "latest version)."]
    failed = [f"- failed `{r.video}`: {r.error}" for r in results if not r.ok]
    if failed:
        lines += ["", *failed]
    if video_links:
        lines += ["", "| video | its artifacts |", "|---|---|"]
        lines += [f"| {video} | " + " · ".join(f"[{kind}]({artifact_page(i)})" for kind, i in links) + " |"
                  for video, links in video_links.items()]
    lines += ["", "| video | voice | linked character | share of its speech with that face on screen |",
              "|---|---|---|---|"]
    for r in results:
        if r.ok:
            for link in read_timeline_json(r.outputs.timeline.timeline_json).speaker_links:
                lines.append(f"| {r.video} | {link.speaker} | {link.character_id or 'off-screen'} | "
                             f"{link.on_screen_share:.2f} |")
    return "\n".join(lines) + "\n"


def publish_run_artifacts(library: str, results: Sequence[VideoResult], report: Path,
                          per_video: tuple[int, int], video_links: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(character_rows(results) or [{"Video": "", "Character": "none found"}],
                          key=library_key(library, "characters"),
                          description="Characters per video: names, screen and speaking time, voices")
    create_markdown_artifact(alignment_markdown(results, report, per_video, video_links),
                             key=library_key(library, "summary"),
                             description="Run outcome, links to each video's artifacts, voice-to-face links")
