import pytest
from pydantic import ValidationError

from tasks.core.config import RunConfig, load_config


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

    from tasks.core.config import dump_yaml
    bundled = Path(__file__).resolve().parents[1] / "data" / "configs" / "default.yaml"
    assert bundled.read_text() == dump_yaml(RunConfig()), "regenerate with: castline config > data/configs/default.yaml"


def test_bad_options_and_keys_are_said_in_one_line_each(tmp_path):
    from tasks.core.config_errors import ConfigError, load_explained

    with pytest.raises(ConfigError, match=r"^demux.fsp: unknown key$"):
        load_explained(None, {"demux.fsp": 2})
    with pytest.raises(ConfigError, match=r"^--fps must be > 0.0, not -1$"):
        load_explained(None, {"demux.fps": -1}, names={"demux.fps": "--fps"})
    bad = tmp_path / "c.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_explained(bad)
    bad.write_text("parallel: 2\ndemux:\n  fpz: 2\n  jpeg_quality: 10\n")
    with pytest.raises(ConfigError) as err:
        load_explained(bad)
    assert str(err.value).splitlines() == [f"{bad}: line 4: demux.jpeg_quality: must be >= 50, not 10",
                                           f"{bad}: line 3: demux.fpz: unknown key"]


def test_broken_yaml_is_reported_with_its_path_and_line(tmp_path):
    from tasks.core.config_errors import ConfigError, load_explained

    bad = tmp_path / "config.yaml"
    bad.write_text("demux:\n  fps: 2\n bad: [\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: line 3: expected <block end>"):
        load_explained(bad)


@pytest.mark.parametrize("retired", [{"embed": {"workers": 2}}, {"diarize": {"window": 1.5, "step": 0.75}},
                                     {"vad": {"threshold": 0.5}}])
def test_a_config_written_for_a_retired_setting_still_loads_and_says_so(retired):
    with pytest.warns(UserWarning, match="no longer used"):
        cfg = RunConfig.model_validate(retired)
    assert cfg == RunConfig()
