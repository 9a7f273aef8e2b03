import gc
import weakref
from pathlib import Path

import numpy as np

from tasks.core.records import Box
from tasks.library import report_faces
from tasks.library.report_faces import Face, choose_faces


def test_a_sheet_reads_only_its_shortlist_and_keeps_no_frame_alive(monkeypatch):
    """A main character of a long series has thousands of candidate faces: only the 3k shortlisted are read,
    and the crops kept are copies, so no decoded frame outlives its read."""
    reads, frames = [], []

    def read_rgb(path):
        reads.append(path)
        frame = np.full((40, 40, 3), int(path.stem) % 256, dtype=np.uint8)
        frames.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(report_faces, "read_rgb", read_rgb)
    rng = np.random.default_rng(0)
    candidates = [Face(f"ep{i // 50:02d}.mp4", float(i % 50), i, 1.0 + i / 1000, rng.normal(size=8).astype(np.float32),
                       Path(f"{i}.jpg"), Box(i, float(i % 50), 5, 5, 25, 25, 0.9)) for i in range(2000)]
    chosen = choose_faces(candidates, 4)
    assert len(chosen) == 4 and len(reads) == 12  # 3k read, not 2,000
    assert all(f.crop.shape == (26, 26, 3) for f in chosen)  # the 20 px box and its 30 % margin
    gc.collect()
    assert not any(f() is not None for f in frames)
