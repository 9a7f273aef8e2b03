"""Character outputs: what the library knows about each character, gathered across videos.

In: every processed video's stage results relabelled with library ids and names (tasks/library/view.py).
Out: WORKSPACE/library/characters/<label>.png (contact sheet of each character's faces, chosen as report.html
chooses them: sharp, large and different from each other, tasks/library/report_faces.py),
appearances.csv (character, video, start, end, track) and track_embeddings.parquet (one row per track:
video, track, character, name, time span, boxes, embedding list<float32>[dim]). Both give a track's span as the
times of its first and last box in tracks.json (sampled frames): a row of the track, not of the screen time
(timeline.py's on_screen spans, which give each frame half a sampling interval either side).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from tasks.core.contact_sheet import character_sheet
from tasks.core.formats import atomic_dir, read_npy, sanitize_label, write_csv, write_parquet
from tasks.core.stage import always_task
from tasks.core.records import VideoOutputs
from tasks.library.report_faces import choose_faces, face_candidates
from tasks.library.view import LibraryView
from tasks.core.workspace import Workspace

# Faces per sheet. They are chosen from candidates that need no image read, and only the shortlist's frames are
# read: scoring every track's best crop had read 4,400 frames (6.6 s) on every run of a 300-video library.
SHEET_FACES = 12


def sheet_title(label: str, character_id: str) -> str:
    """`Bea (character_003)`, or the id alone for an unnamed character (its label is its id)."""
    return character_id if label == character_id else f"{label} ({character_id})"


def write_character_outputs(ws: Workspace, videos: Mapping[str, VideoOutputs], view: LibraryView) -> dict[str, int]:
    labels: dict[str, str] = {}
    appearances, rows = [], defaultdict(list)
    for name, v in sorted(videos.items()):
        records = view.named(view.video(name, v))
        embeddings = read_npy(v.embeddings)
        by_id = {t.track_id: (i, t) for i, t in enumerate(records.tracks)}
        for c in records.characters:
            labels[c.character_id] = c.label
            for tid in c.track_ids:
                row, track = by_id[tid]
                appearances.append((c.label, name, track.start, track.end, tid))
                for key, value in (("video", name), ("track_id", tid), ("character_id", c.character_id),
                                   ("label", c.label), ("start", track.start), ("end", track.end),
                                   ("boxes", len(track.boxes)), ("embedding", embeddings[row].tolist())):
                    rows[key].append(value)

    folder = ws.library_dir / "characters"
    candidates = face_candidates(view, videos)
    with atomic_dir(folder) as tmp:
        for cid, label in sorted(labels.items()):
            character_sheet([f.crop for f in choose_faces(candidates.get(cid, []), SHEET_FACES)],
                            sheet_title(label, cid), tmp / f"{sanitize_label(label)}.png")
    write_csv(ws.library_dir / "appearances.csv", ["character", "video", "start", "end", "track"],
              sorted(appearances, key=lambda r: (r[0], r[1], r[2])))
    dim = len(rows["embedding"][0]) if rows["embedding"] else 0
    table = pa.table({k: (pa.array(v, pa.list_(pa.float32(), dim)) if k == "embedding" else pa.array(v))
                      for k, v in rows.items()} if rows else {"video": pa.array([], pa.string())})
    write_parquet(ws.library_dir / "track_embeddings.parquet", table)
    return {"characters": len(labels), "tracks": len(appearances)}


@always_task("character-outputs")
def character_outputs_task(workspace: str, videos: dict[str, VideoOutputs], names_path: Path) -> dict[str, int]:
    ws = Workspace.open(workspace)
    return write_character_outputs(ws, videos, LibraryView.load(ws, names_path))
