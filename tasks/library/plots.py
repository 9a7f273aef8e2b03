"""Plots: pictures a person reads at a glance.

In: a video's timeline spans (tasks/core/records.py TimelineSpan), its duration and each character's colour
(tasks/library/report_cast.py timeline_colours: the one it has in report.html). Out: a PNG per video, one row
per character, a pale bar of its colour while on screen and a band of full colour while speaking, as the
report's SVG timelines draw them. Backend: matplotlib (Agg).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from tasks.core.formats import atomic_path
from tasks.core.records import TimelineSpan
from tasks.library.report_cast import ON_SCREEN_OPACITY


def plot_timeline(spans: Sequence[TimelineSpan], duration: float, title: str, colours: Mapping[str, str],
                  out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Most time first; equal times by name, so the picture does not depend on set order (the hash seed).
    characters = sorted({s.character for s in spans},
                        key=lambda c: (-sum(s.end - s.start for s in spans if s.character == c), c))
    height = max(1.6, 0.45 * len(characters) + 1.0)
    fig, ax = plt.subplots(figsize=(10, height), dpi=100)
    for row, character in enumerate(characters):
        for kind, alpha, inset in (("on_screen", ON_SCREEN_OPACITY, 0.0), ("speaking", 1.0, 0.15)):
            bars = [(s.start, s.end - s.start) for s in spans if s.character == character and s.kind == kind]
            if bars:
                ax.broken_barh(bars, (row - 0.4 + inset, 0.8 - 2 * inset), facecolors=colours[character],
                               alpha=alpha)
    ax.set_yticks(range(len(characters)), labels=characters)
    ax.invert_yaxis()
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title} — pale: on screen, full colour: speaking", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
