"""Prefect flows that teach castline a faster face detector: label a library into a dataset, then train on it.

In: a library folder and DatasetParams; or a dataset folder, a workspace and TrainParams. Out: the dataset
summary; the registered detector entry, with each epoch logged and a progress artifact. Backends: tasks/*.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.library.run import default_workspace, list_videos
from tasks.tools.dataset import DatasetParams, build_dataset
from tasks.core.formats import to_jsonable
from tasks.tools.train_detector import TrainParams, train_detector


def _progress_artifact(key: str, description: str):
    """A progress hook that moves a Prefect progress artifact (0-100 %), visible on the flow run page."""
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)

    def hook(done: int, total: int) -> None:
        update_progress_artifact(artifact_id=artifact_id, progress=100.0 * done / max(1, total))

    return hook


@flow(name="castline-dataset", validate_parameters=True)
def dataset_flow(library: str, out: str, params: DatasetParams = DatasetParams()) -> dict:
    """Label every video of LIBRARY with the bootstrap detector into a YOLO dataset at OUT (split by video)."""
    logger = get_run_logger()
    lib = Path(library).resolve()
    videos = list_videos(lib, default_workspace(lib), audio=False)  # a dataset needs pictures
    logger.info("labelling %d video(s) of %s with %s", len(videos), lib, params.teacher)
    hook = _progress_artifact("castline-dataset", f"videos labelled from {lib.name}")

    def progress(done: int, total: int) -> None:
        logger.info("video %d/%d labelled", done, total)
        hook(done, total)

    summary = build_dataset(videos, Path(out), params, progress=progress)
    for name, reason in summary["skipped"].items():
        logger.warning("skipped %s: %s", name, reason)
    logger.info("dataset %s: %s images, %s boxes, %d near-duplicates dropped", out, summary["images"],
                summary["boxes"], summary["duplicates_dropped"])
    return to_jsonable(summary)


@flow(name="castline-train-detector", validate_parameters=True)
def train_detector_flow(dataset: str, workspace: str, params: TrainParams = TrainParams()) -> dict:
    """Fine-tune YOLO on DATASET, evaluate it against the teacher and register it in WORKSPACE."""
    logger = get_run_logger()
    hook = _progress_artifact("castline-train-detector", f"epochs trained on {Path(dataset).name}")
    entry = train_detector(dataset, workspace, params, progress=hook, log=logger.info)
    logger.info("registered %s: %s", entry["id"], entry["weights"])
    return to_jsonable(entry)


@flow(name="castline-character-dataset", validate_parameters=True)
def character_dataset_flow(workspace: str, out: str, params: dict | None = None) -> dict:
    """A YOLO dataset at OUT whose classes are the characters of WORKSPACE's last run (tasks/tools/character_dataset.py)."""
    from tasks.tools.character_dataset import CharacterDatasetParams, build_character_dataset

    logger = get_run_logger()
    summary = build_character_dataset(workspace, Path(out), CharacterDatasetParams(**(params or {})))
    logger.info("characters dataset %s: %d classes, %s images, %s boxes", out, len(summary["names"]),
                summary["images"], summary["boxes"])
    return to_jsonable(summary)
