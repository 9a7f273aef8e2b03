import pytest
from pydantic import ValidationError

from tasks.config import RunConfig, load_config


def test_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("demux:\n  fps: 2\ncluster:\n  threshold: 0.4\n")
    cfg = load_config(cfg_file, {"demux.fps": 0.5, "parallel": None})
    assert cfg.demux.fps == 0.5 and cfg.cluster.threshold == 0.4 and cfg.parallel == RunConfig().parallel


def test_unknown_or_invalid_fields_are_rejected(tmp_path):
    with pytest.raises(ValidationError, match="fsp"):
        load_config(None, {"demux.fsp": 2})
    with pytest.raises(ValidationError):
        load_config(None, {"demux.fps": -1})
    bad = tmp_path / "c.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_bundled_config_is_valid():
    from pathlib import Path
    load_config(Path(__file__).resolve().parents[1] / "data" / "configs" / "default.yaml")


def test_bundled_config_matches_defaults():
    from pathlib import Path

    from tasks.config import dump_yaml
    bundled = Path(__file__).resolve().parents[1] / "data" / "configs" / "default.yaml"
    assert bundled.read_text() == dump_yaml(RunConfig()), "regenerate with: castline config > data/configs/default.yaml"
