import gc
import weakref

import numpy as np

from tasks.core.records import Box
from tasks.library import character_outputs


def test_a_sheet_takes_the_best_boxes_best_first_holding_only_k_frames(tmp_path, monkeypatch):
    scores = [0.5, 0.9, 0.7, 0.95, 0.6, 0.8, 0.1, 0.2, 0.3, 0.4]
    frames, most_alive = [], [0]

    def read_rgb(path):
        gc.collect()
        most_alive[0] = max(most_alive[0], sum(f() is not None for f in frames))
        frame = np.full((40, 40, 3), int(path.stem), dtype=np.uint8)  # each frame filled with its own index
        frames.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(character_outputs, "read_rgb", read_rgb)
    monkeypatch.setattr(character_outputs, "quality", lambda box, crop: box.score)
    boxes = [("ep.mp4", Box(i, float(i), 5, 5, 25, 25, s)) for i, s in enumerate(scores)]
    files = {i: f"{i}.jpg" for i in range(len(scores))}
    crops = character_outputs.best_boxes(boxes, {"ep.mp4": (tmp_path, files)}, k=3)
    assert [int(c[0, 0, 0]) for c in crops] == [3, 1, 5]  # scores 0.95, 0.9, 0.8
    # Each crop is a view that keeps its whole frame: a long video's character has hundreds of boxes, so
    # no more than the k kept (and the one being scored) may be alive at once.
    assert most_alive[0] <= 3 + 1
