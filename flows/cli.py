"""The `castline` command (also `python -m flows`): thin typer commands over the flows.

Heavy imports (torch, prefect, models) happen inside the commands, after arguments are parsed, so
`--help` answers at once. Exit status: 0 done, 1 some input failed, 2 bad arguments or configuration.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional, get_args

import typer

from flows.logs import DEBUG_ENV
# Only pydantic is imported for this: the defaults and help shown in --help are the config models' own.
from tasks.core.config import DemuxParams, DetectParams, RunConfig
from tasks.tools.params import AdaptorConfig, AudioBackend, DatasetParams, TrainParams

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


def _use_device_or_exit(setting: str | None) -> None:
    """For the commands that run a model outside the per-video flow (which sets the device itself). Only `cuda`
    is checked here: asking torch costs its import, which a warm run whose stages are all finished never pays."""
    from tasks.core import device
    from tasks.core.errors import ModelUnavailable

    try:
        device.use(setting or RunConfig.model_fields["device"].default)
        if setting == "cuda":
            device.torch_device()
    except (ValueError, ModelUnavailable) as e:  # not one of auto | cpu | cuda; cuda on a machine without one
        _fail(str(e), 2)


VerboseOpt = typer.Option(False, "--verbose", "-v",
                          help="Show every Prefect log line (each task's \"Finished in state\", each stage reused).")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug",
                                        help="Show the tracebacks of expected errors (bad media, bad configuration).")
             ) -> None:
    if debug:  # an environment variable: the flows may run in a process this one starts (flows/logs.py)
        os.environ[DEBUG_ENV] = "1"


def _quiet_environment() -> None:
    from tasks.core.offline import configure

    configure()


def _fail(message: str, code: int) -> None:
    if os.environ.get(DEBUG_ENV) == "1" and sys.exc_info()[1] is not None:
        traceback.print_exc()
    for line in message.splitlines():
        typer.echo(f"castline: {line}", err=True)
    raise typer.Exit(code)


def _load_config_or_exit(config: Optional[Path], overrides: dict) -> RunConfig:
    from tasks.core.config_errors import ConfigError, load_explained

    try:
        return load_explained(config, overrides, names=OPTION_NAMES)
    except ConfigError as e:
        _fail(str(e), 2)


def _params_or_exit(model, given: dict, names: dict[str, str] | None = None):
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
        _fail("\n".join(lines), 2)


def _run_library(library: Path, workspace: Optional[Path], cfg: RunConfig, runner: str = "threads",
                 dask_address: Optional[str] = None, verbose: bool = False) -> None:
    if not library.is_dir():
        _fail(f"library folder not found: {library}", 2)
    from prefect import tags

    from flows.display import Display, found_lines, ui_run_url
    from flows.library import library_tag, with_runner
    from tasks.core.workspace import Workspace
    from tasks.library.registry import check_spaces, face_space, voice_space
    from tasks.library.run import default_workspace, list_videos, no_videos_message

    ws = Path(workspace or default_workspace(library)).expanduser().resolve()
    try:
        check_spaces(Workspace(ws), face_space(cfg.embed), voice_space(cfg.diarize))
    except ValueError as e:
        _fail(str(e), 2)
    if not list_videos(library, ws):
        _fail(f"warning: {no_videos_message(library)}", 1)

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
    _quiet_environment()
    if runner not in ("threads", "dask"):
        _fail(f"--runner must be threads or dask, not {runner!r}", 2)
    cfg = _load_config_or_exit(config, {"demux.fps": fps, "demux.keyframes_only": keyframes_only,
                                        "detect.backend": detector, "parallel": parallel,
                                        "device": device})
    _use_device_or_exit(cfg.device)  # a GPU asked for and not there is said once, before any video starts
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
    _quiet_environment()
    from tasks.library.run import default_workspace
    from tasks.library.identities import recluster_library
    from tasks.core.workspace import Workspace

    cfg = _load_config_or_exit(config, {})
    ws = Workspace.open(workspace or default_workspace(library))
    try:
        counts = recluster_library(ws, cfg)
    except ValueError as e:  # a registry of another embedder (tasks/library/registry.py)
        _fail(str(e), 2)
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
    _quiet_environment()
    if not os.environ.get("PREFECT_API_URL"):
        _fail("scheduling needs a Prefect server: run scripts/prefect_server.sh and export the "
              "PREFECT_API_URL it prints (ephemeral mode cannot schedule)", 2)
    if not library.is_dir():
        _fail(f"library folder not found: {library}", 2)
    cfg = _load_config_or_exit(config, {})
    from flows.deployments import serve as serve_deployments

    serve_deployments(library, workspace, cfg, cron)


@app.command()
def inspect(
    video: Path = typer.Argument(..., help="A media file."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Show what ffprobe sees in VIDEO and what castline would do with it."""
    _quiet_environment()
    from tasks.video.demux import MediaError, describe, probe

    cfg = _load_config_or_exit(config, {})
    try:
        info = probe(video)
    except MediaError as e:
        _fail(str(e), 1)
    typer.echo(json.dumps(describe(info, cfg.demux), indent=2))


@app.command()
def config() -> None:
    """Print the default configuration as commented YAML (a starting point for --config)."""
    from tasks.core.config import dump_yaml

    typer.echo(dump_yaml(RunConfig()), nl=False)


@app.command()
def dataset(
    library: Path = typer.Argument(..., help="Folder of videos (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (replaced in one rename)."),
    teacher: Optional[str] = field_option(DatasetParams, "teacher"),
    fps: Optional[float] = field_option(DatasetParams, "fps"),
    max_side: Optional[int] = field_option(DatasetParams, "max_side"),
    min_score: Optional[float] = field_option(DatasetParams, "min_score"),
    dedup_hamming: Optional[int] = field_option(DatasetParams, "dedup_hamming"),
    seed: Optional[int] = field_option(DatasetParams, "seed"),
    classes: str = typer.Option("face", help="face: teacher-labelled faces; characters: one class per character "
                                             "of the last `castline run` of LIBRARY (names where known)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", show_default="LIBRARY/.castline",
                                             help="With --classes characters: the run's workspace."),
    min_examples: Optional[int] = typer.Option(None, show_default="10",
                                               help="With --classes characters: fewest train boxes a class needs."),
    box: Optional[str] = typer.Option(None, show_default="face",
                                      help="With --classes characters: face boxes, or head (face+hair) boxes."),
) -> None:
    """Label the frames of every video of LIBRARY with a bootstrap face detector into a YOLO dataset
    (data.yaml, images/, labels/, manifest.csv, COCO JSON, contact sheet), split by video; with
    `--classes characters`, one class per character of the last run instead."""
    _quiet_environment()
    from tasks.tools.dataset import DatasetError

    if classes == "characters":
        _character_dataset(library, out, workspace, {"min_examples": min_examples, "box": box,
                                                     "dedup_hamming": dedup_hamming, "seed": seed})
        return
    kinds = [k.strip() for k in classes.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("face", "head", "person")]
    if unknown or "face" not in kinds:
        _fail(f"--classes: unknown class {unknown[0]!r} (expected characters, or a list of face, head, person)"
              if unknown else f"--classes must include face (the teacher's class), got {classes!r}", 2)

    params = _params_or_exit(DatasetParams, {"teacher": teacher, "fps": fps, "max_side": max_side,
                                             "min_score": min_score, "dedup_hamming": dedup_hamming, "seed": seed,
                                             "kinds": list(dict.fromkeys(kinds))})
    if not library.is_dir():
        _fail(f"library folder not found: {library}", 2)
    from flows.detector_flows import dataset_flow

    try:
        summary = dataset_flow(str(library), str(out), params)
    except DatasetError as e:
        _fail(str(e), 1)
    typer.echo(f"dataset {out}: images {summary['images']}, boxes {summary['boxes']}, "
               f"{summary['duplicates_dropped']} near-duplicate frames dropped")
    for name, reason in summary["skipped"].items():
        typer.echo(f"SKIPPED {name}: {reason}")


def _character_dataset(library: Path, out: Path, workspace: Optional[Path], options: dict) -> None:
    from tasks.tools.character_dataset import CharacterDatasetParams
    from tasks.tools.dataset import DatasetError

    params = _params_or_exit(CharacterDatasetParams, options)
    if not library.is_dir():
        _fail(f"library folder not found: {library}", 2)
    from flows.detector_flows import character_dataset_flow
    from flows.library import default_workspace

    ws = workspace or default_workspace(library.resolve())
    try:
        summary = character_dataset_flow(str(ws), str(out), params.model_dump())
    except DatasetError as e:
        _fail(str(e), 1)
    typer.echo(f"characters dataset {out}: {len(summary['names'])} classes, images {summary['images']}, "
               f"boxes {summary['boxes']}, {summary['frames_left_out']} frames left out (minimum-examples rule)")
    width = max(len(str(r["name"])) for r in summary["class_balance"])
    typer.echo(f"{'class':>5}  {'name':<{width}}  {'train':>5} {'val':>5} {'test':>5}  videos  kept")
    for r in summary["class_balance"]:
        typer.echo(f"{r['class']!s:>5}  {r['name']:<{width}}  {r['train']:>5} {r['val']:>5} {r['test']:>5}  "
                   f"{r['videos']:>6}  {r['kept']}")


@app.command("train-detector")
def train_detector(
    dataset: Path = typer.Argument(..., help="Dataset folder written by `castline dataset`."),
    workspace: Path = typer.Option(..., "--workspace", "-w",
                                   help="Workspace whose detector registry gets the result (the one `castline run` uses)."),
    epochs: Optional[int] = field_option(TrainParams, "epochs"),
    imgsz: Optional[int] = field_option(TrainParams, "imgsz"),
    batch: Optional[int] = field_option(TrainParams, "batch"),
    checkpoint: Optional[Path] = field_option(TrainParams, "checkpoint", exists=True, dir_okay=False),
    model_yaml: Optional[str] = field_option(TrainParams, "model_yaml"),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Fine-tune YOLO on DATASET (CPU), compare it with the bootstrap detector on held-out videos, and
    register it; `castline run` (detector auto) then uses it when it passes the quality gate."""
    _quiet_environment()
    from tasks.tools.dataset import DatasetError, check_dataset
    from tasks.video.detect.yolo import QualityGate

    _use_device_or_exit(device)
    params = _params_or_exit(TrainParams, {"epochs": epochs, "imgsz": imgsz, "batch": batch,
                                           "checkpoint": checkpoint, "model_yaml": model_yaml})
    try:
        check_dataset(dataset)
    except DatasetError as e:
        _fail(str(e), 2)
    from flows.detector_flows import train_detector_flow

    entry = train_detector_flow(str(dataset), str(workspace), params)
    typer.echo(json.dumps(entry["metrics"], indent=2))
    typer.echo(f"registered {entry['id']}: {entry['weights']}")
    gate = QualityGate()
    passes = gate.passes(entry)
    typer.echo(f"{'passes' if passes else 'does NOT pass'} the quality gate (recall vs teacher >= "
               f"{gate.min_recall}, mAP50 >= {gate.min_map50})" + ("; `--detector auto` will use it" if passes else ""))


@app.command("eval")
def eval_workspace(
    workspace: Path = typer.Argument(..., help="Workspace of a finished `castline run` (its --workspace)."),
    truth: Optional[Path] = typer.Option(None, "--truth", "-t", show_default="data/ground_truth/montage",
                                         help="Ground-truth folder: <video stem>.json (+ .rttm) per scored video."),
) -> None:
    """Score WORKSPACE against ground truth: face clustering (WCP, NMI), diarization (DER, JER,
    cross-file DER) and speaker->face alignment; videos without ground truth are skipped.

    Prints the tables and writes WORKSPACE/library/eval.json."""
    _quiet_environment()
    truth = truth or Path(__file__).resolve().parents[1] / "data" / "ground_truth" / "montage"
    if not (workspace / "videos").is_dir():
        _fail(f"not a castline workspace (no videos/ folder): {workspace}", 2)
    if not truth.is_dir():
        _fail(f"ground-truth folder not found: {truth}", 2)
    from tasks.tools.evaluate import evaluate_workspace, format_report

    results = evaluate_workspace(workspace, truth)
    if not results["videos"]:
        _fail(f"no video of {workspace} has ground truth in {truth}", 1)
    typer.echo(format_report(results), nl=False)
    typer.echo(f"scores: {workspace / 'library' / 'eval.json'}")


@app.command("project")
def project_library(
    workspace: Path = typer.Argument(..., help="Workspace of a finished `castline run` (its --workspace)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="WORKSPACE/llm",
                                       help="Export folder. Trained adaptors go in OUT/adaptors/<image|voice>/."),
    dim: Optional[int] = field_option(AdaptorConfig, "out_dim", "--dim"),
    kind: Optional[str] = field_option(AdaptorConfig, "kind"),
    seed: Optional[int] = field_option(AdaptorConfig, "seed"),
) -> None:
    """Project every library character (face centroid) and speaker (voice centroid) into a language model's
    embedding space: Parquet + .npy, TensorBoard projector TSVs and a PCA map in OUT.

    Uses OUT/adaptors/<image|voice>/ when present (weights you trained); else an untrained adaptor from --seed."""
    _quiet_environment()
    if not (workspace / "library").is_dir():
        _fail(f"not a castline workspace (no library/ folder): {workspace}", 2)
    from tasks.tools.projection import export_library, registry_dims

    given = {"out_dim": dim, "kind": kind, "seed": seed}
    cfgs: dict = {"image": None, "voice": None}
    if any(v is not None for v in given.values()):
        cfgs = {name: _params_or_exit(AdaptorConfig, {"in_dim": d, **given}, {"out_dim": "--dim"}) if d else None
                for name, d in registry_dims(workspace).items()}
    try:
        summary = export_library(workspace, out or workspace / "llm", cfgs["image"], cfgs["voice"])
    except ValueError as e:  # a saved adaptor that contradicts the options, or nothing to project
        _fail(str(e), 2)
    for kind_name in ("characters", "speakers"):
        s = summary[kind_name]
        typer.echo(f"{kind_name}: none" if s is None else
                   f"{kind_name}: {s['identities']} x {s['raw'][1]} -> {s['projected'][1]} ({s['adaptor_source']})")
    typer.echo(f"written to {summary['out_dir']}")


@app.command("audio-features")
def audio_features(
    workspace: Path = typer.Argument(..., help="Workspace of a finished `castline run` (its --workspace)."),
    backend: str = typer.Option(..., help="Audio encoder: whisper (30 s window) | ast (10.24 s window)."),
    model: str = typer.Option(..., help="A local model folder, or a Hugging Face id already in the local cache."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="WORKSPACE/llm", help="Export folder."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """One audio feature vector per speaker turn of the last run, from a pretrained audio encoder, and per
    library speaker their mean weighted by speech time: Parquet + JSON in OUT.

    Each video's vectors are cached in WORKSPACE/cache/audio_features/, so a re-run encodes nothing again."""
    _quiet_environment()
    if not (workspace / "library").is_dir():
        _fail(f"not a castline workspace (no library/ folder): {workspace}", 2)
    if backend not in get_args(AudioBackend):
        _fail(f"--backend must be {' or '.join(get_args(AudioBackend))}, not {backend!r}", 2)
    _use_device_or_exit(device)
    from tasks.tools.audio_features import export_audio_features, make_extractor
    from tasks.core.errors import ModelUnavailable
    from tasks.core.stage import ProgressBar

    try:
        extractor = make_extractor(backend, model)
        summary = export_audio_features(workspace, extractor, out or workspace / "llm", ProgressBar("audio features"))
    except (ModelUnavailable, FileNotFoundError) as e:  # no such model offline; no finished run or its audio
        _fail(str(e), 1)
    c = summary["counts"]
    typer.echo(f"{backend} {model}: {c['turns']} turn(s) x {summary['dim']} of {c['speakers']} speaker(s) in "
               f"{c['videos']} video(s) ({c['videos_computed']} encoded, {c['videos_reused']} cached)")
    for name in summary["videos_without_audio"]:
        typer.echo(f"no audio: {name}")
    typer.echo(f"written to {Path(summary['files'][0]).parent}: "
               + ", ".join(Path(f).name for f in summary["files"]))


def main() -> None:
    app(prog_name="castline")


if __name__ == "__main__":
    sys.exit(main())
