"""Speaker table: one row per library voice, for the people who use the voices rather than the timelines.

In: the speaker registry (tasks/library/registry.py: each file's local voices with their global id, speech seconds
and centroid) and the library's names (tasks/library/view.py: voice -> character links, gallery and subtitle
names).
Out: library/speakers_table.parquet — speaker, name, character, character_name, speech_seconds, n_files,
files (list<string>), centroid (fixed_size_list<float32>[dim], the speech-weighted registry centroid, in the
registry's embedding space) — and the same without the centroid as library/speakers_table.csv.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.core.formats import vector_column, write_csv, write_parquet
from tasks.library.view import LibraryView
from tasks.core.stage import always_task
from tasks.core.workspace import Workspace

TABLE_PARQUET = "speakers_table.parquet"
TABLE_CSV = "speakers_table.csv"


@dataclass(frozen=True)
class SpeakerRow:
    speaker: str
    name: str | None  # from subtitles
    character: str | None  # the linked on-screen character; None: off-screen voice
    character_name: str | None  # that character's gallery or subtitle name
    speech_seconds: float
    files: tuple[str, ...]


def speaker_rows(view: LibraryView) -> list[SpeakerRow]:
    """Rows in speaker id order; speech seconds are the registry weights (each file's speech of that voice)."""
    registry = view.speakers
    rows = []
    for gid in registry.global_ids():
        members = [m for m in registry.members if m.global_id == gid]
        link = view.names.links.get(gid)
        character = link.character_id if link else None
        rows.append(SpeakerRow(gid, view.speaker_name(gid), character, view.character_name(character),
                               round(sum(m.weight for m in members), 3), tuple(sorted({m.video for m in members}))))
    return rows


def write_speaker_table(ws: Workspace, view: LibraryView) -> int:
    registry = view.speakers
    rows = speaker_rows(view)
    centroids = registry.centroids()
    dim = len(next(iter(centroids.values()))) if centroids else 0
    import pyarrow as pa

    write_parquet(ws.library_dir / TABLE_PARQUET, {
        "speaker": pa.array([r.speaker for r in rows], pa.string()),
        "name": pa.array([r.name for r in rows], pa.string()),
        "character": pa.array([r.character for r in rows], pa.string()),
        "character_name": pa.array([r.character_name for r in rows], pa.string()),
        "speech_seconds": pa.array([r.speech_seconds for r in rows], pa.float64()),
        "n_files": pa.array([len(r.files) for r in rows], pa.int32()),
        "files": pa.array([list(r.files) for r in rows], pa.list_(pa.string())),
        "centroid": vector_column(np.array([centroids[r.speaker] for r in rows], np.float32).reshape(len(rows), dim)),
    }, {b"space": registry.space.encode()})
    write_csv(ws.library_dir / TABLE_CSV,
              ["speaker", "name", "character", "character_name", "speech_seconds", "n_files", "files"],
              ([r.speaker, r.name or "", r.character or "", r.character_name or "", r.speech_seconds,
                len(r.files), ";".join(r.files)] for r in rows))
    return len(rows)


@always_task("speaker-table")
def speaker_table_task(workspace: str, names_path: Path) -> int:
    ws = Workspace.open(workspace)
    return write_speaker_table(ws, LibraryView.load(ws, names_path))
