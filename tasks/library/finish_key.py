"""Whether a run's library steps (identities, timelines, character outputs, speaker table, reports) can be reused.

In: the run's video results, its configuration, the library's gallery and the workspace. Out: a key that hashes
everything those steps read — each video's manifest (cache paths, themselves keyed by content, parameters and
code), the configuration, the gallery photos' and subtitle files' sizes and times, the registries' bytes and the
code of the library flow and every castline module it imports — kept in WORKSPACE/library/finished.key once they
have all written their files. A re-run whose key is the same finds their files as it would write them, and skips
them: on the 1 h benchmark they were 13.5 s of a 32 s warm re-run. The key is written last, so a run killed
during the steps writes them all again next time.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from tasks.core.config import RunConfig
from tasks.core.formats import to_jsonable, write_text
from tasks.core.records import VideoResult
from tasks.core.workspace import Workspace, code_fingerprint, folder_identity, model_identity, params_digest
from tasks.library.registry import CHARACTERS_REGISTRY, SPEAKERS_REGISTRY
from tasks.library.speaker_table import TABLE_CSV, TABLE_PARQUET
from tasks.library.subtitles import find_subtitles
from tasks.library.timeline import TIMELINE_JSON
from tasks.library.view import NAMES_JSON

FINISH_KEY = "finished.key"  # in WORKSPACE/library/
# What the library steps leave in WORKSPACE/library/ (with each video's timeline.json): all there, or run them.
LIBRARY_OUTPUTS = (NAMES_JSON, "report.md", "report.html", "timeline.csv", "appearances.csv", "track_embeddings.parquet",
                   TABLE_CSV, TABLE_PARQUET)


def _digest(path: Path) -> str | None:
    return hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest() if path.is_file() else None


def finish_key(ws: Workspace, ordered: Sequence[VideoResult], config: RunConfig, gallery: str | None) -> str:
    # A result's run times and stage times change on every run without changing what the steps read, and its
    # timeline files are what the steps write.
    results = [(r.video, r.ok, r.error, r.skipped_stages, r.notes,
                to_jsonable(replace(r.outputs, timeline=None) if r.outputs else None)) for r in ordered]
    subtitles = [(str(p), model_identity(p)) for r in ordered if r.ok for p in find_subtitles(r.outputs.video)]
    photos = folder_identity(gallery) if gallery and Path(gallery).is_dir() else []
    registries = [_digest(ws.library_dir / name) for name in (CHARACTERS_REGISTRY, SPEAKERS_REGISTRY)]
    return params_digest(results, config.model_dump(mode="json"), subtitles, photos, registries,
                         code_fingerprint("flows.library"))


def finished(ws: Workspace, done: Sequence[VideoResult], key: str) -> bool:
    """The last run's library steps read what this one would, and their files are all there."""
    path = ws.library_dir / FINISH_KEY
    return (path.is_file() and path.read_text(encoding="utf-8").strip() == key
            and all((ws.library_dir / name).is_file() for name in LIBRARY_OUTPUTS)
            and all((ws.video_dir(r.video) / TIMELINE_JSON).is_file() for r in done))


def mark_finished(ws: Workspace, key: str) -> None:
    write_text(ws.library_dir / FINISH_KEY, key + "\n")
