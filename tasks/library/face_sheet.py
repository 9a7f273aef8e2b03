"""A video's face sheet: a few faces of each of its characters, a row each under the character's name or id —
the picture of who is in the video that the Prefect UI shows beside its timeline (flows/video_artifacts.py).

In: one video's stage results in library ids (tasks/library/view.py). Out: faces.jpg in its timeline folder, or
no file when no face was seen (an audio file, a video of landscapes). The faces are those the report would pick
from this video alone (tasks/library/report_faces.py), laid out by tasks/core/contact_sheet.py; the picture
stays small enough to be embedded in an artifact (a JPEG of at most MAX_CHARACTERS rows of small tiles).
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from tasks.core.contact_sheet import sheet_image, stacked
from tasks.core.formats import write_image
from tasks.core.records import VideoOutputs
from tasks.core.workspace import code_fingerprint, params_digest
from tasks.library.character_outputs import sheet_title
from tasks.library.drawn import drawn
from tasks.library.report_faces import choose_faces, face_candidates
from tasks.library.view import LibraryView

FACES_JPG = "faces.jpg"
FACES_PER_CHARACTER = 4
MAX_CHARACTERS = 16  # the most seen: a crowd scene's extras would make the picture too big to embed
TILE = 96


def face_sheet(name: str, outputs: VideoOutputs, view: LibraryView) -> Image.Image | None:
    """One row per character, most faces found first (the candidates of its longest tracks: more for a
    character seen longer); None when the video has no face."""
    candidates = face_candidates(view, {name: outputs})
    shown = sorted(candidates, key=lambda cid: (-len(candidates[cid]), cid))[:MAX_CHARACTERS]
    if not shown:
        return None
    return stacked([sheet_image([f.crop for f in choose_faces(candidates[cid], FACES_PER_CHARACTER)],
                                sheet_title(view.character_name(cid) or cid, cid), FACES_PER_CHARACTER, TILE)
                    for cid in shown])


def sheet_key(name: str, outputs: VideoOutputs, view: LibraryView) -> str:
    """What a video's sheet is drawn from: its frames, tracks and embeddings (cache paths, keyed by content), its
    characters in library ids with their tracks and names, and this module's code."""
    characters = view.video(name, outputs).characters
    return params_digest(name, [str(p) for p in (outputs.frames, outputs.tracks, outputs.embeddings)],
                         [(c.character_id, list(c.track_ids), view.character_name(c.character_id)) for c in characters],
                         code_fingerprint(__name__))


def write_face_sheet(folder: Path, name: str, outputs: VideoOutputs, view: LibraryView,
                     previous: Path | None = None) -> Path | None:
    """faces.jpg (and its key) in `folder`; copied from the `previous` folder when that one's was drawn from the
    same faces and names (tasks/library/drawn.py). Adding one episode to a library of four had cost 1.16x that
    episode alone with every sheet drawn again (bench/pipeline_benchmark.py), 1.02-1.05x before the sheets existed."""
    def draw(out: Path) -> Path | None:
        image = face_sheet(name, outputs, view)
        return None if image is None else write_image(out, image, "JPEG", quality=85)

    return drawn(folder, FACES_JPG, sheet_key(name, outputs, view), draw, previous)
