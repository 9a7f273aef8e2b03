"""`castline` tools beside the pipeline: YOLO datasets (faces or the characters themselves), detector training,
evaluation against ground truth, exports into a language model's space, and per-character faces and voices for
other trainers. Thin typer commands, as in flows/cli.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, get_args

import typer

from flows.cli_options import (
    DeviceOpt, app, fail, field_option, flow_environment, params_or_exit, prefect_api_or_exit, quiet_environment,
    use_device_or_exit,
)
from tasks.tools.params import AdaptorConfig, AudioBackend, DatasetParams, ExportParams, TrainParams


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
    flow_environment()
    from tasks.tools.dataset import DatasetError

    if classes == "characters":
        _character_dataset(library, out, workspace, {"min_examples": min_examples, "box": box,
                                                     "dedup_hamming": dedup_hamming, "seed": seed})
        return
    kinds = [k.strip() for k in classes.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("face", "head", "person")]
    if unknown or "face" not in kinds:
        fail(f"--classes: unknown class {unknown[0]!r} (expected characters, or a list of face, head, person)"
             if unknown else f"--classes must include face (the teacher's class), got {classes!r}", 2)

    params = params_or_exit(DatasetParams, {"teacher": teacher, "fps": fps, "max_side": max_side,
                                             "min_score": min_score, "dedup_hamming": dedup_hamming, "seed": seed,
                                             "kinds": list(dict.fromkeys(kinds))})
    if not library.is_dir():
        fail(f"library folder not found: {library}", 2)
    from flows.detector_flows import dataset_flow

    prefect_api_or_exit()
    try:
        summary = dataset_flow(str(library), str(out), params)
    except DatasetError as e:
        fail(str(e), 1)
    typer.echo(f"dataset {out}: images {summary['images']}, boxes {summary['boxes']}, "
               f"{summary['duplicates_dropped']} near-duplicate frames dropped")
    for name, reason in summary["skipped"].items():
        typer.echo(f"SKIPPED {name}: {reason}")


def _character_dataset(library: Path, out: Path, workspace: Optional[Path], options: dict) -> None:
    from tasks.tools.character_dataset import CharacterDatasetParams
    from tasks.tools.dataset import DatasetError

    params = params_or_exit(CharacterDatasetParams, options)
    if not library.is_dir():
        fail(f"library folder not found: {library}", 2)
    from flows.detector_flows import character_dataset_flow
    from flows.library import default_workspace

    ws = workspace or default_workspace(library.resolve())
    prefect_api_or_exit()
    try:
        summary = character_dataset_flow(str(ws), str(out), params.model_dump())
    except DatasetError as e:
        fail(str(e), 1)
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
    register it; `castline run` (detector auto) then uses it for each box kind whose class passes the quality gate."""
    flow_environment()
    from tasks.tools.dataset import DatasetError, check_dataset
    from tasks.core.records import KINDS
    from tasks.video.detect.yolo import QualityGate

    use_device_or_exit(device)
    params = params_or_exit(TrainParams, {"epochs": epochs, "imgsz": imgsz, "batch": batch,
                                           "checkpoint": checkpoint, "model_yaml": model_yaml})
    try:
        check_dataset(dataset)
    except DatasetError as e:
        fail(str(e), 2)
    from flows.detector_flows import train_detector_flow

    prefect_api_or_exit()
    entry = train_detector_flow(str(dataset), str(workspace), params)
    typer.echo(json.dumps(entry["metrics"], indent=2))
    typer.echo(f"registered {entry['id']}: {entry['weights']}")
    gate = QualityGate()
    passing = [kind for kind in KINDS if gate.passes_class(entry, kind)]
    typer.echo(f"quality gate per class ({gate.describe()}): "
               + (f"passes for {', '.join(passing)}; `--detector auto` uses it for those of detect.kinds" if passing
                  else "does NOT pass for any kind"))


@app.command("eval")
def eval_workspace(
    workspace: Path = typer.Argument(..., help="Workspace of a finished `castline run` (its --workspace)."),
    truth: Optional[Path] = typer.Option(None, "--truth", "-t", show_default="data/ground_truth/montage",
                                         help="Ground-truth folder: <video stem>.json (+ .rttm) per scored video."),
) -> None:
    """Score WORKSPACE against ground truth: face clustering (WCP, NMI), diarization (DER, JER,
    cross-file DER) and speaker->face alignment; videos without ground truth are skipped.

    Prints the tables and writes WORKSPACE/library/eval.json."""
    quiet_environment()
    truth = truth or Path(__file__).resolve().parents[1] / "data" / "ground_truth" / "montage"
    if not (workspace / "videos").is_dir():
        fail(f"not a castline workspace (no videos/ folder): {workspace}", 2)
    if not truth.is_dir():
        fail(f"ground-truth folder not found: {truth}", 2)
    from tasks.tools.evaluate import evaluate_workspace, format_report

    results = evaluate_workspace(workspace, truth)
    if not results["videos"]:
        fail(f"no video of {workspace} has ground truth in {truth}", 1)
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
    quiet_environment()
    if not (workspace / "library").is_dir():
        fail(f"not a castline workspace (no library/ folder): {workspace}", 2)
    from tasks.tools.projection import export_library, registry_dims

    given = {"out_dim": dim, "kind": kind, "seed": seed}
    cfgs: dict = {"image": None, "voice": None}
    if any(v is not None for v in given.values()):
        cfgs = {name: params_or_exit(AdaptorConfig, {"in_dim": d, **given}, {"out_dim": "--dim"}) if d else None
                for name, d in registry_dims(workspace).items()}
    try:
        summary = export_library(workspace, out or workspace / "llm", cfgs["image"], cfgs["voice"])
    except ValueError as e:  # a saved adaptor that contradicts the options, or nothing to project
        fail(str(e), 2)
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
    quiet_environment()
    if not (workspace / "library").is_dir():
        fail(f"not a castline workspace (no library/ folder): {workspace}", 2)
    if backend not in get_args(AudioBackend):
        fail(f"--backend must be {' or '.join(get_args(AudioBackend))}, not {backend!r}", 2)
    use_device_or_exit(device)
    from tasks.tools.audio_features import export_audio_features, make_extractor
    from tasks.core.errors import ModelUnavailable
    from tasks.core.stage import ProgressBar

    try:
        extractor = make_extractor(backend, model)
        summary = export_audio_features(workspace, extractor, out or workspace / "llm", ProgressBar("audio features"))
    except (ModelUnavailable, FileNotFoundError) as e:  # no such model offline; no finished run or its audio
        fail(str(e), 1)
    c = summary["counts"]
    typer.echo(f"{backend} {model}: {c['turns']} turn(s) x {summary['dim']} of {c['speakers']} speaker(s) in "
               f"{c['videos']} video(s) ({c['videos_computed']} encoded, {c['videos_reused']} cached)")
    for name in summary["videos_without_audio"]:
        typer.echo(f"no audio: {name}")
    typer.echo(f"written to {Path(summary['files'][0]).parent}: "
               + ", ".join(Path(f).name for f in summary["files"]))


@app.command("export")
def export_characters(
    library: Path = typer.Argument(..., help="Folder of videos a `castline run` has processed."),
    out: Path = typer.Option(..., "--out", "-o", help="Export folder to write (replaced in one rename)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", show_default="LIBRARY/.castline",
                                             help="The run's workspace."),
    max_faces: Optional[int] = field_option(ExportParams, "max_faces"),
    max_clips: Optional[int] = field_option(ExportParams, "max_clips"),
) -> None:
    """Export the last run's characters for other trainers: OUT/faces/<class>/<video>_<t>.jpg (diverse face
    crops, class names as the characters dataset's), OUT/voices/<voice or character>/<video>_<start>-<end>.wav
    (whole speaker turns) with OUT/voices/clips.csv (voice, character, times, subtitle text), and export.json."""
    quiet_environment()
    from tasks.tools.character_export import export_characters as export
    from tasks.tools.dataset import DatasetError

    params = params_or_exit(ExportParams, {"max_faces": max_faces, "max_clips": max_clips})
    if not library.is_dir():
        fail(f"library folder not found: {library}", 2)
    from flows.library import default_workspace

    try:
        summary = export(workspace or default_workspace(library.resolve()), out, params)
    except DatasetError as e:
        fail(str(e), 1)
    for name, entry in summary["faces"].items():
        typer.echo(f"faces  {name}: {entry['crops']} crop(s) from {len(entry['videos'])} video(s)")
    for name, entry in (summary["voices"] or {}).items():
        typer.echo(f"voices {name}: {entry['clips']} clip(s), {entry['seconds']:.1f} s ({', '.join(entry['voices'])})")
    for note in summary["notes"]:
        typer.echo(note)
    typer.echo(f"written to {out}")
