"""Pictures of a video's timeline folder (faces.jpg, timeline.png) drawn again only when what they show changed.

Every run that changes the library (one new episode is enough) rewrites every video's timeline folder, and
drawing is most of that: a face sheet reads and crops frames (1-2 s a video), a timeline plot costs matplotlib's
rendering. Each picture has a key file beside it, `<stem>.key`, a digest of what it was drawn from; when the
previous folder's key is the same, its picture is copied instead of drawn. Measured on a library of 32-35 videos
(the sample library five times over, one episode added per run): the timeline tasks of a run took 3.5 s with
every plot drawn, 1.8-1.9 s with the unchanged ones copied.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tasks.core.formats import write_text


def key_file(picture: str) -> str:
    """faces.jpg -> faces.key"""
    return f"{Path(picture).stem}.key"


def drawn(folder: Path, picture: str, key: str, draw: Callable[[Path], Path | None],
          previous: Path | None = None) -> Path | None:
    """`folder/picture` and its key: copied from `previous` when that folder's picture has the same key, else
    `draw(path)` writes it (None: nothing to draw, and no file)."""
    out, old_key = folder / picture, (previous / key_file(picture)) if previous else None
    if old_key and old_key.is_file() and (previous / picture).is_file() \
            and old_key.read_text(encoding="utf-8").strip() == key:
        shutil.copy2(previous / picture, out)
    elif draw(out) is None:
        return None
    write_text(folder / key_file(picture), key + "\n")
    return out
