"""What every `castline` command shares: the typer app, options whose defaults and help are the config models'
own, and the one-line error exits (traceback only with --debug). Exit status: 0 done, 1 some input failed, 2 bad
arguments or configuration.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Optional, get_args

import typer

from flows import temporary_server
from flows.logs import DEBUG_ENV
# Only pydantic is imported for this: the defaults and help shown in --help are the config models' own.
from tasks.core.config import RunConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="castline: who is on screen, who is speaking, and when — across a video library.")


def field_option(model, field: str, *decls: str, **kwargs):
    """An option that overrides `model.field`: None when not given, its default and help the field's own
    (a Literal field's choices listed unless its description names them all), so --help never drifts from the
    configuration."""
    info = model.model_fields[field]
    text = info.description or ""
    allowed = get_args(info.annotation)
    if allowed and all(isinstance(a, str) for a in allowed) and not all(a in text for a in allowed):
        text = f"{text}; one of: {', '.join(allowed)}"
    return typer.Option(None, *decls, show_default=str(info.default), help=text[:1].upper() + text[1:] + ".",
                        **kwargs)


ConfigOpt = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                         help="YAML file with run parameters (schema: tasks.core.config.RunConfig).")
# How `castline run` names the config fields it overrides, for error messages.
OPTION_NAMES = {"demux.fps": "--fps", "demux.keyframes_only": "--keyframes-only", "detect.backend": "--detector",
                "parallel": "--parallel", "device": "--device"}
WorkspaceOpt = typer.Option(None, "--workspace", "-w", show_default="LIBRARY/.castline",
                            help="Where results go.")
DeviceOpt = field_option(RunConfig, "device", "--device")


def use_device_or_exit(setting: str | None) -> None:
    """For the commands that run a model outside the per-video flow (which sets the device itself). Only `cuda`
    is checked here: asking torch costs its import, which a warm run whose stages are all finished never pays."""
    from tasks.core import device
    from tasks.core.errors import ModelUnavailable

    try:
        device.use(setting or RunConfig.model_fields["device"].default)
        if setting == "cuda":
            device.torch_device()
    except (ValueError, ModelUnavailable) as e:  # not one of auto | cpu | cuda; cuda on a machine without one
        fail(str(e), 2)


VerboseOpt = typer.Option(False, "--verbose", "-v",
                          help="Show every Prefect log line (each task's \"Finished in state\", each stage reused).")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug",
                                        help="Show the tracebacks of expected errors (bad media, bad configuration).")
             ) -> None:
    if debug:  # an environment variable: the flows may run in a process this one starts (flows/logs.py)
        os.environ[DEBUG_ENV] = "1"


def quiet_environment() -> None:
    from tasks.core.offline import configure

    configure()


def flow_environment() -> None:
    """For the commands that run flows: the offline settings, then the temporary Prefect API launched at once,
    so it boots while the command loads torch and the models (prefect_api_or_exit waits for it)."""
    quiet_environment()
    temporary_server.start()


def prefect_api_or_exit() -> None:
    """Wait for the temporary Prefect API the command started first thing (flows/temporary_server.py: it boots
    while the command loads torch and the models); exit 1 with the server's own words when it failed."""
    try:
        temporary_server.wait_ready()
    except RuntimeError as e:
        fail(str(e), 1)


def fail(message: str, code: int) -> None:
    if os.environ.get(DEBUG_ENV) == "1" and sys.exc_info()[1] is not None:
        traceback.print_exc()
    for line in message.splitlines():
        typer.echo(f"castline: {line}", err=True)
    raise typer.Exit(code)


def load_config_or_exit(config: Optional[Path], overrides: dict) -> RunConfig:
    from tasks.core.config_errors import ConfigError, load_explained

    try:
        return load_explained(config, overrides, names=OPTION_NAMES)
    except ConfigError as e:
        fail(str(e), 2)


def params_or_exit(model, given: dict, names: dict[str, str] | None = None):
    """`given` by field name; an error names the option (`--max-side`, or as `names` says)."""
    from pydantic import ValidationError

    from tasks.core.config_errors import problem

    try:
        return model.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            option = (names or {}).get(field, "--" + field.replace("_", "-"))
            lines.append(f"{option} {problem(err)}" if field else problem(err))
        fail("\n".join(lines), 2)
