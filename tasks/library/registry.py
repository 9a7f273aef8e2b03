"""Registry: library-level identities that persist across runs — characters (faces) and speakers (voices).

In: each video's local groups (characters or speakers) with an embedding, a weight and cannot-link
pairs. Out: global ids (`character_007`, `speaker_003`) kept in WORKSPACE/library/<kind>.parquet, one row
per member (video, local id, global id, embedding as list<float32>), so adding a video matches it against
what is there without touching older videos; `recluster` rebuilds all ids when thresholds change.
Each file records the embedding space its vectors are in (the embedder's name) and refuses another.
Backend: Parquet (pyarrow) + fcntl file lock — no server, readable by pandas/polars/DuckDB as is.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.formats import locked, write_parquet

log = logging.getLogger("castline")

if TYPE_CHECKING:
    from tasks.core.config import DiarizeParams, EmbedParams

Metric = Literal["euclidean", "cosine"]

CHARACTERS_REGISTRY = "characters.parquet"
SPEAKERS_REGISTRY = "speakers.parquet"

# Vectors of two embedders may share a dimension (GE2E and WeSpeaker voices are both 256-d) and still mean
# nothing to each other, so a registry is tied to a space: its embedder's name. Registries written before
# spaces were recorded hold the default embedders' vectors.
DEFAULT_SPACES = {"character": "dlib-resnet", "speaker": "ge2e"}
# Spaces of embedders castline no longer has: a registry of one is rebuilt from this run's videos (its vectors
# could never be compared again, and every video's results are recomputed with the new embedder anyway).
RETIRED_SPACES = {"ge2e"}


def face_space(params: "EmbedParams") -> str:
    """The space of a run's face vectors: its embedder's `name` (tasks/video/embed/__init__.py's DlibFaceEmbedder,
    tasks/video/embed/hf.py's "<family>:<model>"), known without loading the model."""
    return DEFAULT_SPACES["character"] if params.backend == "dlib" else f"{params.backend}:{params.model}"


def voice_space(params: "DiarizeParams") -> str:
    """The space of a run's voice centroids: CAM++ for the offline diarizer, the pipeline for pyannote."""
    return "campplus" if params.backend == "offline" else f"pyannote:{params.model}"


def registry_paths(workspace) -> tuple[Path, Path]:
    """Where a workspace (tasks.core.workspace.Workspace) keeps its character and speaker registries."""
    return workspace.library_dir / CHARACTERS_REGISTRY, workspace.library_dir / SPEAKERS_REGISTRY


def load_registries(workspace) -> tuple["Registry", "Registry"]:
    """Both registries of a workspace, read once: (characters by dlib distance, speakers by cosine), in
    whatever spaces they hold (readers compare nothing new against them)."""
    chars, voices = registry_paths(workspace)
    return load_registry(chars, "character", "euclidean"), load_registry(voices, "speaker", "cosine")


@dataclass(frozen=True)
class Member:
    """One local group of one video, and the global identity it was given."""

    video: str
    video_key: str  # cache key of the result the local groups came from: a new key means "re-assign"
    local_id: str
    global_id: str
    weight: float
    embedding: np.ndarray = field(compare=False)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def distances(a: np.ndarray, b: np.ndarray, metric: Metric) -> np.ndarray:
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    if metric == "cosine":
        return 1.0 - _normalise(a) @ _normalise(b).T
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def _first_free(kind: str, used: set[str]) -> str:
    n = 0
    while f"{kind}_{n:03d}" in used:
        n += 1
    return f"{kind}_{n:03d}"


@dataclass
class Registry:
    kind: str  # "character" | "speaker": also the prefix of global ids
    metric: Metric
    members: list[Member] = field(default_factory=list)
    space: str = ""  # the embedder's name [default: DEFAULT_SPACES of the kind]

    def __post_init__(self) -> None:
        self.space = self.space or DEFAULT_SPACES.get(self.kind, "")

    # -- reading --
    def global_ids(self) -> list[str]:
        return sorted({m.global_id for m in self.members})

    def centroids(self) -> dict[str, np.ndarray]:
        """Weighted mean embedding of each global identity (normalised first for cosine)."""
        out: dict[str, np.ndarray] = {}
        for gid in self.global_ids():
            ms = [m for m in self.members if m.global_id == gid]
            emb = np.stack([m.embedding for m in ms]).astype(np.float64)
            if self.metric == "cosine":
                emb = _normalise(emb)
            w = np.array([max(m.weight, 1e-6) for m in ms])[:, None]
            out[gid] = ((emb * w).sum(0) / w.sum()).astype(np.float32)
        return out

    def mapping(self, video: str) -> dict[str, str]:
        return {m.local_id: m.global_id for m in self.members if m.video == video}

    def videos(self) -> list[str]:
        return sorted({m.video for m in self.members})

    # -- writing --
    def assign(self, video: str, video_key: str, local_ids: Sequence[str], embeddings: np.ndarray,
               weights: Sequence[float], cannot_link: set[frozenset[str]], threshold: float) -> dict[str, str]:
        """Give each local group of `video` a global id: the nearest existing identity closer than
        `threshold` that no cannot-linked group of the same video already took, else a new one.
        A video already assigned with the same key keeps its ids (nothing is recomputed)."""
        others = next((m for m in self.members if m.video != video), None)
        if others is not None and len(others.embedding) != embeddings.shape[1]:
            raise ValueError(f"the {self.kind} registry holds {len(others.embedding)}-d vectors from another "
                             f"embedder, this run gives {embeddings.shape[1]}-d: use a separate --workspace per embedder")
        existing = [m for m in self.members if m.video == video]
        if existing and all(m.video_key == video_key for m in existing) and \
                {m.local_id for m in existing} == set(local_ids):
            return self.mapping(video)
        self.members = [m for m in self.members if m.video != video]
        centroids = self.centroids()
        gids = list(centroids)
        dist = distances(embeddings, np.stack([centroids[g] for g in gids]), self.metric) if gids else None
        used = set(gids)
        result: dict[str, str] = {}
        # Heaviest groups first: they carry the most evidence about who is who.
        for i in sorted(range(len(local_ids)), key=lambda i: (-weights[i], local_ids[i])):
            lid = local_ids[i]
            blocked = {result[o] for o in result if frozenset((lid, o)) in cannot_link}
            choice = None
            if dist is not None:
                for j in np.argsort(dist[i]):
                    if dist[i, j] >= threshold:
                        break
                    if gids[j] not in blocked:
                        choice = gids[j]
                        break
            if choice is None:
                choice = _first_free(self.kind, used)
                used.add(choice)
            result[lid] = choice
        self.members += [Member(video, video_key, lid, result[lid], float(weights[i]), embeddings[i].astype(np.float32))
                         for i, lid in enumerate(local_ids)]
        return result

    def merge(self, into: str, other: str) -> None:
        """Identity `other` becomes `into`: every member of it, in every video, takes that id."""
        self.members = [replace(m, global_id=into) if m.global_id == other else m for m in self.members]

    def recluster(self, threshold: float, separate_within_video: bool) -> None:
        """Rebuild every global id from all members at once (average linkage; with
        `separate_within_video`, two groups of one video never merge), keeping ids stable where a new
        cluster's majority already had one."""
        from tasks.video.cluster import average_linkage

        if not self.members:
            return
        emb = np.stack([m.embedding for m in self.members])
        same_video = [(i, j) for i, a in enumerate(self.members) for j, b in enumerate(self.members)
                      if i < j and a.video == b.video] if separate_within_video else []
        labels = average_linkage(distances(emb, emb, self.metric), threshold, same_video)
        old_ids = [m.global_id for m in self.members]
        new_ids: dict[int, str] = {}
        taken: set[str] = set()
        for lab in sorted(set(labels), key=lambda lab: (-int((labels == lab).sum()), lab)):
            # The old id carrying most weight in the new cluster survives; ties go to the older id.
            votes: dict[str, float] = {}
            for i in np.flatnonzero(labels == lab):
                if old_ids[i] not in taken:
                    votes[old_ids[i]] = votes.get(old_ids[i], 0.0) + self.members[i].weight
            if votes:
                gid = min(votes, key=lambda g: (-votes[g], g))
                new_ids[lab] = gid
                taken.add(gid)
        for lab in sorted(set(labels)):
            if lab not in new_ids:
                new_ids[lab] = _first_free(self.kind, taken)
                taken.add(new_ids[lab])
        self.members = [replace(m, global_id=new_ids[lab]) for m, lab in zip(self.members, labels)]


# --- storage -------------------------------------------------------------------------------------

def _table(reg: Registry) -> pa.Table:
    dim = len(reg.members[0].embedding) if reg.members else 0
    return pa.table({
        "video": pa.array([m.video for m in reg.members], pa.string()),
        "video_key": pa.array([m.video_key for m in reg.members], pa.string()),
        "local_id": pa.array([m.local_id for m in reg.members], pa.string()),
        "global_id": pa.array([m.global_id for m in reg.members], pa.string()),
        "weight": pa.array([m.weight for m in reg.members], pa.float64()),
        "embedding": pa.array([m.embedding.astype(np.float32).tolist() for m in reg.members],
                              pa.list_(pa.float32(), dim) if dim else pa.list_(pa.float32())),
    }, metadata={b"kind": reg.kind.encode(), b"metric": reg.metric.encode(), b"space": reg.space.encode()})


def _check_space(path: Path, kind: str, schema: pa.Schema, rows: int, space: str | None) -> str:
    """The space the file at `path` records (its kind's default when it records none); a ValueError when
    `space` is given, differs, and the file holds vectors: another embedder's cannot be compared with this run's.
    A retired embedder's registry is no obstacle: it is rebuilt (load_registry)."""
    stored = (schema.metadata or {}).get(b"space", b"").decode() or DEFAULT_SPACES.get(kind, "")
    if space is not None and space != stored and rows and stored not in RETIRED_SPACES:
        raise ValueError(f"the {kind} registry {path} holds vectors of {stored}, this run gives {space}: "
                         f"use a separate --workspace per embedder")
    return stored


def load_registry(path: Path, kind: str, metric: Metric, space: str | None = None) -> Registry:
    """The registry at `path`; with `space`, one whose vectors are in that space (an empty one takes it),
    else the ValueError of _check_space."""
    if not path.exists():
        return Registry(kind, metric, space=space or "")
    t = pq.read_table(path)
    stored = _check_space(path, kind, t.schema, t.num_rows, space)
    if space is not None and stored != space and stored in RETIRED_SPACES:
        log.warning("the %s registry %s holds vectors of the retired %s embedder: rebuilding it in %s",
                    kind, path, stored, space)
        return Registry(kind, metric, space=space)
    cols = t.to_pydict()
    members = [Member(v, k, l, g, w, np.asarray(e, np.float32)) for v, k, l, g, w, e in
               zip(cols["video"], cols["video_key"], cols["local_id"], cols["global_id"], cols["weight"],
                   cols["embedding"])]
    return Registry(kind, metric, members, space if space is not None else stored)


def check_spaces(workspace, face: str, voice: str) -> None:
    """load_registry's refusal, from the files' metadata alone: a run checks it before hours of per-video
    work, not after."""
    for path, kind, space in zip(registry_paths(workspace), ("character", "speaker"), (face, voice)):
        if path.exists():
            meta = pq.ParquetFile(path)
            _check_space(path, kind, meta.schema_arrow, meta.metadata.num_rows, space)


def save_registry(path: Path, reg: Registry) -> None:
    write_parquet(path, _table(reg))


@contextmanager
def open_registry(path: Path, kind: str, metric: Metric, space: str | None = None) -> Iterator[Registry]:
    """Load (refusing another `space`, see load_registry), let the caller change, save — under an exclusive
    lock, so two concurrent runs of the same library take turns instead of overwriting each other's assignments."""
    with locked(path.with_suffix(".lock")):
        reg = load_registry(path, kind, metric, space)
        yield reg
        save_registry(path, reg)
