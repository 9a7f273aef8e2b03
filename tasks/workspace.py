"""Where every result lives, and the keys that make re-runs skip finished work.

In: a workspace folder, a video path, stage names and parameters. Out: stable paths
`cache/<stage>/<video-id>/<key>.<ext>` whose key hashes the video's content, the stage's parameters,
the upstream keys and the stage module's source; human-facing outputs under `videos/<name>/` and
`library/`. A result exists only once it was renamed into place, so "exists" means "finished".
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import inspect
import json
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from tasks.formats import TEMP_SUFFIX, read_json, write_json

_HASH_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """BLAKE2b of the whole file, streamed (never the whole file in memory)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_identity(folder: str | Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file under a model folder: replacing weights or settings changes
    it, and stat calls cost nothing where hashing the weights would cost seconds per use."""
    folder = Path(folder)
    return sorted((p.relative_to(folder).as_posix(), (st := p.stat()).st_size, st.st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


def params_digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=None)
def code_version(module_name: str) -> str:
    """Hash of a stage module's source: editing a stage invalidates its cached results."""
    source = inspect.getsource(importlib.import_module(module_name))
    return hashlib.blake2b(source.encode(), digest_size=6).hexdigest()


_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_name(name: str) -> str:
    """A folder name for a video name (which may hold '/', spaces, any script): letters of any script,
    digits, '_', '.', '-' kept; when anything had to change, a hash of the name keeps two names apart."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "video"
    if cleaned == name:
        return cleaned
    return f"{cleaned}-{hashlib.blake2b(name.encode(), digest_size=3).hexdigest()}"


@dataclass(frozen=True)
class StageKey:
    """Identifies one stage's result for one video: what went in and which code made it."""

    stage: str
    video_id: str
    key: str

    def chain(self, stage: str, module: str, params: Any) -> "StageKey":
        """The key of a downstream stage fed by this one."""
        return StageKey(stage, self.video_id, params_digest(self.key, stage, code_version(module), params))


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        root = Path(root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    # -- content identity --
    def video_id(self, video: str | Path) -> str:
        """Content hash of a video, remembered by (path, size, mtime) so big files hash once."""
        video = Path(video)
        st = video.stat()
        index_path = self.root / "index" / f"{params_digest(str(video.resolve()))}.json"
        stamp = [st.st_size, st.st_mtime_ns]
        if index_path.exists():
            entry = read_json(index_path)
            if entry.get("stamp") == stamp:
                return entry["digest"]
        digest = file_digest(video)
        write_json(index_path, {"path": str(video.resolve()), "stamp": stamp, "digest": digest})
        return digest

    def root_key(self, video: str | Path, stage: str, module: str, params: Any) -> StageKey:
        vid = self.video_id(video)
        return StageKey(stage, vid, params_digest(vid, stage, code_version(module), params))

    # -- paths --
    def stage_path(self, key: StageKey, ext: str) -> Path:
        return self.root / "cache" / key.stage / key.video_id[:16] / f"{key.key}{ext}"

    def video_dir(self, name: str) -> Path:
        """The output folder of a video, by its name in the library (its relative path)."""
        return self.root / "videos" / safe_name(name)

    @property
    def library_dir(self) -> Path:
        return self.root / "library"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


@contextmanager
def active_run(root: Path) -> Iterator[bool]:
    """Mark a run as active in this workspace for its whole duration; yields whether it is the only one.

    Every run holds a shared flock; a run that can take it exclusively first knows no other run is
    writing, so leftover `*.partial` files are a killed run's and may be deleted — and not otherwise."""
    with open(root / "run.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(fh, fcntl.LOCK_SH)  # converts the exclusive lock, or waits for nothing
        try:
            yield alone
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_partials(root: Path) -> int:
    """Delete what a killed run was still writing (names end in TEMP_SUFFIX); returns how many."""
    stale = sorted(root.rglob(f"*{TEMP_SUFFIX}"), key=lambda p: len(p.parts), reverse=True)
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(stale)
