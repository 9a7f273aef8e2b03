"""The `castline` command (also `python -m flows`): thin typer commands over the flows.

Heavy imports (torch, prefect, models) happen inside the commands, after arguments are parsed, so
`--help` answers at once.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="castline: who is on screen, who is speaking, and when — across a video library.")


def _quiet_environment() -> None:
    from tasks.offline import configure

    configure()


# Only pydantic is imported for this: the defaults shown in --help are the config model's own.
from tasks.config import RunConfig  # noqa: E402

DEFAULTS = RunConfig()

ConfigOpt = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                         help="YAML file with run parameters (schema: tasks.config.RunConfig).")


@app.command()
def run(
    library: Path = typer.Argument(..., help="Folder of videos (searched recursively)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", show_default="LIBRARY/.castline",
                                             help="Where results go."),
    config: Optional[Path] = ConfigOpt,
    fps: Optional[float] = typer.Option(None, show_default=str(DEFAULTS.demux.fps),
                                        help="Frames sampled per second."),
    keyframes_only: Optional[bool] = typer.Option(None, "--keyframes-only/--all-frames", show_default="all-frames",
                                                  help="Sample keyframes only instead of a fixed rate."),
    detector: Optional[str] = typer.Option(None, show_default=DEFAULTS.detect.backend,
                                           help="Face detector: mtcnn | dlib-hog | haar."),
    parallel: Optional[int] = typer.Option(None, show_default=str(DEFAULTS.parallel),
                                           help="Videos processed at the same time."),
) -> None:
    """Process every video of LIBRARY: faces, characters, voices and per-character timelines.

    A re-run reuses every finished stage; a killed run resumes. Exits 1 when any video failed."""
    _quiet_environment()
    cfg = _load_config_or_exit(config, {"demux.fps": fps, "demux.keyframes_only": keyframes_only,
                                        "detect.backend": detector, "parallel": parallel})
    if not library.is_dir():
        typer.echo(f"castline: library folder not found: {library}", err=True)
        raise typer.Exit(2)
    _run_library(library, workspace, cfg)


def _load_config_or_exit(config: Optional[Path], overrides: dict):
    from tasks.config import load_config

    try:
        return load_config(config, overrides)
    except Exception as e:  # pydantic's message names the bad field
        typer.echo(f"castline: invalid configuration: {e}", err=True)
        raise typer.Exit(2)


def _run_library(library: Path, workspace: Optional[Path], cfg) -> None:
    from flows.library import library_flow

    summary = library_flow(str(library), str(workspace) if workspace else None, cfg)
    typer.echo("")
    typer.echo(f"{len(summary['succeeded'])} video(s) succeeded, {len(summary['failed'])} failed "
               f"in {summary['seconds']:.1f} s")
    for f in summary["failed"]:
        typer.echo(f"FAILED {f['video']}: {f['error']}")
    typer.echo(f"report: {summary['report']}")
    raise typer.Exit(1 if summary["failed"] else 0)


@app.command()
def recluster(
    library: Path = typer.Argument(..., help="Folder of videos already processed by `castline run`."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", show_default="LIBRARY/.castline",
                                             help="Where results are."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Rebuild the library's character and speaker identities with the configured thresholds
    (library.face_threshold, library.voice_threshold), then rewrite every timeline.

    Nothing is re-embedded: the registries keep each video's vectors."""
    _quiet_environment()
    from flows.library import default_workspace
    from tasks.identities import recluster_library
    from tasks.workspace import Workspace

    cfg = _load_config_or_exit(config, {})
    ws = Workspace.open(workspace or default_workspace(library))
    for kind, (before, after) in recluster_library(ws, cfg).items():
        typer.echo(f"{kind}s: {before} -> {after} identities")
    _run_library(library, workspace, cfg)


@app.command()
def inspect(
    video: Path = typer.Argument(..., help="A media file."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Show what ffprobe sees in VIDEO and what castline would do with it."""
    _quiet_environment()
    from tasks.config import load_config
    from tasks.demux import MediaError, describe, probe

    cfg = load_config(config)
    try:
        info = probe(video)
    except MediaError as e:
        typer.echo(f"castline: {e}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(describe(info, cfg.demux), indent=2))


@app.command()
def config() -> None:
    """Print the default configuration as commented YAML (a starting point for --config)."""
    from tasks.config import RunConfig, dump_yaml

    typer.echo(dump_yaml(RunConfig()), nl=False)


def main() -> None:
    app(prog_name="castline")


if __name__ == "__main__":
    sys.exit(main())
