"""Where every result lives, and the keys that make re-runs skip finished work.

In: a workspace folder, a video path, stage names and parameters. Out: stable paths
`cache/<stage>/<video-id>/<key>.<ext>` whose key (tasks/video/pipeline.py) hashes the video's content, the stage's
parameters, the upstream keys, the source of the stage module and of every castline module it imports, and
the stats of its model files; human-facing outputs under `videos/<name>/` and `library/`. A result exists
only once it was renamed into place, so "exists" means "finished".
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from tasks.core.errors import ModelUnavailable
from tasks.core.formats import TEMP_SUFFIX, read_json, write_json

_HASH_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """BLAKE2b of the whole file, streamed (never the whole file in memory)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_identity(folder: str | Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file under a model folder: replacing weights or settings changes
    it, and stat calls cost nothing where hashing the weights would cost seconds per use."""
    folder = Path(folder)
    return sorted((p.relative_to(folder).as_posix(), (st := p.stat()).st_size, st.st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


def model_identity(path: str | Path) -> list[tuple[str, int, int]]:
    """folder_identity of a model folder, or of a single weights file (named by its file name)."""
    path = Path(path)
    if path.is_dir():
        return folder_identity(path)
    if path.is_file():
        return [(path.name, (st := path.stat()).st_size, st.st_mtime_ns)]
    raise ModelUnavailable(f"model file not found: {path}")


def local_model(model: str, unavailable: Callable[[str], ModelUnavailable] | None = None) -> Path:
    """`model` itself when it is a file or folder on disk, else the snapshot of the Hugging Face id `model` in the
    local cache (looked up with local_files_only: never downloaded). Otherwise raises `unavailable(reason)`, a
    stage's own message [default: ModelUnavailable.offline]."""
    unavailable = unavailable or (lambda why: ModelUnavailable.offline(model, why))
    path = Path(model).expanduser()
    if path.exists():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except HFValidationError:
        raise unavailable("no such file or folder, and not a Hugging Face id") from None
    except FileNotFoundError:  # LocalEntryNotFoundError, IncompleteSnapshotError
        raise unavailable("no such file or folder, and not in the local Hugging Face cache") from None


def model_folder(model: str, unavailable: Callable[[str], ModelUnavailable] | None = None) -> Path:
    """The folder of a model's files (a config file's folder): new weights in the same folder, or a new snapshot
    of the same id, must not reuse results cached from the old ones."""
    source = local_model(model, unavailable)
    return source if source.is_dir() else source.parent


def params_digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `tasks` package


def module_file(module_name: str) -> Path | None:
    """The source file of a castline module, found without importing it (importing a backend would load
    torch); None for a name that is not a module, such as a function imported from one."""
    rel = Path(*module_name.split("."))
    for candidate in (_PACKAGE_ROOT / rel.with_suffix(".py"), _PACKAGE_ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)  # read once per process, not once per stage and video
def module_source(module_name: str) -> str:
    return module_file(module_name).read_text(encoding="utf-8")


# CPython 3.11's ast.parse is not safe from two threads at once: a resumed run whose video computed the keys of
# its two branches together failed with "SystemError: AST constructor recursion depth mismatch".
_PARSE = threading.Lock()

# A stage's key hashes its parameters' values, so the module that declares them is not part of its code:
# a new default value re-keys the stages that read it, a new description does not.
BY_VALUE = {"tasks.core.config"}


class _Syntax(NamedTuple):
    digest: str  # of the syntax tree without docstrings
    imports: frozenset[str]  # castline modules imported anywhere, including inside functions (how backends load)


def _drop_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _castline_imports(module_name: str, tree: ast.Module) -> frozenset[str]:
    is_package = module_file(module_name).name == "__init__.py"
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one package up per extra dot
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            # `from tasks import formats` imports a module by the name it lists.
            names.update([base, *(f"{base}.{a.name}" for a in node.names)])
    return frozenset(n for n in names if n.split(".")[0] == "tasks" and n not in BY_VALUE and module_file(n) is not None)


# One parse per module and process, however many closures and keys ask; its source is read once too, so
# neither can change within a process.
@lru_cache(maxsize=None)
def _syntax(module_name: str) -> _Syntax:
    with _PARSE:
        tree = _drop_docstrings(ast.parse(module_source(module_name)))
    digest = hashlib.blake2b(ast.dump(tree).encode(), digest_size=6).hexdigest()
    return _Syntax(digest, _castline_imports(module_name, tree))


def code_version(module_name: str) -> str:
    """Hash of what one module runs: its syntax tree without docstrings. Comments, docstrings and line breaks
    are where the calibration notes and reasons live; editing them must not re-run every finished stage of a
    library (hours of video), while any change to a statement, a constant or a name re-keys."""
    return _syntax(module_name).digest


@lru_cache(maxsize=None)
def module_closure(module_name: str) -> tuple[str, ...]:
    """The module and every castline module it imports, directly or through others, sorted."""
    seen, todo = set(), [module_name]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _syntax(name).imports
    return tuple(sorted(seen))


@lru_cache(maxsize=None)  # a library run of 300 videos asked 3,300 times (2.9 s of hashing)
def code_fingerprint(module_name: str) -> str:
    """Hash of the code of a module and everything it imports from castline: editing a backend, a helper or
    a format invalidates the results of every stage that uses it."""
    return params_digest([(m, code_version(m)) for m in module_closure(module_name)])


_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_name(name: str) -> str:
    """A folder name for a video name (which may hold '/', spaces, any script): letters of any script,
    digits, '_', '.', '-' kept; when anything had to change, a hash of the name keeps two names apart."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "video"
    if cleaned == name:
        return cleaned
    return f"{cleaned}-{hashlib.blake2b(name.encode(), digest_size=3).hexdigest()}"


@dataclass(frozen=True)
class StageKey:
    """Identifies one stage's result for one video: what went in and which code made it."""

    stage: str
    video_id: str
    key: str


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        root = Path(root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    # -- content identity --
    def video_id(self, video: str | Path) -> str:
        """Content hash of a video, remembered by (path, size, mtime) so big files hash once."""
        video = Path(video)
        st = video.stat()
        index_path = self.root / "index" / f"{params_digest(str(video.resolve()))}.json"
        stamp = [st.st_size, st.st_mtime_ns]
        if index_path.exists():
            entry = read_json(index_path)
            if entry.get("stamp") == stamp:
                return entry["digest"]
        digest = file_digest(video)
        write_json(index_path, {"path": str(video.resolve()), "stamp": stamp, "digest": digest})
        return digest

    # -- paths --
    def stage_path(self, key: StageKey, ext: str) -> Path:
        return self.root / "cache" / key.stage / key.video_id[:16] / f"{key.key}{ext}"

    def video_dir(self, name: str) -> Path:
        """The output folder of a video, by its name in the library (its relative path)."""
        return self.root / "videos" / safe_name(name)

    @property
    def library_dir(self) -> Path:
        return self.root / "library"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


@contextmanager
def active_run(root: Path) -> Iterator[bool]:
    """Mark a run as active in this workspace for its whole duration; yields whether it is the only one.

    Every run holds a shared flock; a run that can take it exclusively first knows no other run is
    writing, so leftover `*.partial` files are a killed run's and may be deleted — and not otherwise."""
    with open(root / "run.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(fh, fcntl.LOCK_SH)  # converts the exclusive lock, or waits for nothing
        try:
            yield alone
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_partials(root: Path) -> int:
    """Delete what a killed run was still writing (names end in TEMP_SUFFIX); returns how many."""
    stale = sorted(root.rglob(f"*{TEMP_SUFFIX}"), key=lambda p: len(p.parts), reverse=True)
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(stale)
