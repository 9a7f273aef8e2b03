"""dlib's face ResNet in torch (tasks/video/embed/dlib_resnet.py) gives dlib's own descriptors on real faces."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tasks.core import formats
from tasks.core.config import EmbedParams
from tasks.video.detect import read_rgb
from tasks.video.embed import DlibFaceEmbedder
from tasks.video.embed.dlib_resnet import read_layers
from test_embed import truth_boxes  # one reader of the montage's ground-truth faces


def _model_file() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models' pkg_resources warning
        import face_recognition_models as frm
    return frm.face_recognition_model_location()


def test_the_file_reads_as_dnn_face_recognition_ex_declares_it():
    layers = read_layers(_model_file())
    kinds = [layer.kind for layer in layers]
    assert kinds[0] == "input_rgb_image_sized" and kinds[-2:] == ["fc", "loss_metric"]
    assert kinds.count("con") == kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    assert layers[0].fields["avg_rgb"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    stem = layers[1].fields
    assert stem["weight"].shape == (32, 3, 7, 7) and (stem["stride_y"], stem["padding_y"]) == (2, 0)
    assert layers[-2].fields["weight"].shape == (128, 256)


def test_torch_descriptors_are_dlibs_on_real_faces(montage_store):
    import dlib

    frames = formats.read_frames(montage_store)
    embedder = DlibFaceEmbedder(margin=EmbedParams().margin)
    predictor, _ = embedder._load()
    reference = dlib.face_recognition_model_v1(_model_file())
    ours, theirs = [], []
    for second in range(7):  # two ground-truth faces on most frames
        image = read_rgb(montage_store.parent / frames[second].file)
        boxes = list(truth_boxes(second).values())
        # dlib's whole path from the same landmarks: its own chips and its own forward.
        shapes = dlib.full_object_detections()
        for box in boxes:
            shapes.append(predictor(image, embedder._rect(box, image.shape[1], image.shape[0])))
        theirs += [np.asarray(v) for v in reference.compute_face_descriptor(image, shapes, 0)]
        ours += list(embedder.embed(image, boxes))
    ours, theirs = np.array(ours), np.array(theirs)
    assert len(ours) >= 10
    assert np.abs(ours - theirs).max() < 2e-3
    assert np.linalg.norm(ours - theirs, axis=1).max() < 0.01  # dlib's same-person threshold is 0.6
    # and the faces are not all one vector: the comparison can tell people apart
    assert np.linalg.norm(theirs[:, None] - theirs[None], axis=2).max() > 0.6


def test_jittered_descriptors_follow_dlibs_jitter_and_repeat():
    import dlib

    from tasks.video.detect import DlibHOGDetector
    from test_embed import GALLERY

    image = read_rgb(GALLERY / "barack_obama" / "obama.jpg")
    box = max(DlibHOGDetector().detect(image), key=lambda d: (d[2] - d[0]) * (d[3] - d[1]))[:4]
    embedder = DlibFaceEmbedder(jitter=10)
    predictor, _ = embedder._load()
    shapes = dlib.full_object_detections()
    shapes.append(predictor(image, embedder._rect(box, image.shape[1], image.shape[0])))
    reference = dlib.face_recognition_model_v1(_model_file())
    theirs = np.asarray(reference.compute_face_descriptor(image, shapes, 10)[0])
    plain = np.asarray(reference.compute_face_descriptor(image, shapes, 0)[0])
    ours = embedder.embed(image, [box])[0]
    # Two means of 10 random re-cuts each: measured 0.04 apart, while either is 0.11-0.13 from the plain chip's.
    assert np.linalg.norm(ours - theirs) < 0.08 < np.linalg.norm(theirs - plain)
    np.testing.assert_array_equal(ours, DlibFaceEmbedder(jitter=10).embed(image, [box])[0])  # a fresh embedder repeats
