"""HTML report: the library run as one static page that opens from disk, no server.

In: the per-video results with their timeline files, the character contact sheets, the gallery and
subtitle names. Out: WORKSPACE/library/report.html — outcome, characters with their faces and names,
each video's timeline picture, screen and speaking time, and which voice was linked to which face.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Iterable, Sequence

from tasks.core.formats import read_timeline_json, sanitize_label
from tasks.library.gallery import GalleryMatch
from tasks.core.records import VideoResult

STYLE = """body{font:14px/1.4 sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.failed{color:#a00}.sheet{display:inline-block;margin:0 12px 12px 0;vertical-align:top}
img{max-width:100%}"""


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def render_html(library: str, results: Sequence[VideoResult], out: Path, sheets: Path,
                names: dict[str, str]) -> str:
    """`names`: character label -> where its name came from (gallery, subtitles), for the legend."""
    e = html.escape
    ok = [r for r in results if r.ok]
    parts = [f"<!doctype html><meta charset='utf-8'><title>castline: {e(library)}</title><style>{STYLE}</style>",
             f"<h1>castline: {e(library)}</h1>",
             f"<p>{len(ok)} of {len(results)} videos processed.</p>"]
    failed = [r for r in results if not r.ok]
    if failed:
        parts.append("<h2>Failed</h2><ul>" + "".join(f"<li class='failed'>{e(r.video)}: {e(r.error or '')}</li>"
                                                     for r in failed) + "</ul>")
    parts.append("<h2>Characters</h2>")
    for sheet in sorted(sheets.glob("*.png")):
        source = names.get(sheet.stem)
        caption = e(sheet.stem) + (f" <small>(named from {e(source)})</small>" if source else "")
        parts.append(f"<div class='sheet'><img src='{_rel(sheet, out.parent)}' alt='{e(sheet.stem)}'>"
                     f"<br>{caption}</div>")
    for r in ok:
        timeline = read_timeline_json(r.outputs.timeline.timeline_json)
        folder = r.outputs.timeline.folder
        parts.append(f"<h2>{e(r.video)}</h2>")
        parts += [f"<p><i>{e(note)}</i></p>" for note in r.notes]
        parts.append(f"<img src='{_rel(folder / 'timeline.png', out.parent)}' alt='timeline of {e(r.video)}'>")
        rows = sorted(timeline.characters.items(), key=lambda kv: -kv[1].screen_seconds)
        parts.append("<table><tr><th>character</th><th>on screen</th><th>speaking</th><th>voices</th></tr>" +
                     "".join(f"<tr><td>{e(label)}</td><td>{c.screen_seconds:.1f} s</td>"
                             f"<td>{c.speech_seconds:.1f} s</td><td>{e(', '.join(c.speakers) or '—')}</td></tr>"
                             for label, c in rows) + "</table>")
        links = timeline.speaker_links
        if links:
            parts.append("<table><tr><th>voice</th><th>linked character</th><th>share of its speech with "
                         "that face on screen</th><th>speech</th></tr>" +
                         "".join(f"<tr><td>{e(link.speaker)}</td><td>{e(link.character_id or 'off-screen')}</td>"
                                 f"<td>{link.score:.2f}</td><td>{link.speech_seconds:.1f} s</td></tr>"
                                 for link in links) + "</table>")
    return "\n".join(parts) + "\n"


def name_sources(gallery: Iterable[GalleryMatch], subtitle_names: dict[str, str]) -> dict[str, str]:
    """Sheet file stem -> where its name came from: "subtitles", or "gallery" with the distance to the photo
    (and whether it was named only as the photo's clear nearest: worth a look)."""
    out = {sanitize_label(n): "subtitles" for n in subtitle_names.values()}
    out.update({sanitize_label(m.name): f"gallery, {m.distance:.2f} from the photo"
                + (", its clear nearest" if m.rule == "mutual" else "") for m in gallery})
    return out
