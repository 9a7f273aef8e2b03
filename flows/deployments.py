"""Deployments: every castline flow registered with a Prefect server, and served on a schedule.

`castline serve LIBRARY --cron "0 3 * * *"` registers the library flow (scheduled; each run only does
what is new or changed, since finished stages are cached by content) and the dataset and detector
training flows (run on demand from the UI or `prefect deployment run`), then serves them from this
process. Scheduling needs a real server (`scripts/prefect_server.sh`): ephemeral mode cannot schedule.
"""
from __future__ import annotations

from pathlib import Path

from flows.detector_flows import dataset_flow, train_detector_flow
from flows.library import library_flow
from tasks.core.config import RunConfig

LIBRARY_DEPLOYMENT = "castline-library"


def library_deployment(library: Path, workspace: Path | None, config: RunConfig, cron: str | None):
    return library_flow.to_deployment(
        name=f"{LIBRARY_DEPLOYMENT}-{library.resolve().name}",
        cron=cron,
        parameters={"library": str(library.resolve()),
                    "workspace": str(workspace.resolve()) if workspace else None,
                    "config": config.model_dump(mode="json")},
        description=f"castline over {library.resolve()}",
        tags=["castline", "library", f"library:{library.resolve().name}"],
    )


def detector_deployments():
    return [dataset_flow.to_deployment(name="castline-dataset", tags=["castline", "detector"]),
            train_detector_flow.to_deployment(name="castline-train-detector", tags=["castline", "detector"])]


def all_deployments(library: Path, workspace: Path | None, config: RunConfig, cron: str | None):
    return [library_deployment(library, workspace, config, cron), *detector_deployments()]


def serve(library: Path, workspace: Path | None, config: RunConfig, cron: str | None, limit: int | None = None) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*all_deployments(library, workspace, config, cron), limit=limit)
