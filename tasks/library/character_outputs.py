"""Character outputs: what the library knows about each character, gathered across videos.

In: every processed video's stage results relabelled with library ids and names (tasks/library/view.py).
Out: WORKSPACE/library/characters/<label>.png (contact sheet of each character's best face crops),
appearances.csv (character, video, start, end, track) and track_embeddings.parquet (one row per track:
video, track, character, name, time span, boxes, embedding list<float32>[dim]).
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from tasks.core.contact_sheet import character_sheet, crop_box
from tasks.video.detect import read_rgb
from tasks.core.formats import atomic_dir, read_frames, read_npy, sanitize_label, write_csv, write_parquet
from tasks.video.embed.pooling import quality
from tasks.core.stage import always_task
from tasks.core.records import Box, VideoOutputs
from tasks.library.view import LibraryView
from tasks.core.workspace import Workspace

SHEET_FACES = 12
CROP_MARGIN = 0.3  # a little hair and chin makes a face recognisable to a person at thumbnail size


def sheet_title(label: str, character_id: str) -> str:
    """`Bea (character_003)`, or the id alone for an unnamed character (its label is its id)."""
    return character_id if label == character_id else f"{label} ({character_id})"


def best_boxes(tracks_boxes: Sequence[tuple[str, Box]], frames_dirs: dict[str, tuple[Path, dict[int, str]]],
               k: int) -> list[np.ndarray]:
    """Crops of the k best boxes (size x score x sharpness), at most one per track first so a sheet
    shows the character's variety rather than k frames of one shot.

    Only k crops are held at a time: each is a view that keeps its whole decoded frame alive, and holding all
    of them (a character of an hour-long video has hundreds of tracks) raised the pipeline benchmark's peak
    RSS by 0.6 GB."""
    def scored():
        for video, box in tracks_boxes:
            folder, files = frames_dirs[video]
            crop = crop_box(read_rgb(folder / files[box.frame]), box.xyxy, CROP_MARGIN)
            yield quality(box, crop), crop

    return [crop for _, crop in heapq.nlargest(k, scored(), key=lambda qc: qc[0])]


def write_character_outputs(ws: Workspace, videos: Mapping[str, VideoOutputs], view: LibraryView) -> dict[str, int]:
    per_character: dict[str, list[tuple[str, Box]]] = defaultdict(list)
    labels: dict[str, str] = {}
    appearances, rows = [], defaultdict(list)
    frames_dirs: dict[str, tuple[Path, dict[int, str]]] = {}
    for name, v in sorted(videos.items()):
        records = view.named(view.video(name, v))
        frames_dirs[name] = (v.frames.parent, {f.index: f.file for f in read_frames(v.frames)})
        embeddings = read_npy(v.embeddings)
        by_id = {t.track_id: (i, t) for i, t in enumerate(records.tracks)}
        for c in records.characters:
            labels[c.character_id] = c.label
            for tid in c.track_ids:
                row, track = by_id[tid]
                appearances.append((c.label, name, track.start, track.end, tid))
                # The best box of each track stands for it on the sheet.
                per_character[c.character_id].append((name, max(track.boxes, key=lambda b: b.area * b.score)))
                for key, value in (("video", name), ("track_id", tid), ("character_id", c.character_id),
                                   ("label", c.label), ("start", track.start), ("end", track.end),
                                   ("boxes", len(track.boxes)), ("embedding", embeddings[row].tolist())):
                    rows[key].append(value)

    folder = ws.library_dir / "characters"
    with atomic_dir(folder) as tmp:
        for cid, boxes in sorted(per_character.items()):
            character_sheet(best_boxes(boxes, frames_dirs, SHEET_FACES), sheet_title(labels[cid], cid),
                            tmp / f"{sanitize_label(labels[cid])}.png")
    write_csv(ws.library_dir / "appearances.csv", ["character", "video", "start", "end", "track"],
              sorted(appearances, key=lambda r: (r[0], r[1], r[2])))
    dim = len(rows["embedding"][0]) if rows["embedding"] else 0
    table = pa.table({k: (pa.array(v, pa.list_(pa.float32(), dim)) if k == "embedding" else pa.array(v))
                      for k, v in rows.items()} if rows else {"video": pa.array([], pa.string())})
    write_parquet(ws.library_dir / "track_embeddings.parquet", table)
    return {"characters": len(per_character), "tracks": len(appearances)}


@always_task("character-outputs")
def character_outputs_task(workspace: str, videos: dict[str, VideoOutputs], names_path: Path) -> dict[str, int]:
    ws = Workspace.open(workspace)
    return write_character_outputs(ws, videos, LibraryView.load(ws, names_path))
