"""Backend names: the configuration's Literals, the stages' BACKENDS registries and the CLI agree, so a backend
added to one cannot be missing from another."""
from __future__ import annotations

from typing import get_args

from flows.cli_options import field_option
from tasks.core.config import DetectParams, DiarizeParams, EmbedParams
from tasks.tools.audio_features import BACKENDS as AUDIO_BACKENDS
from tasks.tools.params import AudioBackend, DatasetParams
from tasks.video import detect, diarize, embed


def allowed(model, field: str) -> set[str]:
    return set(get_args(model.model_fields[field].annotation))


def test_every_configured_backend_has_a_registry_entry_and_back():
    assert allowed(DetectParams, "backend") == set(detect.BACKENDS) | {"auto"}  # auto resolves to one of them
    assert allowed(EmbedParams, "backend") == set(embed.BACKENDS)
    assert allowed(DiarizeParams, "backend") == set(diarize.BACKENDS)
    assert set(get_args(AudioBackend)) == set(AUDIO_BACKENDS)


def test_bootstrap_detectors_are_the_fallbacks_and_the_teachers():
    assert set(detect.BOOTSTRAP) <= set(detect.BACKENDS)
    assert allowed(DetectParams, "auto_fallback") == set(detect.BOOTSTRAP) == allowed(DatasetParams, "teacher")


def test_cli_options_show_the_config_models_defaults_and_help():
    option = field_option(DatasetParams, "max_side")
    info = DatasetParams.model_fields["max_side"]
    assert option.default is None and option.show_default == str(info.default)
    assert info.description in option.help.lower()
    teacher = field_option(DatasetParams, "teacher").help
    assert all(name in teacher for name in detect.BOOTSTRAP)
