"""Projection into an LLM's token-embedding space. In: the character and speaker registries and their names
(tasks/library/view.py), adaptor configs or folders.
Out: raw and projected vectors per identity and per member (Parquet, .npy), TensorBoard projector TSVs, a PCA map.
Backends: torch (LayerNorm + linear or 2-layer GELU MLP adaptor, safetensors weights), OpenCV (HD views), matplotlib.
"""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from tasks.core.formats import (
    atomic_dir,
    atomic_path,
    read_json,
    vector_column,
    write_json,
    write_npy,
    write_parquet,
    write_text,
)
from tasks.library.registry import Registry
from tasks.library.view import LibraryView
from tasks.core.workspace import Workspace
from tasks.tools.params import AdaptorConfig

WEIGHTS_FILE = "adaptor.safetensors"
CONFIG_FILE = "adaptor.json"
# Hugging Face's `initializer_range` for Phi-3 and Llama: an untrained adaptor starts where the LLM's own
# training recipe would start it, so a user who fine-tunes from these weights gets the usual starting point.
INIT_STD = 0.02


def _skeleton(cfg: AdaptorConfig) -> nn.Sequential:
    """The adaptor's layers on the meta device: no memory and no draw from torch's global RNG, which
    nn.Linear's own initialisation would advance (changing what unrelated seeded code sees)."""
    with torch.device("meta"):
        layers: list[tuple[str, nn.Module]] = [("norm", nn.LayerNorm(cfg.in_dim))] if cfg.layernorm else []
        if cfg.kind == "linear":
            layers.append(("proj", nn.Linear(cfg.in_dim, cfg.out_dim)))
        else:
            layers += [("fc1", nn.Linear(cfg.in_dim, cfg.out_dim)), ("act", nn.GELU()),
                       ("fc2", nn.Linear(cfg.out_dim, cfg.out_dim))]
        return nn.Sequential(OrderedDict(layers))


def build_adaptor(cfg: AdaptorConfig) -> nn.Module:
    """LayerNorm (optional) + Linear or Linear-GELU-Linear, weights drawn from a generator seeded with
    `cfg.seed` alone: the same config gives bit-identical weights in any process."""
    module = _skeleton(cfg).to_empty(device="cpu")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        for layer in module:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, INIT_STD, generator=gen)
                nn.init.zeros_(layer.bias)
            elif isinstance(layer, nn.LayerNorm):
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)
    return module.eval()


def save_adaptor(module: nn.Module, cfg: AdaptorConfig, folder: str | Path) -> Path:
    """`folder/adaptor.safetensors` + `folder/adaptor.json`, appearing together in one rename (the folder
    is replaced whole, so weights and config never disagree)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in (WEIGHTS_FILE, CONFIG_FILE)) \
        if folder.is_dir() else []
    if foreign:
        # Replacing the folder would delete these.
        raise ValueError(f"{folder} holds files that are not an adaptor's ({', '.join(foreign[:3])}); save elsewhere")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    with atomic_dir(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        write_json(tmp / CONFIG_FILE, cfg.model_dump())
    return folder


def load_adaptor(folder: str | Path) -> tuple[nn.Module, AdaptorConfig]:
    """The adaptor saved in `folder`; weights stored in another dtype (bf16 from training) become float32.
    Key names must match build_adaptor's (norm.*, proj.* or fc1.*, fc2.*)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = AdaptorConfig.model_validate(read_json(folder / CONFIG_FILE))
    state = {k: v.to(torch.float32) for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    module = _skeleton(cfg)
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval(), cfg


def project(vectors: np.ndarray, module: nn.Module) -> np.ndarray:
    """(n, in_dim) -> (n, out_dim) float32, in eval mode without autograd."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected an (n, in_dim) matrix, got shape {x.shape}")
    module.eval()
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy().astype(np.float32, copy=False)


# --- HD views (Phi-3-vision style) ---------------------------------------------------------------

def _resize_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Long side scaled to `size`, centred on a black square: black because video letterboxing already is,
    so the pad looks like bars the vision encoder has seen on frames."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(np.ascontiguousarray(image), (nw, nh),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), image.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out


def hd_views(image_rgb: np.ndarray, view_size: int, grid: tuple[int, int]) -> list[np.ndarray]:
    """[global view, then grid cells row by row], each (view_size, view_size, 3) of the input's dtype:
    1 + rows*cols views. The global view keeps the scene's layout; the cells keep detail that one
    encoder-sized view of a whole frame loses (small faces). Cell edges are rounded so every pixel is in
    exactly one cell. (Phi-3-vision puts the global view last; the order here is only a convention.)"""
    rows, cols = grid
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    if rows < 1 or cols < 1 or h < rows or w < cols or view_size < 1:
        raise ValueError(f"cannot cut a {h}x{w} image into a {rows}x{cols} grid of {view_size}-pixel views")
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    cells = [image_rgb[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] for r in range(rows) for c in range(cols)]
    return [_resize_pad(image_rgb, view_size)] + [_resize_pad(c, view_size) for c in cells]


def concat_with_separators(features: Sequence[np.ndarray], separator: np.ndarray) -> np.ndarray:
    """Per-view feature rows, in view order, with `separator` between consecutive views, as one sequence
    the adaptor projects into LLM tokens: views of n_1..n_k rows of width d (a 1-D vector is one row) give
    (n_1 + ... + n_k + k - 1, d) float32; no views give (0, d). The separator tells the LLM where one view
    ends (Phi-3-vision learns it with the projection; pass the trained one)."""
    sep = np.asarray(separator, np.float32).reshape(1, -1)
    parts: list[np.ndarray] = []
    for i, f in enumerate(features):
        rows = np.atleast_2d(np.asarray(f, np.float32))
        if rows.ndim != 2 or rows.shape[1] != sep.shape[1]:
            raise ValueError(f"view {i} has feature shape {rows.shape}, the separator width is {sep.shape[1]}")
        parts += [sep, rows] if parts else [rows]
    return np.concatenate(parts) if parts else np.zeros((0, sep.shape[1]), np.float32)


# --- library export ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Modality:
    name: str  # "image" | "voice": the adaptor folder's name
    kind: str  # registry kind, also the prefix of global ids
    plural: str
    metric: Literal["euclidean", "cosine"]


IMAGE = _Modality("image", "character", "characters", "euclidean")
VOICE = _Modality("voice", "speaker", "speakers", "cosine")


def _workspace(root: Path) -> Workspace:
    # Not Workspace.open: a mistyped path must fail, not become an empty workspace.
    ws = Workspace(Path(root).expanduser().resolve())
    if not ws.library_dir.is_dir():
        raise FileNotFoundError(f"not a castline workspace (no library/ folder): {root}")
    return ws


def _registries(view: LibraryView) -> dict[_Modality, Registry]:
    return {IMAGE: view.characters, VOICE: view.speakers}


def registry_dims(workspace_root: Path) -> dict[str, int | None]:
    """{"image": face embedding width, "voice": voice embedding width}; None where a registry is empty.
    What an AdaptorConfig's in_dim must be for export_library."""
    regs = _registries(LibraryView.load(_workspace(workspace_root)))
    return {m.name: (len(r.members[0].embedding) if r.members else None) for m, r in regs.items()}


def _resolve_adaptor(folder: Path, asked: AdaptorConfig | None, in_dim: int) -> tuple[nn.Module, AdaptorConfig, str]:
    """A saved adaptor wins (trained weights are the point of re-running); asking for a different one is an
    error rather than a silent choice between the two."""
    if (folder / CONFIG_FILE).exists():
        module, cfg = load_adaptor(folder)
        if asked is not None and asked != cfg:
            raise ValueError(f"{folder} holds an adaptor {cfg.model_dump()} but {asked.model_dump()} was asked for: "
                             "move the folder away, or ask for no configuration to use it")
        source = str(folder)
    else:
        cfg = asked or AdaptorConfig(in_dim=in_dim)
        module, source = build_adaptor(cfg), f"untrained, seed {cfg.seed}"
    if cfg.in_dim != in_dim:
        raise ValueError(f"adaptor in_dim is {cfg.in_dim} but the registry's embeddings have {in_dim} values")
    return module, cfg, source


@dataclass(frozen=True)
class _Export:
    modality: _Modality
    cfg: AdaptorConfig
    source: str
    ids: list[str]
    names: list[str | None]
    n_members: list[int]
    raw: np.ndarray  # (identities, in_dim) registry centroids
    projected: np.ndarray  # (identities, out_dim)
    members: list[tuple[str, str, str, float]]  # video, local id, global id, weight
    member_raw: np.ndarray  # (members, in_dim)
    member_projected: np.ndarray  # (members, out_dim)


def _metadata(e: _Export) -> dict[bytes, bytes]:
    return {b"kind": e.modality.kind.encode(), b"adaptor": json.dumps(e.cfg.model_dump()).encode(),
            b"adaptor_source": e.source.encode()}


def _tsv_field(text: str) -> str:
    """Whitespace runs (tabs, newlines) become one space: a TSV field, and a label the font can draw."""
    return " ".join(text.split())


def _plot_map(exports: list[_Export], out: Path) -> None:
    """Both kinds in one PCA of the projected vectors: they share the LLM's width, which raw faces
    (128) and voices (256) do not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.concatenate([e.projected for e in exports]).astype(np.float64)
    x -= x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = np.zeros((len(x), 2))
    xy[:, :min(2, len(vt))] = x @ vt[:2].T
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    start = 0
    for e, color, marker in zip(exports, ("#1f77b4", "#d95f02"), ("o", "^")):
        pts = xy[start:start + len(e.ids)]
        start += len(e.ids)
        ax.scatter(pts[:, 0], pts[:, 1], c=color, marker=marker, s=40, label=f"{e.modality.plural} ({e.source})")
        for (px, py), gid, name in zip(pts, e.ids, e.names):
            ax.annotate(_tsv_field(name or gid), (px, py), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"library identities in LLM space ({exports[0].cfg.out_dim}-d), PCA", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _write_exports(exports: Sequence[_Export], out_dir: Path) -> None:
    """Each kind's identities and members, raw and projected, as Parquet and .npy; ids.json gives the row order."""
    for e in exports:
        p = e.modality.plural
        write_parquet(out_dir / f"{p}_projected.parquet", {
            "global_id": pa.array(e.ids, pa.string()), "name": pa.array(e.names, pa.string()),
            "n_members": pa.array(e.n_members, pa.int32()), "raw": vector_column(e.raw),
            "projected": vector_column(e.projected),
        }, _metadata(e))
        video, local, gid, weight = (list(c) for c in zip(*e.members))
        write_parquet(out_dir / f"{e.modality.kind}_members_projected.parquet", {
            "video": pa.array(video, pa.string()), "local_id": pa.array(local, pa.string()),
            "global_id": pa.array(gid, pa.string()), "weight": pa.array(weight, pa.float64()),
            "raw": vector_column(e.member_raw), "projected": vector_column(e.member_projected),
        }, _metadata(e))
        write_npy(out_dir / f"{p}_raw.npy", e.raw)
        write_npy(out_dir / f"{p}_projected.npy", e.projected)
    by_plural = {e.modality.plural: e for e in exports}
    write_json(out_dir / "ids.json",
               {p: by_plural[p].ids if p in by_plural else [] for p in ("characters", "speakers")})


def _write_projector(exports: Sequence[_Export], out_dir: Path) -> None:
    """TensorBoard's projector files (or projector.tensorflow.org: load vectors.tsv, then metadata.tsv)."""
    buf = io.StringIO()
    np.savetxt(buf, np.concatenate([e.projected for e in exports]), fmt="%.6g", delimiter="\t")
    write_text(out_dir / "projector" / "vectors.tsv", buf.getvalue())
    meta = ["id\tname\tkind"] + [f"{_tsv_field(g)}\t{_tsv_field(n or g)}\t{e.modality.kind}"
                                 for e in exports for g, n in zip(e.ids, e.names)]
    write_text(out_dir / "projector" / "metadata.tsv", "\n".join(meta) + "\n")
    write_text(out_dir / "projector" / "projector_config.pbtxt",
               'embeddings {\n  tensor_name: "castline"\n  tensor_path: "vectors.tsv"\n'
               '  metadata_path: "metadata.tsv"\n}\n')


def export_library(workspace_root: Path, out_dir: Path, cfg_image: AdaptorConfig | None,
                   cfg_voice: AdaptorConfig | None) -> dict:
    """Project every library character (face centroid) and speaker (voice centroid), and each of their
    members, into the LLM space; write them under `out_dir` (each file atomically) and return a summary.

    Adaptors: `out_dir/adaptors/<image|voice>/` when present (trained weights), else built from the
    config's seed (a None config means in_dim from the registry, DEFAULT_OUT_DIM, linear, seed 0).
    An empty registry is skipped and its old files removed. Files, for <kind> in characters | speakers:
      <kind>_projected.parquet   global_id, name, n_members, raw [in_dim], projected [out_dim]
      <kind>_members_projected.parquet  video, local_id, global_id, weight, raw, projected
      <kind>_raw.npy (n, in_dim), <kind>_projected.npy (n, out_dim); ids.json: row order of both
      projector/ vectors.tsv, metadata.tsv (id, name, kind), projector_config.pbtxt; map.png; export.json
    """
    out_dir = Path(out_dir)
    ws = _workspace(workspace_root)
    view = LibraryView.load(ws)
    name_of = {IMAGE: view.character_name, VOICE: view.speaker_name}
    exports: list[_Export] = []
    for modality, reg in _registries(view).items():
        if not reg.members:
            for stale in (f"{modality.plural}_projected.parquet", f"{modality.kind}_members_projected.parquet",
                          f"{modality.plural}_raw.npy", f"{modality.plural}_projected.npy"):
                (out_dir / stale).unlink(missing_ok=True)
            continue
        asked = cfg_image if modality is IMAGE else cfg_voice
        module, cfg, source = _resolve_adaptor(out_dir / "adaptors" / modality.name, asked,
                                               len(reg.members[0].embedding))
        centroids = reg.centroids()
        ids = list(centroids)
        raw = np.stack([centroids[g] for g in ids])
        member_raw = np.stack([m.embedding for m in reg.members]).astype(np.float32)
        exports.append(_Export(
            modality, cfg, source, ids, [name_of[modality](g) for g in ids],
            [sum(m.global_id == g for m in reg.members) for g in ids], raw, project(raw, module),
            [(m.video, m.local_id, m.global_id, m.weight) for m in reg.members], member_raw,
            project(member_raw, module)))
    if not exports:
        raise ValueError(f"the registries of {workspace_root} have no members: run `castline run` first")
    if len({e.cfg.out_dim for e in exports}) > 1:
        # One LLM, one embedding width: vectors of two widths cannot be tokens of the same model.
        raise ValueError(f"image and voice adaptors project to different widths: {[e.cfg.out_dim for e in exports]}")

    _write_exports(exports, out_dir)
    _write_projector(exports, out_dir)
    _plot_map(exports, out_dir / "map.png")

    summary = {
        "out_dir": str(out_dir),
        "out_dim": exports[0].cfg.out_dim,
        **{p: None for p in ("characters", "speakers")},
        **{e.modality.plural: {
            "identities": len(e.ids), "members": len(e.members),
            "raw": list(e.raw.shape), "projected": list(e.projected.shape),
            "member_projected": list(e.member_projected.shape),
            "adaptor": e.cfg.model_dump(), "adaptor_source": e.source,
        } for e in exports},
    }
    write_json(out_dir / "export.json", summary)
    return summary
