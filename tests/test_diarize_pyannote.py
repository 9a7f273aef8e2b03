"""The pyannote diarization backend, run for real on a random-init pipeline saved like a user's local model,
and the registry's refusal to mix voice (or face) spaces."""
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml
from pydantic import ValidationError

from tasks.core.config import DiarizeParams, EmbedParams, RunConfig
from tasks.video.diarize import diarize_task
from tasks.video.diarize.pyannote import (
    ModelUnavailable,
    load_pipeline,
    resolve,
    segmentation_specifications,
    speaker_records,
)
from tasks.core.formats import read_centroids, read_turns
from tasks.library.identities import recluster_library
from tasks.core.records import SpeechTurn
from tasks.library.registry import (
    DEFAULT_SPACES,
    Registry,
    _table,
    face_space,
    load_registry,
    open_registry,
    registry_paths,
    save_registry,
    voice_space,
)
from tasks.core.workspace import Workspace

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sample_wav() -> Path:
    """pyannote's own 30 s sample: two speakers, shipped in the package."""
    import pyannote.audio

    return Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"


def _save(model, folder: Path) -> None:
    """A checkpoint as pyannote's Model.from_pretrained reads it: Lightning's keys plus pyannote's own."""
    import lightning
    import torch

    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(ckpt)  # pyannote version, architecture and task specifications
    folder.mkdir(parents=True)
    torch.save(ckpt, folder / "pytorch_model.bin")


def _segmentation():
    """PyanNet with segmentation-3.0's task (10 s chunks, 3 local speakers, powerset of at most 2), random
    weights but for the classifier. A random network puts every frame in one powerset class (or in overlap,
    which the clustering does not use), so the classifier is set to send frames to silence, speaker 1 alone
    or speaker 2 alone along one random direction of its input features: the pipeline then has
    single-speaker frames to embed and cluster, as with a trained model."""
    import torch
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet()
    model.specifications = segmentation_specifications()
    model.build()
    model.eval()
    features = {}
    hook = model.classifier.register_forward_hook(lambda m, inputs, out: features.setdefault("x", inputs[0]))
    samples, _ = sf.read(sample_wav(), dtype="float32", frames=160000)
    with torch.inference_mode():
        model(torch.from_numpy(samples)[None, None])
    hook.remove()
    direction = torch.randn(128)
    projection = features["x"] @ direction
    mean, std = projection.mean().item(), projection.std().item()
    # Powerset classes: 0 silence, 1 {speaker#1}, 2 {speaker#2}, 3 {speaker#3}, then the pairs.
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-9.0)
        model.classifier.bias[0] = 2.0  # silence where the projection is within ±0.4 std of its mean
        for k, sign in ((1, 5.0), (2, -5.0)):
            model.classifier.weight[k] = sign * direction / std
            model.classifier.bias[k] = -sign * mean / std
    return model


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    """A pyannote pipeline folder as a user would keep one (config.yaml + segmentation/, embedding/, plda/
    checkpoints), with pyannote.audio's real model classes at random init."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pipeline")
    _save(_segmentation(), folder / "segmentation")
    embedding = WeSpeakerResNet34().eval()
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                              duration=10.0)
    _save(embedding, folder / "embedding")
    # SpeakerDiarization always loads a PLDA, though only VBx clustering uses it: identity transforms.
    (folder / "plda").mkdir()
    np.savez(folder / "plda" / "xvec_transform.npz", mean1=np.zeros(256), mean2=np.zeros(128),
             lda=np.eye(256, 128))
    np.savez(folder / "plda" / "plda.npz", mu=np.zeros(128), tr=np.eye(128), psi=np.ones(128))
    config = {
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": {
            "segmentation": "$model/segmentation", "embedding": "$model/embedding", "plda": "$model/plda",
            "clustering": "AgglomerativeClustering", "segmentation_step": 1.0,
            "segmentation_batch_size": 16, "embedding_batch_size": 16}},
        "params": {"segmentation": {"min_duration_off": 0.0},
                   "clustering": {"method": "centroid", "threshold": 0.3, "min_cluster_size": 1}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_local_pipeline_folder_diarizes_through_the_stage(no_network, pipeline_folder, tmp_path):
    # No VAD segments at all: pyannote finds speech itself.
    out = tmp_path / "turns.json"
    params = DiarizeParams(backend="pyannote", model=str(pipeline_folder))
    diarize_task.fn(sample_wav(), out=out, params=params)
    turns, centroids = read_turns(out), read_centroids(out)
    duration = sf.info(str(sample_wav())).duration
    assert turns and all(0 <= t.start < t.end <= duration + 1e-3 for t in turns)
    assert [t.start for t in turns] == sorted(t.start for t in turns)
    first_speech = list(dict.fromkeys(t.speaker for t in turns))
    assert first_speech == [f"SPEAKER_{i:02d}" for i in range(len(first_speech))]
    assert len(first_speech) >= 2, "the rigged segmentation and clustering were measured to give 2 speakers"
    assert sorted(centroids) == first_speech
    dim = load_pipeline(str(pipeline_folder))._embedding.dimension
    assert all(v.shape == (dim,) == (256,) and abs(np.linalg.norm(v) - 1) < 1e-4 for v in centroids.values())


def test_pipeline_output_becomes_records_in_order_of_first_speech():
    from pyannote.core import Annotation, Segment

    diarization = Annotation()
    diarization[Segment(4.0, 6.0)] = "SPEAKER_00"
    diarization[Segment(1.0, 3.0)] = "SPEAKER_01"
    diarization[Segment(5.0, 8.0)] = "SPEAKER_01"  # overlapping speech is kept
    diarization[Segment(9.0, 9.5)] = "SPEAKER_02"
    # Rows follow diarization.labels(); the last is pyannote's zero padding for a speaker without centroid.
    embeddings = np.array([[0.0, 3.0, 4.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    exclusive = Annotation()
    exclusive[Segment(1.0, 3.0)] = "SPEAKER_01"
    exclusive[Segment(4.0, 6.0)] = "SPEAKER_00"
    result = speaker_records(diarization, exclusive, embeddings)
    turns, centroids = result.turns, result.centroids
    assert result.exclusive == [SpeechTurn(1.0, 3.0, "SPEAKER_00"), SpeechTurn(4.0, 6.0, "SPEAKER_01")]
    assert turns == [SpeechTurn(1.0, 3.0, "SPEAKER_00"), SpeechTurn(4.0, 6.0, "SPEAKER_01"),
                     SpeechTurn(5.0, 8.0, "SPEAKER_00"), SpeechTurn(9.0, 9.5, "SPEAKER_02")]
    assert np.allclose(centroids["SPEAKER_00"], [1, 0, 0]) and np.allclose(centroids["SPEAKER_01"], [0, 0.6, 0.8])
    assert np.array_equal(centroids["SPEAKER_02"], np.zeros(3, np.float32))


def _fake_cache(root: Path, repo_id: str, folder: Path | None) -> None:
    """The Hugging Face cache layout `hf download` leaves: refs/main naming a snapshot folder."""
    import shutil

    revision = "0" * 40
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    if folder is not None:
        shutil.copytree(folder, repo / "snapshots" / revision)


def test_cached_hub_id_is_read_from_the_local_cache(pipeline_folder, tmp_path, monkeypatch, no_network):
    from huggingface_hub import constants
    from pyannote.audio.pipelines import SpeakerDiarization

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _fake_cache(tmp_path, "castline-test/tiny-diarization", pipeline_folder)
    assert resolve("castline-test/tiny-diarization") == \
        tmp_path / "models--castline-test--tiny-diarization" / "snapshots" / ("0" * 40)
    load_pipeline.cache_clear()
    assert isinstance(load_pipeline("castline-test/tiny-diarization"), SpeakerDiarization)


def test_missing_model_is_a_clear_offline_error(tmp_path, monkeypatch, no_network):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    _fake_cache(tmp_path / "cache", "castline-test/half-cached", None)  # a ref without its snapshot
    (tmp_path / "empty").mkdir()
    load_pipeline.cache_clear()
    for missing, why in (("castline-test/no-such-pipeline", "not in the local Hugging Face cache"),
                         ("castline-test/half-cached", "not in the local Hugging Face cache"),
                         (str(tmp_path / "nowhere"), "not a Hugging Face id"),
                         (str(tmp_path / "empty"), "config.yaml")):
        with pytest.raises(ModelUnavailable) as err:
            load_pipeline(missing)
        message = str(err.value)
        assert why in message and repr(missing) in message
        assert "a folder holding the pipeline's config.yaml" in message and "hf download" in message
    with pytest.raises(ValidationError, match="needs diarize.model"):
        DiarizeParams(backend="pyannote")


def test_run_spaces_are_the_embedders_names():
    from tasks.video.embed import DlibFaceEmbedder
    from tasks.video.embed.hf import ClipEmbedder

    assert voice_space(DiarizeParams()) == "campplus"
    assert voice_space(DiarizeParams(backend="pyannote", model="org/pipe")) == "pyannote:org/pipe"
    assert face_space(EmbedParams()) == DlibFaceEmbedder.name
    assert face_space(EmbedParams(backend="clip", model="org/clip")) == f"{ClipEmbedder.family}:org/clip"


def _speakers(space: str = "campplus") -> Registry:
    reg = Registry("speaker", "cosine", space=space)
    reg.assign("ep1", "k1", ["SPEAKER_00"], np.eye(1, 256, dtype=np.float32), [3.0], set(), 0.1)
    return reg


def test_registry_refuses_vectors_of_another_space(tmp_path):
    path = tmp_path / "speakers.parquet"
    with open_registry(path, "speaker", "cosine", "campplus") as reg:
        assert reg.space == "campplus"  # a new registry takes the run's space
        reg.assign("ep1", "k1", ["SPEAKER_00"], np.eye(1, 256, dtype=np.float32), [3.0], set(), 0.1)
    # Same dimension (256), another embedder: refused before anything is compared.
    with pytest.raises(ValueError, match=r"holds vectors of campplus, this run gives pyannote:x: use a separate "
                                         r"--workspace per embedder"):
        with open_registry(path, "speaker", "cosine", "pyannote:x"):
            pass
    with open_registry(path, "speaker", "cosine", "campplus") as reg:
        assert reg.videos() == ["ep1"]
    assert load_registry(path, "speaker", "cosine").space == "campplus"  # readers take what is there
    save_registry(path, Registry("speaker", "cosine"))
    assert load_registry(path, "speaker", "cosine", "pyannote:x").space == "pyannote:x"  # empty: any space


def test_registry_written_before_spaces_loads_as_the_default_space(tmp_path):
    path = tmp_path / "speakers.parquet"
    table = _table(_speakers(""))
    old = {k: v for k, v in table.schema.metadata.items() if k != b"space"}
    pq.write_table(table.replace_schema_metadata(old), path)
    assert load_registry(path, "speaker", "cosine").space == DEFAULT_SPACES["speaker"] == "ge2e"
    assert load_registry(path, "speaker", "cosine", "ge2e").videos() == ["ep1"]
    # GE2E, the only voice space before spaces were recorded, is retired: such a registry is rebuilt
    # (its vectors can never be compared with a new run's), not refused.
    rebuilt = load_registry(path, "speaker", "cosine", "campplus")
    assert rebuilt.space == "campplus" and rebuilt.videos() == []


def test_library_steps_refuse_a_voice_registry_of_the_other_backend(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    save_registry(registry_paths(ws)[1], _speakers())
    cfg = RunConfig(diarize=DiarizeParams(backend="pyannote", model="org/pipe"))
    with pytest.raises(ValueError, match="holds vectors of campplus, this run gives pyannote:org/pipe"):
        recluster_library(ws, cfg)
    assert recluster_library(ws, RunConfig())["speaker"] == (1, 1)


def test_a_run_refuses_a_registry_of_another_backend_before_any_video_work(tmp_path, sample_dir):
    from cli import castline

    from tasks.library.registry import check_spaces

    ws = Workspace.open(tmp_path / "ws")
    check_spaces(ws, "dlib-resnet", "pyannote:org/pipe")  # no registry yet: any space
    save_registry(registry_paths(ws)[1], _speakers())
    check_spaces(ws, "dlib-resnet", "campplus")
    with pytest.raises(ValueError, match="holds vectors of campplus, this run gives pyannote:org/pipe"):
        check_spaces(ws, "dlib-resnet", "pyannote:org/pipe")

    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "megamind.avi").symlink_to(sample_dir / "megamind.avi")
    config = tmp_path / "pyannote.yaml"
    config.write_text("diarize:\n  backend: pyannote\n  model: org/pipe\n")
    r = castline("run", str(lib), "--workspace", str(ws.root), "--config", str(config))
    assert r.returncode == 2 and "use a separate --workspace per embedder" in r.stderr, r.stderr
    assert not (ws.root / "cache").exists()  # refused before any stage ran


def test_new_weights_in_the_same_folder_change_the_stage_key(pipeline_folder, tmp_path):
    import shutil

    from tasks.video.pipeline import StageKeys

    folder = shutil.copytree(pipeline_folder, tmp_path / "pipeline")
    cfg = RunConfig(diarize=DiarizeParams(backend="pyannote", model=str(folder)))
    before = StageKeys("0" * 32, cfg)["diarize"]
    assert StageKeys("0" * 32, cfg)["diarize"] == before
    checkpoint = next(p for p in (folder / "embedding").rglob("*") if p.is_file())
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    assert StageKeys("0" * 32, cfg)["diarize"] != before
