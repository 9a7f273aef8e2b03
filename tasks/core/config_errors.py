"""Bad configuration said in one line per problem: where (the option, or the file with its line and key) and
what is wrong, e.g. `--fps must be > 0.0, not -1.0` or `config.yaml: line 3: demux.fpz: unknown key`.

In: what tasks/core/config.py's load_config takes, and how the user wrote each override (`--fps`). Out: the
RunConfig, or a ConfigError instead of pydantic's and PyYAML's wording. Kept out of tasks/core/config.py, which
the stages import: its source is part of their cache keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from tasks.core.config import RunConfig, load_config

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


class ConfigError(ValueError):
    """One line per problem."""


def problem(error: dict) -> str:
    """What is wrong, from one pydantic error, without pydantic's wording and documentation link."""
    if error["type"] in _BOUNDS:
        return f"must be {_BOUNDS[error['type']]} {next(iter(error['ctx'].values()))}, not {error['input']!r}"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    said = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1)
    return f"{said}, not {error['input']!r}" if error["type"] == "literal_error" else said


def key_line(root: yaml.Node | None, keys: Sequence[str]) -> int | None:
    """1-based line of the deepest of the dotted `keys` that the YAML document holds."""
    node, line = root, None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == key), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return line


def validation_lines(e: ValidationError, path: Path | None, overrides: dict[str, Any],
                     names: dict[str, str]) -> list[str]:
    root = yaml.compose(path.read_text(encoding="utf-8")) if path is not None else None
    lines = []
    for error in e.errors():
        dotted = ".".join(map(str, error["loc"]))
        if dotted in names and overrides.get(dotted) is not None:  # an option: "--fps must be > 0.0, not -1.0"
            lines.append(f"{names[dotted]} {problem(error)}")
            continue
        if path is not None and overrides.get(dotted) is None:
            line = key_line(root, [str(k) for k in error["loc"]])
            where = f"{path}: " + (f"line {line}: " if line else "") + (dotted or "top level")
        else:
            where = dotted or "configuration"
        lines.append(f"{where}: {problem(error)}")
    return lines


def load_explained(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                   names: dict[str, str] | None = None) -> RunConfig:
    """load_config, raising ConfigError for a bad file, key, value or option."""
    path = Path(path) if path is not None else None
    try:
        return load_config(path, overrides)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}{getattr(e, 'problem', None) or e}") from e
    except ValidationError as e:
        raise ConfigError("\n".join(validation_lines(e, path, overrides or {}, names or {}))) from e
    except ValueError as e:  # load_config's own: not a mapping
        raise ConfigError(str(e)) from e
