"""Per-video artifacts in the Prefect UI: what a person reads about one video of a library run.

In: a succeeded video's result (its timeline files, written by the library flow) and the report's path.
Out, under keys made of the library and the video (so the UI keeps each video's history):
`…-<video>-found` a Markdown table of its characters (name filled, readable headers) and voices (each with
the face it is linked to), `…-<video>-timeline` the timeline PNG and `…-<video>-faces` its face sheet (a few
crops of each character; none for a video without a face) as image artifacts (embedded as data URLs: the UI
cannot load files from the machine that ran the flow), and `…-<video>-report` a link to the HTML report. The library
flow publishes those that changed since the last run (flows/published.py).
"""
from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from pathlib import Path

from flows.artifacts import library_key
from flows.published import KeyedArtifact
from tasks.core.formats import read_timeline_json
from tasks.core.records import VideoResult
from tasks.library.face_sheet import FACES_JPG
from tasks.library.timeline import TIMELINE_PNG
# Bigger pictures are not embedded (the artifact is stored in the server's database).
MAX_IMAGE_BYTES = 2_000_000


def video_key(library: str | Path, video: str, kind: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) unique per library and video: the video's
    slug plus a digest of its name ('é.mp4' and '日本語.mp4' slug alike)."""
    slug = re.sub(r"[^a-z0-9]+", "-", video.lower()).strip("-")[:32] or "video"
    digest = hashlib.blake2b(video.encode(), digest_size=2).hexdigest()
    return library_key(library, f"{slug}-{digest}-{kind}")


def found_markdown(result: VideoResult, report: Path) -> str:
    """Characters and voices of one video as Markdown tables."""
    t = read_timeline_json(result.outputs.timeline.timeline_json)
    # A voice heard with no face (offscreen_…) is in the voice table, not a character.
    chars = {label: c for label, c in t.characters.items() if not c.offscreen}
    lines = [f"## {result.video}", "",
             "| Character | Name | On screen (s) | Speaking (s) | Voices |", "|---|---|---:|---:|---|"]
    for label, c in sorted(chars.items(), key=lambda kv: -kv[1].screen_seconds):
        lines.append(f"| {c.character_id} | {c.name or '*unnamed*'} | {c.screen_seconds:.1f} | "
                     f"{c.speech_seconds:.1f} | {', '.join(c.speakers) or '—'} |")
    if not chars:
        lines.append("| — | " + ("*audio file: no pictures*" if result.audio_only else "*no face found*") + " | | | |")
    label_of = {c.character_id: label for label, c in chars.items()}
    links = t.speaker_links
    lines += ["", "| Voice | Linked to | Speech (s) | With that face on screen (s) | Share |", "|---|---|---:|---:|---:|"]
    for link in links:
        who = label_of.get(link.character_id, link.character_id) if link.character_id else "*off-screen*"
        lines.append(f"| {link.speaker} | {who} | {link.speech_seconds:.1f} | {link.overlap_seconds:.1f} | "
                     f"{link.on_screen_share:.2f} |")
    if not links:
        lines.append("| — | " + ("*no audio*" if "diarize" in result.skipped_stages else "*no voice found*")
                     + " | | | |")
    if result.notes:
        lines += ["", *[f"- {n}" for n in result.notes]]
    lines += ["", f"Full report: [{report.name}]({report.resolve().as_uri()}) (`{report}`)"]
    return "\n".join(lines) + "\n"


def image_data_url(path: Path) -> str | None:
    """A PNG or JPEG as a data URL; None when missing (a video with no face has no faces.jpg) or too big."""
    if not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    mime = mimetypes.guess_type(path.name)[0]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def video_artifacts(library: str, result: VideoResult, report: Path) -> dict[str, KeyedArtifact]:
    """A succeeded video's artifacts by what they show: its found table, its pictures (those it has) and the
    report's link."""
    out = {"found": KeyedArtifact("markdown", video_key(library, result.video, "found"),
                                  found_markdown(result, report), f"{result.video}: characters and voices")}
    folder = result.outputs.timeline.folder
    for file, kind, description in (
            (TIMELINE_PNG, "timeline", "who is on screen (pale) and speaking (full colour), when"),
            (FACES_JPG, "faces", "a few faces of each character, under its name or id")):
        url = image_data_url(folder / file)
        if url is not None:
            out[kind] = KeyedArtifact("image", video_key(library, result.video, kind), url,
                                      f"{result.video}: {description}")
    out["report"] = KeyedArtifact("link", video_key(library, result.video, "report"), report.resolve().as_uri(),
                                  f"{result.video}: the library's HTML report (opens from disk)",
                                  link_text=f"report.html ({report})")
    return out
