"""Head boxes (the face+hair region) and person boxes for one frame, from the face boxes and a person detector.

In: one frame's face boxes, (optionally) its person boxes, and its head boxes when a trained detector gives them.
Out: `head` boxes by two geometric rules, and the frame's extra boxes of the kinds the detect stage was asked for
(DetectParams.kinds).

Rule 1, from a face box (x1, y1, x2, y2; w, h): the head is the face box widened by HEAD_FROM_FACE[0]·w on the
left and [2]·w on the right, raised by [1]·h and lowered by [3]·h (hair above, ears aside, the chin below
MTCNN's box). Calibrated by hand on 9 faces of the sample media (montage gallery faces: Rose Leslie, Obama, Kit
Harington, Alex Lacamoire; Hamilton: Miranda on stage), reading each head's extent off a grid in face-box units:
mean hand-marked head (-0.23, -0.27, 1.21, 1.01) in face units; this rule's IoU with the hand-marked heads is
0.86 on average, 0.72 at worst (Obama's close-cropped hair: the rule is too tall; long curly hair: too narrow).

Rule 2, from a person box with no face inside its upper part: the head is the top of the box as the HOG
people detector's 64x128 window places a standing person (16 px margins, head ~1/7 of the body): centred,
HEAD_FROM_PERSON of the box. It is not calibrated on the sample media (HOG finds no whole standing person
there often enough to measure it; README "Person and head boxes"). Person boxes of a trained YOLO (its person
class) go through the same rule, uncalibrated: they have no margin above the head, so its heads sit too low.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from tasks.core.records import Box

HEAD_FROM_FACE = (0.22, 0.27, 0.22, 0.02)  # left, up, right, down, in face widths / heights
HEAD_FROM_PERSON = (0.35, 0.10, 0.65, 0.26)  # x1, y1, x2, y2 as fractions of the person box
UPPER_PART = 0.4  # a face belongs to a person when its centre lies in the top 40 % of the person box
HEAD_SCORE_FROM_PERSON = 0.5  # a derived head's score is its source's times this (it is a guess)


def _clip(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> tuple[float, float, float, float]:
    return max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)


def head_from_face(face: Box, width: int, height: int) -> Box:
    w, h = face.x2 - face.x1, face.y2 - face.y1
    left, up, right, down = HEAD_FROM_FACE
    x1, y1, x2, y2 = _clip(face.x1 - left * w, face.y1 - up * h, face.x2 + right * w, face.y2 + down * h, width, height)
    return replace(face, x1=round(x1, 2), y1=round(y1, 2), x2=round(x2, 2), y2=round(y2, 2), label="head")


def head_from_person(person: Box, width: int, height: int) -> Box:
    w, h = person.x2 - person.x1, person.y2 - person.y1
    fx1, fy1, fx2, fy2 = HEAD_FROM_PERSON
    x1, y1, x2, y2 = _clip(person.x1 + fx1 * w, person.y1 + fy1 * h, person.x1 + fx2 * w, person.y1 + fy2 * h,
                           width, height)
    return replace(person, x1=round(x1, 2), y1=round(y1, 2), x2=round(x2, 2), y2=round(y2, 2), label="head",
                   score=round(person.score * HEAD_SCORE_FROM_PERSON, 4))


def face_in_person(face: Box, person: Box) -> bool:
    """The face's centre lies inside the person box's upper part (where a head is)."""
    cx, cy = (face.x1 + face.x2) / 2, (face.y1 + face.y2) / 2
    return (person.x1 <= cx <= person.x2
            and person.y1 <= cy <= person.y1 + UPPER_PART * (person.y2 - person.y1))


def body_boxes(faces: Sequence[Box], persons: Sequence[Box], kinds: Sequence[str], width: int,
               height: int, heads: Sequence[Box] | None = None) -> list[Box]:
    """The frame's non-face boxes of `kinds`: person boxes as given; `heads` when a trained detector found them,
    else heads from every face and from every person box that holds no face."""
    out: list[Box] = []
    if "person" in kinds:
        out.extend(replace(p, label="person") for p in persons)
    if "head" in kinds and heads is not None:
        out.extend(heads)
    elif "head" in kinds:
        out.extend(head_from_face(f, width, height) for f in faces)
        out.extend(head_from_person(p, width, height) for p in persons
                   if not any(face_in_person(f, p) for f in faces))
    return out


def needs_persons(kinds: Sequence[str], trained_heads: bool = False) -> bool:
    """Whether person boxes must be found: persons are asked for, or heads by the rule (the top of a faceless
    person), not by a trained detector."""
    return "person" in kinds or ("head" in kinds and not trained_heads)


def kind_boxes(detector, image_rgb: np.ndarray, frame: int, t: float, label: str) -> list[Box]:
    """`detector`'s boxes on the frame as boxes of kind `label`."""
    return [Box(frame=frame, t=t, x1=round(x1, 2), y1=round(y1, 2), x2=round(x2, 2), y2=round(y2, 2),
                score=round(s, 4), label=label) for x1, y1, x2, y2, s in detector.detect(image_rgb)]
