import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tasks.core.formats import read_json, read_npy
from tasks.tools.projection import (
    AdaptorConfig,
    build_adaptor,
    concat_with_separators,
    export_library,
    hd_views,
    load_adaptor,
    project,
    registry_dims,
    save_adaptor,
)
from tasks.library.registry import Member, Registry, save_registry


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_projection_shapes_and_dtype():
    module = build_adaptor(AdaptorConfig(in_dim=128, out_dim=64))
    x = np.random.default_rng(0).normal(size=(5, 128))  # float64 in: float32 out
    y = project(x, module)
    assert y.shape == (5, 64) and y.dtype == np.float32
    assert project(np.zeros((0, 128), np.float32), module).shape == (0, 64)
    with pytest.raises(ValueError):
        project(np.zeros(128, np.float32), module)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_same_seed_same_weights_and_global_rng_untouched(kind):
    state = torch.random.get_rng_state()
    a = _weights(build_adaptor(AdaptorConfig(in_dim=32, out_dim=16, kind=kind, seed=3)))
    b = _weights(build_adaptor(AdaptorConfig(in_dim=32, out_dim=16, kind=kind, seed=3)))
    c = _weights(build_adaptor(AdaptorConfig(in_dim=32, out_dim=16, kind=kind, seed=4)))
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[next(k for k in a if k.endswith("weight") and a[k].ndim == 2)],
                           c[next(k for k in c if k.endswith("weight") and c[k].ndim == 2)])


@pytest.mark.parametrize("kind,layernorm", [("linear", True), ("mlp", True), ("linear", False)])
def test_save_load_reproduces_outputs_exactly(tmp_path, kind, layernorm):
    cfg = AdaptorConfig(in_dim=24, out_dim=40, kind=kind, layernorm=layernorm, seed=7)
    module = build_adaptor(cfg)
    with torch.no_grad():  # as if trained: weights no seed would give
        for p in module.parameters():
            p.add_(0.01)
    x = np.random.default_rng(1).normal(size=(6, 24)).astype(np.float32)
    save_adaptor(module, cfg, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adaptor.json", "adaptor.safetensors"]
    loaded, loaded_cfg = load_adaptor(tmp_path / "a")
    assert loaded_cfg == cfg
    assert np.array_equal(project(x, loaded), project(x, module))
    save_adaptor(loaded, cfg, tmp_path / "a")  # replacing an adaptor folder is allowed


def test_save_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    cfg = AdaptorConfig(in_dim=4, out_dim=4)
    with pytest.raises(ValueError):
        save_adaptor(build_adaptor(cfg), cfg, tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_layernorm_makes_projection_scale_invariant():
    x = np.random.default_rng(2).normal(size=(4, 16)).astype(np.float32)
    with_ln = build_adaptor(AdaptorConfig(in_dim=16, out_dim=8))
    without = build_adaptor(AdaptorConfig(in_dim=16, out_dim=8, layernorm=False))
    assert "norm.weight" in with_ln.state_dict() and not any(k.startswith("norm") for k in without.state_dict())
    np.testing.assert_allclose(project(10 * x, with_ln), project(x, with_ln), atol=1e-4)
    assert not np.allclose(project(10 * x, without), project(x, without), atol=1e-4)


def test_parameter_counts():
    def count(**kw):
        return sum(p.numel() for p in build_adaptor(AdaptorConfig(in_dim=128, out_dim=64, **kw)).parameters())

    ln = 2 * 128
    assert count(kind="linear") == ln + 128 * 64 + 64
    assert count(kind="mlp") == ln + 128 * 64 + 64 + 64 * 64 + 64
    assert count(kind="linear", layernorm=False) == 128 * 64 + 64


def test_hd_views_count_size_and_padding():
    image = np.full((90, 160, 3), 200, np.uint8)
    views = hd_views(image, 32, (2, 3))
    assert len(views) == 1 + 2 * 3
    assert all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in views)
    glob = views[0]  # 16:9 into a square: black bars above and below
    assert glob[0].max() == 0 and glob[-1].max() == 0 and glob[16, 16, 0] == 200
    with pytest.raises(ValueError):
        hd_views(image, 32, (0, 2))
    with pytest.raises(ValueError):
        hd_views(image[..., 0], 32, (1, 1))


def test_concat_with_separators_shape_and_order():
    sep = np.full(8, -1.0)
    feats = [np.ones((3, 8)), 2 * np.ones((1, 8)), 3 * np.ones(8)]
    out = concat_with_separators(feats, sep)
    assert out.shape == (3 + 1 + 1 + 2, 8) and out.dtype == np.float32
    assert (out[[3, 5]] == -1).all() and (out[4] == 2).all() and (out[6] == 3).all()
    assert concat_with_separators([], sep).shape == (0, 8)
    with pytest.raises(ValueError):
        concat_with_separators([np.ones((2, 7))], sep)


def _members(kind, dim, layout, seed):
    rng = np.random.default_rng(seed)
    return [Member(video, "key", f"{video}:{i}", f"{kind}_{g:03d}", 1.0 + i, rng.normal(size=dim).astype(np.float32))
            for i, (video, g) in enumerate(layout)]


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    lib = ws / "library"
    chars = [("a.mp4", 0), ("a.mp4", 1), ("b.mp4", 0), ("b.mp4", 2), ("b.mp4", 1)]
    save_registry(lib / "characters.parquet", Registry("character", "euclidean", _members("character", 128, chars, 0)))
    voices = [("a.mp4", 0), ("b.mp4", 0), ("b.mp4", 1)]
    save_registry(lib / "speakers.parquet", Registry("speaker", "cosine", _members("speaker", 256, voices, 1)))
    (lib / "names.json").write_text('{"gallery": null, "matches": [{"character_id": "character_001", '
                                    '"name": "Ada\\tLovelace", "distance": 0.3}]}')
    return ws


def test_export_library_writes_every_file_with_the_right_shapes(workspace, tmp_path):
    from PIL import Image

    out = tmp_path / "export"
    assert registry_dims(workspace) == {"image": 128, "voice": 256}
    summary = export_library(workspace, out, AdaptorConfig(in_dim=128, out_dim=64, kind="mlp"),
                             AdaptorConfig(in_dim=256, out_dim=64))
    assert summary["characters"]["raw"] == [3, 128] and summary["characters"]["projected"] == [3, 64]
    assert summary["speakers"]["raw"] == [2, 256] and summary["speakers"]["member_projected"] == [3, 64]

    chars = pq.read_table(out / "characters_projected.parquet")
    assert chars.column("global_id").to_pylist() == ["character_000", "character_001", "character_002"]
    assert chars.column("n_members").to_pylist() == [2, 2, 1]
    assert chars.schema.field("raw").type.list_size == 128 and chars.schema.field("projected").type.list_size == 64
    assert chars.column("name").to_pylist()[1] == "Ada\tLovelace"
    members = pq.read_table(out / "character_members_projected.parquet")
    assert members.num_rows == 5 and members.schema.field("projected").type.list_size == 64
    assert pq.read_table(out / "speakers_projected.parquet").schema.field("raw").type.list_size == 256
    assert pq.read_table(out / "speaker_members_projected.parquet").num_rows == 3

    assert read_npy(out / "characters_raw.npy").shape == (3, 128)
    projected = read_npy(out / "characters_projected.npy")
    assert projected.shape == (3, 64) and projected.dtype == np.float32
    np.testing.assert_array_equal(projected, np.stack(chars.column("projected").to_numpy(zero_copy_only=False)))
    assert read_npy(out / "speakers_projected.npy").shape == (2, 64)
    assert read_json(out / "ids.json") == {"characters": ["character_000", "character_001", "character_002"],
                                           "speakers": ["speaker_000", "speaker_001"]}

    vectors = (out / "projector" / "vectors.tsv").read_text().splitlines()
    assert len(vectors) == 5 and all(len(v.split("\t")) == 64 for v in vectors)
    meta = (out / "projector" / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "id\tname\tkind" and meta[2] == "character_001\tAda Lovelace\tcharacter"
    assert meta[-1] == "speaker_001\tspeaker_001\tspeaker" and len(meta) == 6
    assert (out / "projector" / "projector_config.pbtxt").exists()
    with Image.open(out / "map.png") as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 100
    assert not list(out.rglob("*.partial"))


def test_export_reuses_a_saved_adaptor_and_refuses_a_conflicting_one(workspace, tmp_path):
    out = tmp_path / "export"
    cfg = AdaptorConfig(in_dim=128, out_dim=3072, seed=9)
    trained = build_adaptor(cfg)
    with torch.no_grad():
        trained.proj.bias.fill_(0.5)
    save_adaptor(trained, cfg, out / "adaptors" / "image")
    summary = export_library(workspace, out, None, None)
    assert summary["characters"]["adaptor_source"] == str(out / "adaptors" / "image")
    assert summary["speakers"]["adaptor"]["in_dim"] == 256 and summary["out_dim"] == 3072
    raw = read_npy(out / "characters_raw.npy")
    assert np.array_equal(read_npy(out / "characters_projected.npy"), project(raw, trained))
    with pytest.raises(ValueError, match="asked for"):
        export_library(workspace, out, AdaptorConfig(in_dim=128, seed=1), None)
    with pytest.raises(ValueError, match="in_dim"):
        export_library(workspace, tmp_path / "other", None, AdaptorConfig(in_dim=128))
    with pytest.raises(ValueError, match="widths"):
        export_library(workspace, tmp_path / "other", None, AdaptorConfig(in_dim=256, out_dim=64))


def test_export_skips_an_empty_registry_and_removes_its_old_files(workspace, tmp_path):
    out = tmp_path / "export"
    export_library(workspace, out, None, None)
    assert (out / "speakers_projected.npy").exists()
    save_registry(workspace / "library" / "speakers.parquet", Registry("speaker", "cosine"))
    summary = export_library(workspace, out, None, None)
    assert summary["speakers"] is None and not (out / "speakers_projected.npy").exists()
    assert read_json(out / "ids.json")["speakers"] == []
    with pytest.raises(FileNotFoundError):
        export_library(tmp_path / "nowhere", out, None, None)
