"""The `castline` command (also `python -m flows`): thin typer commands over the flows — the pipeline's own
here (run, recluster, serve, inspect, config), the dataset, training and export tools in flows/cli_tools.py,
what they share in flows/cli_options.py.

Heavy imports (torch, prefect, models) happen inside the commands, after arguments are parsed, so
`--help` answers at once. Exit status: 0 done, 1 some input failed, 2 bad arguments or configuration.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from flows.cli_options import (
    ConfigOpt, DeviceOpt, VerboseOpt, WorkspaceOpt, app, fail, field_option, flow_environment, load_config_or_exit,
    prefect_api_or_exit, quiet_environment, use_device_or_exit,
)
from tasks.core.config import DemuxParams, DetectParams, RunConfig


def _run_library(library: Path, workspace: Optional[Path], cfg: RunConfig, runner: str = "threads",
                 dask_address: Optional[str] = None, verbose: bool = False) -> None:
    if not library.is_dir():
        fail(f"library folder not found: {library}", 2)
    from prefect import tags

    from flows.display import Display, found_lines, ui_run_url
    from flows.library import library_tag, with_runner
    from tasks.core.workspace import Workspace
    from tasks.library.registry import check_spaces, face_space, voice_space
    from tasks.library.run import default_workspace, gallery_folder, list_videos, no_videos_message

    ws = Path(workspace or default_workspace(library)).expanduser().resolve()
    try:
        check_spaces(Workspace(ws), face_space(cfg.embed), voice_space(cfg.diarize))
        gallery_folder(library, cfg)
    except ValueError as e:
        fail(str(e), 2)
    if not list_videos(library, ws):
        fail(f"warning: {no_videos_message(library)}", 1)

    prefect_api_or_exit()
    with Display(verbose=verbose), tags(library_tag(library)):
        state = with_runner(runner, dask_address)(str(library), str(workspace) if workspace else None, cfg,
                                                  return_state=True)
    # A run with failed videos is a Failed state that carries the summary; anything else not Completed is a bug.
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        state.result()
    # What was found, then the one line of each failed video, then where to look.
    typer.echo("")
    typer.echo(f"{len(summary['succeeded'])} video(s) succeeded, {len(summary['failed'])} failed "
               f"in {summary['seconds']:.1f} s (face detector: {summary['detector']['backend']})")
    for line in found_lines(summary):
        typer.echo(line)
    for f in summary["failed"]:
        typer.echo(f"FAILED {f['video']}: {f['error']}")
    typer.echo(f"report: {Path(summary['report']).with_suffix('.html')}")
    url = ui_run_url(state.state_details.flow_run_id)
    if url:
        typer.echo(f"Prefect UI: {url}")
    raise typer.Exit(1 if summary["failed"] else 0)


@app.command()
def run(
    library: Path = typer.Argument(..., help="Folder of videos (searched recursively)."),
    workspace: Optional[Path] = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    fps: Optional[float] = field_option(DemuxParams, "fps"),
    keyframes_only: Optional[bool] = typer.Option(None, "--keyframes-only/--all-frames", show_default="all-frames",
                                                  help="Sample keyframes only instead of a fixed rate."),
    detector: Optional[str] = field_option(DetectParams, "backend", "--detector"),
    parallel: Optional[int] = field_option(RunConfig, "parallel"),
    runner: str = typer.Option("threads", help="Where videos run: threads (this process) | dask."),
    dask_address: Optional[str] = typer.Option(None, show_default="a local 2-worker cluster",
                                               help="Dask scheduler address for --runner dask, e.g. tcp://host:8786."),
    device: Optional[str] = DeviceOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Process every video of LIBRARY: faces, characters, voices and per-character timelines.

    A re-run reuses every finished stage; a killed run resumes. Exits 1 when any video failed."""
    flow_environment()
    if runner not in ("threads", "dask"):
        fail(f"--runner must be threads or dask, not {runner!r}", 2)
    cfg = load_config_or_exit(config, {"demux.fps": fps, "demux.keyframes_only": keyframes_only,
                                        "detect.backend": detector, "parallel": parallel,
                                        "device": device})
    use_device_or_exit(cfg.device)  # a GPU asked for and not there is said once, before any video starts
    _run_library(library, workspace, cfg, runner, dask_address, verbose)


@app.command()
def recluster(
    library: Path = typer.Argument(..., help="Folder of videos already processed by `castline run`."),
    workspace: Optional[Path] = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Rebuild the library's character and speaker identities with the configured thresholds
    (library.face_threshold, library.voice_threshold), then rewrite every timeline.

    Nothing is re-embedded: the registries keep each video's vectors."""
    flow_environment()
    from tasks.library.run import default_workspace
    from tasks.library.identities import recluster_library
    from tasks.core.workspace import Workspace

    cfg = load_config_or_exit(config, {})
    prefect_api_or_exit()  # before the registries are rewritten: a run that cannot follow must not leave them half done
    ws = Workspace.open(workspace or default_workspace(library))
    try:
        counts = recluster_library(ws, cfg)
    except ValueError as e:  # a registry of another embedder (tasks/library/registry.py)
        fail(str(e), 2)
    for kind, (before, after) in counts.items():
        typer.echo(f"{kind}s: {before} -> {after} identities")
    _run_library(library, workspace, cfg, verbose=verbose)


@app.command()
def serve(
    library: Path = typer.Argument(..., help="Folder of videos to process on a schedule."),
    cron: str = typer.Option("0 3 * * *", help="When to run (cron syntax, server time zone)."),
    workspace: Optional[Path] = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Register castline's flows with the Prefect server at PREFECT_API_URL (library flow on CRON; dataset
    and detector training on demand) and serve them until interrupted. Each scheduled run processes only
    new or changed videos. Start a server first: `scripts/prefect_server.sh`."""
    quiet_environment()
    if not os.environ.get("PREFECT_API_URL"):
        fail("scheduling needs a Prefect server: run scripts/prefect_server.sh and export the "
             "PREFECT_API_URL it prints (ephemeral mode cannot schedule)", 2)
    if not library.is_dir():
        fail(f"library folder not found: {library}", 2)
    cfg = load_config_or_exit(config, {})
    from flows.deployments import serve as serve_deployments

    serve_deployments(library, workspace, cfg, cron)


@app.command()
def inspect(
    video: Path = typer.Argument(..., help="A media file."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Show what ffprobe sees in VIDEO and what castline would do with it."""
    quiet_environment()
    from tasks.library.subtitle_streams import subtitle_plan
    from tasks.video.demux import MediaError, describe, probe

    cfg = load_config_or_exit(config, {})
    try:
        info = probe(video)
    except MediaError as e:
        fail(str(e), 1)
    described = describe(info, cfg.demux)
    described["plan"] += subtitle_plan(Path(video), info.streams)
    typer.echo(json.dumps(described, indent=2))


@app.command()
def config() -> None:
    """Print the default configuration as commented YAML (a starting point for --config)."""
    from tasks.core.config import dump_yaml

    typer.echo(dump_yaml(RunConfig()), nl=False)


# The tool commands register on the same app, after the pipeline's: --help lists commands in that order.
from flows import cli_tools  # noqa: E402,F401


def main() -> None:
    app(prog_name="castline")


if __name__ == "__main__":
    sys.exit(main())
