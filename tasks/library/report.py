"""Report: the short Markdown summary a person reads after a library run.

In: the per-video results (VideoResult) and their timeline files. Out: `report.md` text — what
succeeded, what failed and why, which stages were skipped, and each video's characters and voices.
"""
from __future__ import annotations

from typing import Sequence

from tasks.core.formats import read_timeline_json
from tasks.library.gallery import GalleryMatch
from tasks.core.records import VideoResult
from tasks.library.subtitles import SubtitleNaming


def _fmt_seconds(x: float) -> str:
    return f"{x:.1f} s"


def video_section(result: VideoResult) -> list[str]:
    lines = [f"### {result.video}", ""]
    if not result.ok:
        return lines + [f"**failed**: {result.error}", ""]
    for note in result.notes:
        lines.append(f"- note: {note}")
    if result.skipped_stages:
        lines.append(f"- skipped stages: {', '.join(result.skipped_stages)}")
    files = result.outputs.timeline if result.outputs else None
    if files and files.timeline_json.exists():
        data = read_timeline_json(files.timeline_json)
        lines += ["", "| character | on screen | speaking | voices |", "|---|---|---|---|"]
        for label, c in sorted(data.characters.items(), key=lambda kv: -kv[1].screen_seconds):
            voices = ", ".join(c.speakers) or "—"
            lines.append(f"| {label} | {_fmt_seconds(c.screen_seconds)} | "
                         f"{_fmt_seconds(c.speech_seconds)} | {voices} |")
    lines += ["", f"outputs: `{files.timeline_json.parent}`" if files else "", ""]
    return lines


def gallery_section(matches: Sequence[GalleryMatch]) -> list[str]:
    if not matches:
        return []
    lines = ["## Names from the gallery", "", "| character | name | distance | rule |", "|---|---|---|---|"]
    lines += [f"| {m.character_id} | {m.name} | {m.distance:.3f} | {m.rule} |"
              for m in sorted(matches, key=lambda m: m.character_id)]
    return lines + ["", "rule: `threshold` = under library.gallery_threshold; `mutual` = in the looser band, "
                        "the face and the photo each other's clear nearest", ""]


def subtitles_section(subtitles: SubtitleNaming | None) -> list[str]:
    if not subtitles or not (subtitles.sources or subtitles.notes):
        return []
    lines = ["## Names from subtitles", "", f"- files read: {len(subtitles.sources)}"]
    lines += [f"- {s}: {n}" for s, n in sorted(subtitles.speaker_names.items())]
    return lines + [f"- {note}" for note in subtitles.notes] + [""]


def render_report(library: str, workspace: str, results: Sequence[VideoResult], seconds: float,
                  detector: str, gallery: Sequence[GalleryMatch] = (), subtitles: SubtitleNaming | None = None) -> str:
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    lines = [
        f"# castline run: {library}",
        "",
        f"- workspace: `{workspace}`",
        f"- videos: {len(results)} — {len(ok)} succeeded, {len(failed)} failed",
        f"- wall time: {_fmt_seconds(seconds)}",
        f"- face detector: {detector}",
        "",
    ]
    if failed:
        lines += ["## Failed", ""] + [f"- `{r.video}`: {r.error}" for r in failed] + [""]
    lines += gallery_section(gallery) + subtitles_section(subtitles)
    lines += ["## Videos", ""]
    for r in results:
        lines += video_section(r)
    return "\n".join(lines).rstrip() + "\n"
